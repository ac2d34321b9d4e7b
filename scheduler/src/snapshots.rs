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

/// The largest source diff kept with a snapshot.
pub const MAX_SOURCE_DIFF: usize = 2 << 20;

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
            "snapshot {digest} {}",
            drover_proto::execution::SNAPSHOT_MISSING
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

    fn diff_path(&self, digest: &SnapshotDigest, commit: &str) -> Result<PathBuf, ApiError> {
        let valid = matches!(commit.len(), 40 | 64)
            && commit.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(ApiError::InvalidArgument(format!(
                "invalid commit '{commit}': expected 40 or 64 lowercase hex characters"
            )));
        }
        Ok(self.dir.join(format!("{}.{commit}.diff", digest.hex())))
    }

    /// Keeps a dirty work tree's diff against `commit` with the snapshot it makes: written
    /// once, whole (a temporary file renamed into place), and durable before it is answered.
    pub async fn put_diff(
        &self,
        digest: &SnapshotDigest,
        commit: &str,
        diff: Vec<u8>,
    ) -> Result<(), ApiError> {
        let path = self.diff_path(digest, commit)?;
        if diff.len() > MAX_SOURCE_DIFF {
            return Err(ApiError::InvalidArgument(format!(
                "the source diff is {} bytes; the scheduler keeps diffs up to {MAX_SOURCE_DIFF} bytes",
                diff.len()
            )));
        }
        self.require(digest)?;
        if path.is_file() {
            return Ok(());
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = tempfile::NamedTempFile::new_in(&dir)
                .map_err(|e| io_error("create a file in", &dir, e))?;
            std::io::Write::write_all(&mut file, &diff).map_err(|e| io_error("write", &path, e))?;
            file.as_file().sync_all().map_err(|e| io_error("sync", &path, e))?;
            file.persist(&path).map_err(|e| io_error("keep", &path, e.error))?;
            std::fs::File::open(&dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| io_error("sync", &dir, e))
        })
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
    }

    /// The diff kept with a snapshot against `commit`.
    pub async fn diff(&self, digest: &SnapshotDigest, commit: &str) -> Result<Vec<u8>, ApiError> {
        let path = self.diff_path(digest, commit)?;
        match tokio::fs::read(&path).await {
            Ok(diff) => Ok(diff),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(
                format!("no source diff of snapshot {digest} against commit {commit}"),
            )),
            Err(error) => Err(io_error("read", &path, error)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_diff_is_kept_only_for_a_known_snapshot_and_a_real_commit() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("the store opens");
        let snapshots = SnapshotStore::open(store, 1 << 20).expect("the snapshot store opens");
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).expect("a project");
        std::fs::write(project.join("train.py"), "print(1)\n").expect("a file");
        let packed = drover_project::snapshot::pack(&project, 1 << 20).expect("packed");
        let commit = "a".repeat(40);
        let unknown = snapshots.put_diff(&packed.digest, &commit, b"diff".to_vec()).await;
        assert!(matches!(unknown, Err(ApiError::FailedPrecondition(_))), "{unknown:?}");

        let bytes = std::fs::read(packed.file.path()).expect("the archive");
        let chunk =
            SnapshotChunk { digest: Some(packed.digest.clone()), size: packed.size, data: bytes };
        let chunks: BoxStream<Result<SnapshotChunk, ApiError>> =
            Box::pin(tokio_stream::iter(vec![Ok(chunk)]));
        snapshots.upload(chunks).await.expect("uploaded");
        for bad in ["../../etc/passwd", "ABC", &"a".repeat(41)] {
            let refused = snapshots.put_diff(&packed.digest, bad, b"diff".to_vec()).await;
            assert!(matches!(refused, Err(ApiError::InvalidArgument(_))), "{bad}: {refused:?}");
        }
        let large =
            snapshots.put_diff(&packed.digest, &commit, vec![b'+'; MAX_SOURCE_DIFF + 1]).await;
        assert!(matches!(large, Err(ApiError::InvalidArgument(_))), "{large:?}");
        let missing = snapshots.diff(&packed.digest, &commit).await;
        assert!(matches!(missing, Err(ApiError::NotFound(_))), "{missing:?}");

        snapshots.put_diff(&packed.digest, &commit, b"first".to_vec()).await.expect("kept");
        // Kept once: the same snapshot from the same commit has one diff.
        snapshots.put_diff(&packed.digest, &commit, b"second".to_vec()).await.expect("kept");
        assert_eq!(snapshots.diff(&packed.digest, &commit).await.expect("read"), b"first");
    }
}
