//! `drover workers list|drain|undrain`: the workers, and taking one out of placement while
//! the runs it has finish (for maintenance), then back.

use clap::{Args, Subcommand};

use super::status::worker_table;
use crate::GlobalOptions;
use crate::backend::with_client;
use crate::output::{OutputFormat, print_json};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the workers: state (connected, draining, lost), slots, CPUs, memory, labels.
    List(ListOptions),
    /// Place no new runs on a worker; the runs it has finish. Kept across scheduler restarts.
    Drain(WorkerArgument),
    /// Place runs on a drained worker again.
    Undrain(WorkerArgument),
}

#[derive(Args, Debug)]
pub struct ListOptions {
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct WorkerArgument {
    /// The worker's ID, as `drover workers list` shows it.
    worker_id: String,
}

pub async fn run(global: &GlobalOptions, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List(options) => {
            let status =
                with_client(global, async |client| Ok(client.cluster_status().await?)).await?;
            if options.output == OutputFormat::Json {
                return print_json(&status.workers);
            }
            print!("{}", worker_table(&status).render());
            Ok(())
        }
        Command::Drain(worker) => {
            let id = worker.worker_id;
            let status =
                with_client(global, async |client| Ok(client.drain_worker(&id, true).await?))
                    .await?;
            println!(
                "Worker {id} drained: it takes no new runs; {} running run(s) finish",
                status.busy_slots
            );
            Ok(())
        }
        Command::Undrain(worker) => {
            let id = worker.worker_id;
            with_client(global, async |client| Ok(client.drain_worker(&id, false).await?)).await?;
            println!("Worker {id} takes runs again");
            Ok(())
        }
    }
}
