//! The model registry: registered models with tags and aliases, and their numbered versions.
//!
//! A registered model's record holds the number its next version gets, so numbers are
//! assigned under the store's write lock, one at a time, and never reused while the model
//! exists (a deleted version's number stays taken, as in MLflow). A version's source must
//! name files drover holds: a logged model, a run's artifacts, another version, or a path in
//! the artifact store under a run's or a logged model's root.

use std::collections::BTreeMap;

use drover_proto::ApiError;
use drover_proto::domain::{RunId, Tag};
use drover_proto::models::{
    CreateModelVersion, MAX_DESCRIPTION_LEN, ModelId, ModelVersion, RegisteredModel, Stage,
    validate_alias, validate_model_name,
};
use drover_proto::validate;

use super::{Batch, Store, decode, encode, keys, now_ms, storage_error};
use crate::artifacts::safe_relative;

fn check_description(description: &str) -> Result<(), ApiError> {
    validate::value("model", "description", description, MAX_DESCRIPTION_LEN)
}

fn version_not_found(name: &str, version: u64) -> ApiError {
    ApiError::NotFound(format!("model version (name={name}, version={version}) not found"))
}

/// Where a version's files are: the source's files as an artifact-store URI, and the run and
/// logged model they came from.
struct Resolved {
    storage_location: String,
    run_id: Option<RunId>,
    model_id: Option<ModelId>,
}

impl Store {
    pub async fn create_registered_model(
        &self,
        name: &str,
        tags: Vec<Tag>,
        description: String,
    ) -> Result<RegisteredModel, ApiError> {
        validate_model_name(name)?;
        validate::tags(&tags)?;
        check_description(&description)?;
        let model = {
            let _guard = self.write_guard();
            if self.db().get(keys::registered_model(name)).map_err(storage_error)?.is_some() {
                return Err(ApiError::AlreadyExists(format!(
                    "registered model (name={name}) already exists"
                )));
            }
            let now = now_ms();
            let model = RegisteredModel {
                name: name.to_string(),
                creation_time_ms: now,
                last_updated_time_ms: now,
                description,
                tags,
                aliases: BTreeMap::new(),
                next_version: 1,
            };
            self.db()
                .insert(keys::registered_model(name), encode(&model))
                .map_err(storage_error)?;
            model
        };
        self.durable().await?;
        Ok(model)
    }

    pub fn registered_model(&self, name: &str) -> Result<RegisteredModel, ApiError> {
        validate_model_name(name)?;
        let value = self.db().get(keys::registered_model(name)).map_err(storage_error)?;
        let value = value.ok_or_else(|| {
            ApiError::NotFound(format!("registered model with name={name} not found"))
        })?;
        decode(&value, "registered model")
    }

    /// Every registered model, by name.
    pub fn registered_models(&self) -> Result<Vec<RegisteredModel>, ApiError> {
        let mut models = Vec::new();
        for entry in self.db().scan_prefix(keys::REGISTERED_MODEL) {
            let (_, value) = entry.map_err(storage_error)?;
            models.push(decode(&value, "registered model")?);
        }
        Ok(models)
    }

    /// Changes the registered model `name` and, through `batch`, anything beside it, under
    /// the write lock; returns it as stored.
    async fn change_registered_model(
        &self,
        name: &str,
        change: impl FnOnce(&mut RegisteredModel, &mut Batch) -> Result<(), ApiError>,
    ) -> Result<RegisteredModel, ApiError> {
        let model = {
            let _guard = self.write_guard();
            let mut model = self.registered_model(name)?;
            let mut batch = Batch::default();
            change(&mut model, &mut batch)?;
            batch.insert(keys::registered_model(&model.name), encode(&model));
            self.db().apply_batch(batch).map_err(storage_error)?;
            model
        };
        self.durable().await?;
        Ok(model)
    }

    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<RegisteredModel, ApiError> {
        validate_model_name(new_name)?;
        self.change_registered_model(name, |model, batch| {
            if new_name == name {
                return Ok(());
            }
            let versions = self.model_versions(Some(name))?;
            if self.db().get(keys::registered_model(new_name)).map_err(storage_error)?.is_some() {
                return Err(ApiError::AlreadyExists(format!(
                    "registered model (name={new_name}) already exists"
                )));
            }
            batch.remove(keys::registered_model(name));
            for mut version in versions {
                batch.remove(keys::model_version(name, version.version));
                version.name = new_name.to_string();
                batch.insert(keys::model_version(new_name, version.version), encode(&version));
            }
            model.name = new_name.to_string();
            model.last_updated_time_ms = now_ms();
            Ok(())
        })
        .await
    }

    pub async fn update_registered_model(
        &self,
        name: &str,
        description: String,
    ) -> Result<RegisteredModel, ApiError> {
        check_description(&description)?;
        self.change_registered_model(name, |model, _| {
            model.description = description;
            model.last_updated_time_ms = now_ms();
            Ok(())
        })
        .await
    }

    /// Deletes the model with its versions, tags and aliases; its name may be registered
    /// again, numbered from 1.
    pub async fn delete_registered_model(&self, name: &str) -> Result<(), ApiError> {
        {
            let _guard = self.write_guard();
            self.registered_model(name)?;
            let mut batch = Batch::default();
            for version in self.model_versions(Some(name))? {
                batch.remove(keys::model_version(name, version.version));
            }
            batch.remove(keys::registered_model(name));
            self.db().apply_batch(batch).map_err(storage_error)?;
        }
        self.durable().await
    }

    pub async fn set_registered_model_tag(&self, name: &str, tag: Tag) -> Result<(), ApiError> {
        validate::tags([&tag])?;
        self.change_registered_model(name, |model, _| {
            upsert_tag(&mut model.tags, tag);
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Deleting a tag the model does not have is not an error, as in MLflow.
    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<(), ApiError> {
        self.change_registered_model(name, |model, _| {
            model.tags.retain(|tag| tag.key != key);
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Points `alias` at `version`, moving it if it pointed elsewhere.
    pub async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<(), ApiError> {
        validate_alias(alias)?;
        self.change_registered_model(name, |model, _| {
            self.model_version(&model.name, version)?;
            model.aliases.insert(alias.to_string(), version);
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Deleting an alias the model does not have is not an error, as in MLflow.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), ApiError> {
        self.change_registered_model(name, |model, _| {
            model.aliases.remove(alias);
            Ok(())
        })
        .await
        .map(drop)
    }

    /// The version `alias` points at.
    pub fn version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion, ApiError> {
        let model = self.registered_model(name)?;
        if alias.eq_ignore_ascii_case("latest") {
            return self
                .latest_versions(name, &[])?
                .into_iter()
                .max_by_key(|version| version.version)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("registered model {name} has no versions"))
                });
        }
        let version = model.aliases.get(alias).ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "registered model alias {} not found",
                alias.escape_default()
            ))
        })?;
        self.model_version(name, *version)
    }

    /// The newest version in each of `stages` (every stage when empty).
    pub fn latest_versions(
        &self,
        name: &str,
        stages: &[Stage],
    ) -> Result<Vec<ModelVersion>, ApiError> {
        self.registered_model(name)?;
        let mut latest: BTreeMap<&'static str, ModelVersion> = BTreeMap::new();
        for version in self.model_versions(Some(name))? {
            if !stages.is_empty() && !stages.contains(&version.stage) {
                continue;
            }
            latest.insert(version.stage.as_str(), version);
        }
        let mut versions: Vec<ModelVersion> = latest.into_values().collect();
        versions.sort_by_key(|version| version.version);
        Ok(versions)
    }

    pub async fn create_model_version(
        &self,
        request: CreateModelVersion,
    ) -> Result<ModelVersion, ApiError> {
        validate_model_name(&request.name)?;
        validate::tags(&request.tags)?;
        check_description(&request.description)?;
        let version = {
            let _guard = self.write_guard();
            let mut model = self.registered_model(&request.name)?;
            let resolved = self.resolve_source(&request)?;
            let now = now_ms();
            let version = ModelVersion {
                name: model.name.clone(),
                version: model.next_version,
                creation_time_ms: now,
                last_updated_time_ms: now,
                description: request.description,
                source: request.source,
                storage_location: resolved.storage_location,
                run_id: resolved.run_id,
                model_id: resolved.model_id,
                stage: Stage::None,
                tags: request.tags,
                run_link: request.run_link,
            };
            model.next_version += 1;
            model.last_updated_time_ms = now;
            let mut batch = Batch::default();
            batch.insert(keys::model_version(&model.name, version.version), encode(&version));
            batch.insert(keys::registered_model(&model.name), encode(&model));
            if let Some(id) = &version.model_id {
                self.note_registration(id, &version, &mut batch)?;
            }
            self.db().apply_batch(batch).map_err(storage_error)?;
            version
        };
        self.durable().await?;
        Ok(version)
    }

    /// Adds the version to its logged model's `mlflow.modelVersions` tag, as MLflow's server
    /// does, so the model lists where it is registered.
    fn note_registration(
        &self,
        id: &ModelId,
        version: &ModelVersion,
        batch: &mut Batch,
    ) -> Result<(), ApiError> {
        let mut model = self.logged_model(id, true)?;
        let tag = model.tags.iter().find(|tag| tag.key == "mlflow.modelVersions");
        let mut list: Vec<serde_json::Value> =
            tag.and_then(|tag| serde_json::from_str(&tag.value).ok()).unwrap_or_default();
        list.push(serde_json::json!({ "name": version.name, "version": version.version }));
        let list = serde_json::Value::Array(list).to_string();
        upsert_tag(&mut model.tags, Tag::new("mlflow.modelVersions", list));
        batch.insert(keys::logged_model(id), encode(&model));
        Ok(())
    }

    /// Finds the files a version's source names, refusing any drover does not hold, and a
    /// run or a logged model given beside the source that is not the source's.
    fn resolve_source(&self, request: &CreateModelVersion) -> Result<Resolved, ApiError> {
        let refuse = |why: String| {
            ApiError::InvalidArgument(format!(
                "invalid model version source '{}': {why}",
                request.source.escape_default()
            ))
        };
        let resolved = self.locate_source(&request.source).map_err(|error| match error {
            ApiError::InvalidArgument(why) => refuse(why),
            other => other,
        })?;
        if let Some(run_id) = request.run_id
            && resolved.run_id != Some(run_id)
        {
            return Err(refuse(format!("its files are not run {run_id}'s")));
        }
        if let Some(model_id) = &request.model_id
            && resolved.model_id.as_ref() != Some(model_id)
        {
            return Err(refuse(format!("its files are not logged model {model_id}'s")));
        }
        if !resolved.storage_location.starts_with("mlflow-artifacts:/") {
            return Err(refuse(format!(
                "its files are at {}, outside drover's artifact store",
                resolved.storage_location
            )));
        }
        Ok(resolved)
    }

    /// Where a source's files are, with the run and logged model they came from.
    fn locate_source(&self, source: &str) -> Result<Resolved, ApiError> {
        let refuse = |why: &str| ApiError::InvalidArgument(why.to_string());
        if let Some(rest) = source.strip_prefix("models:/") {
            if let Ok(id) = rest.parse::<ModelId>() {
                let model = self.logged_model(&id, false)?;
                return Ok(Resolved {
                    storage_location: model.artifact_uri,
                    run_id: model.source_run_id,
                    model_id: Some(id),
                });
            }
            let (name, version) = rest
                .rsplit_once('/')
                .ok_or_else(|| refuse("expected models:/<model id> or models:/<name>/<version>"))?;
            let other = self.model_version(name, drover_proto::models::parse_version(version)?)?;
            return Ok(Resolved {
                storage_location: other.storage_location,
                run_id: other.run_id,
                model_id: other.model_id,
            });
        }
        if let Some(rest) = source.strip_prefix("runs:/") {
            let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
            let run = self.run_info(run.parse()?)?;
            let path = safe_relative(path)?;
            let mut location = run.artifact_uri.trim_end_matches('/').to_string();
            if !path.as_os_str().is_empty() {
                location = format!("{location}/{}", path.display());
            }
            return Ok(Resolved {
                storage_location: location,
                run_id: Some(run.run_id),
                model_id: None,
            });
        }
        if let Some(path) = source.strip_prefix("mlflow-artifacts:/") {
            let relative = safe_relative(path.trim_start_matches('/'))?;
            let location = format!("mlflow-artifacts:/{}", relative.display());
            let under = |root: &str| {
                let root = root.trim_end_matches('/');
                location == root || location.starts_with(&format!("{root}/"))
            };
            let parts: Vec<&str> = relative.to_str().unwrap_or("").split('/').collect();
            let resolved = match parts.as_slice() {
                [_, "models", id, "artifacts", ..] => {
                    let model = self.logged_model(&id.parse()?, false)?;
                    under(&model.artifact_uri).then(|| Resolved {
                        storage_location: location.clone(),
                        run_id: model.source_run_id,
                        model_id: Some(model.model_id),
                    })
                }
                [_, run, "artifacts", ..] => {
                    let run = self.run_info(run.parse()?)?;
                    under(&run.artifact_uri).then(|| Resolved {
                        storage_location: location.clone(),
                        run_id: Some(run.run_id),
                        model_id: None,
                    })
                }
                _ => None,
            };
            return resolved.ok_or_else(|| {
                refuse("it is not under a run's or a logged model's artifact root")
            });
        }
        Err(refuse(
            "drover registers files it holds: give models:/<model id>, models:/<name>/<version>, runs:/<run id>/<path> or an mlflow-artifacts:/ URI",
        ))
    }

    pub fn model_version(&self, name: &str, version: u64) -> Result<ModelVersion, ApiError> {
        validate_model_name(name)?;
        let value = self.db().get(keys::model_version(name, version)).map_err(storage_error)?;
        decode(&value.ok_or_else(|| version_not_found(name, version))?, "model version")
    }

    /// The versions of the model `name`, or of every model, by name then number.
    pub fn model_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>, ApiError> {
        let prefix = name.map_or_else(|| keys::MODEL_VERSION.to_vec(), keys::model_versions);
        let mut versions = Vec::new();
        for entry in self.db().scan_prefix(prefix) {
            let (_, value) = entry.map_err(storage_error)?;
            versions.push(decode(&value, "model version")?);
        }
        Ok(versions)
    }

    /// Changes one version under the write lock; `touch_model` also marks its registered
    /// model updated.
    async fn change_model_version(
        &self,
        name: &str,
        version: u64,
        touch_model: bool,
        change: impl FnOnce(&mut ModelVersion, &mut RegisteredModel, &mut Batch) -> Result<(), ApiError>,
    ) -> Result<ModelVersion, ApiError> {
        let version = {
            let _guard = self.write_guard();
            let mut model = self.registered_model(name)?;
            let mut version = self.model_version(name, version)?;
            let mut batch = Batch::default();
            change(&mut version, &mut model, &mut batch)?;
            let now = now_ms();
            version.last_updated_time_ms = now;
            if touch_model {
                model.last_updated_time_ms = now;
            }
            batch.insert(keys::model_version(name, version.version), encode(&version));
            batch.insert(keys::registered_model(name), encode(&model));
            self.db().apply_batch(batch).map_err(storage_error)?;
            version
        };
        self.durable().await?;
        Ok(version)
    }

    pub async fn update_model_version(
        &self,
        name: &str,
        version: u64,
        description: String,
    ) -> Result<ModelVersion, ApiError> {
        check_description(&description)?;
        self.change_model_version(name, version, false, |version, _, _| {
            version.description = description;
            Ok(())
        })
        .await
    }

    /// Moves a version to `stage`; with `archive_existing`, the other versions in that stage
    /// (Staging or Production) move to Archived.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: u64,
        stage: Stage,
        archive_existing: bool,
    ) -> Result<ModelVersion, ApiError> {
        if archive_existing && !matches!(stage, Stage::Staging | Stage::Production) {
            return Err(ApiError::InvalidArgument(format!(
                "archive_existing_versions applies to Staging and Production, not {}",
                stage.as_str()
            )));
        }
        self.change_model_version(name, version, true, |version, _, batch| {
            version.stage = stage;
            if archive_existing {
                for mut other in self.model_versions(Some(name))? {
                    if other.version != version.version && other.stage == stage {
                        other.stage = Stage::Archived;
                        other.last_updated_time_ms = now_ms();
                        batch.insert(keys::model_version(name, other.version), encode(&other));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: u64,
        tag: Tag,
    ) -> Result<(), ApiError> {
        validate::tags([&tag])?;
        self.change_model_version(name, version, false, |version, _, _| {
            upsert_tag(&mut version.tags, tag);
            Ok(())
        })
        .await
        .map(drop)
    }

    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: u64,
        key: &str,
    ) -> Result<(), ApiError> {
        self.change_model_version(name, version, false, |version, _, _| {
            version.tags.retain(|tag| tag.key != key);
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Deletes a version and, as MLflow does, the aliases that pointed at it. Its number is
    /// never given again.
    pub async fn delete_model_version(&self, name: &str, version: u64) -> Result<(), ApiError> {
        {
            let _guard = self.write_guard();
            let mut model = self.registered_model(name)?;
            self.model_version(name, version)?;
            model.aliases.retain(|_, aliased| *aliased != version);
            model.last_updated_time_ms = now_ms();
            let mut batch = Batch::default();
            batch.remove(keys::model_version(name, version));
            batch.insert(keys::registered_model(name), encode(&model));
            self.db().apply_batch(batch).map_err(storage_error)?;
        }
        self.durable().await
    }
}

fn upsert_tag(tags: &mut Vec<Tag>, tag: Tag) {
    match tags.iter_mut().find(|existing| existing.key == tag.key) {
        Some(existing) => existing.value = tag.value,
        None => tags.push(tag),
    }
}

#[cfg(test)]
mod tests {
    use drover_proto::domain::{CreateRun, DEFAULT_EXPERIMENT_ID, RunStatus};
    use drover_proto::models::CreateLoggedModel;

    use super::*;

    fn version_of(name: &str, source: String) -> CreateModelVersion {
        CreateModelVersion {
            name: name.to_string(),
            source,
            run_id: None,
            model_id: None,
            tags: Vec::new(),
            run_link: String::new(),
            description: String::new(),
        }
    }

    async fn logged_model(store: &Store) -> (RunId, ModelId) {
        let run = store
            .create_run(CreateRun {
                experiment_id: DEFAULT_EXPERIMENT_ID,
                run_name: None,
                user_id: "u".into(),
                start_time_ms: None,
                tags: Vec::new(),
                status: RunStatus::Running,
            })
            .await
            .expect("a run");
        let model = store
            .create_logged_model(CreateLoggedModel {
                experiment_id: DEFAULT_EXPERIMENT_ID,
                name: Some("model".into()),
                model_type: String::new(),
                source_run_id: Some(run.info.run_id),
                params: Vec::new(),
                tags: Vec::new(),
            })
            .await
            .expect("a logged model");
        (run.info.run_id, model.model_id)
    }

    #[tokio::test]
    async fn concurrent_registrations_get_distinct_numbers_never_reused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("the store opens");
        let (run_id, model_id) = logged_model(&store).await;
        store.create_registered_model("M", Vec::new(), String::new()).await.expect("created");
        let registrations = (0..8).map(|_| {
            let store = store.clone();
            let source = format!("models:/{model_id}");
            tokio::spawn(async move { store.create_model_version(version_of("M", source)).await })
        });
        let mut numbers = Vec::new();
        for registration in registrations {
            let version = registration.await.expect("joined").expect("registered");
            assert_eq!(version.run_id, Some(run_id), "the run comes from the logged model");
            numbers.push(version.version);
        }
        numbers.sort();
        assert_eq!(numbers, (1..=8).collect::<Vec<_>>());

        store.set_alias("M", "champion", 8).await.expect("aliased");
        store.delete_model_version("M", 8).await.expect("deleted");
        assert!(store.registered_model("M").expect("there").aliases.is_empty());
        let source = format!("runs:/{run_id}/model");
        let next = store.create_model_version(version_of("M", source)).await.expect("registered");
        assert_eq!(next.version, 9, "a deleted version's number stays taken");
        let tag = store.logged_model(&model_id, false).expect("there").tags;
        let registrations = tag.iter().find(|tag| tag.key == "mlflow.modelVersions").expect("tag");
        assert_eq!(
            serde_json::from_str::<Vec<serde_json::Value>>(&registrations.value)
                .expect("json")
                .len(),
            8
        );
    }

    #[tokio::test]
    async fn sources_outside_the_store_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("the store opens");
        let (run_id, model_id) = logged_model(&store).await;
        store.create_registered_model("M", Vec::new(), String::new()).await.expect("created");
        let model_root = store.logged_model(&model_id, false).expect("there").artifact_uri;
        for source in [
            "/etc/passwd".to_string(),
            "s3://bucket/model".to_string(),
            "mlflow-artifacts:/../etc".to_string(),
            format!("mlflow-artifacts:/0/{run_id}/other/x"),
            format!("mlflow-artifacts:/0/models/{}/artifacts", ModelId::random()),
            format!("runs:/{run_id}/../../etc"),
            format!("models:/{}", ModelId::random()),
            "models:/M/7".to_string(),
        ] {
            let refused = store.create_model_version(version_of("M", source.clone())).await;
            assert!(refused.is_err(), "{source} was accepted");
        }
        // A run or a logged model given beside the source must be the source's.
        let (other_run, other_model) = logged_model(&store).await;
        let forged = CreateModelVersion {
            run_id: Some(other_run),
            ..version_of("M", format!("models:/{model_id}"))
        };
        assert!(store.create_model_version(forged).await.is_err(), "a forged run was accepted");
        let mismatched = CreateModelVersion {
            model_id: Some(other_model.clone()),
            ..version_of("M", format!("runs:/{run_id}/model"))
        };
        assert!(store.create_model_version(mismatched).await.is_err(), "a forged model");
        // A run may link metrics and outputs to its own models only.
        let metric = drover_proto::models::ModelMetric {
            key: "acc".into(),
            value: 1.0,
            timestamp_ms: 0,
            step: 0,
            run_id,
            dataset_name: None,
            dataset_digest: None,
        };
        assert!(store.log_model_metrics(vec![(other_model.clone(), metric)]).await.is_err());
        assert!(store.log_run_outputs(run_id, vec![(other_model, 0)]).await.is_err());
        assert!(store.model_versions(Some("M")).expect("read").is_empty());
        assert_eq!(store.registered_model("M").expect("there").next_version, 1);
        for source in [
            format!("{model_root}/MLmodel"),
            format!("mlflow-artifacts:/0/{run_id}/artifacts/model"),
            format!("runs:/{run_id}/model"),
        ] {
            store.create_model_version(version_of("M", source.clone())).await.expect(&source);
        }
        let copy = store.create_model_version(version_of("M", "models:/M/1".into())).await;
        assert_eq!(copy.expect("copied").storage_location, format!("{model_root}/MLmodel"));
    }
}
