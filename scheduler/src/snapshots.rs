//! Snapshot blobs: project archives stored on disk under the data directory by digest, with
//! their metadata in the store. Uploads are verified (size and sha256) before they count.

use std::path::{Path, PathBuf};

use drover_project::compare::Tree;
use drover_project::snapshot::SnapshotDigest;
use drover_proto::ApiError;
use drover_proto::execution::{BoxStream, SnapshotChunk, UploadedSnapshot};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use crate::store::{SnapshotRecord, Store, now_ms};

const DOWNLOAD_CHUNK: usize = 1 << 20;

#[derive(Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    limit: u64,
    store: Store,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> ApiError {
    ApiError::Internal(format!("cannot {what} {}: {error}", path.display()))
}

impl SnapshotStore {
    pub fn open(store: Store, limit: u64) -> Result<SnapshotStore, std::io::Error> {
        let dir = store.dir().join("snapshots");
        std::fs::create_dir_all(dir.join("incoming"))?;
        Ok(SnapshotStore { dir, limit, store })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn path(&self, digest: &SnapshotDigest) -> PathBuf {
        self.dir.join(format!("{}.tar", digest.hex()))
    }

    pub fn has(&self, digest: &SnapshotDigest) -> Result<bool, ApiError> {
        Ok(self.store.snapshot_record(digest)?.is_some() && self.path(digest).is_file())
    }

    /// Refuses a submission whose snapshot was never uploaded here.
    pub fn require(&self, digest: &SnapshotDigest) -> Result<(), ApiError> {
        if self.has(digest)? {
            return Ok(());
        }
        Err(ApiError::FailedPrecondition(format!(
            "snapshot {digest} is not on this scheduler; upload it before submitting"
        )))
    }

    /// Receives an upload: the first chunk names digest and size; the bytes must match both.
    pub async fn upload(
        &self,
        mut chunks: BoxStream<Result<SnapshotChunk, ApiError>>,
    ) -> Result<UploadedSnapshot, ApiError> {
        let first = chunks.next().await.ok_or_else(|| {
            ApiError::InvalidArgument("the snapshot upload is empty".to_string())
        })??;
        let digest = first.digest.clone().ok_or_else(|| {
            ApiError::InvalidArgument(
                "the first chunk of an upload must name its digest".to_string(),
            )
        })?;
        let declared = first.size;
        if declared > self.limit {
            return Err(ApiError::InvalidArgument(format!(
                "the snapshot is {declared} bytes; this scheduler accepts snapshots up to {} bytes (--snapshot-limit)",
                self.limit
            )));
        }
        if self.has(&digest)? {
            return Ok(UploadedSnapshot { digest, size: declared, stored: false });
        }
        let incoming =
            self.dir.join("incoming").join(format!("{}.{}", digest.hex(), rand::random::<u64>()));
        let result = self.receive(&incoming, first, chunks, &digest, declared).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&incoming).await;
        }
        result
    }

    async fn receive(
        &self,
        incoming: &Path,
        first: SnapshotChunk,
        mut chunks: BoxStream<Result<SnapshotChunk, ApiError>>,
        digest: &SnapshotDigest,
        declared: u64,
    ) -> Result<UploadedSnapshot, ApiError> {
        let mut file =
            tokio::fs::File::create(incoming).await.map_err(|e| io_error("create", incoming, e))?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut next = Some(first);
        while let Some(chunk) = next {
            received += chunk.data.len() as u64;
            if received > declared {
                return Err(ApiError::InvalidArgument(format!(
                    "the snapshot upload sent more than the {declared} bytes it declared"
                )));
            }
            hasher.update(&chunk.data);
            file.write_all(&chunk.data).await.map_err(|e| io_error("write", incoming, e))?;
            next = chunks.next().await.transpose()?;
        }
        if received != declared {
            return Err(ApiError::InvalidArgument(format!(
                "the snapshot upload ended after {received} of {declared} bytes"
            )));
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest.as_str() {
            return Err(ApiError::InvalidArgument(format!(
                "the uploaded snapshot's digest is {actual}, not {digest}"
            )));
        }
        file.sync_all().await.map_err(|e| io_error("sync", incoming, e))?;
        drop(file);
        let path = self.path(digest);
        tokio::fs::rename(incoming, &path).await.map_err(|e| io_error("store", &path, e))?;
        self.store
            .record_snapshot(&SnapshotRecord {
                digest: digest.clone(),
                size: declared,
                stored_ms: now_ms(),
            })
            .await?;
        tracing::info!(%digest, size = declared, "snapshot stored");
        Ok(UploadedSnapshot { digest: digest.clone(), size: declared, stored: true })
    }

    /// A stored snapshot's files, read on the blocking pool, for comparing two runs' code.
    pub async fn tree(&self, digest: &SnapshotDigest) -> Result<Tree, ApiError> {
        if !self.has(digest)? {
            return Err(ApiError::NotFound(format!("no snapshot {digest} on this scheduler")));
        }
        let path = self.path(digest);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| io_error("open", &path, e))?;
            Tree::read(std::io::BufReader::new(file)).map_err(|error| {
                ApiError::Internal(format!("cannot read {}: {error}", path.display()))
            })
        })
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
    }

    /// Streams a stored snapshot in chunks, read as the receiver asks for them.
    pub async fn download(
        &self,
        digest: &SnapshotDigest,
    ) -> Result<BoxStream<Result<Vec<u8>, ApiError>>, ApiError> {
        if !self.has(digest)? {
            return Err(ApiError::NotFound(format!("no snapshot {digest} on this scheduler")));
        }
        let path = self.path(digest);
        let file = tokio::fs::File::open(&path).await.map_err(|e| io_error("open", &path, e))?;
        let chunks =
            tokio_util::io::ReaderStream::with_capacity(file, DOWNLOAD_CHUNK).map(move |chunk| {
                chunk.map(|bytes| bytes.to_vec()).map_err(|error| io_error("read", &path, error))
            });
        Ok(Box::pin(chunks))
    }
}
