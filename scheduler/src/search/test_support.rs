//! Fixtures shared by the search tests: runs with metrics, params and tags, and filters and
//! order_by clauses that parse or are refused.

use drover_proto::ApiError;
use drover_proto::domain::{
    ExperimentId, LifecycleStage, Metric, Param, Run, RunData, RunId, RunInfo, RunStatus, Tag,
};

use super::{Filter, OrderBy};

pub(super) fn run(id: u8, start_time_ms: i64) -> Run {
    let mut bytes = [0u8; 16];
    bytes[15] = id;
    Run {
        info: RunInfo {
            run_id: RunId(bytes),
            experiment_id: ExperimentId(0),
            run_name: format!("run-{id}"),
            user_id: "alice".to_string(),
            status: RunStatus::Finished,
            start_time_ms,
            end_time_ms: Some(start_time_ms + 1000),
            lifecycle_stage: LifecycleStage::Active,
            artifact_uri: format!("s3://bucket/runs/{id}"),
        },
        data: RunData::default(),
    }
}

pub(super) fn id_of(id: u8) -> String {
    run(id, 0).info.run_id.to_string()
}

pub(super) fn with_metric(mut run: Run, key: &str, value: f64) -> Run {
    run.data.latest_metrics.push(Metric { key: key.to_string(), value, timestamp_ms: 0, step: 0 });
    run
}

pub(super) fn with_param(mut run: Run, key: &str, value: &str) -> Run {
    run.data.params.push(Param { key: key.to_string(), value: value.to_string() });
    run
}

pub(super) fn with_tag(mut run: Run, key: &str, value: &str) -> Run {
    run.data.tags.push(Tag { key: key.to_string(), value: value.to_string() });
    run
}

pub(super) fn matches(filter: &str, run: &Run) -> bool {
    Filter::parse(filter).unwrap_or_else(|error| panic!("{filter:?}: {error}")).matches(run)
}

/// Asserts the filter is refused as invalid and returns the message.
pub(super) fn filter_error(filter: &str) -> String {
    match Filter::parse(filter) {
        Err(ApiError::InvalidArgument(message)) => {
            assert!(message.starts_with("invalid filter"), "{filter:?}: {message}");
            message
        }
        Err(other) => panic!("{filter:?}: wrong error kind {other:?}"),
        Ok(parsed) => panic!("{filter:?} should be refused, got {parsed:?}"),
    }
}

pub(super) fn assert_filter_error(filter: &str, fragments: &[&str]) {
    let message = filter_error(filter);
    for fragment in fragments {
        assert!(message.contains(fragment), "{filter:?}: {message:?} lacks {fragment:?}");
    }
}

pub(super) fn order_by(clauses: &[&str]) -> OrderBy {
    let clauses: Vec<String> = clauses.iter().map(|c| c.to_string()).collect();
    OrderBy::parse(&clauses).unwrap_or_else(|error| panic!("{clauses:?}: {error}"))
}

pub(super) fn order_by_error(clause: &str) -> String {
    match OrderBy::parse(&[clause.to_string()]) {
        Err(ApiError::InvalidArgument(message)) => {
            assert!(
                message.starts_with(&format!("invalid order_by clause '{clause}': ")),
                "{message}"
            );
            message
        }
        Err(other) => panic!("{clause:?}: wrong error kind {other:?}"),
        Ok(parsed) => panic!("{clause:?} should be refused, got {parsed:?}"),
    }
}

pub(super) fn sorted_ids(order: &OrderBy, mut runs: Vec<Run>) -> Vec<u8> {
    order.sort(&mut runs);
    runs.iter().map(|run| run.info.run_id.0[15]).collect()
}
