//! The domain vocabulary shared by the scheduler, the workers and the CLI: ids, experiments,
//! runs and their data. These types never mention prost; `convert` maps them to the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest experiment name accepted, as in MLflow.
pub const MAX_EXPERIMENT_NAME_LEN: usize = 500;

/// The experiment that exists from the first open of a store.
pub const DEFAULT_EXPERIMENT_ID: ExperimentId = ExperimentId(0);
pub const DEFAULT_EXPERIMENT_NAME: &str = "Default";

/// An experiment id: a non-negative decimal number, shown as a string like MLflow's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExperimentId(pub u64);

impl Serialize for ExperimentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExperimentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for ExperimentId {
    type Err = ApiError;

    fn from_str(text: &str) -> Result<Self, ApiError> {
        let is_decimal =
            !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
        match text.parse::<u64>() {
            Ok(id) if is_decimal => Ok(ExperimentId(id)),
            _ => Err(ApiError::InvalidArgument(format!(
                "invalid experiment id '{text}': expected a decimal number"
            ))),
        }
    }
}

/// A run id: 16 random bytes, written as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub [u8; 16]);

impl RunId {
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({self})")
    }
}

impl FromStr for RunId {
    type Err = ApiError;

    fn from_str(text: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::InvalidArgument(format!(
                "invalid run id '{text}': expected 32 hex characters"
            ))
        };
        if text.len() != 32 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text.to_ascii_lowercase(), &mut bytes).map_err(|_| invalid())?;
        Ok(RunId(bytes))
    }
}

impl Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A validated experiment name: not blank, at most 500 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExperimentName(String);

impl ExperimentName {
    pub fn parse(name: &str) -> Result<Self, ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::InvalidArgument("experiment name must not be empty".to_string()));
        }
        crate::validate::name("experiment name", name, MAX_EXPERIMENT_NAME_LEN)?;
        Ok(ExperimentName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExperimentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names an experiment by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExperimentRef {
    Id(ExperimentId),
    Name(String),
}

impl fmt::Display for ExperimentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExperimentRef::Id(id) => write!(f, "experiment with ID {id}"),
            ExperimentRef::Name(name) => write!(f, "experiment '{name}'"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    Active,
    Deleted,
}

impl LifecycleStage {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Active => "active",
            LifecycleStage::Deleted => "deleted",
        }
    }
}

/// Which lifecycle stages a listing includes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn includes(self, stage: LifecycleStage) -> bool {
        match self {
            ViewType::ActiveOnly => stage == LifecycleStage::Active,
            ViewType::DeletedOnly => stage == LifecycleStage::Deleted,
            ViewType::All => true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    /// Finished, failed and killed runs have ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Failed | RunStatus::Killed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag { key: key.into(), value: value.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub key: String,
    pub value: String,
}

/// One metric point. NaN and infinities are legal values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp_ms: i64,
    pub step: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: ExperimentId,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: LifecycleStage,
    pub creation_time_ms: i64,
    pub last_update_time_ms: i64,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: RunId,
    pub experiment_id: ExperimentId,
    pub run_name: String,
    pub user_id: String,
    pub status: RunStatus,
    pub start_time_ms: i64,
    pub end_time_ms: Option<i64>,
    pub lifecycle_stage: LifecycleStage,
    pub artifact_uri: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunData {
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
    pub latest_metrics: Vec<Metric>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
}

impl Run {
    /// The value of the run's tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data.tags.iter().find(|tag| tag.key == key).map(|tag| tag.value.as_str())
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct CreateExperiment {
    pub name: ExperimentName,
    pub artifact_location: Option<String>,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug)]
pub struct RenameExperiment {
    pub experiment: ExperimentRef,
    pub new_name: ExperimentName,
}

#[derive(Clone, Debug)]
pub struct CreateRun {
    pub experiment_id: ExperimentId,
    pub run_name: Option<String>,
    pub user_id: String,
    pub start_time_ms: Option<i64>,
    pub tags: Vec<Tag>,
    pub status: RunStatus,
}

#[derive(Clone, Debug)]
pub struct UpdateRun {
    pub run_id: RunId,
    pub status: Option<RunStatus>,
    pub end_time_ms: Option<i64>,
    pub run_name: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ListRuns {
    /// Empty: every experiment the view type includes.
    pub experiment_ids: Vec<ExperimentId>,
    pub view_type: ViewType,
    /// The page size asked for, as given: the scheduler checks it against its limits
    /// (between 1 and [`ListRuns::MAX_PAGE`]; 1000 when absent).
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
    /// MLflow's search grammar; `None` matches every run.
    pub filter: Option<String>,
    /// MLflow's order_by clauses; empty means newest first.
    pub order_by: Vec<String>,
}

impl ListRuns {
    /// The most runs one page holds, as MLflow's limit.
    pub const MAX_PAGE: u32 = 50_000;
}

#[derive(Clone, Debug)]
pub struct MetricHistoryQuery {
    pub run_id: RunId,
    pub key: String,
    pub start_step: Option<i64>,
    /// Inclusive.
    pub end_step: Option<i64>,
    pub max_results: Option<u32>,
    pub page_token: Option<String>,
    /// One attempt's history, for a run drover executed more than once; the current
    /// attempt's when absent.
    pub attempt: Option<u32>,
}

/// One page of a listing; `next_page_token` is `None` on the last page.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_round_trip_and_reject_bad_text() {
        let id: RunId = "0123456789abcdef0123456789ABCDEF".parse().expect("valid");
        assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
        for bad in
            ["", "abc", "0123456789abcdef0123456789abcdeg", "0123456789abcdef0123456789abcdef0"]
        {
            let error = bad.parse::<RunId>().expect_err(bad);
            assert!(error.to_string().contains("invalid run id"), "{error}");
        }
    }

    #[test]
    fn experiment_ids_are_plain_decimals() {
        assert_eq!("42".parse::<ExperimentId>().expect("valid"), ExperimentId(42));
        for bad in ["", "-1", "+1", "1.0", "abc", " 1", "99999999999999999999"] {
            assert!(bad.parse::<ExperimentId>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn experiment_names_refuse_blank_and_long() {
        assert!(ExperimentName::parse("").is_err());
        assert!(ExperimentName::parse(" \t ").is_err());
        assert!(ExperimentName::parse(&"x".repeat(501)).is_err());
        assert!(ExperimentName::parse(&"é".repeat(500)).is_ok());
    }
}
