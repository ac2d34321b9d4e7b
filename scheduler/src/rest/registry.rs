//! MLflow's model registry endpoints (`/mlflow/registered-models/...` and
//! `/mlflow/model-versions/...`) and the JSON shapes of registered models and versions.
//! Version numbers travel as strings, as the official client requires.

use axum::Json;
use axum::extract::State;
use drover_proto::ApiError;
use drover_proto::models::{
    CreateModelVersion, ModelVersion, RegisteredModel, Stage, parse_version,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{OneOrMany, TagJson, lenient_i64, required};
use super::{MlflowRequest, RestResult};
use crate::service::Scheduler;
use crate::service::models::ModelQuery;

fn ok() -> RestResult {
    Ok(Json(json!({})))
}

fn tags_json(tags: &[drover_proto::domain::Tag]) -> Vec<Value> {
    tags.iter().map(|tag| json!({ "key": tag.key, "value": tag.value })).collect()
}

/// A version in MLflow's shape; `aliases` are given where MLflow's answers carry them.
pub fn version_json(version: &ModelVersion, aliases: Option<&RegisteredModel>) -> Value {
    let mut value = json!({
        "name": version.name,
        "version": version.version.to_string(),
        "creation_timestamp": version.creation_time_ms,
        "last_updated_timestamp": version.last_updated_time_ms,
        "current_stage": version.stage.as_str(),
        "description": version.description,
        "source": version.source,
        "run_id": version.run_id.map(|run| run.to_string()).unwrap_or_default(),
        "status": "READY",
        "run_link": version.run_link,
        "tags": tags_json(&version.tags),
    });
    if let Some(id) = &version.model_id {
        value["model_id"] = id.as_str().into();
    }
    if let Some(model) = aliases {
        let names: Vec<&str> = model
            .aliases
            .iter()
            .filter(|(_, aliased)| **aliased == version.version)
            .map(|(alias, _)| alias.as_str())
            .collect();
        value["aliases"] = json!(names);
    }
    value
}

/// A registered model in MLflow's shape, with its latest version per stage.
pub fn registered_model_json(model: &RegisteredModel, latest: &[ModelVersion]) -> Value {
    let aliases: Vec<Value> = model
        .aliases
        .iter()
        .map(|(alias, version)| json!({ "alias": alias, "version": version.to_string() }))
        .collect();
    json!({
        "name": model.name,
        "creation_timestamp": model.creation_time_ms,
        "last_updated_timestamp": model.last_updated_time_ms,
        "description": model.description,
        "latest_versions": latest.iter().map(|version| version_json(version, None)).collect::<Vec<_>>(),
        "tags": tags_json(&model.tags),
        "aliases": aliases,
    })
}

/// The fields registry requests carry, each optional until a handler requires it.
#[derive(Deserialize, Default)]
pub struct RegistryBody {
    name: Option<String>,
    new_name: Option<String>,
    description: Option<String>,
    version: Option<Value>,
    key: Option<String>,
    value: Option<String>,
    alias: Option<String>,
    stage: Option<String>,
    archive_existing_versions: Option<Value>,
    source: Option<String>,
    run_id: Option<String>,
    run_link: Option<String>,
    model_id: Option<String>,
    #[serde(default)]
    tags: Vec<TagJson>,
    #[serde(default)]
    stages: OneOrMany,
    filter: Option<String>,
    #[serde(default)]
    order_by: OneOrMany,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

impl RegistryBody {
    fn name(&self) -> Result<&str, ApiError> {
        required(self.name.as_deref(), "name")
    }

    fn version(&self) -> Result<u64, ApiError> {
        match required(self.version.as_ref(), "version")? {
            Value::String(text) => parse_version(text),
            other => parse_version(&other.to_string()),
        }
    }

    fn tags(&mut self) -> Result<Vec<drover_proto::domain::Tag>, ApiError> {
        std::mem::take(&mut self.tags).into_iter().map(TagJson::into_tag).collect()
    }

    fn query(self) -> ModelQuery {
        ModelQuery {
            filter: self.filter.unwrap_or_default(),
            order_by: self.order_by.into_vec(),
            max_results: self.max_results,
            page_token: self.page_token,
        }
    }
}

async fn model_answer(scheduler: &Scheduler, model: &RegisteredModel) -> RestResult {
    let latest = scheduler.models().latest_versions(&model.name, &[])?;
    Ok(Json(json!({ "registered_model": registered_model_json(model, &latest) })))
}

fn version_answer(scheduler: &Scheduler, version: &ModelVersion) -> RestResult {
    // A model deleted since the version was read leaves it without aliases.
    let model = scheduler.models().registered_model(&version.name).ok();
    let mut answer = version_json(version, model.as_ref());
    if model.is_none() {
        answer["aliases"] = json!([]);
    }
    Ok(Json(json!({ "model_version": answer })))
}

pub async fn create_model(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let mut body: RegistryBody = request.parse()?;
    let tags = body.tags()?;
    let name = body.name()?;
    let description = body.description.clone().unwrap_or_default();
    let model = scheduler.models().create_registered_model(name, tags, description).await?;
    model_answer(&scheduler, &model).await
}

pub async fn get_model(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let model = scheduler.models().registered_model(body.name()?)?;
    model_answer(&scheduler, &model).await
}

pub async fn rename_model(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let new_name = required(body.new_name.as_deref(), "new_name")?;
    let model = scheduler.models().rename_registered_model(body.name()?, new_name).await?;
    model_answer(&scheduler, &model).await
}

pub async fn update_model(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let description = body.description.clone().unwrap_or_default();
    let model = scheduler.models().update_registered_model(body.name()?, description).await?;
    model_answer(&scheduler, &model).await
}

pub async fn delete_model(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    scheduler.models().delete_registered_model(body.name()?).await?;
    ok()
}

pub async fn search_models(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let page = scheduler.find_registered_models(body.query()).await?;
    let models: Vec<Value> = page
        .items
        .iter()
        .map(|view| registered_model_json(&view.model, &view.latest_versions))
        .collect();
    let mut answer = json!({ "registered_models": models });
    if let Some(token) = page.next_page_token {
        answer["next_page_token"] = token.into();
    }
    Ok(Json(answer))
}

pub async fn latest_versions(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let mut body: RegistryBody = request.parse()?;
    let stages = std::mem::take(&mut body.stages).into_vec();
    let stages = stages.iter().map(|stage| Stage::parse(stage)).collect::<Result<Vec<_>, _>>()?;
    let name = body.name()?;
    let model = scheduler.models().registered_model(name)?;
    let versions = scheduler.models().latest_versions(name, &stages)?;
    let versions: Vec<Value> =
        versions.iter().map(|version| version_json(version, Some(&model))).collect();
    Ok(Json(json!({ "model_versions": versions })))
}

pub async fn set_model_tag(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let tag = TagJson { key: body.key.clone(), value: body.value.clone() }.into_tag()?;
    scheduler.models().set_registered_model_tag(body.name()?, tag).await?;
    ok()
}

pub async fn delete_model_tag(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let key = required(body.key.as_deref(), "key")?;
    scheduler.models().delete_registered_model_tag(body.name()?, key).await?;
    ok()
}

pub async fn set_alias(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let alias = required(body.alias.as_deref(), "alias")?;
    scheduler.models().set_alias(body.name()?, alias, body.version()?).await?;
    ok()
}

pub async fn delete_alias(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let alias = required(body.alias.as_deref(), "alias")?;
    scheduler.models().delete_alias(body.name()?, alias).await?;
    ok()
}

pub async fn get_by_alias(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let alias = required(body.alias.as_deref(), "alias")?;
    let version = scheduler.models().version_by_alias(body.name()?, alias)?;
    version_answer(&scheduler, &version)
}

pub async fn create_version(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let mut body: RegistryBody = request.parse()?;
    let tags = body.tags()?;
    let request = CreateModelVersion {
        name: body.name()?.to_string(),
        source: required(body.source, "source")?,
        run_id: body.run_id.filter(|id| !id.is_empty()).map(|id| id.parse()).transpose()?,
        model_id: body.model_id.filter(|id| !id.is_empty()).map(|id| id.parse()).transpose()?,
        tags,
        run_link: body.run_link.unwrap_or_default(),
        description: body.description.unwrap_or_default(),
    };
    let version = scheduler.models().create_model_version(request).await?;
    version_answer(&scheduler, &version)
}

pub async fn get_version(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let version = scheduler.models().model_version(body.name()?, body.version()?)?;
    version_answer(&scheduler, &version)
}

pub async fn update_version(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let description = body.description.clone().unwrap_or_default();
    let version =
        scheduler.models().update_model_version(body.name()?, body.version()?, description).await?;
    version_answer(&scheduler, &version)
}

pub async fn transition_stage(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let stage = Stage::parse(required(body.stage.as_deref(), "stage")?)?;
    let archive = match &body.archive_existing_versions {
        Some(Value::Bool(archive)) => *archive,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let version =
        scheduler.models().transition_stage(body.name()?, body.version()?, stage, archive).await?;
    version_answer(&scheduler, &version)
}

pub async fn delete_version(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    scheduler.models().delete_model_version(body.name()?, body.version()?).await?;
    ok()
}

pub async fn download_uri(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let version = scheduler.models().model_version(body.name()?, body.version()?)?;
    Ok(Json(json!({ "artifact_uri": version.storage_location })))
}

pub async fn search_versions(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let page = scheduler.search_model_versions(body.query()).await?;
    let versions: Vec<Value> =
        page.items.iter().map(|version| version_json(version, None)).collect();
    let mut answer = json!({ "model_versions": versions });
    if let Some(token) = page.next_page_token {
        answer["next_page_token"] = token.into();
    }
    Ok(Json(answer))
}

pub async fn set_version_tag(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let tag = TagJson { key: body.key.clone(), value: body.value.clone() }.into_tag()?;
    scheduler.models().set_model_version_tag(body.name()?, body.version()?, tag).await?;
    ok()
}

pub async fn delete_version_tag(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: RegistryBody = request.parse()?;
    let key = required(body.key.as_deref(), "key")?;
    scheduler.models().delete_model_version_tag(body.name()?, body.version()?, key).await?;
    ok()
}
