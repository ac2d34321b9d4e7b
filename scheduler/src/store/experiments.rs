//! Experiments: creation with unique names, lookup by id or name, rename, delete and restore.

use drover_proto::ApiError;
use drover_proto::domain::{
    CreateExperiment, DEFAULT_EXPERIMENT_ID, Experiment, ExperimentId, ExperimentRef,
    LifecycleStage, RenameExperiment, Tag, ViewType,
};
use drover_proto::validate;

use super::{Batch, Store, decode, default_artifact_location, encode, keys, now_ms, storage_error};

impl Store {
    pub async fn create_experiment(
        &self,
        request: CreateExperiment,
    ) -> Result<Experiment, ApiError> {
        validate::tags(&request.tags)?;
        let experiment = {
            let _guard = self.write_guard();
            let name = request.name.as_str();
            if let Some(existing) = self.experiment_id_by_name(name)? {
                let existing = self.experiment_by_id(existing)?;
                return Err(match existing.lifecycle_stage {
                    LifecycleStage::Active => ApiError::AlreadyExists(format!(
                        "experiment '{name}' already exists (ID {})",
                        existing.id
                    )),
                    LifecycleStage::Deleted => ApiError::AlreadyExists(format!(
                        "experiment '{name}' already exists in the deleted state (ID {}); restore it or choose another name",
                        existing.id
                    )),
                });
            }
            let id = self.next_experiment_id()?;
            let now = now_ms();
            let experiment = Experiment {
                id,
                name: name.to_string(),
                artifact_location: request
                    .artifact_location
                    .unwrap_or_else(|| default_artifact_location(id)),
                lifecycle_stage: LifecycleStage::Active,
                creation_time_ms: now,
                last_update_time_ms: now,
                tags: request.tags,
            };
            let mut batch = Batch::default();
            batch.insert(keys::experiment(id), encode(&experiment));
            batch.insert(keys::experiment_name(name), &id.0.to_be_bytes());
            batch.insert(keys::NEXT_EXPERIMENT_ID, &(id.0 + 1).to_be_bytes());
            self.db().apply_batch(batch).map_err(storage_error)?;
            experiment
        };
        self.durable().await?;
        Ok(experiment)
    }

    pub fn experiment(&self, reference: &ExperimentRef) -> Result<Experiment, ApiError> {
        match reference {
            ExperimentRef::Id(id) => self.experiment_by_id(*id),
            ExperimentRef::Name(name) => {
                let id = self
                    .experiment_id_by_name(name)?
                    .ok_or_else(|| ApiError::NotFound(format!("no experiment named '{name}'")))?;
                self.experiment_by_id(id)
            }
        }
    }

    pub fn experiments(&self, view: ViewType) -> Result<Vec<Experiment>, ApiError> {
        let mut experiments = Vec::new();
        for entry in self.db().scan_prefix(keys::EXPERIMENT) {
            let (_, value) = entry.map_err(storage_error)?;
            let experiment: Experiment = decode(&value, "experiment")?;
            if view.includes(experiment.lifecycle_stage) {
                experiments.push(experiment);
            }
        }
        Ok(experiments)
    }

    pub async fn rename_experiment(
        &self,
        request: RenameExperiment,
    ) -> Result<Experiment, ApiError> {
        let experiment = {
            let _guard = self.write_guard();
            let mut experiment = self.experiment(&request.experiment)?;
            let new_name = request.new_name.as_str();
            if experiment.lifecycle_stage == LifecycleStage::Deleted {
                return Err(ApiError::FailedPrecondition(format!(
                    "experiment '{}' (ID {}) is deleted; restore it before renaming it",
                    experiment.name, experiment.id
                )));
            }
            if experiment.name == new_name {
                return Ok(experiment);
            }
            if let Some(other) = self.experiment_id_by_name(new_name)? {
                return Err(ApiError::AlreadyExists(format!(
                    "experiment '{new_name}' already exists (ID {other})"
                )));
            }
            let mut batch = Batch::default();
            batch.remove(keys::experiment_name(&experiment.name));
            batch.insert(keys::experiment_name(new_name), &experiment.id.0.to_be_bytes());
            experiment.name = new_name.to_string();
            experiment.last_update_time_ms = now_ms();
            batch.insert(keys::experiment(experiment.id), encode(&experiment));
            self.db().apply_batch(batch).map_err(storage_error)?;
            experiment
        };
        self.durable().await?;
        Ok(experiment)
    }

    pub async fn delete_experiment(
        &self,
        reference: ExperimentRef,
    ) -> Result<Experiment, ApiError> {
        self.set_experiment_stage(reference, LifecycleStage::Deleted).await
    }

    pub async fn restore_experiment(
        &self,
        reference: ExperimentRef,
    ) -> Result<Experiment, ApiError> {
        self.set_experiment_stage(reference, LifecycleStage::Active).await
    }

    async fn set_experiment_stage(
        &self,
        reference: ExperimentRef,
        stage: LifecycleStage,
    ) -> Result<Experiment, ApiError> {
        let experiment = {
            let _guard = self.write_guard();
            let mut experiment = self.experiment(&reference)?;
            if experiment.id == DEFAULT_EXPERIMENT_ID && stage == LifecycleStage::Deleted {
                return Err(ApiError::FailedPrecondition(
                    "the default experiment (ID 0) cannot be deleted".to_string(),
                ));
            }
            if experiment.lifecycle_stage == stage {
                let state = match stage {
                    LifecycleStage::Active => "is not deleted",
                    LifecycleStage::Deleted => "is already deleted",
                };
                return Err(ApiError::FailedPrecondition(format!(
                    "experiment '{}' (ID {}) {state}",
                    experiment.name, experiment.id
                )));
            }
            experiment.lifecycle_stage = stage;
            experiment.last_update_time_ms = now_ms();
            self.db()
                .insert(keys::experiment(experiment.id), encode(&experiment))
                .map_err(storage_error)?;
            experiment
        };
        self.durable().await?;
        Ok(experiment)
    }

    /// Sets (or overwrites) a tag of an experiment.
    pub async fn set_experiment_tag(&self, id: ExperimentId, tag: Tag) -> Result<(), ApiError> {
        validate::tags([&tag])?;
        {
            let _guard = self.write_guard();
            let mut experiment = self.experiment_by_id(id)?;
            if experiment.lifecycle_stage != LifecycleStage::Active {
                return Err(ApiError::FailedPrecondition(format!(
                    "experiment '{}' (ID {id}) is deleted; restore it before changing it",
                    experiment.name
                )));
            }
            experiment.tags.retain(|existing| existing.key != tag.key);
            experiment.tags.push(tag);
            experiment.tags.sort_by(|a, b| a.key.cmp(&b.key));
            experiment.last_update_time_ms = now_ms();
            self.db().insert(keys::experiment(id), encode(&experiment)).map_err(storage_error)?;
        }
        self.durable().await
    }

    pub(super) fn experiment_by_id(&self, id: ExperimentId) -> Result<Experiment, ApiError> {
        let value = self
            .db()
            .get(keys::experiment(id))
            .map_err(storage_error)?
            .ok_or_else(|| ApiError::NotFound(format!("no experiment with ID {id}")))?;
        decode(&value, "experiment")
    }

    fn experiment_id_by_name(&self, name: &str) -> Result<Option<ExperimentId>, ApiError> {
        let value = self.db().get(keys::experiment_name(name)).map_err(storage_error)?;
        value
            .map(|bytes| {
                keys::decode_u64(&bytes).map(ExperimentId).ok_or_else(|| {
                    ApiError::Internal(format!("stored id of experiment '{name}' is unreadable"))
                })
            })
            .transpose()
    }

    fn next_experiment_id(&self) -> Result<ExperimentId, ApiError> {
        let value = self.db().get(keys::NEXT_EXPERIMENT_ID).map_err(storage_error)?;
        value.as_deref().and_then(keys::decode_u64).map(ExperimentId).ok_or_else(|| {
            ApiError::Internal("the experiment id counter is unreadable".to_string())
        })
    }
}
