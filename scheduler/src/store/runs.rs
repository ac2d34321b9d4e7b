//! Runs and their data: lifecycle, write-once params, tags, and metric history with the
//! latest value per key.

use std::sync::Arc;

use drover_proto::ApiError;
use drover_proto::domain::{
    CreateRun, ExperimentId, LifecycleStage, Metric, Param, Run, RunData, RunId, RunInfo, Tag,
    UpdateRun, ViewType,
};
use drover_proto::execution::MetricSeries;

use super::ingest::Logged;
use super::staging::{tag_value, validate_param, validate_run_name, validate_tag, validate_user};
use super::{Batch, Store, decode, encode, keys, now_ms, storage_error};
use crate::names::random_run_name;
use drover_proto::tags;
use drover_proto::validate;

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
    pub(super) fn new_run(&self, request: CreateRun) -> Result<(Run, Batch), ApiError> {
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
        if let Some(name) = &request.run_name {
            validate_run_name(name)?;
        }
        validate_user(&request.user_id)?;
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
        let mut batch = Batch::default();
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
            if let Some(name) = &request.run_name {
                validate_run_name(name)?;
            }
            if let Some(end) = request.end_time_ms
                && end < info.start_time_ms
            {
                return Err(ApiError::InvalidArgument(format!(
                    "end_time {end} is before the run's start_time {}; a run cannot end before it starts",
                    info.start_time_ms
                )));
            }
            let mut batch = Batch::default();
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
            let mut batch = Batch::default();
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
            let mut batch = Batch::default();
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
}
