//! MLflow's REST API, served beside gRPC on the scheduler's one address, so the official
//! `mlflow` client (and anything else written for an MLflow tracking server) works unchanged:
//! `/api/2.0/mlflow/...` and `/ajax-api/2.0/mlflow/...` for tracking, and
//! `/api/2.0/mlflow-artifacts/artifacts/...` for the artifact proxy.

mod artifacts;
mod json;
mod models;
#[cfg(test)]
mod props;
mod registry;
mod tracking;
mod views;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use drover_proto::ApiError;
use serde_json::Value;

use crate::service::Scheduler;

/// Largest tracking request body accepted, as MLflow's limit.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A handler's answer: MLflow's JSON, or its error shape (`ApiError` answers as MLflow's
/// `{"error_code": ..., "message": ...}` with the matching HTTP status).
pub type RestResult = Result<axum::Json<Value>, ApiError>;

/// A request's parameters: the query string for GET and DELETE (repeated keys become
/// arrays), the JSON body otherwise.
pub enum MlflowRequest {
    Query(Value),
    /// Parsed straight into the endpoint's type: log calls carry thousands of points.
    Body(axum::body::Bytes),
}

impl<S: Send + Sync> FromRequest<S> for MlflowRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        if request.method() == Method::GET {
            return Ok(MlflowRequest::Query(query_object(request.uri().query().unwrap_or(""))));
        }
        // A DELETE carries its parameters in the query or, from the official client, in a
        // JSON body.
        let bodiless = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_none_or(|length| length == "0")
            && !request.headers().contains_key(axum::http::header::TRANSFER_ENCODING);
        if request.method() == Method::DELETE && bodiless {
            return Ok(MlflowRequest::Query(query_object(request.uri().query().unwrap_or(""))));
        }
        // A page on another site can send a form or plain text to any address without asking;
        // only JSON needs the browser to ask first (and this server never says yes). So a call
        // that changes the store must say it is JSON, as MLflow's server requires.
        let is_json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::InvalidArgument(
                "a request that changes the store must be sent as Content-Type: application/json"
                    .to_string(),
            ));
        }
        let query = request.uri().query().unwrap_or("").to_string();
        let bytes =
            axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await.map_err(|_| {
                ApiError::InvalidArgument(format!(
                    "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
                ))
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MlflowRequest::Query(query_object(&query)));
        }
        Ok(MlflowRequest::Body(bytes))
    }
}

impl MlflowRequest {
    /// Reads the parameters into `T`, with MLflow's error for malformed or ill-typed ones.
    pub fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        let parsed = match self {
            MlflowRequest::Query(value) => serde_json::from_value(value),
            MlflowRequest::Body(bytes) => serde_json::from_slice(&bytes),
        };
        parsed.map_err(|error| match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::InvalidArgument(format!("the request body is not valid JSON: {error}"))
            }
            _ => ApiError::InvalidArgument(format!("invalid request parameters: {error}")),
        })
    }
}

/// Decodes a query string into a JSON object of strings (arrays for repeated keys).
pub fn query_object(query: &str) -> Value {
    let mut object = serde_json::Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            let text = text.replace('+', " ");
            percent_encoding::percent_decode_str(&text).decode_utf8_lossy().into_owned()
        };
        let (key, value) = (decode(key), Value::String(decode(value)));
        match object.get_mut(&key) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                object.insert(key, value);
            }
        }
    }
    Value::Object(object)
}

/// The REST routes over `scheduler`.
pub fn router(scheduler: Scheduler) -> Router {
    let tracking = Router::new()
        .route("/experiments/create", post(tracking::create_experiment))
        .route("/experiments/get", get(tracking::get_experiment))
        .route("/experiments/get-by-name", get(tracking::get_experiment_by_name))
        .route(
            "/experiments/search",
            get(tracking::search_experiments).post(tracking::search_experiments),
        )
        .route("/experiments/update", post(tracking::update_experiment))
        .route("/experiments/delete", post(tracking::delete_experiment))
        .route("/experiments/restore", post(tracking::restore_experiment))
        .route("/experiments/set-experiment-tag", post(tracking::set_experiment_tag))
        .route("/runs/create", post(tracking::create_run))
        .route("/runs/get", get(tracking::get_run))
        .route("/runs/update", post(tracking::update_run))
        .route("/runs/delete", post(tracking::delete_run))
        .route("/runs/restore", post(tracking::restore_run))
        .route("/runs/search", get(tracking::search_runs).post(tracking::search_runs))
        .route("/runs/log-metric", post(tracking::log_metric))
        .route("/runs/log-parameter", post(tracking::log_parameter))
        .route("/runs/set-tag", post(tracking::set_tag))
        .route("/runs/delete-tag", post(tracking::delete_tag))
        .route("/runs/log-batch", post(tracking::log_batch))
        .route("/runs/log-inputs", post(tracking::log_inputs))
        .route("/metrics/get-history", get(tracking::get_metric_history))
        .route("/metrics/get-history-bulk-interval", get(tracking::get_history_bulk_interval))
        .route("/artifacts/list", get(artifacts::list_run_artifacts))
        .route("/runs/outputs", post(models::log_outputs))
        .route("/logged-models", post(models::create))
        .route("/logged-models/search", post(models::search))
        .route(
            "/logged-models/{model_id}",
            get(models::get).patch(models::finalize).delete(models::delete),
        )
        .route("/logged-models/{model_id}/tags", patch(models::set_tags))
        .route("/logged-models/{model_id}/tags/{*key}", delete(models::delete_tag))
        .route("/logged-models/{model_id}/params", post(models::log_params))
        .route("/logged-models/{model_id}/artifacts/directories", get(models::list_artifacts))
        .route("/registered-models/create", post(registry::create_model))
        .route("/registered-models/get", get(registry::get_model))
        .route("/registered-models/rename", post(registry::rename_model))
        .route("/registered-models/update", patch(registry::update_model))
        .route("/registered-models/delete", delete(registry::delete_model))
        .route("/registered-models/search", get(registry::search_models))
        .route(
            "/registered-models/get-latest-versions",
            get(registry::latest_versions).post(registry::latest_versions),
        )
        .route("/registered-models/set-tag", post(registry::set_model_tag))
        .route("/registered-models/delete-tag", delete(registry::delete_model_tag))
        .route(
            "/registered-models/alias",
            get(registry::get_by_alias).post(registry::set_alias).delete(registry::delete_alias),
        )
        .route("/model-versions/create", post(registry::create_version))
        .route("/model-versions/get", get(registry::get_version))
        .route("/model-versions/update", patch(registry::update_version))
        .route("/model-versions/transition-stage", post(registry::transition_stage))
        .route("/model-versions/delete", delete(registry::delete_version))
        .route("/model-versions/get-download-uri", get(registry::download_uri))
        .route("/model-versions/search", get(registry::search_versions))
        .route("/model-versions/set-tag", post(registry::set_version_tag))
        .route("/model-versions/delete-tag", delete(registry::delete_version_tag));
    let artifacts = Router::new()
        .route("/artifacts", get(artifacts::list))
        .route(
            "/artifacts/{*path}",
            get(artifacts::download).put(artifacts::upload).delete(artifacts::remove),
        )
        .route("/artifacts/", get(artifacts::list));
    let drover = Router::new()
        .route("/experiments", get(views::experiments))
        .route("/runs", get(views::runs))
        .route("/runs/{run_id}", get(views::run))
        .route("/runs/{run_id}/cancel", post(views::cancel_run))
        .route("/runs/{run_id}/log", get(views::log))
        .route("/runs/{run_id}/source-diff", get(views::source_diff))
        .route("/chart", get(views::chart))
        .route("/diff", get(views::diff))
        .route("/sweeps", get(views::sweeps))
        .route("/sweeps/{sweep_id}", get(views::sweep))
        .route("/sweeps/{sweep_id}/cancel", post(views::cancel_sweep))
        .route("/cluster", get(views::cluster))
        .route("/workers/{worker_id}/drain", post(views::drain_worker));
    let metrics = Router::new().route("/metrics", get(views::metrics));
    Router::new()
        .merge(metrics)
        .nest("/api/drover", drover)
        .nest("/api/2.0/mlflow", tracking.clone())
        .nest("/ajax-api/2.0/mlflow", tracking)
        .nest("/api/2.0/mlflow-artifacts", artifacts.clone())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifacts)
        .route("/health", get(|| async { "OK" }))
        .with_state(scheduler)
}

/// What an unknown path gets: gRPC's "unimplemented" for gRPC calls, MLflow's JSON 404 for
/// everything else.
pub async fn not_found(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no such method: {}", request.uri().path()))
            .into_http::<axum::body::Body>()
            .into_response();
    }
    let message = format!("no such endpoint: {} {}", request.method(), request.uri().path());
    ApiError::NotFound(message).into_response()
}
