//! The store's keyspace: one sled tree, records grouped under short prefixes, keys built so
//! that sled's byte order is the order listings want. The values of `h/`, `ha/` and `o/` live
//! in the value log (`values.rs`); sled holds a pointer to each, resolved on every read.
//!
//! | prefix      | key after the prefix                                   | value                  |
//! |-------------|--------------------------------------------------------|------------------------|
//! | `m/schema`  |                                                        | schema version, u32 BE |
//! | `m/next_exp`|                                                        | next experiment id, u64 BE |
//! | `m/migrating`|                                                       | last key a schema rewrite rewrote |
//! | `e/`        | experiment id u64 BE                                   | Experiment, JSON       |
//! | `n/`        | experiment name                                        | experiment id u64 BE   |
//! | `r/`        | run id (16 bytes)                                      | RunInfo, JSON          |
//! | `x/`        | experiment id u64 BE, run id                           | empty                  |
//! | `p/`        | run id, param key                                      | param value            |
//! | `t/`        | run id, tag key                                        | tag value              |
//! | `h/`        | run id, metric key, 0, chunk id u64 BE                 | points (history.rs)    |
//! | `ha/`       | run id, attempt u32 BE, metric key, 0, chunk id u64 BE | an earlier attempt's points |
//! | `l/`        | run id, metric key                                     | value, timestamp, step |
//! | `q/`        | run id                                                 | ExecutionRecord but its spec, JSON |
//! | `qs/`       | run id                                                 | RunSpec, JSON (written once) |
//! | `qp/`       | run id of an execution not done                        | empty                  |
//! | `o/`        | run id, start cursor u64 BE                            | stream byte, log bytes |
//! | `oz/`       | run id; schema 3 and older only, unread since: the last `o/` chunk ends the log | log length, u64 BE |
//! | `oa/`       | run id, attempt u32 BE                                 | bytes received, u64 BE |
//! | `s/`        | snapshot digest                                        | SnapshotRecord, JSON   |
//! | `mb/`       | run id, attempt u32 BE                                 | last metric batch, u64 |
//! | `in/`       | run id                                                 | dataset inputs, JSON   |
//! | `w/`        | sweep id (its parent run's id)                         | SweepRecord, JSON      |
//! | `wd/`       | worker id                                              | empty: drained         |
//! | `wt/`       | sweep id, trial index u64 BE                           | TrialRecord, JSON      |
//! | `lm/`       | logged model id                                        | LoggedModel, JSON      |
//! | `lx/`       | experiment id u64 BE, logged model id                  | empty                  |
//! | `lmm/`      | logged model id, 0, metric id u64 BE                   | ModelMetric, JSON      |
//! | `m/next_model_metric` |                                              | next metric id, u64 BE |
//! | `ro/`       | run id, logged model id                                | step, i64 BE (run outputs) |
//! | `rm/`       | registered model name                                  | RegisteredModel, JSON  |
//! | `mv/`       | registered model name, 0, version u64 BE               | ModelVersion, JSON     |
//!
//! Metric keys never contain a NUL byte (validation refuses them), so the 0 after the key ends
//! it unambiguously. Schema-1 stores kept one `h/` key per point (step and timestamp with the
//! sign bit flipped, batch, index); opening one rewrites its history as chunks. Schema-2
//! stores kept 24 bytes per point in their chunks; opening one rewrites them compactly.

use drover_proto::domain::{ExperimentId, RunId};
use drover_proto::execution::MetricPoint;
use drover_proto::models::ModelId;

pub const SCHEMA: &[u8] = b"m/schema";
pub const NEXT_EXPERIMENT_ID: &[u8] = b"m/next_exp";
/// While a schema rewrite is under way: the last key it rewrote.
pub const MIGRATION_PROGRESS: &[u8] = b"m/migrating";
pub const EXPERIMENT: &[u8] = b"e/";
pub const EXPERIMENT_NAME: &[u8] = b"n/";
pub const RUN: &[u8] = b"r/";
pub const EXPERIMENT_RUN: &[u8] = b"x/";
pub const PARAM: &[u8] = b"p/";
pub const TAG: &[u8] = b"t/";
pub const HISTORY: &[u8] = b"h/";
pub const ATTEMPT_HISTORY: &[u8] = b"ha/";
pub const LATEST: &[u8] = b"l/";
pub const EXECUTION: &[u8] = b"q/";
pub const PENDING_EXECUTION: &[u8] = b"qp/";
pub const RUN_SPEC: &[u8] = b"qs/";
pub const LOG: &[u8] = b"o/";
pub const ATTEMPT_LOG_LENGTH: &[u8] = b"oa/";
pub const SNAPSHOT: &[u8] = b"s/";
pub const APPLIED_METRIC_BATCH: &[u8] = b"mb/";
pub const INPUTS: &[u8] = b"in/";
pub const SWEEP: &[u8] = b"w/";
pub const SWEEP_TRIAL: &[u8] = b"wt/";
pub const DRAINED_WORKER: &[u8] = b"wd/";
pub const LOGGED_MODEL: &[u8] = b"lm/";
pub const EXPERIMENT_MODEL: &[u8] = b"lx/";
pub const MODEL_METRIC: &[u8] = b"lmm/";
pub const NEXT_MODEL_METRIC: &[u8] = b"m/next_model_metric";
pub const RUN_OUTPUT: &[u8] = b"ro/";
pub const REGISTERED_MODEL: &[u8] = b"rm/";
pub const MODEL_VERSION: &[u8] = b"mv/";

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let length = prefix.len() + parts.iter().map(|part| part.len()).sum::<usize>();
    let mut key = Vec::with_capacity(length);
    key.extend_from_slice(prefix);
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

pub fn experiment(id: ExperimentId) -> Vec<u8> {
    key(EXPERIMENT, &[&id.0.to_be_bytes()])
}

pub fn experiment_name(name: &str) -> Vec<u8> {
    key(EXPERIMENT_NAME, &[name.as_bytes()])
}

pub fn run(id: RunId) -> Vec<u8> {
    key(RUN, &[id.as_bytes()])
}

pub fn experiment_runs(experiment: ExperimentId) -> Vec<u8> {
    key(EXPERIMENT_RUN, &[&experiment.0.to_be_bytes()])
}

pub fn experiment_run(experiment: ExperimentId, run: RunId) -> Vec<u8> {
    key(EXPERIMENT_RUN, &[&experiment.0.to_be_bytes(), run.as_bytes()])
}

/// The run id at the end of an `x/` key.
pub fn run_of_experiment_run(key: &[u8]) -> Option<RunId> {
    let bytes: [u8; 16] = key.get(key.len().checked_sub(16)?..)?.try_into().ok()?;
    Some(RunId(bytes))
}

pub fn params(run: RunId) -> Vec<u8> {
    key(PARAM, &[run.as_bytes()])
}

pub fn param(run: RunId, name: &str) -> Vec<u8> {
    key(PARAM, &[run.as_bytes(), name.as_bytes()])
}

pub fn tags(run: RunId) -> Vec<u8> {
    key(TAG, &[run.as_bytes()])
}

pub fn tag(run: RunId, name: &str) -> Vec<u8> {
    key(TAG, &[run.as_bytes(), name.as_bytes()])
}

/// The prefix of every point of one metric of one run.
pub fn history(run: RunId, metric: &str) -> Vec<u8> {
    key(HISTORY, &[run.as_bytes(), metric.as_bytes(), &[0]])
}

/// The prefix of every point of every metric of one run (its current attempt's).
pub fn run_history(run: RunId) -> Vec<u8> {
    key(HISTORY, &[run.as_bytes()])
}

/// The prefix of every point of every metric of one earlier attempt of a run.
pub fn attempt_histories(run: RunId, attempt: u32) -> Vec<u8> {
    key(ATTEMPT_HISTORY, &[run.as_bytes(), &attempt.to_be_bytes()])
}

/// The prefix of every point of one metric of one earlier attempt of a run.
pub fn attempt_history(run: RunId, attempt: u32, metric: &str) -> Vec<u8> {
    key(ATTEMPT_HISTORY, &[run.as_bytes(), &attempt.to_be_bytes(), metric.as_bytes(), &[0]])
}

/// One chunk of a metric's history; chunk ids increase in the order chunks are written.
pub fn history_chunk(run: RunId, metric: &str, chunk: u64) -> Vec<u8> {
    key(HISTORY, &[run.as_bytes(), metric.as_bytes(), &[0], &chunk.to_be_bytes()])
}

/// Step and timestamp of a schema-1 history key (one key per point: step, timestamp, batch,
/// index after the metric's prefix), given the length of that prefix.
pub fn decode_history_point(key: &[u8], prefix_len: usize) -> Option<(i64, i64)> {
    let rest = key.get(prefix_len..)?;
    let step = u64::from_be_bytes(rest.get(0..8)?.try_into().ok()?) ^ (1 << 63);
    let timestamp = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?) ^ (1 << 63);
    Some((step as i64, timestamp as i64))
}

pub fn latest_metrics(run: RunId) -> Vec<u8> {
    key(LATEST, &[run.as_bytes()])
}

pub fn latest_metric(run: RunId, metric: &str) -> Vec<u8> {
    key(LATEST, &[run.as_bytes(), metric.as_bytes()])
}

pub fn drained_worker(worker_id: &str) -> Vec<u8> {
    key(DRAINED_WORKER, &[worker_id.as_bytes()])
}

pub fn execution(run: RunId) -> Vec<u8> {
    key(EXECUTION, &[run.as_bytes()])
}

pub fn run_spec(run: RunId) -> Vec<u8> {
    key(RUN_SPEC, &[run.as_bytes()])
}

pub fn pending_execution(run: RunId) -> Vec<u8> {
    key(PENDING_EXECUTION, &[run.as_bytes()])
}

pub fn log_chunks(run: RunId) -> Vec<u8> {
    key(LOG, &[run.as_bytes()])
}

pub fn log_chunk(run: RunId, start: u64) -> Vec<u8> {
    key(LOG, &[run.as_bytes(), &start.to_be_bytes()])
}

pub fn attempt_log_length(run: RunId, attempt: u32) -> Vec<u8> {
    key(ATTEMPT_LOG_LENGTH, &[run.as_bytes(), &attempt.to_be_bytes()])
}

pub fn applied_metric_batch(run: RunId, attempt: u32) -> Vec<u8> {
    key(APPLIED_METRIC_BATCH, &[run.as_bytes(), &attempt.to_be_bytes()])
}

pub fn inputs(run: RunId) -> Vec<u8> {
    key(INPUTS, &[run.as_bytes()])
}

pub fn sweep(id: RunId) -> Vec<u8> {
    key(SWEEP, &[id.as_bytes()])
}

pub fn sweep_trials(id: RunId) -> Vec<u8> {
    key(SWEEP_TRIAL, &[id.as_bytes()])
}

pub fn sweep_trial(id: RunId, index: u64) -> Vec<u8> {
    key(SWEEP_TRIAL, &[id.as_bytes(), &index.to_be_bytes()])
}

pub fn snapshot(digest: &str) -> Vec<u8> {
    key(SNAPSHOT, &[digest.as_bytes()])
}

/// The latest point of a metric: value bits, timestamp, step.
pub fn encode_latest(metric: &MetricPoint) -> [u8; 24] {
    let mut value = [0u8; 24];
    value[0..8].copy_from_slice(&metric.value.to_bits().to_be_bytes());
    value[8..16].copy_from_slice(&metric.timestamp_ms.to_be_bytes());
    value[16..24].copy_from_slice(&metric.step.to_be_bytes());
    value
}

/// Value, timestamp and step of a latest-metric record.
pub fn decode_latest(value: &[u8]) -> Option<(f64, i64, i64)> {
    let number =
        |range: std::ops::Range<usize>| -> Option<[u8; 8]> { value.get(range)?.try_into().ok() };
    Some((
        f64::from_bits(u64::from_be_bytes(number(0..8)?)),
        i64::from_be_bytes(number(8..16)?),
        i64::from_be_bytes(number(16..24)?),
    ))
}

pub fn decode_f64(value: &[u8]) -> Option<f64> {
    Some(f64::from_bits(u64::from_be_bytes(value.try_into().ok()?)))
}

pub fn decode_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

pub fn logged_model(id: &ModelId) -> Vec<u8> {
    key(LOGGED_MODEL, &[id.as_str().as_bytes()])
}

pub fn experiment_models(experiment: ExperimentId) -> Vec<u8> {
    key(EXPERIMENT_MODEL, &[&experiment.0.to_be_bytes()])
}

pub fn experiment_model(experiment: ExperimentId, id: &ModelId) -> Vec<u8> {
    key(EXPERIMENT_MODEL, &[&experiment.0.to_be_bytes(), id.as_str().as_bytes()])
}

/// The prefix of every metric linked to one logged model.
pub fn model_metrics(id: &ModelId) -> Vec<u8> {
    key(MODEL_METRIC, &[id.as_str().as_bytes(), &[0]])
}

pub fn model_metric(id: &ModelId, metric: u64) -> Vec<u8> {
    key(MODEL_METRIC, &[id.as_str().as_bytes(), &[0], &metric.to_be_bytes()])
}

pub fn run_outputs(run: RunId) -> Vec<u8> {
    key(RUN_OUTPUT, &[run.as_bytes()])
}

pub fn run_output(run: RunId, model: &ModelId) -> Vec<u8> {
    key(RUN_OUTPUT, &[run.as_bytes(), model.as_str().as_bytes()])
}

pub fn registered_model(name: &str) -> Vec<u8> {
    key(REGISTERED_MODEL, &[name.as_bytes()])
}

/// The prefix of every version of one registered model (names hold no NUL).
pub fn model_versions(name: &str) -> Vec<u8> {
    key(MODEL_VERSION, &[name.as_bytes(), &[0]])
}

pub fn model_version(name: &str, version: u64) -> Vec<u8> {
    key(MODEL_VERSION, &[name.as_bytes(), &[0], &version.to_be_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_chunks_sort_by_chunk_id() {
        let run = RunId([7; 16]);
        let prefix = history(run, "loss");
        let early = history_chunk(run, "loss", 9);
        let late = history_chunk(run, "loss", 300);
        assert!(early.starts_with(&prefix) && late.starts_with(&prefix));
        assert!(early < late);
        assert!(!history_chunk(run, "loss2", 1).starts_with(&prefix));
    }
}
