//! `drover models list|describe|alias|delete`: the model registry, and where each version
//! came from: the run that produced it, that run's code, image and parameters, and the
//! metrics logged with the model.

use anyhow::Context;
use clap::{Args, Subcommand};
use drover_proto::Client;
use drover_proto::domain::{Metric, Run, RunId, Tag};
use drover_proto::models::{LoggedModelView, ModelVersion, RegisteredModelView, VersionRef};
use drover_proto::tags;
use serde::Serialize;

use crate::GlobalOptions;
use crate::backend::with_client;
use crate::output::{OutputFormat, Table, format_time, indent, print_json};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List registered models: latest version, aliases, last update.
    List(ListOptions),
    /// A model and its versions (NAME), or one version and its lineage (NAME/VERSION or
    /// NAME@ALIAS).
    Describe(DescribeOptions),
    /// Point ALIAS of model NAME at VERSION (moving it if it pointed elsewhere).
    Alias(AliasOptions),
    /// Delete a model with all its versions (NAME), one version (NAME/VERSION; its aliases
    /// go with it, its number is not given again), or an alias (NAME@ALIAS).
    Delete(DeleteOptions),
}

#[derive(Args, Debug)]
pub struct ListOptions {
    /// MLflow's filter over `name` and `tags.<key>`, e.g. "name LIKE 'wine%'".
    #[arg(long, default_value = "")]
    filter: String,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct DescribeOptions {
    /// NAME, NAME/VERSION or NAME@ALIAS.
    model: String,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct AliasOptions {
    /// The registered model.
    name: String,
    alias: String,
    /// The version number the alias points at.
    #[arg(value_name = "VERSION")]
    number: u64,
}

#[derive(Args, Debug)]
pub struct DeleteOptions {
    /// NAME, NAME/VERSION or NAME@ALIAS.
    model: String,
}

/// A model reference as users type it.
enum Target {
    Model(String),
    Version(String, VersionRef),
}

fn parse_target(text: &str) -> anyhow::Result<Target> {
    if let Some((name, alias)) = text.rsplit_once('@') {
        anyhow::ensure!(!name.is_empty() && !alias.is_empty(), "expected NAME@ALIAS, got '{text}'");
        return Ok(Target::Version(name.to_string(), VersionRef::Alias(alias.to_string())));
    }
    if let Some((name, version)) = text.rsplit_once('/') {
        let number =
            version.parse::<u64>().ok().filter(|number| *number > 0).with_context(|| {
                format!("expected NAME/VERSION with a version number from 1, got '{text}'")
            })?;
        return Ok(Target::Version(name.to_string(), VersionRef::Number(number)));
    }
    Ok(Target::Model(text.to_string()))
}

/// Where a version came from, as `describe` shows it.
#[derive(Serialize)]
struct Lineage {
    version: ModelVersion,
    aliases: Vec<String>,
    logged_model: Option<LoggedModelView>,
    run: Option<Run>,
}

pub async fn run(global: &GlobalOptions, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List(options) => {
            let models = with_client(global, async |client| {
                let mut models = Vec::new();
                let mut token = None;
                loop {
                    let page =
                        client.search_registered_models(&options.filter, Some(1000), token).await?;
                    models.extend(page.items);
                    token = page.next_page_token;
                    if token.is_none() {
                        return Ok(models);
                    }
                }
            })
            .await?;
            if options.output == OutputFormat::Json {
                return print_json(&models);
            }
            print!("{}", models_table(&models).render());
            Ok(())
        }
        Command::Describe(options) => match parse_target(&options.model)? {
            Target::Model(name) => {
                let (model, versions) = with_client(global, async |client| {
                    let model = client.get_registered_model(&name).await?;
                    Ok((model, client.list_model_versions(&name).await?))
                })
                .await?;
                if options.output == OutputFormat::Json {
                    #[derive(Serialize)]
                    struct Described {
                        #[serde(flatten)]
                        model: RegisteredModelView,
                        versions: Vec<ModelVersion>,
                    }
                    return print_json(&Described { model, versions });
                }
                print!("{}", render_model(&model, &versions));
                Ok(())
            }
            Target::Version(name, version) => {
                let lineage =
                    with_client(global, async |client| Ok(lineage(client, &name, version).await?))
                        .await?;
                if options.output == OutputFormat::Json {
                    return print_json(&lineage);
                }
                print!("{}", render_lineage(&lineage));
                Ok(())
            }
        },
        Command::Alias(options) => {
            with_client(global, async |client| {
                Ok(client.set_alias(&options.name, &options.alias, options.number).await?)
            })
            .await?;
            println!(
                "Alias '{}' of model '{}' now points at version {}",
                options.alias, options.name, options.number
            );
            Ok(())
        }
        Command::Delete(options) => match parse_target(&options.model)? {
            Target::Model(name) => {
                with_client(global, async |client| {
                    Ok(client.delete_registered_model(&name).await?)
                })
                .await?;
                println!("Deleted registered model '{name}' and its versions");
                Ok(())
            }
            Target::Version(name, VersionRef::Alias(alias)) => {
                with_client(global, async |client| Ok(client.delete_alias(&name, &alias).await?))
                    .await?;
                println!("Deleted alias '{alias}' of model '{name}'");
                Ok(())
            }
            Target::Version(name, version) => {
                with_client(global, async |client| {
                    Ok(client.delete_model_version(&name, version.clone()).await?)
                })
                .await?;
                if let VersionRef::Number(number) = version {
                    println!("Deleted version {number} of model '{name}'");
                }
                Ok(())
            }
        },
    }
}

async fn lineage(
    client: &Client,
    name: &str,
    version: VersionRef,
) -> Result<Lineage, drover_proto::ApiError> {
    let version = client.get_model_version(name, version).await?;
    let model = client.get_registered_model(name).await?;
    let aliases = model
        .model
        .aliases
        .iter()
        .filter(|(_, aliased)| **aliased == version.version)
        .map(|(alias, _)| alias.clone())
        .collect();
    let logged_model = match &version.model_id {
        Some(id) => Some(client.get_logged_model(id).await?),
        None => None,
    };
    let run_id: Option<RunId> =
        version.run_id.or(logged_model.as_ref().and_then(|view| view.model.source_run_id));
    let run = match run_id {
        Some(run_id) => Some(client.get_run(run_id).await?),
        None => None,
    };
    Ok(Lineage { version, aliases, logged_model, run })
}

fn models_table(models: &[RegisteredModelView]) -> Table {
    let mut table = Table::new(&["NAME", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"]);
    for view in models {
        let latest = view.latest_versions.iter().map(|v| v.version).max();
        let aliases: Vec<String> = view
            .model
            .aliases
            .iter()
            .map(|(alias, version)| format!("{alias}={version}"))
            .collect();
        table.row(vec![
            view.model.name.clone(),
            latest.map_or_else(|| "-".to_string(), |v| v.to_string()),
            aliases.join(", "),
            format_time(view.model.last_updated_time_ms),
            view.model.description.clone(),
        ]);
    }
    table
}

fn render_model(view: &RegisteredModelView, versions: &[ModelVersion]) -> String {
    let model = &view.model;
    let mut fields = Table::new(&["Model", &model.name]);
    fields.row(vec!["Created".into(), format_time(model.creation_time_ms)]);
    fields.row(vec!["Updated".into(), format_time(model.last_updated_time_ms)]);
    if !model.description.is_empty() {
        fields.row(vec!["Description".into(), model.description.clone()]);
    }
    for tag in &model.tags {
        fields.row(vec![format!("Tag {}", tag.key), tag.value.clone()]);
    }
    let mut out = fields.render();
    if versions.is_empty() {
        out.push_str("\nVersions: none\n");
        return out;
    }
    let mut table = Table::new(&["VERSION", "ALIASES", "STAGE", "RUN", "CREATED", "SOURCE"]);
    for version in versions {
        let aliases: Vec<&str> = model
            .aliases
            .iter()
            .filter(|(_, aliased)| **aliased == version.version)
            .map(|(alias, _)| alias.as_str())
            .collect();
        table.row(vec![
            version.version.to_string(),
            aliases.join(", "),
            version.stage.as_str().to_string(),
            version.run_id.map(|id| id.to_string()).unwrap_or_else(|| "-".into()),
            format_time(version.creation_time_ms),
            version.source.clone(),
        ]);
    }
    out.push_str(&format!("\nVersions:\n{}", indent(&table.render())));
    out
}

fn render_lineage(lineage: &Lineage) -> String {
    let version = &lineage.version;
    let mut fields =
        Table::new(&["Model", &format!("{} version {}", version.name, version.version)]);
    if !lineage.aliases.is_empty() {
        fields.row(vec!["Aliases".into(), lineage.aliases.join(", ")]);
    }
    fields.row(vec!["Stage".into(), version.stage.as_str().to_string()]);
    fields.row(vec!["Registered".into(), format_time(version.creation_time_ms)]);
    fields.row(vec!["Source".into(), version.source.clone()]);
    fields.row(vec!["Files".into(), version.storage_location.clone()]);
    if let Some(view) = &lineage.logged_model {
        let model = &view.model;
        fields.row(vec!["Logged model".into(), format!("{} ({})", model.model_id, model.name)]);
        if !model.model_type.is_empty() {
            fields.row(vec!["Model type".into(), model.model_type.clone()]);
        }
        fields.row(vec!["Status".into(), model.status.as_str().to_string()]);
    }
    if !version.description.is_empty() {
        fields.row(vec!["Description".into(), version.description.clone()]);
    }
    let mut out = fields.render();
    let Some(run) = &lineage.run else {
        out.push_str("\nProduced by: no run recorded\n");
        return out;
    };
    let tag = |key: &str| run.data.tags.iter().find(|t| t.key == key).map(|t| t.value.clone());
    let mut produced = Table::new(&["Run", &run.info.run_id.to_string()]);
    produced.row(vec!["Run name".into(), run.info.run_name.clone()]);
    produced.row(vec!["Experiment".into(), run.info.experiment_id.to_string()]);
    produced.row(vec!["Status".into(), run.info.status.to_string()]);
    for (label, key) in LINEAGE_TAGS {
        produced.row(vec![label.to_string(), tag(key).unwrap_or_else(|| "-".into())]);
    }
    out.push_str(&format!("\nProduced by:\n{}", indent(&produced.render())));
    out.push_str(&key_values(
        "Parameters",
        ["KEY", "VALUE"],
        &run.data.params.iter().map(|p| (p.key.clone(), p.value.clone())).collect::<Vec<_>>(),
    ));
    let datasets: Vec<(String, String)> = lineage
        .logged_model
        .iter()
        .flat_map(|view| &view.metrics)
        .filter_map(|metric| {
            Some((metric.dataset_name.clone()?, metric.dataset_digest.clone().unwrap_or_default()))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    out.push_str(&key_values("Datasets", ["NAME", "DIGEST"], &datasets));
    let metrics: Vec<Metric> = match &lineage.logged_model {
        Some(view) if !view.metrics.is_empty() => view
            .metrics
            .iter()
            .map(|m| Metric {
                key: m.key.clone(),
                value: m.value,
                timestamp_ms: m.timestamp_ms,
                step: m.step,
            })
            .collect(),
        _ => run.data.latest_metrics.clone(),
    };
    let mut table = Table::new(&["KEY", "VALUE", "STEP", "TIME"]);
    for metric in &metrics {
        table.row(vec![
            metric.key.clone(),
            metric.value.to_string(),
            metric.step.to_string(),
            format_time(metric.timestamp_ms),
        ]);
    }
    if metrics.is_empty() {
        out.push_str("\nMetrics at logging time: none\n");
    } else {
        out.push_str(&format!("\nMetrics at logging time:\n{}", indent(&table.render())));
    }
    let user_tags: Vec<&Tag> = version.tags.iter().collect();
    if !user_tags.is_empty() {
        out.push_str(&key_values(
            "Version tags",
            ["KEY", "VALUE"],
            &user_tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect::<Vec<_>>(),
        ));
    }
    out
}

/// What made a run: the same facts `drover runs describe` shows, in lineage order.
const LINEAGE_TAGS: &[(&str, &str)] = &[
    ("Snapshot", tags::SNAPSHOT),
    ("Git commit", tags::GIT_COMMIT),
    ("Entry point", tags::ENTRY_POINT),
    ("Command", tags::COMMAND),
    ("Image", tags::IMAGE),
    ("Image ID", tags::IMAGE_ID),
    ("Worker", tags::WORKER),
];

fn key_values(title: &str, header: [&str; 2], pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return format!("\n{title}: none\n");
    }
    let mut table = Table::new(&header);
    for (key, value) in pairs {
        table.row(vec![key.clone(), value.clone()]);
    }
    format!("\n{title}:\n{}", indent(&table.render()))
}
