//! What a filter or order_by clause is about (a run's metric, param, tag or attribute) and how
//! that value is read from a run.

use std::borrow::Cow;
use std::fmt;

use drover_proto::domain::Run;

/// The run attributes a filter or an order_by clause may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Attribute {
    RunId,
    RunName,
    Status,
    UserId,
    StartTime,
    EndTime,
    ArtifactUri,
}

pub(super) const ATTRIBUTE_NAMES: &str =
    "run_id, run_name, status, user_id, start_time, end_time, artifact_uri";

impl Attribute {
    pub(super) fn from_name(name: &str) -> Option<Attribute> {
        // The camelCase spellings are the ones MLflow's own UI and clients produce.
        Some(match name {
            "run_id" | "runId" => Attribute::RunId,
            "run_name" | "runName" => Attribute::RunName,
            "status" => Attribute::Status,
            "user_id" | "userId" => Attribute::UserId,
            "start_time" | "startTime" => Attribute::StartTime,
            "end_time" | "endTime" => Attribute::EndTime,
            "artifact_uri" | "artifactUri" => Attribute::ArtifactUri,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Attribute::RunId => "run_id",
            Attribute::RunName => "run_name",
            Attribute::Status => "status",
            Attribute::UserId => "user_id",
            Attribute::StartTime => "start_time",
            Attribute::EndTime => "end_time",
            Attribute::ArtifactUri => "artifact_uri",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Subject {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(Attribute),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Metric(key) => write!(f, "metric '{key}'"),
            Subject::Param(key) => write!(f, "param '{key}'"),
            Subject::Tag(key) => write!(f, "tag '{key}'"),
            Subject::Attribute(attribute) => write!(f, "attribute '{}'", attribute.name()),
        }
    }
}

impl Subject {
    pub(super) fn is_numeric(&self) -> bool {
        matches!(
            self,
            Subject::Metric(_) | Subject::Attribute(Attribute::StartTime | Attribute::EndTime)
        )
    }

    /// The run's value for a numeric subject; `None` when the run lacks it.
    pub(super) fn number(&self, run: &Run) -> Option<f64> {
        match self {
            Subject::Metric(key) => {
                run.data.latest_metrics.iter().find(|metric| &metric.key == key).map(|m| m.value)
            }
            // Epoch milliseconds stay exact in an f64 for the next quarter of a million years.
            Subject::Attribute(Attribute::StartTime) => Some(run.info.start_time_ms as f64),
            Subject::Attribute(Attribute::EndTime) => run.info.end_time_ms.map(|ms| ms as f64),
            _ => None,
        }
    }

    /// The run's value for a string subject; `None` when the run lacks it.
    pub(super) fn text<'run>(&self, run: &'run Run) -> Option<Cow<'run, str>> {
        match self {
            Subject::Param(key) => run
                .data
                .params
                .iter()
                .find(|param| &param.key == key)
                .map(|param| Cow::Borrowed(param.value.as_str())),
            Subject::Tag(key) => run
                .data
                .tags
                .iter()
                .find(|tag| &tag.key == key)
                .map(|tag| Cow::Borrowed(tag.value.as_str())),
            Subject::Attribute(Attribute::RunId) => Some(Cow::Owned(run.info.run_id.to_string())),
            Subject::Attribute(Attribute::RunName) => Some(Cow::Borrowed(&run.info.run_name)),
            Subject::Attribute(Attribute::Status) => Some(Cow::Borrowed(run.info.status.as_str())),
            Subject::Attribute(Attribute::UserId) => Some(Cow::Borrowed(&run.info.user_id)),
            Subject::Attribute(Attribute::ArtifactUri) => {
                Some(Cow::Borrowed(&run.info.artifact_uri))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use drover_proto::domain::RunStatus;

    use crate::search::test_support::{id_of, matches, run, with_metric, with_param};

    #[test]
    fn missing_metric_param_or_tag_never_matches() {
        let bare = run(1, 0);
        for filter in [
            "metrics.rmse = 1",
            "metrics.rmse != 1",
            "metrics.rmse < 1",
            "metrics.rmse >= 1",
            "params.lr = '0.1'",
            "params.lr != '0.1'",
            "params.lr LIKE '%'",
            "tags.team != 'x'",
            "tags.team ILIKE '%'",
        ] {
            assert!(!matches(filter, &bare), "{filter}");
        }
    }

    #[test]
    fn metrics_use_the_matching_key_only() {
        let r = with_metric(with_metric(run(1, 0), "a", 1.0), "b", 2.0);
        assert!(matches("metrics.a = 1 AND metrics.b = 2", &r));
        assert!(!matches("metrics.a = 2", &r));
    }

    #[test]
    fn params_compare_as_strings_even_when_numeric() {
        let r = with_param(run(1, 0), "lr", "0.10");
        assert!(matches("params.lr = '0.10'", &r));
        assert!(!matches("params.lr = '0.1'", &r));
    }

    #[test]
    fn string_attributes() {
        let r = run(7, 1000);
        let id = id_of(7);
        let cases = [
            (format!("attributes.run_id = '{id}'"), true),
            (format!("attributes.run_id != '{id}'"), false),
            ("attributes.run_id LIKE '%07'".to_string(), true),
            ("attributes.run_name = 'run-7'".to_string(), true),
            ("attributes.run_name LIKE 'run-_'".to_string(), true),
            ("attributes.run_name ILIKE 'RUN-%'".to_string(), true),
            ("attributes.run_name != 'run-7'".to_string(), false),
            ("attributes.status = 'FINISHED'".to_string(), true),
            ("attributes.status != 'RUNNING'".to_string(), true),
            ("attributes.status = 'finished'".to_string(), false),
            ("attributes.status ILIKE 'finished'".to_string(), true),
            ("attributes.user_id = 'alice'".to_string(), true),
            ("attributes.user_id LIKE 'b%'".to_string(), false),
            ("attributes.artifact_uri LIKE 's3://bucket/%'".to_string(), true),
            ("attributes.artifact_uri = 's3://bucket/runs/7'".to_string(), true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(&filter, &r), expected, "{filter}");
        }
    }

    #[test]
    fn time_attributes() {
        let r = run(1, 1_700_000_000_000);
        let cases = [
            ("attributes.start_time = 1700000000000", true),
            ("attributes.start_time != 1700000000000", false),
            ("attributes.start_time > 1699999999999", true),
            ("attributes.start_time >= 1700000000001", false),
            ("attributes.start_time < 1700000000001", true),
            ("attributes.start_time <= 1699999999999", false),
            ("attributes.end_time = 1700000001000", true),
            ("attributes.end_time > 1700000000000", true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(filter, &r), expected, "{filter}");
        }
    }

    #[test]
    fn running_runs_have_no_end_time() {
        let mut r = run(1, 1000);
        r.info.end_time_ms = None;
        r.info.status = RunStatus::Running;
        for filter in
            ["attributes.end_time > 0", "attributes.end_time != 5", "attributes.end_time < 1e18"]
        {
            assert!(!matches(filter, &r), "{filter}");
        }
        assert!(matches("attributes.status = 'RUNNING' AND attributes.start_time = 1000", &r));
    }

    #[test]
    fn camel_case_attribute_aliases() {
        let r = run(3, 500);
        assert!(matches("attributes.runName = 'run-3'", &r));
        assert!(matches("attributes.startTime = 500", &r));
        assert!(matches("attributes.endTime = 1500", &r));
        assert!(matches("attributes.userId = 'alice'", &r));
        assert!(matches(&format!("attributes.runId = '{}'", id_of(3)), &r));
        assert!(matches("attributes.artifactUri LIKE '%/3'", &r));
    }
}
