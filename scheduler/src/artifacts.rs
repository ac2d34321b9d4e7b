//! Run artifacts on disk under `<data dir>/artifacts`: the files behind MLflow's artifact
//! proxy and `artifacts/list`. Runs' artifact URIs have the form
//! `mlflow-artifacts:/<experiment>/<run>/artifacts`. No path can leave the artifact root.

use std::path::{Component, Path, PathBuf};

use axum::body::Bytes;
use drover_proto::ApiError;
use tokio::io::AsyncWriteExt;
use tokio_stream::{Stream, StreamExt};

/// The scheme of artifact URIs this scheduler serves.
pub const PROXY_SCHEME: &str = "mlflow-artifacts:";

/// One entry of a listed directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileInfo {
    /// The name, or the path relative to what was listed.
    pub path: String,
    pub is_dir: bool,
    /// In bytes; zero for directories.
    pub size: u64,
}

/// The largest artifact file accepted by default, in bytes.
pub const DEFAULT_ARTIFACT_LIMIT: u64 = 16 << 30;

/// The longest name a path component may have: the filesystem's limit.
const MAX_COMPONENT_BYTES: usize = 255;

/// The directory artifacts live under.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    /// Where uploads are written until they are complete, beside the root (so a rename moves
    /// them in) and outside it (so no listing shows half a file).
    incoming: PathBuf,
    /// The largest file accepted, in bytes.
    limit: u64,
}

impl ArtifactStore {
    pub fn open(data_dir: &Path, limit: u64) -> std::io::Result<ArtifactStore> {
        let root = data_dir.join("artifacts");
        let incoming = data_dir.join("artifacts-incoming");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&incoming)?;
        // Uploads cut short by a crash are never finished.
        for entry in std::fs::read_dir(&incoming)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(ArtifactStore { root: root.canonicalize()?, incoming: incoming.canonicalize()?, limit })
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

    /// The entries of the directory at `path`, sorted by name. Listing a file or a missing
    /// path finds nothing, as MLflow's repositories answer: clients list a path to learn
    /// whether it is a directory.
    pub async fn list(&self, path: &str) -> Result<Vec<FileInfo>, ApiError> {
        let dir = self.resolve(path)?;
        if !tokio::fs::metadata(&dir).await.is_ok_and(|metadata| metadata.is_dir()) {
            return Ok(Vec::new());
        }
        let mut listing = tokio::fs::read_dir(&dir).await.map_err(|e| io_error(e, path))?;
        let mut found = Vec::new();
        while let Some(entry) = listing.next_entry().await.map_err(|e| io_error(e, path))? {
            let metadata = entry.metadata().await.map_err(|e| io_error(e, path))?;
            let is_dir = metadata.is_dir();
            found.push(FileInfo {
                path: entry.file_name().to_string_lossy().into_owned(),
                is_dir,
                size: if is_dir { 0 } else { metadata.len() },
            });
        }
        found.sort();
        Ok(found)
    }

    /// Stores `body` as the file at `path`: written aside, synced, then renamed into place,
    /// so a reader never sees half a file.
    pub async fn upload<E: std::fmt::Display>(
        &self,
        path: &str,
        body: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<(), ApiError> {
        let target = self.resolve(path)?;
        if path.is_empty() || path.ends_with('/') {
            return Err(ApiError::InvalidArgument("an artifact upload needs a file path".into()));
        }
        let parent = target
            .parent()
            .ok_or_else(|| ApiError::InvalidArgument(format!("invalid artifact path '{path}'")))?;
        tokio::fs::create_dir_all(parent).await.map_err(|e| io_error(e, path))?;
        // Creating directories may have followed links: check again where the file lands.
        self.resolve(path)?;
        let partial = self.incoming.join(format!("{:016x}", rand::random::<u64>()));
        let result = async {
            let mut file =
                tokio::fs::File::create(&partial).await.map_err(|e| io_error(e, path))?;
            tokio::pin!(body);
            let mut received = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|error| {
                    ApiError::InvalidArgument(format!("the upload broke: {error}"))
                })?;
                received += chunk.len() as u64;
                if received > self.limit {
                    return Err(ApiError::InvalidArgument(format!(
                        "artifact '{path}' is larger than the {} bytes this scheduler accepts (--artifact-limit)",
                        self.limit
                    )));
                }
                file.write_all(&chunk).await.map_err(|e| io_error(e, path))?;
            }
            file.sync_all().await.map_err(|e| io_error(e, path))?;
            tokio::fs::rename(&partial, &target).await.map_err(|e| io_error(e, path))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    /// The file at `path`, opened, with its size.
    pub async fn open_file(&self, path: &str) -> Result<(tokio::fs::File, u64), ApiError> {
        let target = self.resolve(path)?;
        let metadata = tokio::fs::metadata(&target).await.map_err(|e| io_error(e, path))?;
        if metadata.is_dir() {
            return Err(ApiError::InvalidArgument(format!(
                "'{path}' is a directory; list it with ?path="
            )));
        }
        let file = tokio::fs::File::open(&target).await.map_err(|e| io_error(e, path))?;
        Ok((file, metadata.len()))
    }

    /// Removes the file or directory at `path`; never the root.
    pub async fn remove(&self, path: &str) -> Result<(), ApiError> {
        if path.is_empty() {
            return Err(ApiError::InvalidArgument(
                "refusing to delete the artifact root".to_string(),
            ));
        }
        let target = self.resolve(path)?;
        let metadata = tokio::fs::symlink_metadata(&target).await.map_err(|e| io_error(e, path))?;
        if metadata.is_dir() {
            tokio::fs::remove_dir_all(&target).await.map_err(|e| io_error(e, path))
        } else {
            tokio::fs::remove_file(&target).await.map_err(|e| io_error(e, path))
        }
    }

    /// The artifacts of a run whose artifact URI is `artifact_uri`, under `relative`, with
    /// paths relative to the run's root. Artifacts kept elsewhere (a location the client
    /// writes to itself) are not listed here.
    pub async fn list_run(
        &self,
        artifact_uri: &str,
        relative: &str,
    ) -> Result<Vec<FileInfo>, ApiError> {
        let relative = relative.trim_end_matches('/');
        safe_relative(relative)?;
        let Some(run_root) = artifact_uri.strip_prefix(PROXY_SCHEME) else {
            return Ok(Vec::new());
        };
        let run_root = run_root.trim_start_matches('/');
        let dir = if relative.is_empty() {
            run_root.to_string()
        } else {
            format!("{run_root}/{relative}")
        };
        let mut files = self.list(&dir).await?;
        if !relative.is_empty() {
            for file in &mut files {
                file.path = format!("{relative}/{}", file.path);
            }
        }
        Ok(files)
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
    if let Some(long) = path.split('/').find(|part| part.len() > MAX_COMPONENT_BYTES) {
        return Err(refuse(&format!(
            "a name of {} bytes is longer than the {MAX_COMPONENT_BYTES} a file name may have",
            long.len()
        )));
    }
    Ok(clean)
}

fn io_error(error: std::io::Error, what: &str) -> ApiError {
    match error.kind() {
        std::io::ErrorKind::NotFound => ApiError::NotFound(format!("no artifact at '{what}'")),
        std::io::ErrorKind::InvalidFilename | std::io::ErrorKind::NotADirectory => {
            ApiError::InvalidArgument(format!("invalid artifact path '{what}': {error}"))
        }
        _ => ApiError::Internal(format!("artifact '{what}': {error}")),
    }
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
            &format!("dir/{}", "n".repeat(256)),
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
