//! The scheduler's records, as stored: a submitted run's execution record (its spec, attempt
//! and placement), snapshot metadata, and a sweep's record and its trials' records. Plain
//! data; the operations that write them are in `execution.rs` and `sweeps.rs`.

use drover_project::snapshot::SnapshotDigest;
use drover_proto::domain::{ExperimentId, RunId, RunStatus, Tag};
use drover_proto::execution::{AttemptId, LogStream, RunSpec};
use drover_proto::sweep::{SweepSpec, SweepStatus, Trial};
use serde::{Deserialize, Serialize};

/// Where a submitted run is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Placement {
    /// Waiting for a worker.
    Queued,
    /// Sent to a worker, not started yet.
    Assigned { worker_id: String },
    /// Started on a worker.
    Running { worker_id: String },
    /// Ended; the run's status says how.
    Done,
}

impl Placement {
    pub fn worker(&self) -> Option<&str> {
        match self {
            Placement::Assigned { worker_id } | Placement::Running { worker_id } => Some(worker_id),
            Placement::Queued | Placement::Done => None,
        }
    }
}

/// The scheduler's record of a submitted run. The store keeps its spec once, when the run is
/// submitted, and the rest (a few hundred bytes) each time it changes: see
/// [`ExecutionState`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionRecord {
    pub run_id: RunId,
    pub experiment_id: ExperimentId,
    pub spec: RunSpec,
    /// The current attempt; 0 before the first assignment.
    pub attempt: u32,
    pub placement: Placement,
    /// Attempts requeued after their worker was lost.
    pub retries_used: u32,
    pub cancel_requested: bool,
    pub submitted_ms: i64,
    pub exit_code: Option<i32>,
    /// Why the run failed or was killed, when drover knows.
    pub message: String,
    /// Every attempt so far, oldest first (empty in records stored before attempts were kept).
    pub attempts: Vec<AttemptRecord>,
}

/// An execution record as stored under `q/`: all but the spec, which is under `qs/`.
#[derive(Serialize)]
pub(super) struct ExecutionState<'a> {
    run_id: RunId,
    experiment_id: ExperimentId,
    attempt: u32,
    placement: &'a Placement,
    retries_used: u32,
    cancel_requested: bool,
    submitted_ms: i64,
    exit_code: Option<i32>,
    message: &'a str,
    attempts: &'a [AttemptRecord],
}

impl<'a> From<&'a ExecutionRecord> for ExecutionState<'a> {
    fn from(record: &'a ExecutionRecord) -> Self {
        ExecutionState {
            run_id: record.run_id,
            experiment_id: record.experiment_id,
            attempt: record.attempt,
            placement: &record.placement,
            retries_used: record.retries_used,
            cancel_requested: record.cancel_requested,
            submitted_ms: record.submitted_ms,
            exit_code: record.exit_code,
            message: &record.message,
            attempts: &record.attempts,
        }
    }
}

/// An execution record as read from `q/`. Records written before the spec had its own key
/// hold it inline.
#[derive(Deserialize)]
pub(super) struct StoredExecution {
    run_id: RunId,
    experiment_id: ExperimentId,
    /// Taken out by the reader, who completes the record with it or with the spec's own key.
    #[serde(default)]
    pub spec: Option<RunSpec>,
    attempt: u32,
    placement: Placement,
    retries_used: u32,
    cancel_requested: bool,
    submitted_ms: i64,
    exit_code: Option<i32>,
    message: String,
    #[serde(default)]
    attempts: Vec<AttemptRecord>,
}

impl StoredExecution {
    pub(super) fn into_record(self, spec: RunSpec) -> ExecutionRecord {
        ExecutionRecord {
            run_id: self.run_id,
            experiment_id: self.experiment_id,
            spec,
            attempt: self.attempt,
            placement: self.placement,
            retries_used: self.retries_used,
            cancel_requested: self.cancel_requested,
            submitted_ms: self.submitted_ms,
            exit_code: self.exit_code,
            message: self.message,
            attempts: self.attempts,
        }
    }
}

/// One attempt at a run: where it ran, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub worker_id: String,
    pub assigned_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub exit_code: Option<i32>,
    /// How it ended, e.g. `FINISHED`, `FAILED: out of memory`, or
    /// `lost: worker w1 stopped responding (lease expired); requeued`. Empty while it runs.
    pub outcome: String,
    /// The GPU devices it holds on its worker.
    #[serde(default)]
    pub gpu_ids: Vec<String>,
}

impl ExecutionRecord {
    pub fn current_attempt(&self) -> AttemptId {
        AttemptId { run_id: self.run_id, attempt: self.attempt }
    }

    /// The current attempt, while it has not ended.
    pub fn open_attempt(&mut self) -> Option<&mut AttemptRecord> {
        let current = self.attempt;
        self.attempts
            .last_mut()
            .filter(|attempt| attempt.attempt == current && attempt.ended_ms.is_none())
    }

    /// Ends the current attempt, if one is open, saying how.
    pub fn end_attempt(&mut self, at_ms: i64, exit_code: Option<i32>, outcome: String) {
        if let Some(attempt) = self.open_attempt() {
            attempt.ended_ms = Some(at_ms);
            attempt.exit_code = exit_code;
            attempt.outcome = outcome;
        }
    }
}

/// A change to a run's visible state, applied with its execution record.
#[derive(Debug, Default)]
pub struct RunChange {
    pub status: Option<RunStatus>,
    pub tags: Vec<Tag>,
    /// Tag keys to remove.
    pub removed_tags: Vec<String>,
    /// A line drover writes into the run's log, in the same write.
    pub log_line: Option<String>,
}

/// A piece of a run's stored log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub data: Vec<u8>,
    /// Where the next chunk starts.
    pub end_cursor: u64,
}

/// Metadata of a stored snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub digest: SnapshotDigest,
    pub size: u64,
    pub stored_ms: i64,
}

/// What every child of a sweep runs, before its swept parameters are added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialTemplate {
    pub user_id: String,
    pub tags: Vec<Tag>,
    pub spec: RunSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// The parent run's id.
    pub id: RunId,
    pub experiment_id: ExperimentId,
    pub name: String,
    pub spec: SweepSpec,
    pub template: TrialTemplate,
    pub status: SweepStatus,
    pub reason: String,
    /// Trials created so far; trial indexes count from 0.
    pub next_trial: u64,
    pub created_ms: i64,
    pub ended_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    #[serde(flatten)]
    pub trial: Trial,
    /// The objective's best value when the run reached each ASHA rung so far.
    #[serde(default)]
    pub rungs: Vec<f64>,
}
