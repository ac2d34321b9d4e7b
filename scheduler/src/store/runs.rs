//! Runs and their data: lifecycle, write-once params, tags, and metric history with the
//! latest value per key.

use std::collections::HashMap;
use std::sync::Arc;

use drover_proto::ApiError;
use drover_proto::domain::{
    CreateRun, ExperimentId, LifecycleStage, Metric, Param, Run, RunData, RunId, RunInfo, Tag,
    UpdateRun, ViewType,
};
use drover_proto::execution::MetricSeries;

use super::ingest::Logged;
use super::{Store, decode, encode, keys, now_ms, storage_error};
use crate::names::random_run_name;
use drover_proto::tags;
use drover_proto::validate::{self, MAX_PARAM_VALUE_LEN, MAX_TAG_VALUE_LEN};

impl Store {
    pub async fn create_run(&self, request: CreateRun) -> Result<Run, ApiError> {
        let (run, batch) = self.new_run(request)?;
        {
            let _guard = self.write_guard();
            self.db().apply_batch(batch).map_err(storage_error)?;
            // A new run is about to be logged to and searched for: its view starts cached,
            // and combined writes keep it up to date (see `ingest.rs`).
            if let Ok(view) = self.run(run.info.run_id) {
                self.cache_runs(vec![Arc::new(view)]);
            }
        }
        self.durable().await?;
        Ok(run)
    }

    /// A new run and the batch that stores it, for the caller to extend and apply.
    pub(super) fn new_run(&self, request: CreateRun) -> Result<(Run, sled::Batch), ApiError> {
        let experiment = self.experiment_by_id(request.experiment_id)?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(ApiError::FailedPrecondition(format!(
                "experiment '{}' (ID {}) is deleted; restore it before creating runs in it",
                experiment.name, experiment.id
            )));
        }
        for tag in &request.tags {
            validate_tag(tag)?;
        }
        let run_name = request
            .run_name
            .or_else(|| tag_value(&request.tags, tags::RUN_NAME))
            .unwrap_or_else(random_run_name);
        // MLflow's clients may name the user only in a tag.
        let user_id = match request.user_id.is_empty() {
            true => tag_value(&request.tags, tags::USER).unwrap_or_default(),
            false => request.user_id,
        };
        let run_id = RunId(rand::random());
        let info = RunInfo {
            run_id,
            experiment_id: experiment.id,
            run_name: run_name.clone(),
            user_id: user_id.clone(),
            status: request.status,
            start_time_ms: request.start_time_ms.unwrap_or_else(now_ms),
            end_time_ms: None,
            lifecycle_stage: LifecycleStage::Active,
            artifact_uri: format!("{}/{run_id}/artifacts", experiment.artifact_location),
        };
        let mut run_tags = request.tags;
        run_tags.retain(|tag| tag.key != tags::RUN_NAME);
        run_tags.push(Tag::new(tags::RUN_NAME, run_name));
        if !user_id.is_empty() && tag_value(&run_tags, tags::USER).is_none() {
            run_tags.push(Tag::new(tags::USER, user_id));
        }
        let mut batch = sled::Batch::default();
        batch.insert(keys::run(run_id), encode(&info));
        batch.insert(keys::experiment_run(experiment.id, run_id), &[]);
        for tag in &run_tags {
            batch.insert(keys::tag(run_id, &tag.key), tag.value.as_bytes());
        }
        run_tags.sort_by(|a, b| a.key.cmp(&b.key));
        let data = RunData { params: Vec::new(), tags: run_tags, latest_metrics: Vec::new() };
        let run = Run { info, data };
        Ok((run, batch))
    }

    pub fn run(&self, run_id: RunId) -> Result<Run, ApiError> {
        let info = self.run_info(run_id)?;
        Ok(Run { info, data: self.run_data(run_id)? })
    }

    pub async fn update_run(&self, request: UpdateRun) -> Result<RunInfo, ApiError> {
        let info = {
            let _guard = self.write_guard();
            let mut info = self.active_run_info(request.run_id)?;
            let mut batch = sled::Batch::default();
            if let Some(status) = request.status {
                info.status = status;
                info.end_time_ms = if status.is_terminal() {
                    request.end_time_ms.or(info.end_time_ms).or_else(|| Some(now_ms()))
                } else {
                    request.end_time_ms
                };
            } else if let Some(end_time) = request.end_time_ms {
                info.end_time_ms = Some(end_time);
            }
            if let Some(run_name) = request.run_name {
                batch.insert(keys::tag(info.run_id, tags::RUN_NAME), run_name.as_bytes());
                info.run_name = run_name;
            }
            batch.insert(keys::run(info.run_id), encode(&info));
            self.write_run(info.run_id, batch)?;
            info
        };
        self.durable().await?;
        Ok(info)
    }

    pub async fn delete_run(&self, run_id: RunId) -> Result<RunInfo, ApiError> {
        self.set_run_stage(run_id, LifecycleStage::Deleted).await
    }

    pub async fn restore_run(&self, run_id: RunId) -> Result<RunInfo, ApiError> {
        self.set_run_stage(run_id, LifecycleStage::Active).await
    }

    async fn set_run_stage(
        &self,
        run_id: RunId,
        stage: LifecycleStage,
    ) -> Result<RunInfo, ApiError> {
        let info = {
            let _guard = self.write_guard();
            let mut info = self.run_info(run_id)?;
            info.lifecycle_stage = stage;
            let mut batch = sled::Batch::default();
            batch.insert(keys::run(run_id), encode(&info));
            self.write_run(run_id, batch)?;
            info
        };
        self.durable().await?;
        Ok(info)
    }

    /// Every run of the given experiments (every active experiment when none is named) that
    /// the view includes, with its data, in no particular order.
    pub fn runs_of(
        &self,
        experiment_ids: &[ExperimentId],
        view: ViewType,
    ) -> Result<Vec<std::sync::Arc<Run>>, ApiError> {
        let experiment_ids: Vec<ExperimentId> = if experiment_ids.is_empty() {
            self.experiments(ViewType::ActiveOnly)?.into_iter().map(|e| e.id).collect()
        } else {
            experiment_ids.to_vec()
        };
        let mut run_ids = Vec::new();
        for experiment_id in experiment_ids {
            for entry in self.db().scan_prefix(keys::experiment_runs(experiment_id)) {
                let (key, _) = entry.map_err(storage_error)?;
                run_ids.push(keys::run_of_experiment_run(&key).ok_or_else(|| {
                    ApiError::Internal("stored run index is unreadable".to_string())
                })?);
            }
        }
        let mut runs = self.cached_runs(run_ids)?;
        runs.retain(|run| view.includes(run.info.lifecycle_stage));
        Ok(runs)
    }

    /// Records datasets a run used (MLflow's `log-inputs`), once per name and digest.
    pub async fn log_inputs(
        &self,
        run_id: RunId,
        inputs: Vec<serde_json::Value>,
    ) -> Result<(), ApiError> {
        {
            let _guard = self.write_guard();
            self.active_run_info(run_id)?;
            let mut stored = self.inputs(run_id)?;
            let identity = |input: &serde_json::Value| {
                (input["dataset"]["name"].clone(), input["dataset"]["digest"].clone())
            };
            for input in inputs {
                if !stored.iter().any(|existing| identity(existing) == identity(&input)) {
                    stored.push(input);
                }
            }
            let value = serde_json::to_vec(&stored)
                .map_err(|error| ApiError::Internal(error.to_string()))?;
            self.db().insert(keys::inputs(run_id), value).map_err(storage_error)?;
        }
        self.durable().await
    }

    /// Datasets a run used, as logged.
    pub fn inputs(&self, run_id: RunId) -> Result<Vec<serde_json::Value>, ApiError> {
        match self.db().get(keys::inputs(run_id)).map_err(storage_error)? {
            Some(bytes) => decode(&bytes, "run inputs"),
            None => Ok(Vec::new()),
        }
    }

    pub async fn log_params(&self, run_id: RunId, params: Vec<Param>) -> Result<(), ApiError> {
        self.log_batch(run_id, Vec::new(), params, Vec::new()).await
    }

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
        batch: &mut sled::Batch,
    ) -> Result<Vec<ParamConflict>, ApiError> {
        let (fresh, conflicts) = self.check_params(run_id, params, &HashMap::new())?;
        for param in fresh {
            batch.insert(keys::param(run_id, &param.key), param.value.as_bytes());
        }
        Ok(conflicts)
    }

    pub async fn set_tags(&self, run_id: RunId, tags: Vec<Tag>) -> Result<(), ApiError> {
        self.log_batch(run_id, Vec::new(), Vec::new(), tags).await
    }

    pub async fn delete_tag(&self, run_id: RunId, key: &str) -> Result<(), ApiError> {
        {
            let _guard = self.write_guard();
            self.active_run_info(run_id)?;
            let removed = self.db().get(keys::tag(run_id, key)).map_err(storage_error)?;
            if removed.is_none() {
                return Err(ApiError::NotFound(format!("run {run_id} has no tag '{key}'")));
            }
            let mut batch = sled::Batch::default();
            batch.remove(keys::tag(run_id, key));
            self.write_run(run_id, batch)?;
        }
        self.durable().await
    }

    /// Appends points to the run's history and keeps the latest value per key: the point with
    /// the highest step, then the latest timestamp, then the last to arrive.
    pub async fn log_metrics(
        &self,
        run_id: RunId,
        metrics: Vec<Metric>,
    ) -> Result<usize, ApiError> {
        let count = metrics.len();
        if metrics.is_empty() {
            self.run_info(run_id)?;
            return Ok(0);
        }
        self.log_batch(run_id, metrics, Vec::new(), Vec::new()).await?;
        Ok(count)
    }

    /// Logs metrics, params and tags in one write: all of them, or (on any refusal) none.
    /// Concurrent calls are written together (see `ingest.rs`).
    pub async fn log_batch(
        &self,
        run_id: RunId,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<(), ApiError> {
        let series = MetricSeries::group(metrics);
        for series in &series {
            validate::key("metric", &series.key)?;
        }
        for param in &params {
            validate_param(param)?;
        }
        for tag in &tags {
            validate_tag(tag)?;
        }
        self.log_combined(Logged { run_id, series, params, tags }).await
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
pub(super) fn stage_tags(mut info: RunInfo, tags: &[Tag], batch: &mut sled::Batch) {
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
    validate::value("tag", &tag.key, &tag.value, MAX_TAG_VALUE_LEN)
}

fn tag_value(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter().rev().find(|tag| tag.key == key).map(|tag| tag.value.clone())
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
