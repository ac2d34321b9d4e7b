//! MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>`: PUT, GET, DELETE,
//! and listing with `?path=`) and `artifacts/list`, over the scheduler's artifact store.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path as UrlPath, RawQuery, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use drover_proto::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::RunRef;
use super::{MlflowRequest, RestResult, query_object};
use crate::artifacts::FileInfo;
use crate::service::Scheduler;

/// The artifact path in a URL, or MLflow's JSON error for one that is not a path (bytes that
/// are not UTF-8, say).
pub struct ArtifactPath(String);

impl<S: Send + Sync> FromRequestParts<S> for ArtifactPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match UrlPath::<String>::from_request_parts(parts, state).await {
            Ok(UrlPath(path)) => Ok(ArtifactPath(path)),
            Err(rejection) => Err(ApiError::InvalidArgument(format!(
                "invalid artifact path: {}",
                rejection.body_text()
            ))),
        }
    }
}

fn file_info(file: FileInfo) -> Value {
    if file.is_dir {
        json!({ "path": file.path, "is_dir": true })
    } else {
        json!({ "path": file.path, "is_dir": false, "file_size": file.size })
    }
}

/// `GET .../mlflow-artifacts/artifacts?path=<dir>`: the entries of a directory, by name.
pub async fn list(State(scheduler): State<Scheduler>, RawQuery(query): RawQuery) -> RestResult {
    let query = query_object(query.as_deref().unwrap_or(""));
    let path = query["path"].as_str().unwrap_or("");
    let files = scheduler.artifacts().list(path).await?;
    Ok(Json(json!({ "files": files.into_iter().map(file_info).collect::<Vec<_>>() })))
}

/// `PUT .../mlflow-artifacts/artifacts/<path>`: stores the body as that file.
pub async fn upload(
    State(scheduler): State<Scheduler>,
    ArtifactPath(path): ArtifactPath,
    body: Body,
) -> RestResult {
    scheduler.artifacts().upload(&path, body.into_data_stream()).await?;
    Ok(Json(json!({})))
}

/// `GET .../mlflow-artifacts/artifacts/<path>`: the file's bytes.
pub async fn download(
    State(scheduler): State<Scheduler>,
    ArtifactPath(path): ArtifactPath,
) -> Result<Response, ApiError> {
    let (file, size) = scheduler.artifacts().open_file(&path).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_LENGTH, &size.to_string()),
            // A run's files are its own: never a page of this origin, whatever they hold.
            (header::CONTENT_DISPOSITION, "attachment"),
            (header::CONTENT_SECURITY_POLICY, "sandbox"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// `DELETE .../mlflow-artifacts/artifacts/<path>`: removes a file or directory.
pub async fn remove(
    State(scheduler): State<Scheduler>,
    ArtifactPath(path): ArtifactPath,
) -> RestResult {
    scheduler.artifacts().remove(&path).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct ListRunArtifactsBody {
    #[serde(flatten)]
    run: RunRef,
    path: Option<String>,
}

/// `GET .../mlflow/artifacts/list?run_id=&path=`: a run's artifacts, paths relative to its root.
pub async fn list_run_artifacts(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: ListRunArtifactsBody = request.parse()?;
    let run_id = body.run.resolve()?;
    let (root_uri, files) =
        scheduler.run_artifacts(run_id, body.path.as_deref().unwrap_or("")).await?;
    let files: Vec<Value> = files.into_iter().map(file_info).collect();
    Ok(Json(json!({ "root_uri": root_uri, "files": files })))
}
