//! `drover worker`: execute runs for a scheduler until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use drover_proto::domain::Tag;
use drover_worker::WorkerOptions;

use crate::GlobalOptions;
use crate::commands::scheduler::shutdown_signal;

#[derive(Args, Debug)]
pub struct Options {
    /// How many runs this worker executes at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    slots: u32,
    /// Where snapshots are cached and runs execute.
    #[arg(long, default_value = ".drover-worker", value_name = "DIR")]
    work_dir: PathBuf,
    /// A stable name for this worker (default: made up once and kept in the work directory).
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// A label, key=value (repeatable), shown in `drover status`; runs may ask for it.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// For a worker in a container (Docker socket mounted): where --work-dir is on the Docker
    /// host, for the runs' bind mounts (default: the same path).
    #[arg(long, value_name = "DIR")]
    host_work_dir: Option<std::path::PathBuf>,
    /// GPU device ids to offer, e.g. 0,1,2,3 (default: those nvidia-smi lists).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    gpus: Option<Vec<String>>,
    /// Pull images missing on this machine (needs a reachable registry).
    #[arg(long)]
    pull: bool,
    /// MLFLOW_TRACKING_URI for runs (default: the scheduler's address).
    #[arg(long, value_name = "URI")]
    tracking_uri: Option<String>,
}

pub async fn run(global: &GlobalOptions, options: Options) -> anyhow::Result<()> {
    let Some(scheduler) = global.scheduler.clone() else {
        bail!("a worker needs a scheduler: pass --scheduler ADDR (or set DROVER_SCHEDULER)");
    };
    drover_proto::client::normalize_address(&scheduler)?;
    if options.slots == 0 {
        bail!("--slots must be at least 1");
    }
    let labels = options
        .labels
        .iter()
        .map(|label| match label.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                Ok(Tag { key: key.to_string(), value: value.to_string() })
            }
            _ => bail!("malformed label '{label}': expected key=value"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut worker = WorkerOptions::new(scheduler, options.work_dir);
    worker.slots = options.slots;
    worker.worker_id = options.worker_id;
    worker.labels = labels;
    worker.gpus = options.gpus;
    worker.host_work_dir = options.host_work_dir;
    worker.pull_images = options.pull;
    worker.tracking_uri = options.tracking_uri;
    worker.token = global.token()?;
    worker.ca = global.ca.clone();
    let shutdown = shutdown_signal()?;
    drover_worker::run(worker, shutdown).await.context("the worker stopped")?;
    Ok(())
}
