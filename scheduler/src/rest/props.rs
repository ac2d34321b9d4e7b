//! Property tests of what MLflow's REST API reads from the network: query strings, every
//! request body shape (from arbitrary JSON), MLflow's lenient numbers, and metrics written
//! back out. Nothing panics; numbers and metrics round-trip. `tests/properties.sh` runs them
//! longer.

use drover_testkit::{bounded, config};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::json::{MetricJson, MetricOut, RunRef};
use super::tracking::{
    BulkIntervalBody, CreateExperimentBody, CreateRunBody, HistoryBody, KeyValueBody, LogBatchBody,
    LogInputsBody, LogMetricBody, SearchExperimentsBody, SearchRunsBody, UpdateRunBody,
};
use super::{MlflowRequest, query_object};

/// JSON of any shape, a few levels deep, with the field names the bodies use, so that
/// arbitrary documents reach every field's reader.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("run_id".to_string()),
        Just("run_uuid".to_string()),
        Just("experiment_id".to_string()),
        Just("experiment_ids".to_string()),
        Just("metrics".to_string()),
        Just("params".to_string()),
        Just("tags".to_string()),
        Just("key".to_string()),
        Just("value".to_string()),
        Just("timestamp".to_string()),
        Just("step".to_string()),
        Just("max_results".to_string()),
        Just("order_by".to_string()),
        Just("filter".to_string()),
        Just("page_token".to_string()),
        Just("run_view_type".to_string()),
        Just("status".to_string()),
        Just("end_time".to_string()),
        Just("datasets".to_string()),
        Just("run_ids".to_string()),
        ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("NaN"),
            Just("-Infinity"),
            Just("9223372036854775808"),
            Just("1e19"),
            Just(" 17 "),
            Just("ACTIVE_ONLY"),
            Just("FINISHED"),
        ]
        .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Reads `value` as every body the API accepts, and converts what parses.
fn read_as_every_body(value: &Value) {
    let body = || MlflowRequest::Body(axum::body::Bytes::from(value.to_string()));
    let _ = body().parse::<CreateExperimentBody>();
    let _ = body().parse::<SearchExperimentsBody>();
    let _ = body().parse::<CreateRunBody>();
    let _ = body().parse::<UpdateRunBody>();
    let _ = body().parse::<SearchRunsBody>();
    let _ = body().parse::<KeyValueBody>();
    let _ = body().parse::<LogInputsBody>();
    let _ = body().parse::<HistoryBody>();
    let _ = body().parse::<BulkIntervalBody>();
    if let Ok(run) = body().parse::<RunRef>() {
        let _ = run.resolve();
    }
    if let Ok(metric) = body().parse::<LogMetricBody>() {
        let _ = metric.into_point();
    }
    if let Ok(batch) = body().parse::<LogBatchBody>() {
        let _ = batch.into_batch();
    }
    let _ = MlflowRequest::Query(value.clone()).parse::<SearchRunsBody>();
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bodies_never_panic(value in json_value()) {
        bounded(|| read_as_every_body(&value));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let request = MlflowRequest::Body(axum::body::Bytes::from(bytes));
        bounded(|| request.parse::<LogBatchBody>().map(drop).ok());
    }

    #[test]
    fn arbitrary_query_strings_never_panic(query in ".{0,200}") {
        bounded(|| MlflowRequest::Query(query_object(&query)).parse::<SearchRunsBody>().map(drop).ok());
    }

    #[test]
    fn integers_round_trip_as_numbers_and_strings(step in any::<i64>(), timestamp in any::<i64>()) {
        for body in [
            json!({ "key": "m", "value": 1.5, "timestamp": timestamp, "step": step }),
            json!({ "key": "m", "value": 1.5, "timestamp": timestamp.to_string(), "step": step.to_string() }),
        ] {
            let metric: MetricJson = serde_json::from_value(body).unwrap();
            let metric = metric.into_metric().unwrap();
            prop_assert_eq!((metric.timestamp_ms, metric.step), (timestamp, step));
        }
    }

    #[test]
    fn metrics_round_trip_through_mlflows_json(value in any::<f64>(), step in any::<i64>()) {
        let metric = drover_proto::domain::Metric { key: "m".into(), value, timestamp_ms: 7, step };
        let written = serde_json::to_value(MetricOut::new(&metric)).unwrap();
        let read: MetricJson = serde_json::from_value(written).unwrap();
        let read = read.into_metric().unwrap();
        prop_assert_eq!(read.step, step);
        prop_assert!(read.value == value || (read.value.is_nan() && value.is_nan()));
    }
}
