//! Logged models (MLflow 3): a model a run logged, with its params, tags, status and the
//! metrics linked to it, and each run's outputs (the models it logged). A model's files live in
//! the artifact store under `<experiment artifact location>/models/<model id>/artifacts`.

use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, LifecycleStage, Param, RunId, Tag};
use drover_proto::models::{
    CreateLoggedModel, LoggedModel, LoggedModelStatus, ModelId, ModelMetric,
    validate_logged_model_name,
};
use drover_proto::validate;

use super::{Batch, Store, decode, encode, keys, now_ms, storage_error};

/// Params a logged model holds, at most.
const MAX_MODEL_PARAMS: usize = 10_000;

impl Store {
    pub async fn create_logged_model(
        &self,
        request: CreateLoggedModel,
    ) -> Result<LoggedModel, ApiError> {
        let name = match request.name.filter(|name| !name.is_empty()) {
            Some(name) => {
                validate_logged_model_name(&name)?;
                name
            }
            None => crate::names::random_run_name(),
        };
        validate::tags(&request.tags)?;
        check_params(&[], &request.params)?;
        validate::name("model type", &request.model_type, 500)?;
        let model = {
            let _guard = self.write_guard();
            let experiment = self.experiment_by_id(request.experiment_id)?;
            if experiment.lifecycle_stage != LifecycleStage::Active {
                return Err(ApiError::InvalidArgument(format!(
                    "experiment {} is deleted; a model can only be logged to an active experiment",
                    experiment.id
                )));
            }
            if let Some(run_id) = request.source_run_id {
                let run = self.run_info(run_id)?;
                if run.experiment_id != experiment.id {
                    return Err(ApiError::InvalidArgument(format!(
                        "run {run_id} belongs to experiment {}, not {}",
                        run.experiment_id, experiment.id
                    )));
                }
            }
            let model_id = ModelId::random();
            let now = now_ms();
            let model = LoggedModel {
                artifact_uri: format!(
                    "{}/models/{model_id}/artifacts",
                    experiment.artifact_location.trim_end_matches('/')
                ),
                model_id,
                experiment_id: experiment.id,
                name,
                status: LoggedModelStatus::Pending,
                status_message: None,
                model_type: request.model_type,
                source_run_id: request.source_run_id,
                creation_time_ms: now,
                last_updated_time_ms: now,
                deleted: false,
                tags: request.tags,
                params: request.params,
            };
            let mut batch = Batch::default();
            batch.insert(keys::logged_model(&model.model_id), encode(&model));
            batch.insert(keys::experiment_model(model.experiment_id, &model.model_id), b"");
            self.db().apply_batch(batch).map_err(storage_error)?;
            model
        };
        self.durable().await?;
        Ok(model)
    }

    /// The logged model `id`; a deleted one only when `allow_deleted`.
    pub fn logged_model(&self, id: &ModelId, allow_deleted: bool) -> Result<LoggedModel, ApiError> {
        let not_found = || ApiError::NotFound(format!("logged model with ID '{id}' not found"));
        let value = self.db().get(keys::logged_model(id)).map_err(storage_error)?;
        let model: LoggedModel = decode(&value.ok_or_else(not_found)?, "logged model")?;
        if model.deleted && !allow_deleted {
            return Err(not_found());
        }
        Ok(model)
    }

    /// Changes the logged model `id` with `change`, under the write lock, and returns it.
    async fn change_logged_model(
        &self,
        id: &ModelId,
        change: impl FnOnce(&mut LoggedModel) -> Result<(), ApiError>,
    ) -> Result<LoggedModel, ApiError> {
        let model = {
            let _guard = self.write_guard();
            let mut model = self.logged_model(id, true)?;
            change(&mut model)?;
            model.last_updated_time_ms = now_ms();
            let mut batch = Batch::default();
            batch.insert(keys::logged_model(id), encode(&model));
            self.db().apply_batch(batch).map_err(storage_error)?;
            model
        };
        self.durable().await?;
        Ok(model)
    }

    pub async fn finalize_logged_model(
        &self,
        id: &ModelId,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel, ApiError> {
        self.change_logged_model(id, |model| {
            model.status = status;
            Ok(())
        })
        .await
    }

    /// Marks the model deleted: it leaves searches and lookups, its files stay.
    pub async fn delete_logged_model(&self, id: &ModelId) -> Result<(), ApiError> {
        self.change_logged_model(id, |model| {
            model.deleted = true;
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Sets tags on the model, replacing any of the same keys.
    pub async fn set_logged_model_tags(
        &self,
        id: &ModelId,
        tags: Vec<Tag>,
    ) -> Result<(), ApiError> {
        validate::tags(&tags)?;
        self.change_logged_model(id, |model| {
            for tag in tags {
                match model.tags.iter_mut().find(|existing| existing.key == tag.key) {
                    Some(existing) => existing.value = tag.value,
                    None => model.tags.push(tag),
                }
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    pub async fn delete_logged_model_tag(&self, id: &ModelId, key: &str) -> Result<(), ApiError> {
        self.change_logged_model(id, |model| {
            let before = model.tags.len();
            model.tags.retain(|tag| tag.key != key);
            if model.tags.len() == before {
                return Err(ApiError::NotFound(format!(
                    "logged model '{}' has no tag '{}'",
                    model.model_id,
                    key.escape_default()
                )));
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Adds params to the model; a key logged again must keep its value.
    pub async fn log_logged_model_params(
        &self,
        id: &ModelId,
        params: Vec<Param>,
    ) -> Result<(), ApiError> {
        self.change_logged_model(id, |model| {
            check_params(&model.params, &params)?;
            for param in params {
                if !model.params.iter().any(|existing| existing.key == param.key) {
                    model.params.push(param);
                }
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Checks that every model in `models` exists and is the run `run_id`'s (or no run's),
    /// before the run links metrics or outputs to them: a batch naming another run's model
    /// changes nothing.
    pub fn check_models_of_run<'a>(
        &self,
        run_id: RunId,
        models: impl IntoIterator<Item = &'a ModelId>,
    ) -> Result<(), ApiError> {
        for id in models {
            let model = self.logged_model(id, true)?;
            if model.source_run_id.is_some_and(|source| source != run_id) {
                return Err(ApiError::InvalidArgument(format!(
                    "logged model '{id}' was logged by another run than {run_id}"
                )));
            }
        }
        Ok(())
    }

    /// Links metric points the run `run_id` logged to the models they name.
    pub async fn log_model_metrics(
        &self,
        metrics: Vec<(ModelId, ModelMetric)>,
    ) -> Result<(), ApiError> {
        if metrics.is_empty() {
            return Ok(());
        }
        {
            let _guard = self.write_guard();
            for (id, metric) in &metrics {
                self.check_models_of_run(metric.run_id, [id])?;
            }
            let mut next = self.counter(keys::NEXT_MODEL_METRIC)?;
            let mut batch = Batch::default();
            for (id, metric) in &metrics {
                batch.insert(keys::model_metric(id, next), encode(metric));
                next += 1;
            }
            batch.insert(keys::NEXT_MODEL_METRIC, &next.to_be_bytes());
            self.db().apply_batch(batch).map_err(storage_error)?;
        }
        self.durable().await
    }

    /// The metric points linked to a model, in the order they were logged.
    pub fn logged_model_metrics(&self, id: &ModelId) -> Result<Vec<ModelMetric>, ApiError> {
        let mut metrics = Vec::new();
        for entry in self.db().scan_prefix(keys::model_metrics(id)) {
            let (_, value) = entry.map_err(storage_error)?;
            metrics.push(decode(&value, "model metric")?);
        }
        Ok(metrics)
    }

    /// The logged models of the experiments `experiments`, deleted ones left out.
    pub fn logged_models(
        &self,
        experiments: &[ExperimentId],
    ) -> Result<Vec<LoggedModel>, ApiError> {
        let mut models = Vec::new();
        for experiment in experiments {
            self.experiment_by_id(*experiment)?;
            for entry in self.db().scan_prefix(keys::experiment_models(*experiment)) {
                let (key, _) = entry.map_err(storage_error)?;
                let id =
                    String::from_utf8_lossy(&key[keys::experiment_models(*experiment).len()..])
                        .parse::<ModelId>()?;
                let model = self.logged_model(&id, true)?;
                if !model.deleted {
                    models.push(model);
                }
            }
        }
        Ok(models)
    }

    /// Records that the run `run_id` produced the models `outputs` (each at a step).
    pub async fn log_run_outputs(
        &self,
        run_id: RunId,
        outputs: Vec<(ModelId, i64)>,
    ) -> Result<(), ApiError> {
        {
            let _guard = self.write_guard();
            self.run_info(run_id)?;
            self.check_models_of_run(run_id, outputs.iter().map(|(id, _)| id))?;
            let mut batch = Batch::default();
            for (id, step) in &outputs {
                batch.insert(keys::run_output(run_id, id), &step.to_be_bytes());
            }
            self.db().apply_batch(batch).map_err(storage_error)?;
        }
        self.durable().await
    }

    /// The models the run `run_id` produced, with the step of each.
    pub fn run_outputs(&self, run_id: RunId) -> Result<Vec<(ModelId, i64)>, ApiError> {
        let prefix = keys::run_outputs(run_id);
        let mut outputs = Vec::new();
        for entry in self.db().scan_prefix(&prefix) {
            let (key, value) = entry.map_err(storage_error)?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).parse::<ModelId>()?;
            let step = value.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            outputs.push((id, step));
        }
        Ok(outputs)
    }

    /// Reads a u64 counter the store keeps under `key` (0 when never written).
    pub(super) fn counter(&self, key: &[u8]) -> Result<u64, ApiError> {
        let value = self.db().get(key).map_err(storage_error)?;
        Ok(value
            .and_then(|bytes| bytes.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }
}

/// Checks params about to join `existing`: valid keys and values, no key twice, a key
/// already there only with its value, and not too many.
fn check_params(existing: &[Param], params: &[Param]) -> Result<(), ApiError> {
    let mut seen = std::collections::HashMap::new();
    for param in existing {
        seen.insert(param.key.as_str(), param.value.as_str());
    }
    for param in params {
        validate::key("param", &param.key)?;
        validate::value("param", &param.key, &param.value, validate::MAX_PARAM_VALUE_LEN)?;
        if let Some(value) = seen.insert(param.key.as_str(), param.value.as_str())
            && value != param.value
        {
            return Err(ApiError::InvalidArgument(format!(
                "param '{}' is already '{value}'; a model's params cannot change",
                param.key
            )));
        }
    }
    if seen.len() > MAX_MODEL_PARAMS {
        return Err(ApiError::InvalidArgument(format!(
            "a logged model holds at most {MAX_MODEL_PARAMS} params"
        )));
    }
    Ok(())
}
