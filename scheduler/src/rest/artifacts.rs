//! Run artifacts on disk under `<data dir>/artifacts`, served through MLflow's artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts/<path>`: PUT, GET, DELETE, and listing with
//! `?path=`) and listed by `artifacts/list`. Runs' artifact URIs have the form
//! `mlflow-artifacts:/<experiment>/<run>/artifacts`. No path can leave the artifact root.

use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use drover_proto::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use super::json::required;
use super::{MlflowRequest, RestError, RestResult, query_object};
use crate::scheduler::Scheduler;

/// The scheme of artifact URIs this scheduler serves.
pub const PROXY_SCHEME: &str = "mlflow-artifacts:";

/// The directory artifacts live under.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    pub fn open(data_dir: &Path) -> std::io::Result<ArtifactStore> {
        let root = data_dir.join("artifacts");
        std::fs::create_dir_all(&root)?;
        Ok(ArtifactStore { root: root.canonicalize()? })
    }

    /// The file or directory at `relative`, refusing any path that could leave the root.
    fn resolve(&self, relative: &str) -> Result<PathBuf, ApiError> {
        let clean = safe_relative(relative)?;
        let path = self.root.join(&clean);
        // Links inside the root must not lead out of it either.
        let mut existing = path.as_path();
        while !existing.exists() {
            existing = existing.parent().unwrap_or(&self.root);
        }
        let resolved =
            existing.canonicalize().map_err(|error| ApiError::Internal(error.to_string()))?;
        if !resolved.starts_with(&self.root) {
            return Err(ApiError::InvalidArgument(format!("invalid artifact path '{relative}'")));
        }
        Ok(path)
    }
}

/// Checks an artifact path: relative, made of plain names, and free of characters that
/// could smuggle a traversal past one round of decoding.
pub fn safe_relative(path: &str) -> Result<PathBuf, ApiError> {
    let refuse = |why: &str| {
        ApiError::InvalidArgument(format!(
            "invalid artifact path '{}': {why}",
            path.escape_default()
        ))
    };
    if path.is_empty() {
        return Ok(PathBuf::new());
    }
    if let Some(bad) =
        path.chars().find(|c| matches!(c, '\0' | '\\' | ';' | '#' | '%' | '?') || c.is_control())
    {
        return Err(refuse(&format!("'{}' is not allowed", bad.escape_default())));
    }
    if path.starts_with('/') {
        return Err(refuse("it must be relative"));
    }
    if path.contains(':') {
        return Err(refuse("URIs and drive letters are not allowed"));
    }
    let mut clean = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => return Err(refuse("'.' components are not allowed")),
            Component::ParentDir => return Err(refuse("'..' components are not allowed")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("it must be relative")),
        }
    }
    if path.split('/').any(|part| part.is_empty() || part == "." || part == "..")
        && !path.ends_with('/')
    {
        return Err(refuse("empty, '.' and '..' components are not allowed"));
    }
    Ok(clean)
}

fn io_error(error: std::io::Error, what: &str) -> ApiError {
    match error.kind() {
        std::io::ErrorKind::NotFound => ApiError::NotFound(format!("no artifact at '{what}'")),
        _ => ApiError::Internal(format!("artifact '{what}': {error}")),
    }
}

/// Names in a directory with their kind and size, sorted.
async fn entries(dir: &Path, display: &str) -> Result<Vec<(String, bool, u64)>, ApiError> {
    // Listing a file or a missing path finds nothing, as MLflow's repositories answer;
    // clients list a path to learn whether it is a directory.
    if !tokio::fs::metadata(dir).await.is_ok_and(|metadata| metadata.is_dir()) {
        return Ok(Vec::new());
    }
    let mut listing = tokio::fs::read_dir(dir).await.map_err(|error| io_error(error, display))?;
    let mut found = Vec::new();
    while let Some(entry) = listing.next_entry().await.map_err(|e| io_error(e, display))? {
        let metadata = entry.metadata().await.map_err(|e| io_error(e, display))?;
        found.push((
            entry.file_name().to_string_lossy().into_owned(),
            metadata.is_dir(),
            metadata.len(),
        ));
    }
    found.sort();
    Ok(found)
}

fn file_info(path: String, is_dir: bool, size: u64) -> Value {
    if is_dir {
        json!({ "path": path, "is_dir": true })
    } else {
        json!({ "path": path, "is_dir": false, "file_size": size })
    }
}

/// `GET .../mlflow-artifacts/artifacts?path=<dir>`: the entries of a directory, by name.
pub async fn list(State(scheduler): State<Scheduler>, RawQuery(query): RawQuery) -> RestResult {
    let query = query_object(query.as_deref().unwrap_or(""));
    let path = query["path"].as_str().unwrap_or("").to_string();
    let dir = scheduler.artifacts.resolve(&path)?;
    let files: Vec<Value> = entries(&dir, &path)
        .await?
        .into_iter()
        .map(|(name, is_dir, size)| file_info(name, is_dir, size))
        .collect();
    Ok(Json(json!({ "files": files })))
}

/// `PUT .../mlflow-artifacts/artifacts/<path>`: stores the body as that file.
pub async fn upload(
    State(scheduler): State<Scheduler>,
    UrlPath(path): UrlPath<String>,
    body: Body,
) -> RestResult {
    let target = scheduler.artifacts.resolve(&path)?;
    if path.is_empty() || path.ends_with('/') {
        return Err(
            ApiError::InvalidArgument("an artifact upload needs a file path".to_string()).into()
        );
    }
    let parent = target
        .parent()
        .ok_or_else(|| ApiError::InvalidArgument(format!("invalid artifact path '{path}'")))?;
    tokio::fs::create_dir_all(parent).await.map_err(|e| io_error(e, &path))?;
    // Creating directories may have followed links: check again where the file lands.
    scheduler.artifacts.resolve(&path)?;
    let partial = parent.join(format!(".{}.partial-{}", rand::random::<u64>(), std::process::id()));
    let result = async {
        let mut file = tokio::fs::File::create(&partial).await.map_err(|e| io_error(e, &path))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|error| ApiError::InvalidArgument(format!("the upload broke: {error}")))?;
            file.write_all(&chunk).await.map_err(|e| io_error(e, &path))?;
        }
        file.sync_all().await.map_err(|e| io_error(e, &path))?;
        tokio::fs::rename(&partial, &target).await.map_err(|e| io_error(e, &path))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result?;
    Ok(Json(json!({})))
}

/// `GET .../mlflow-artifacts/artifacts/<path>`: the file's bytes.
pub async fn download(
    State(scheduler): State<Scheduler>,
    UrlPath(path): UrlPath<String>,
) -> Result<Response, RestError> {
    let target = scheduler.artifacts.resolve(&path)?;
    let metadata = tokio::fs::metadata(&target).await.map_err(|e| io_error(e, &path))?;
    if metadata.is_dir() {
        return Err(ApiError::InvalidArgument(format!(
            "'{path}' is a directory; list it with ?path="
        ))
        .into());
    }
    let file = tokio::fs::File::open(&target).await.map_err(|e| io_error(e, &path))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_LENGTH, &metadata.len().to_string()),
        ],
        body,
    )
        .into_response())
}

/// `DELETE .../mlflow-artifacts/artifacts/<path>`: removes a file or directory.
pub async fn remove(
    State(scheduler): State<Scheduler>,
    UrlPath(path): UrlPath<String>,
) -> RestResult {
    if path.is_empty() {
        return Err(
            ApiError::InvalidArgument("refusing to delete the artifact root".to_string()).into()
        );
    }
    let target = scheduler.artifacts.resolve(&path)?;
    let metadata = tokio::fs::symlink_metadata(&target).await.map_err(|e| io_error(e, &path))?;
    if metadata.is_dir() {
        tokio::fs::remove_dir_all(&target).await.map_err(|e| io_error(e, &path))?;
    } else {
        tokio::fs::remove_file(&target).await.map_err(|e| io_error(e, &path))?;
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct ListRunArtifactsBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
}

/// `GET .../mlflow/artifacts/list?run_id=&path=`: a run's artifacts, paths relative to its root.
pub async fn list_run_artifacts(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: ListRunArtifactsBody = request.parse()?;
    let run_id: drover_proto::domain::RunId =
        required(body.run_id.or(body.run_uuid), "run_id")?.parse()?;
    let info = scheduler.store.run(run_id)?.info;
    let relative = body.path.unwrap_or_default();
    let relative = relative.trim_end_matches('/');
    safe_relative(relative)?;
    let Some(run_root) = info.artifact_uri.strip_prefix(PROXY_SCHEME) else {
        // Artifacts kept elsewhere (a location the client writes to itself) are not listed here.
        return Ok(Json(json!({ "root_uri": info.artifact_uri, "files": [] })));
    };
    let run_root = run_root.trim_start_matches('/');
    let dir_path =
        if relative.is_empty() { run_root.to_string() } else { format!("{run_root}/{relative}") };
    let dir = scheduler.artifacts.resolve(&dir_path)?;
    let files: Vec<Value> = entries(&dir, &dir_path)
        .await?
        .into_iter()
        .map(|(name, is_dir, size)| {
            let path = if relative.is_empty() { name } else { format!("{relative}/{name}") };
            file_info(path, is_dir, size)
        })
        .collect();
    Ok(Json(json!({ "root_uri": info.artifact_uri, "files": files })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        for hostile in [
            "../etc/passwd",
            "a/../../b",
            "%2e%2e/x",
            "%252e%252e/x",
            "..\\x",
            "a;b",
            "a#b",
            "/etc/passwd",
            "file:///etc/passwd",
            "C:/x",
            "a\0b",
            "./a",
            "a//b",
        ] {
            assert!(safe_relative(hostile).is_err(), "{hostile:?} should be refused");
        }
        for fine in
            ["1/abc/artifacts/model/MLmodel", "plots/loss curve.png", "ünï/côdé.txt", "a/b/"]
        {
            assert!(safe_relative(fine).is_ok(), "{fine:?} should be accepted");
        }
    }
}
