//! Models between the wire and the domain: registered models, versions and logged models.

use crate::convert::tracking::parse_run_id;
use crate::domain::{Param, Tag};
use crate::error::ApiError;
use crate::models::{
    LoggedModel, LoggedModelStatus, LoggedModelView, ModelMetric, ModelVersion, RegisteredModel,
    RegisteredModelView, Stage,
};
use crate::pb;

fn tags_to_wire(tags: Vec<Tag>) -> Vec<pb::Tag> {
    tags.into_iter().map(|tag| pb::Tag { key: tag.key, value: tag.value }).collect()
}

fn tags_from_wire(tags: Vec<pb::Tag>) -> Vec<Tag> {
    tags.into_iter().map(|tag| Tag { key: tag.key, value: tag.value }).collect()
}

/// An optional id: empty on the wire means none.
fn optional<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, ApiError>,
) -> Result<Option<T>, ApiError> {
    if text.is_empty() { Ok(None) } else { parse(text).map(Some) }
}

impl From<ModelVersion> for pb::ModelVersion {
    fn from(version: ModelVersion) -> Self {
        pb::ModelVersion {
            name: version.name,
            version: version.version,
            creation_time_ms: version.creation_time_ms,
            last_updated_time_ms: version.last_updated_time_ms,
            description: version.description,
            source: version.source,
            storage_location: version.storage_location,
            run_id: version.run_id.map(|id| id.to_string()).unwrap_or_default(),
            model_id: version.model_id.map(|id| id.to_string()).unwrap_or_default(),
            stage: version.stage.as_str().to_string(),
            tags: tags_to_wire(version.tags),
            run_link: version.run_link,
        }
    }
}

impl TryFrom<pb::ModelVersion> for ModelVersion {
    type Error = ApiError;

    fn try_from(version: pb::ModelVersion) -> Result<Self, ApiError> {
        Ok(ModelVersion {
            run_id: optional(&version.run_id, parse_run_id)?,
            model_id: optional(&version.model_id, str::parse)?,
            stage: Stage::parse(&version.stage)?,
            name: version.name,
            version: version.version,
            creation_time_ms: version.creation_time_ms,
            last_updated_time_ms: version.last_updated_time_ms,
            description: version.description,
            source: version.source,
            storage_location: version.storage_location,
            tags: tags_from_wire(version.tags),
            run_link: version.run_link,
        })
    }
}

impl From<RegisteredModelView> for pb::RegisteredModel {
    fn from(view: RegisteredModelView) -> Self {
        let model = view.model;
        pb::RegisteredModel {
            name: model.name,
            creation_time_ms: model.creation_time_ms,
            last_updated_time_ms: model.last_updated_time_ms,
            description: model.description,
            tags: tags_to_wire(model.tags),
            aliases: model.aliases.into_iter().collect(),
            next_version: model.next_version,
            latest_versions: view.latest_versions.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::RegisteredModel> for RegisteredModelView {
    type Error = ApiError;

    fn try_from(model: pb::RegisteredModel) -> Result<Self, ApiError> {
        let latest_versions = model
            .latest_versions
            .into_iter()
            .map(ModelVersion::try_from)
            .collect::<Result<_, _>>()?;
        Ok(RegisteredModelView {
            model: RegisteredModel {
                name: model.name,
                creation_time_ms: model.creation_time_ms,
                last_updated_time_ms: model.last_updated_time_ms,
                description: model.description,
                tags: tags_from_wire(model.tags),
                aliases: model.aliases.into_iter().collect(),
                next_version: model.next_version,
            },
            latest_versions,
        })
    }
}

impl From<ModelMetric> for pb::ModelMetric {
    fn from(metric: ModelMetric) -> Self {
        pb::ModelMetric {
            key: metric.key,
            value: metric.value,
            timestamp_ms: metric.timestamp_ms,
            step: metric.step,
            run_id: metric.run_id.to_string(),
            dataset_name: metric.dataset_name,
            dataset_digest: metric.dataset_digest,
        }
    }
}

impl TryFrom<pb::ModelMetric> for ModelMetric {
    type Error = ApiError;

    fn try_from(metric: pb::ModelMetric) -> Result<Self, ApiError> {
        Ok(ModelMetric {
            run_id: parse_run_id(&metric.run_id)?,
            key: metric.key,
            value: metric.value,
            timestamp_ms: metric.timestamp_ms,
            step: metric.step,
            dataset_name: metric.dataset_name,
            dataset_digest: metric.dataset_digest,
        })
    }
}

impl From<LoggedModelView> for pb::LoggedModel {
    fn from(view: LoggedModelView) -> Self {
        let model = view.model;
        pb::LoggedModel {
            model_id: model.model_id.to_string(),
            experiment_id: model.experiment_id.to_string(),
            name: model.name,
            artifact_uri: model.artifact_uri,
            status: model.status.as_str().to_string(),
            status_message: model.status_message,
            model_type: model.model_type,
            source_run_id: model.source_run_id.map(|id| id.to_string()).unwrap_or_default(),
            creation_time_ms: model.creation_time_ms,
            last_updated_time_ms: model.last_updated_time_ms,
            deleted: model.deleted,
            tags: tags_to_wire(model.tags),
            params: model
                .params
                .into_iter()
                .map(|param| pb::Param { key: param.key, value: param.value })
                .collect(),
            metrics: view.metrics.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::LoggedModel> for LoggedModelView {
    type Error = ApiError;

    fn try_from(model: pb::LoggedModel) -> Result<Self, ApiError> {
        let metrics =
            model.metrics.into_iter().map(ModelMetric::try_from).collect::<Result<_, _>>()?;
        Ok(LoggedModelView {
            model: LoggedModel {
                model_id: model.model_id.parse()?,
                experiment_id: model.experiment_id.parse()?,
                name: model.name,
                artifact_uri: model.artifact_uri,
                status: LoggedModelStatus::parse(&model.status)?,
                status_message: model.status_message,
                model_type: model.model_type,
                source_run_id: optional(&model.source_run_id, parse_run_id)?,
                creation_time_ms: model.creation_time_ms,
                last_updated_time_ms: model.last_updated_time_ms,
                deleted: model.deleted,
                tags: tags_from_wire(model.tags),
                params: model
                    .params
                    .into_iter()
                    .map(|param| Param { key: param.key, value: param.value })
                    .collect(),
            },
            metrics,
        })
    }
}
