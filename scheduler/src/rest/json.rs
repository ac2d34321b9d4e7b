//! MLflow's JSON shapes: snake_case fields, enums by name, int64 as numbers (strings are
//! accepted too, as protobuf's JSON mapping allows), and NaN/±Infinity as the strings
//! `"NaN"`, `"Infinity"`, `"-Infinity"` both ways.

use drover_proto::ApiError;
use drover_proto::domain::{
    Experiment, ExperimentId, Metric, Param, Run, RunId, RunInfo, RunStatus, Tag, ViewType,
};
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Reads an optional int64 given as a number or a decimal string.
pub fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(integer) = number.as_i64() {
                return Ok(Some(integer));
            }
            // 2^63 is the first float past i64's range; `as` would clamp it to i64::MAX.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            match number.as_f64() {
                Some(float) if float.fract() != 0.0 => {
                    Err(de::Error::custom(format!("{number} is not an integer")))
                }
                Some(float) if (-LIMIT..LIMIT).contains(&float) => Ok(Some(float as i64)),
                _ => {
                    Err(de::Error::custom(format!("{number} is out of range for a 64-bit integer")))
                }
            }
        }
        Some(Value::String(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("'{text}' is not an integer"))),
        Some(other) => Err(de::Error::custom(format!("{other} is not an integer"))),
    }
}

/// Reads an optional double given as a number or a string (including NaN and ±Infinity).
pub fn lenient_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => Ok(number.as_f64()),
        Some(Value::String(text)) => parse_f64(&text)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("'{text}' is not a number"))),
        Some(other) => Err(de::Error::custom(format!("{other} is not a number"))),
    }
}

fn parse_f64(text: &str) -> Option<f64> {
    match text.trim() {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Writes a double as a JSON number, or NaN/±Infinity as protobuf's JSON strings.
pub fn write_f64<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if value.is_infinite() {
        serializer.serialize_str(if *value > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        serializer.serialize_f64(*value)
    }
}

/// A metric value as a JSON value, written as [`write_f64`] writes it.
pub fn finite_or_text(value: f64) -> Value {
    write_f64(&value, serde_json::value::Serializer).unwrap_or(Value::Null)
}

/// The value of a required field, or MLflow's error for a missing one.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        ApiError::InvalidArgument(format!("missing value for required parameter '{name}'"))
    })
}

/// A run named by `run_id`, or by `run_uuid` as older clients send it; flattened into every
/// request body that names a run.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunRef {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

impl RunRef {
    pub fn resolve(self) -> Result<RunId, ApiError> {
        required(self.run_id.or(self.run_uuid), "run_id")?.parse()
    }
}

/// A required experiment ID.
pub fn experiment_id(text: Option<String>) -> Result<ExperimentId, ApiError> {
    required(text, "experiment_id")?.parse()
}

/// One string or many: MLflow accepts repeated query parameters and JSON arrays alike.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }

    /// Each value parsed, e.g. as IDs; the first that does not parse is the error.
    pub fn parse_each<T: std::str::FromStr<Err = ApiError>>(self) -> Result<Vec<T>, ApiError> {
        self.into_vec().iter().map(|text| text.parse()).collect()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TagJson {
    pub key: Option<String>,
    pub value: Option<String>,
}

impl TagJson {
    pub fn into_tag(self) -> Result<Tag, ApiError> {
        Ok(Tag { key: required(self.key, "key")?, value: self.value.unwrap_or_default() })
    }

    pub fn into_param(self) -> Result<Param, ApiError> {
        Ok(Param { key: required(self.key, "key")?, value: required(self.value, "value")? })
    }
}

#[derive(Serialize)]
pub struct KeyValue<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

#[derive(Clone, Debug, Deserialize)]
pub struct MetricJson {
    pub key: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub value: Option<f64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub step: Option<i64>,
    /// The logged model the point is about (MLflow 3), and the dataset it was computed on.
    pub model_id: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

impl MetricJson {
    /// Whether the point names a logged model.
    pub fn is_linked(&self) -> bool {
        self.model_id.as_deref().is_some_and(|id| !id.is_empty())
    }

    pub fn into_linked(self) -> Result<crate::service::models::LinkedMetric, ApiError> {
        let model_id = self.model_id.clone().filter(|id| !id.is_empty()).map(|id| id.parse());
        Ok(crate::service::models::LinkedMetric {
            model_id: model_id.transpose()?,
            dataset_name: self.dataset_name.clone().filter(|name| !name.is_empty()),
            dataset_digest: self.dataset_digest.clone().filter(|digest| !digest.is_empty()),
            metric: self.into_metric()?,
        })
    }

    pub fn into_metric(self) -> Result<Metric, ApiError> {
        Ok(Metric {
            key: required(self.key, "key")?,
            value: required(self.value, "value")?,
            timestamp_ms: required(self.timestamp, "timestamp")?,
            step: self.step.unwrap_or(0),
        })
    }
}

#[derive(Serialize)]
pub struct MetricOut<'a> {
    pub key: &'a str,
    #[serde(serialize_with = "write_f64")]
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl<'a> MetricOut<'a> {
    pub fn new(metric: &'a Metric) -> MetricOut<'a> {
        MetricOut {
            key: &metric.key,
            value: metric.value,
            timestamp: metric.timestamp_ms,
            step: metric.step,
            run_id: None,
        }
    }
}

pub fn experiment(experiment: &Experiment) -> Value {
    serde_json::json!({
        "experiment_id": experiment.id.to_string(),
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage.as_str(),
        "creation_time": experiment.creation_time_ms,
        "last_update_time": experiment.last_update_time_ms,
        "tags": experiment.tags.iter().map(|t| KeyValue { key: &t.key, value: &t.value }).collect::<Vec<_>>(),
    })
}

pub fn run_info(info: &RunInfo) -> Value {
    let mut value = serde_json::json!({
        "run_id": info.run_id.to_string(),
        "run_uuid": info.run_id.to_string(),
        "run_name": info.run_name,
        "experiment_id": info.experiment_id.to_string(),
        "user_id": info.user_id,
        "status": info.status.as_str(),
        "start_time": info.start_time_ms,
        "artifact_uri": info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage.as_str(),
    });
    if let Some(end) = info.end_time_ms {
        value["end_time"] = end.into();
    }
    value
}

pub fn run(run: &Run, inputs: Vec<Value>) -> Value {
    let data = &run.data;
    serde_json::json!({
        "info": run_info(&run.info),
        "data": {
            "metrics": data.latest_metrics.iter().map(MetricOut::new).collect::<Vec<_>>(),
            "params": data.params.iter().map(|p| KeyValue { key: &p.key, value: &p.value }).collect::<Vec<_>>(),
            "tags": data.tags.iter().map(|t| KeyValue { key: &t.key, value: &t.value }).collect::<Vec<_>>(),
        },
        "inputs": { "dataset_inputs": inputs },
    })
}

pub fn parse_status(text: &str) -> Result<RunStatus, ApiError> {
    match text {
        "RUNNING" | "1" => Ok(RunStatus::Running),
        "SCHEDULED" | "2" => Ok(RunStatus::Scheduled),
        "FINISHED" | "3" => Ok(RunStatus::Finished),
        "FAILED" | "4" => Ok(RunStatus::Failed),
        "KILLED" | "5" => Ok(RunStatus::Killed),
        other => Err(ApiError::InvalidArgument(format!(
            "invalid run status '{other}'; expected RUNNING, SCHEDULED, FINISHED, FAILED or KILLED"
        ))),
    }
}

/// A view type given by name (ACTIVE_ONLY, DELETED_ONLY, ALL) or number (1, 2, 3).
pub fn parse_view_type(value: Option<&Value>) -> Result<ViewType, ApiError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(ViewType::ActiveOnly),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(other) => other.to_string(),
    };
    match text.as_str() {
        "ACTIVE_ONLY" | "1" => Ok(ViewType::ActiveOnly),
        "DELETED_ONLY" | "2" => Ok(ViewType::DeletedOnly),
        "ALL" | "3" => Ok(ViewType::All),
        other => Err(ApiError::InvalidArgument(format!(
            "invalid view type '{other}'; expected ACTIVE_ONLY, DELETED_ONLY or ALL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "lenient_f64")]
        value: Option<f64>,
        #[serde(default, deserialize_with = "lenient_i64")]
        timestamp: Option<i64>,
    }

    #[test]
    fn numbers_arrive_in_every_protobuf_json_form() {
        let probe: Probe = serde_json::from_str(r#"{"value": "NaN", "timestamp": "17"}"#).unwrap();
        assert!(probe.value.unwrap().is_nan());
        assert_eq!(probe.timestamp, Some(17));
        let probe: Probe =
            serde_json::from_str(r#"{"value": "-Infinity", "timestamp": 18}"#).unwrap();
        assert_eq!(probe.value, Some(f64::NEG_INFINITY));
        let probe: Probe = serde_json::from_str(r#"{"value": 1.5}"#).unwrap();
        assert_eq!((probe.value, probe.timestamp), (Some(1.5), None));
        assert!(serde_json::from_str::<Probe>(r#"{"value": "abc"}"#).is_err());
    }

    #[test]
    fn integers_out_of_range_are_refused_not_clamped() {
        for out_of_range in
            ["9223372036854775808", "1e19", "1e300", "-1e19", "\"9223372036854775808\""]
        {
            let body = format!(r#"{{"timestamp": {out_of_range}}}"#);
            let error = serde_json::from_str::<Probe>(&body).map(|probe| probe.timestamp);
            assert!(error.is_err(), "{out_of_range} gave {error:?}");
        }
        let probe: Probe = serde_json::from_str(r#"{"timestamp": 9223372036854775807}"#).unwrap();
        assert_eq!(probe.timestamp, Some(i64::MAX));
        let probe: Probe = serde_json::from_str(r#"{"timestamp": 1e18}"#).unwrap();
        assert_eq!(probe.timestamp, Some(1_000_000_000_000_000_000));
    }

    #[test]
    fn non_finite_values_leave_as_strings() {
        let metric = Metric { key: "m".into(), value: f64::INFINITY, timestamp_ms: 1, step: 2 };
        let json = serde_json::to_string(&MetricOut::new(&metric)).unwrap();
        assert_eq!(json, r#"{"key":"m","value":"Infinity","timestamp":1,"step":2}"#);
    }
}
