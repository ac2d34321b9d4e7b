//! What every write to a run shares: reading the run's record and data, MLflow's rules for
//! param and tag keys and values, and staging params (write-once) and tags (which may rename
//! the run) into a batch under the write lock.

use std::collections::HashMap;

use drover_proto::ApiError;
use drover_proto::domain::{LifecycleStage, Metric, Param, RunData, RunId, RunInfo, Tag};
use drover_proto::tags;
use drover_proto::validate::{self, MAX_PARAM_VALUE_LEN, MAX_TAG_VALUE_LEN};

use super::{Batch, Store, decode, encode, keys, storage_error};

impl Store {
    /// Sorts `params` into those new to the run and those that would change a value logged
    /// before, in the store or in `staged` (written earlier in the same batch). A key repeated
    /// with the same value counts once.
    pub(super) fn check_params(
        &self,
        run_id: RunId,
        params: &[Param],
        staged: &HashMap<String, String>,
    ) -> Result<(Vec<Param>, Vec<ParamConflict>), ApiError> {
        let mut fresh: Vec<Param> = Vec::new();
        let mut in_call: HashMap<&str, &str> = HashMap::new();
        let mut conflicts = Vec::new();
        for param in params {
            let stored = self.db().get(keys::param(run_id, &param.key)).map_err(storage_error)?;
            let earlier = match &stored {
                Some(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                None => staged
                    .get(&param.key)
                    .map(String::as_str)
                    .or_else(|| in_call.get(param.key.as_str()).copied())
                    .map(str::to_string),
            };
            match earlier {
                Some(earlier) if earlier != param.value => conflicts.push(ParamConflict {
                    run_id,
                    key: param.key.clone(),
                    earlier,
                    attempted: param.value.clone(),
                }),
                Some(_) => {}
                None => {
                    in_call.insert(&param.key, &param.value);
                    fresh.push(param.clone());
                }
            }
        }
        Ok((fresh, conflicts))
    }

    /// Adds the params new to the run to `batch`, and returns those that would change a
    /// stored value (params are write-once; these are left out). Call under the write lock.
    pub(super) fn stage_params(
        &self,
        run_id: RunId,
        params: &[Param],
        batch: &mut Batch,
    ) -> Result<Vec<ParamConflict>, ApiError> {
        let (fresh, conflicts) = self.check_params(run_id, params, &HashMap::new())?;
        for param in fresh {
            batch.insert(keys::param(run_id, &param.key), param.value.as_bytes());
        }
        Ok(conflicts)
    }

    pub(crate) fn run_info(&self, run_id: RunId) -> Result<RunInfo, ApiError> {
        let value = self
            .db()
            .get(keys::run(run_id))
            .map_err(storage_error)?
            .ok_or_else(|| ApiError::NotFound(format!("no run with ID {run_id}")))?;
        decode(&value, "run")
    }

    pub(super) fn active_run_info(&self, run_id: RunId) -> Result<RunInfo, ApiError> {
        let info = self.run_info(run_id)?;
        if info.lifecycle_stage != LifecycleStage::Active {
            return Err(ApiError::FailedPrecondition(format!(
                "run {run_id} is deleted; restore it before changing it"
            )));
        }
        Ok(info)
    }

    pub(super) fn run_data(&self, run_id: RunId) -> Result<RunData, ApiError> {
        let mut data = RunData::default();
        let params_prefix = keys::params(run_id);
        for entry in self.db().scan_prefix(&params_prefix) {
            let (key, value) = entry.map_err(storage_error)?;
            data.params.push(Param { key: utf8(&key[params_prefix.len()..]), value: utf8(&value) });
        }
        let tags_prefix = keys::tags(run_id);
        for entry in self.db().scan_prefix(&tags_prefix) {
            let (key, value) = entry.map_err(storage_error)?;
            data.tags.push(Tag { key: utf8(&key[tags_prefix.len()..]), value: utf8(&value) });
        }
        let latest_prefix = keys::latest_metrics(run_id);
        for entry in self.db().scan_prefix(&latest_prefix) {
            let (key, value) = entry.map_err(storage_error)?;
            let (value, timestamp_ms, step) = keys::decode_latest(&value)
                .ok_or_else(|| ApiError::Internal("stored metric is unreadable".to_string()))?;
            data.latest_metrics.push(Metric {
                key: utf8(&key[latest_prefix.len()..]),
                value,
                timestamp_ms,
                step,
            });
        }
        Ok(data)
    }
}

/// A param logged again with a different value.
#[derive(Debug)]
pub(super) struct ParamConflict {
    run_id: RunId,
    pub(super) key: String,
    earlier: String,
    attempted: String,
}

impl std::fmt::Display for ParamConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "param '{}' of run {} was already logged with value '{}'; params cannot change, got '{}'",
            self.key, self.run_id, self.earlier, self.attempted
        )
    }
}

/// Adds tags to `batch`; the run name lives in the run record too, so they stay the same.
pub(super) fn stage_tags(mut info: RunInfo, tags: &[Tag], batch: &mut Batch) {
    for tag in tags {
        batch.insert(keys::tag(info.run_id, &tag.key), tag.value.as_bytes());
    }
    if let Some(run_name) = tag_value(tags, tags::RUN_NAME) {
        info.run_name = run_name;
        batch.insert(keys::run(info.run_id), encode(&info));
    }
}

pub(super) fn validate_param(param: &Param) -> Result<(), ApiError> {
    validate::key("param", &param.key)?;
    validate::value("param", &param.key, &param.value, MAX_PARAM_VALUE_LEN)
}

pub(super) fn validate_tag(tag: &Tag) -> Result<(), ApiError> {
    validate::key("tag", &tag.key)?;
    validate::value("tag", &tag.key, &tag.value, MAX_TAG_VALUE_LEN)?;
    if tag.key == tags::RUN_NAME {
        validate_run_name(&tag.value)?;
    }
    Ok(())
}

/// A run's name, however it is given (an argument, or the `mlflow.runName` tag): plain text,
/// no longer than a tag's value.
pub(super) fn validate_run_name(name: &str) -> Result<(), ApiError> {
    validate::name("run name", name, MAX_TAG_VALUE_LEN)
}

/// A run's user, stored as the `mlflow.user` tag.
pub(super) fn validate_user(user: &str) -> Result<(), ApiError> {
    validate::value("tag", tags::USER, user, MAX_TAG_VALUE_LEN)
}

pub(super) fn tag_value(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter().rev().find(|tag| tag.key == key).map(|tag| tag.value.clone())
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
