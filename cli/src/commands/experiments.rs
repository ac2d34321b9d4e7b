//! `drover experiments ...`

use clap::{Args, Subcommand};
use drover_proto::domain::{CreateExperiment, ExperimentName, RenameExperiment};

use super::{ExperimentSelector, View};
use crate::GlobalOptions;
use crate::backend::with_client;
use crate::output::{OutputFormat, Table, format_time, print_json, terminal_safe};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an experiment.
    Create(CreateOptions),
    /// List experiments.
    List(ListOptions),
    /// Rename an experiment.
    Rename(RenameOptions),
    /// Delete an experiment (it can be restored; its name stays taken).
    Delete(ExperimentSelector),
    /// Restore a deleted experiment.
    Restore(ExperimentSelector),
}

#[derive(Args, Debug)]
pub struct CreateOptions {
    /// Name of the new experiment.
    #[arg(long, short = 'n', value_name = "NAME")]
    experiment_name: String,
    /// Where the experiment's artifacts go (default: the scheduler's artifact store).
    #[arg(long, value_name = "URI")]
    artifact_location: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListOptions {
    /// Which experiments to show.
    #[arg(long, value_enum, default_value_t)]
    view: View,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct RenameOptions {
    #[command(flatten)]
    experiment: ExperimentSelector,
    /// The new name.
    #[arg(long, value_name = "NAME")]
    new_name: String,
}

pub async fn run(global: &GlobalOptions, command: Command) -> anyhow::Result<()> {
    // Everything that can be checked is checked before the store is touched.
    match command {
        Command::Create(options) => {
            let name = ExperimentName::parse(&options.experiment_name)?;
            let request = CreateExperiment {
                name,
                artifact_location: options.artifact_location,
                tags: Vec::new(),
            };
            let experiment =
                with_client(global, async |client| Ok(client.create_experiment(request).await?))
                    .await?;
            println!(
                "Created experiment '{}' with ID {}",
                terminal_safe(&experiment.name),
                experiment.id
            );
        }
        Command::List(options) => {
            let experiments = with_client(global, async |client| {
                Ok(client.list_experiments(options.view.into()).await?)
            })
            .await?;
            match options.output {
                OutputFormat::Json => print_json(&experiments)?,
                OutputFormat::Table => {
                    let mut table =
                        Table::new(&["ID", "NAME", "STAGE", "CREATED", "ARTIFACT LOCATION"]);
                    for experiment in experiments {
                        table.row(vec![
                            experiment.id.to_string(),
                            experiment.name,
                            experiment.lifecycle_stage.as_str().to_string(),
                            format_time(experiment.creation_time_ms),
                            experiment.artifact_location,
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        Command::Rename(options) => {
            let new_name = ExperimentName::parse(&options.new_name)?;
            let experiment = options.experiment.reference()?;
            let (before, after) = with_client(global, async |client| {
                let before = client.get_experiment(experiment.clone()).await?;
                let after =
                    client.rename_experiment(RenameExperiment { experiment, new_name }).await?;
                Ok((before, after))
            })
            .await?;
            println!(
                "Renamed experiment '{}' (ID {}) to '{}'",
                terminal_safe(&before.name),
                after.id,
                terminal_safe(&after.name)
            );
        }
        Command::Delete(selector) => {
            let experiment = selector.reference()?;
            let experiment = with_client(global, async |client| {
                Ok(client.delete_experiment(experiment).await?)
            })
            .await?;
            println!(
                "Deleted experiment '{}' (ID {})",
                terminal_safe(&experiment.name),
                experiment.id
            );
        }
        Command::Restore(selector) => {
            let experiment = selector.reference()?;
            let experiment = with_client(global, async |client| {
                Ok(client.restore_experiment(experiment).await?)
            })
            .await?;
            println!(
                "Restored experiment '{}' (ID {})",
                terminal_safe(&experiment.name),
                experiment.id
            );
        }
    }
    Ok(())
}
