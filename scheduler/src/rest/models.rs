//! MLflow 3's logged-model endpoints (`/mlflow/logged-models...`), a run's outputs, and the
//! JSON shape of a logged model.

use axum::Json;
use axum::extract::{Path as UrlPath, RawQuery, State};
use drover_proto::ApiError;
use drover_proto::domain::ExperimentRef;
use drover_proto::models::{
    CreateLoggedModel, LoggedModel, LoggedModelStatus, ModelId, ModelMetric,
};
use drover_proto::service::Tracking;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{OneOrMany, RunRef, TagJson, lenient_i64, required};
use super::{MlflowRequest, RestResult, query_object};
use crate::search::{DatasetRef, LoggedModelOrder};
use crate::service::Scheduler;
use crate::service::models::LoggedModelQuery;

fn key_values<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Value> {
    pairs.map(|(key, value)| json!({ "key": key, "value": value })).collect()
}

fn metric_json(metric: &ModelMetric, model_id: &ModelId) -> Value {
    let mut value = json!({
        "key": metric.key,
        "value": super::json::finite_or_text(metric.value),
        "timestamp": metric.timestamp_ms,
        "step": metric.step,
        "model_id": model_id.as_str(),
        "run_id": metric.run_id.to_string(),
    });
    if let Some(name) = &metric.dataset_name {
        value["dataset_name"] = name.as_str().into();
    }
    if let Some(digest) = &metric.dataset_digest {
        value["dataset_digest"] = digest.as_str().into();
    }
    value
}

/// A logged model in MLflow's shape: `info` and `data`.
pub fn logged_model_json(model: &LoggedModel, metrics: &[ModelMetric]) -> Value {
    let mut info = json!({
        "model_id": model.model_id.as_str(),
        "experiment_id": model.experiment_id.to_string(),
        "name": model.name,
        "creation_timestamp_ms": model.creation_time_ms,
        "last_updated_timestamp_ms": model.last_updated_time_ms,
        "artifact_uri": model.artifact_uri,
        "status": model.status.as_str(),
        "model_type": model.model_type,
        "source_run_id": model.source_run_id.map(|run| run.to_string()).unwrap_or_default(),
        "tags": key_values(model.tags.iter().map(|tag| (tag.key.as_str(), tag.value.as_str()))),
    });
    if let Some(message) = &model.status_message {
        info["status_message"] = message.as_str().into();
    }
    json!({
        "info": info,
        "data": {
            "params": key_values(model.params.iter().map(|p| (p.key.as_str(), p.value.as_str()))),
            "metrics": metrics.iter().map(|metric| metric_json(metric, &model.model_id)).collect::<Vec<_>>(),
        },
    })
}

fn model_id(text: &str) -> Result<ModelId, ApiError> {
    text.parse()
}

async fn model_answer(scheduler: &Scheduler, model: &LoggedModel) -> RestResult {
    let metrics = scheduler.models().logged_model_metrics(&model.model_id)?;
    Ok(Json(json!({ "model": logged_model_json(model, &metrics) })))
}

#[derive(Deserialize)]
pub struct CreateBody {
    experiment_id: Option<String>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<TagJson>,
    #[serde(default)]
    tags: Vec<TagJson>,
}

/// `POST /logged-models`
pub async fn create(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: CreateBody = request.parse()?;
    let request = CreateLoggedModel {
        experiment_id: required(body.experiment_id, "experiment_id")?.parse()?,
        name: body.name,
        model_type: body.model_type.unwrap_or_default(),
        source_run_id: body
            .source_run_id
            .filter(|id| !id.is_empty())
            .map(|id| id.parse())
            .transpose()?,
        params: body.params.into_iter().map(TagJson::into_param).collect::<Result<_, _>>()?,
        tags: body.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?,
    };
    let model = scheduler.models().create_logged_model(request).await?;
    model_answer(&scheduler, &model).await
}

/// `GET /logged-models/{id}` (`allow_deleted=true` shows a deleted one).
pub async fn get(
    State(scheduler): State<Scheduler>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> RestResult {
    let query = query_object(query.as_deref().unwrap_or(""));
    let allow_deleted =
        query["allow_deleted"].as_str().is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let model = scheduler.models().logged_model(&model_id(&id)?, allow_deleted)?;
    model_answer(&scheduler, &model).await
}

/// `PATCH /logged-models/{id}`: finalizes the model as READY or UPLOAD_FAILED.
pub async fn finalize(
    State(scheduler): State<Scheduler>,
    UrlPath(id): UrlPath<String>,
    request: MlflowRequest,
) -> RestResult {
    #[derive(Deserialize)]
    struct Body {
        status: Option<Value>,
    }
    let body: Body = request.parse()?;
    let status = match required(body.status, "status")? {
        Value::String(text) => LoggedModelStatus::parse(&text)?,
        Value::Number(number) => LoggedModelStatus::parse(&number.to_string())?,
        other => LoggedModelStatus::parse(&other.to_string())?,
    };
    let model = scheduler.models().finalize_logged_model(&model_id(&id)?, status).await?;
    model_answer(&scheduler, &model).await
}

/// `DELETE /logged-models/{id}`
pub async fn delete(
    State(scheduler): State<Scheduler>,
    UrlPath(id): UrlPath<String>,
) -> RestResult {
    scheduler.models().delete_logged_model(&model_id(&id)?).await?;
    Ok(Json(json!({})))
}

/// The body of a call that adds tags or params to a model.
#[derive(Deserialize)]
pub struct PairsBody {
    #[serde(default)]
    tags: Vec<TagJson>,
    #[serde(default)]
    params: Vec<TagJson>,
}

/// `PATCH /logged-models/{id}/tags`
pub async fn set_tags(
    State(scheduler): State<Scheduler>,
    UrlPath(id): UrlPath<String>,
    request: MlflowRequest,
) -> RestResult {
    let body: PairsBody = request.parse()?;
    let tags = body.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?;
    scheduler.models().set_logged_model_tags(&model_id(&id)?, tags).await?;
    Ok(Json(json!({})))
}

/// `DELETE /logged-models/{id}/tags/{key}` (the client does not encode the key).
pub async fn delete_tag(
    State(scheduler): State<Scheduler>,
    UrlPath((id, key)): UrlPath<(String, String)>,
) -> RestResult {
    scheduler.models().delete_logged_model_tag(&model_id(&id)?, &key).await?;
    Ok(Json(json!({})))
}

/// `POST /logged-models/{id}/params`
pub async fn log_params(
    State(scheduler): State<Scheduler>,
    UrlPath(id): UrlPath<String>,
    request: MlflowRequest,
) -> RestResult {
    let body: PairsBody = request.parse()?;
    let params = body.params.into_iter().map(TagJson::into_param).collect::<Result<_, _>>()?;
    scheduler.models().log_logged_model_params(&model_id(&id)?, params).await?;
    Ok(Json(json!({})))
}

/// `GET /logged-models/{id}/artifacts/directories?artifact_directory_path=`: a directory of
/// the model's files, as MLflow's UI lists them.
pub async fn list_artifacts(
    State(scheduler): State<Scheduler>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> RestResult {
    let query = query_object(query.as_deref().unwrap_or(""));
    let model = scheduler.models().logged_model(&model_id(&id)?, false)?;
    let root = model.artifact_uri.strip_prefix("mlflow-artifacts:/").ok_or_else(|| {
        ApiError::FailedPrecondition(format!(
            "the files of logged model '{id}' are not in drover's artifact store"
        ))
    })?;
    let path = query["artifact_directory_path"].as_str().unwrap_or("").trim_matches('/');
    crate::artifacts::safe_relative(path)?;
    let directory = if path.is_empty() { root.to_string() } else { format!("{root}/{path}") };
    let files: Vec<Value> = scheduler
        .artifacts()
        .list(&directory)
        .await?
        .into_iter()
        .map(|file| {
            let path = if path.is_empty() { file.path } else { format!("{path}/{}", file.path) };
            if file.is_dir {
                json!({ "path": path, "is_dir": true })
            } else {
                json!({ "path": path, "is_dir": false, "file_size": file.size })
            }
        })
        .collect();
    Ok(Json(json!({ "root_uri": model.artifact_uri, "files": files })))
}

#[derive(Deserialize)]
struct DatasetJson {
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

impl DatasetJson {
    fn into_ref(self) -> Result<DatasetRef, ApiError> {
        Ok(DatasetRef {
            name: required(self.dataset_name, "dataset_name")?,
            digest: self.dataset_digest.filter(|digest| !digest.is_empty()),
        })
    }
}

#[derive(Deserialize)]
struct OrderJson {
    field_name: Option<String>,
    ascending: Option<bool>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
pub struct SearchBody {
    #[serde(default)]
    experiment_ids: OneOrMany,
    filter: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetJson>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<OrderJson>,
    page_token: Option<String>,
}

/// `POST /logged-models/search`
pub async fn search(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: SearchBody = request.parse()?;
    let experiment_ids = body.experiment_ids.parse_each()?;
    for id in &experiment_ids {
        scheduler.get_experiment(ExperimentRef::Id(*id)).await?;
    }
    let order_by = body
        .order_by
        .into_iter()
        .map(|order| {
            let dataset = match order.dataset_name {
                Some(name) => Some(DatasetRef { name, digest: order.dataset_digest }),
                None => None,
            };
            Ok(LoggedModelOrder {
                field: required(order.field_name, "field_name")?,
                ascending: order.ascending.unwrap_or(true),
                dataset,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let query = LoggedModelQuery {
        experiment_ids,
        filter: body.filter.unwrap_or_default(),
        datasets: body.datasets.into_iter().map(DatasetJson::into_ref).collect::<Result<_, _>>()?,
        order_by,
        max_results: body.max_results,
        page_token: body.page_token,
    };
    let page = scheduler.search_logged_models(query).await?;
    let models: Vec<Value> =
        page.items.iter().map(|(model, metrics)| logged_model_json(model, metrics)).collect();
    let mut answer = json!({ "models": models });
    if let Some(token) = page.next_page_token {
        answer["next_page_token"] = token.into();
    }
    Ok(Json(answer))
}

/// `POST /runs/outputs`: the models a run produced.
pub async fn log_outputs(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    #[derive(Deserialize)]
    struct Output {
        model_id: Option<String>,
        #[serde(default, deserialize_with = "lenient_i64")]
        step: Option<i64>,
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(flatten)]
        run: RunRef,
        #[serde(default)]
        models: Vec<Output>,
    }
    let body: Body = request.parse()?;
    let outputs = body
        .models
        .into_iter()
        .map(|output| {
            Ok((model_id(&required(output.model_id, "model_id")?)?, output.step.unwrap_or(0)))
        })
        .collect::<Result<_, ApiError>>()?;
    scheduler.models().log_run_outputs(body.run.resolve()?, outputs).await?;
    Ok(Json(json!({})))
}

/// A run's outputs in MLflow's shape, for `runs/get`.
pub fn outputs_json(outputs: &[(ModelId, i64)]) -> Value {
    let models: Vec<Value> =
        outputs.iter().map(|(id, step)| json!({ "model_id": id.as_str(), "step": step })).collect();
    if models.is_empty() { json!({}) } else { json!({ "model_outputs": models }) }
}
