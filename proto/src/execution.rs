//! The domain vocabulary of running projects: run specs, submissions, run events, the worker
//! protocol, and cluster status.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use drover_project::docker::DockerOptions;
use drover_project::snapshot::SnapshotDigest;
use serde::{Deserialize, Serialize};
use tokio_stream::Stream;

use crate::domain::{ExperimentId, Metric, Param, RunId, RunStatus, Tag};

/// A boxed stream, for the streaming calls of the API.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvManager {
    /// A process on the worker.
    Local,
    /// A Docker container on the worker.
    Docker,
}

impl EnvManager {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvManager::Local => "local",
            EnvManager::Docker => "docker",
        }
    }
}

/// Everything a worker needs to execute a run; stored with the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub project_name: String,
    pub snapshot: SnapshotDigest,
    pub snapshot_size: u64,
    pub entry_point: String,
    /// As submitted, paths already made relative to the project.
    pub parameters: Vec<(String, String)>,
    pub env_manager: EnvManager,
    /// The image of a Docker run.
    pub image: Option<String>,
    /// docker_env volumes, `host:container[:options]`.
    pub volumes: Vec<String>,
    /// Environment variables for the run, resolved at submission.
    pub environment: Vec<(String, String)>,
    pub docker: DockerOptions,
    pub max_retries: u32,
    pub priority: i32,
    /// Labels the worker must have, as (key, value).
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// Variables the worker copies from its own environment as it starts the run: those
    /// whose names look secret, whose values drover never carries or stores.
    #[serde(default)]
    pub inherited_environment: Vec<String>,
    /// What a rerun expects to find again on its worker.
    #[serde(default)]
    pub expect: Option<Expectation>,
}

/// What a rerun expects of its worker: the image id and data digests of the run it reruns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    pub image_id: Option<String>,
    /// (parameter, digest) for each path parameter the worker digests.
    pub data: Vec<(String, String)>,
    /// Refuse to start when anything differs, rather than say so in the log.
    pub strict: bool,
}

impl RunSpec {
    /// Where a path the run's command gets is on its worker: through its bind mounts for a
    /// Docker run (none for a path in the image or a named volume), the path itself for a
    /// local process.
    pub fn data_path(&self, value: &str) -> Option<std::path::PathBuf> {
        match self.env_manager {
            EnvManager::Docker => drover_project::digest::through_volumes(value, &self.volumes),
            EnvManager::Local => Some(std::path::PathBuf::from(value)),
        }
    }

    /// A local-process run of the `main` entry point of a snapshot, with no parameters,
    /// resources, retries or labels: the start the callers that build specs by hand share.
    pub fn local(project_name: &str, snapshot: SnapshotDigest, snapshot_size: u64) -> RunSpec {
        RunSpec {
            project_name: project_name.to_string(),
            snapshot,
            snapshot_size,
            entry_point: "main".into(),
            parameters: Vec::new(),
            env_manager: EnvManager::Local,
            image: None,
            volumes: Vec::new(),
            environment: Vec::new(),
            docker: DockerOptions::default(),
            max_retries: 0,
            priority: 0,
            labels: Vec::new(),
            inherited_environment: Vec::new(),
            expect: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SubmitRun {
    pub experiment_id: ExperimentId,
    pub run_name: Option<String>,
    pub user_id: String,
    pub tags: Vec<Tag>,
    pub spec: RunSpec,
}

/// How a scheduler's refusal of a submission whose snapshot it lacks ends, after the digest.
pub const SNAPSHOT_MISSING: &str = "is not on this scheduler; upload it before submitting";

/// Whether `error` refuses a submission because its snapshot must be uploaded first.
pub fn is_missing_snapshot(error: &crate::ApiError) -> bool {
    matches!(error, crate::ApiError::FailedPrecondition(message) if message.ends_with(SNAPSHOT_MISSING))
}

/// One attempt at executing a run. Attempts count from 1; a retry is a new attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptId {
    pub run_id: RunId,
    pub attempt: u32,
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} attempt {}", self.run_id, self.attempt)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines drover itself writes into a run's log.
    System,
}

/// What following a run yields: its log, then its final state.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    Log { stream: LogStream, data: Vec<u8>, cursor: u64 },
    State { status: RunStatus, exit_code: Option<i32>, message: String },
}

#[derive(Clone, Copy, Debug)]
pub struct FollowRun {
    pub run_id: RunId,
    pub follow: bool,
    pub after_cursor: u64,
}

/// A piece of a snapshot upload; the first names the digest and total size.
#[derive(Clone, Debug)]
pub struct SnapshotChunk {
    pub digest: Option<SnapshotDigest>,
    pub size: u64,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedSnapshot {
    pub digest: SnapshotDigest,
    pub size: u64,
    /// False when the scheduler already had it.
    pub stored: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRegistration {
    pub worker_id: String,
    pub hostname: String,
    pub slots: u32,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_available: bool,
    pub running: Vec<AttemptId>,
    pub labels: Vec<Tag>,
    /// GPU device ids.
    pub gpus: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunPhase {
    Started,
    Finished,
    Failed,
    Killed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunUpdate {
    pub attempt: AttemptId,
    pub phase: RunPhase,
    pub exit_code: Option<i32>,
    pub message: String,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogAppend {
    pub attempt: AttemptId,
    pub stream: LogStream,
    /// Byte offset of `data` within this attempt's output.
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Metrics, params and tags a run printed.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricBatch {
    pub attempt: AttemptId,
    /// Counts from 1 within an attempt; one at or below the last stored is a resend.
    pub batch: u64,
    pub series: Vec<MetricSeries>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

/// The points of one metric key, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSeries {
    pub key: String,
    pub points: Vec<MetricPoint>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricPoint {
    pub step: i64,
    pub timestamp_ms: i64,
    pub value: f64,
}

impl MetricSeries {
    /// Groups points by key; keys in order of first appearance, points in arrival order.
    pub fn group(metrics: Vec<Metric>) -> Vec<MetricSeries> {
        let mut series: Vec<MetricSeries> = Vec::new();
        for metric in metrics {
            let point = MetricPoint {
                step: metric.step,
                timestamp_ms: metric.timestamp_ms,
                value: metric.value,
            };
            // Batches hold few keys: a scan beats hashing every point.
            match series.iter_mut().rev().find(|series| series.key == metric.key) {
                Some(series) => series.points.push(point),
                None => series.push(MetricSeries { key: metric.key, points: vec![point] }),
            }
        }
        series
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum WorkerEvent {
    Register(WorkerRegistration),
    Heartbeat { running: Vec<AttemptId> },
    Update(RunUpdate),
    Log(LogAppend),
    Metrics(MetricBatch),
}

/// A message from a worker. Those with a sequence number are acknowledged once durable and
/// resent until then.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerMessage {
    pub seq: Option<u64>,
    pub event: WorkerEvent,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub attempt: AttemptId,
    pub experiment_id: ExperimentId,
    pub spec: RunSpec,
    /// The GPU devices this attempt holds on the worker.
    pub gpu_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SchedulerMessage {
    Registered {
        heartbeat_interval: Duration,
        lease_timeout: Duration,
    },
    /// The worker message with this sequence number is durable, or was refused as stale.
    Ack(u64),
    Assign(Box<Assignment>),
    Cancel {
        attempt: AttemptId,
        grace_period: Duration,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub worker_id: String,
    pub hostname: String,
    pub slots: u32,
    pub busy_slots: u32,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_available: bool,
    pub connected: bool,
    pub last_seen_ms: i64,
    pub labels: Vec<Tag>,
    /// Takes no new runs; the runs it has finish.
    pub draining: bool,
    pub gpus: Vec<String>,
    /// What the runs placed on it hold.
    pub gpus_in_use: Vec<String>,
    pub cpus_in_use: f64,
    pub memory_in_use_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterStatus {
    pub workers: Vec<WorkerStatus>,
    pub queued_runs: u32,
    /// Attempts whose worker was lost, newest first, since the scheduler started.
    pub recent_losses: Vec<LostAttempt>,
}

/// One attempt at a run: where and when it ran, how it ended, and its metrics' latest values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub worker_id: String,
    pub assigned_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub exit_code: Option<i32>,
    /// How it ended; empty while it runs.
    pub outcome: String,
    /// The run's current attempt, whose history the run's own is.
    pub current: bool,
    pub latest_metrics: Vec<crate::domain::Metric>,
}

/// An attempt whose worker stopped responding or went away.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LostAttempt {
    pub attempt: AttemptId,
    pub worker_id: String,
    pub time_ms: i64,
    pub reason: String,
    /// Queued again; else the run ended (cancelled, or out of retries).
    pub requeued: bool,
}
