//! The options a worker runs with, filled in by whoever starts it (the CLI, or an embedded worker).

use std::path::PathBuf;
use std::time::Duration;

use drover_proto::domain::Tag;

/// How a worker runs, validated once by whoever starts it.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The scheduler, as `host:port` or `http://host:port`.
    pub scheduler: String,
    /// A stable name; by default one is made up once and kept in the work directory.
    pub worker_id: Option<String>,
    /// How many runs at once.
    pub slots: u32,
    /// Snapshot cache and run directories.
    pub work_dir: PathBuf,
    pub labels: Vec<Tag>,
    /// Largest snapshot the worker extracts.
    pub snapshot_limit: u64,
    /// Try `docker pull` for images missing on this machine (only useful with a registry).
    pub pull_images: bool,
    /// The address runs use to reach the tracking API (`MLFLOW_TRACKING_URI`); by default the
    /// scheduler's.
    pub tracking_uri: Option<String>,
    /// How long to keep trying to deliver reports when shutting down.
    pub shutdown_timeout: Duration,
    /// The scheduler's token, sent with every call; never passed to runs.
    pub token: Option<String>,
    /// GPU device ids to offer; found with `nvidia-smi` when not given.
    pub gpus: Option<Vec<String>>,
    /// The CA (PEM) an https:// scheduler's certificate is verified against; the public web
    /// roots when absent.
    pub ca: Option<PathBuf>,
    /// For a worker in a container: where its work directory is on the Docker host (by
    /// default the same path).
    pub host_work_dir: Option<PathBuf>,
}

impl WorkerOptions {
    pub fn new(scheduler: impl Into<String>, work_dir: impl Into<PathBuf>) -> WorkerOptions {
        WorkerOptions {
            scheduler: scheduler.into(),
            worker_id: None,
            slots: 1,
            work_dir: work_dir.into(),
            labels: Vec::new(),
            snapshot_limit: drover_project::snapshot::DEFAULT_SIZE_LIMIT,
            pull_images: false,
            tracking_uri: None,
            shutdown_timeout: Duration::from_secs(30),
            token: None,
            gpus: None,
            ca: None,
            host_work_dir: None,
        }
    }
}
