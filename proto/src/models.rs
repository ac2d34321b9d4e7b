//! Models: MLflow 3's logged models (a model's files, params, tags and metrics, produced by a
//! run) and the model registry (registered models, their numbered versions, aliases and tags),
//! with the rules for their names that MLflow's server applies.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::domain::{ExperimentId, Param, RunId, Tag};
use crate::error::ApiError;
use crate::validate;

/// Longest registered model name, alias or logged model name accepted.
pub const MAX_NAME_LEN: usize = 256;
/// Longest model description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 5000;

/// A logged model's id: `m-` and 32 hex digits, as MLflow makes them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId(String);

impl ModelId {
    pub fn random() -> ModelId {
        ModelId(format!("m-{}", hex::encode(rand::random::<[u8; 16]>())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ModelId {
    type Err = ApiError;

    fn from_str(text: &str) -> Result<ModelId, ApiError> {
        let valid = text.strip_prefix("m-").is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !valid {
            return Err(ApiError::InvalidArgument(format!(
                "invalid model id '{}': expected 'm-' and 32 lowercase hex digits",
                text.escape_default()
            )));
        }
        Ok(ModelId(text.to_string()))
    }
}

impl Serialize for ModelId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModelId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ModelId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoggedModelStatus {
    /// Created; its files are being uploaded.
    Pending,
    Ready,
    UploadFailed,
}

impl LoggedModelStatus {
    /// MLflow's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    /// Reads MLflow's name or number for a status.
    pub fn parse(text: &str) -> Result<LoggedModelStatus, ApiError> {
        match text {
            "LOGGED_MODEL_PENDING" | "1" => Ok(LoggedModelStatus::Pending),
            "LOGGED_MODEL_READY" | "2" => Ok(LoggedModelStatus::Ready),
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => Ok(LoggedModelStatus::UploadFailed),
            other => Err(ApiError::InvalidArgument(format!(
                "invalid logged model status '{}': expected LOGGED_MODEL_PENDING, LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED",
                other.escape_default()
            ))),
        }
    }
}

/// A model a run logged: its files live under `artifact_uri`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    pub model_id: ModelId,
    pub experiment_id: ExperimentId,
    pub name: String,
    pub artifact_uri: String,
    pub status: LoggedModelStatus,
    pub status_message: Option<String>,
    pub model_type: String,
    pub source_run_id: Option<RunId>,
    pub creation_time_ms: i64,
    pub last_updated_time_ms: i64,
    pub deleted: bool,
    pub tags: Vec<Tag>,
    pub params: Vec<Param>,
}

/// A metric point linked to a logged model, with the run that logged it and the dataset it
/// was computed on, where the client said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetric {
    pub key: String,
    pub value: f64,
    pub timestamp_ms: i64,
    pub step: i64,
    pub run_id: RunId,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

/// What creating a logged model takes.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateLoggedModel {
    pub experiment_id: ExperimentId,
    /// A name is made up when none is given.
    pub name: Option<String>,
    pub model_type: String,
    pub source_run_id: Option<RunId>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

/// The stages MLflow's registry moves versions through (deprecated there in favour of
/// aliases, still served).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::None, Stage::Staging, Stage::Production, Stage::Archived];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// Reads a stage by name, in any case, as MLflow does.
    pub fn parse(text: &str) -> Result<Stage, ApiError> {
        Stage::ALL.into_iter().find(|stage| stage.as_str().eq_ignore_ascii_case(text)).ok_or_else(
            || {
                ApiError::InvalidArgument(format!(
                    "invalid stage '{}': expected None, Staging, Production or Archived",
                    text.escape_default()
                ))
            },
        )
    }
}

/// A name under which versions of a model are registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_time_ms: i64,
    pub last_updated_time_ms: i64,
    pub description: String,
    pub tags: Vec<Tag>,
    /// Alias to version number.
    pub aliases: BTreeMap<String, u64>,
    /// The number the next version gets: numbers are never reused while the model exists.
    pub next_version: u64,
}

/// One numbered version of a registered model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u64,
    pub creation_time_ms: i64,
    pub last_updated_time_ms: i64,
    pub description: String,
    /// Where the version's files are, as given: `models:/<model id>`, `runs:/<run>/<path>`,
    /// `models:/<name>/<version>` or an `mlflow-artifacts:` URI.
    pub source: String,
    /// The same files as an `mlflow-artifacts:` URI.
    pub storage_location: String,
    pub run_id: Option<RunId>,
    pub model_id: Option<ModelId>,
    pub stage: Stage,
    pub tags: Vec<Tag>,
    pub run_link: String,
}

/// What registering a version takes.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<RunId>,
    pub model_id: Option<ModelId>,
    pub tags: Vec<Tag>,
    pub run_link: String,
    pub description: String,
}

/// A registered model with its newest version in each stage, as listings show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModelView {
    #[serde(flatten)]
    pub model: RegisteredModel,
    pub latest_versions: Vec<ModelVersion>,
}

/// A logged model with the metric points linked to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedModelView {
    #[serde(flatten)]
    pub model: LoggedModel,
    pub metrics: Vec<ModelMetric>,
}

/// A version named by its number or by an alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionRef {
    Number(u64),
    Alias(String),
}

/// Checks a registered model's name as MLflow does (not blank, no `/` or `:`, a normalized
/// path that does not climb out), and refuses control characters and `@` (which names an
/// alias in `models:/NAME@ALIAS`) besides.
pub fn validate_model_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::InvalidArgument(
            "missing value for required parameter 'name': a registered model needs a name"
                .to_string(),
        ));
    }
    validate::name("registered model name", name, MAX_NAME_LEN)?;
    let invalid = |why: &str| {
        ApiError::InvalidArgument(format!(
            "invalid registered model name '{}': {why}",
            name.escape_default()
        ))
    };
    // `@` would make `models:/NAME@ALIAS` ambiguous.
    if let Some(bad) = name.chars().find(|c| matches!(c, '/' | ':' | '@')) {
        return Err(invalid(&format!("'{bad}' is not allowed")));
    }
    if name == "." || name == ".." || name.starts_with("..") {
        return Err(invalid("it must not be '.' or start with '..'"));
    }
    Ok(())
}

/// Checks an alias as MLflow does: letters, digits, `_` and `-`; not `latest` and not `v`
/// followed by digits, which name versions.
pub fn validate_alias(alias: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        ApiError::InvalidArgument(format!("invalid alias '{}': {why}", alias.escape_default()))
    };
    if alias.is_empty() {
        return Err(invalid("an alias must not be empty"));
    }
    if alias.chars().count() > 255 {
        return Err(invalid("the limit is 255 characters"));
    }
    if !alias.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-')) {
        return Err(invalid("aliases may contain letters, digits, '_' and '-'"));
    }
    if alias.eq_ignore_ascii_case("latest") {
        return Err(invalid("'latest' is reserved for the newest version"));
    }
    if alias.len() > 1
        && alias.starts_with(['v', 'V'])
        && alias[1..].bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid("'v' followed by digits is reserved for version numbers"));
    }
    Ok(())
}

/// Checks a logged model's name: MLflow refuses `/ : . % " '` in it.
pub fn validate_logged_model_name(name: &str) -> Result<(), ApiError> {
    validate::name("logged model name", name, MAX_NAME_LEN)?;
    if let Some(bad) = name.chars().find(|c| matches!(c, '/' | ':' | '.' | '%' | '"' | '\'')) {
        return Err(ApiError::InvalidArgument(format!(
            "invalid logged model name '{}': '{bad}' is not allowed",
            name.escape_default()
        )));
    }
    Ok(())
}

/// Reads a version number as MLflow sends it: a decimal string of a positive integer.
pub fn parse_version(text: &str) -> Result<u64, ApiError> {
    text.trim().parse::<u64>().ok().filter(|version| *version > 0).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "parameter 'version' must be a positive integer, got '{}'",
            text.escape_default()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_follow_mlflow_rules() {
        for good in ["ElasticnetWineModel", "with space.and-dash_ü", "a..b"] {
            assert!(validate_model_name(good).is_ok(), "{good}");
        }
        for bad in ["", "  ", "a/b", "s3:x", "team@x", ".", "..", "../up", "nul\0", "esc\u{1b}[2J"]
        {
            assert!(validate_model_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_model_name(&"n".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn aliases_follow_mlflow_rules() {
        for good in ["champion", "prod-2", "a_b", "v", "v1a"] {
            assert!(validate_alias(good).is_ok(), "{good}");
        }
        for bad in ["", "latest", "LATEST", "v3", "V12", "a b", "a/b", "a.b"] {
            assert!(validate_alias(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn model_ids_and_versions_parse_strictly() {
        let id = ModelId::random();
        assert_eq!(id.as_str().parse::<ModelId>().ok(), Some(id));
        for bad in ["", "m-", "m-XYZ", "x-0123456789abcdef0123456789abcdef", "m-../../etc"] {
            assert!(bad.parse::<ModelId>().is_err(), "{bad}");
        }
        assert_eq!(parse_version("3").ok(), Some(3));
        for bad in ["0", "-1", "abc", "1.5", ""] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }
}
