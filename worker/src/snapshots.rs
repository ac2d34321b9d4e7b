//! The worker's snapshot cache: archives downloaded once per digest, verified before use,
//! and extracted safely into each run's directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use drover_project::snapshot::{self, SnapshotDigest};
use drover_proto::Client;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

pub struct SnapshotCache {
    dir: PathBuf,
    limit: u64,
    /// One download at a time per digest.
    downloads: Mutex<HashMap<SnapshotDigest, Arc<tokio::sync::Mutex<()>>>>,
}

impl SnapshotCache {
    pub fn open(work_dir: &Path, limit: u64) -> std::io::Result<SnapshotCache> {
        let dir = work_dir.join("snapshots");
        std::fs::create_dir_all(&dir)?;
        Ok(SnapshotCache { dir, limit, downloads: Mutex::new(HashMap::new()) })
    }

    /// The archive for `digest`, downloaded and verified if it is not cached yet, over a
    /// connection from `connect`, which is called only then.
    pub async fn fetch<F, C>(&self, connect: C, digest: &SnapshotDigest) -> Result<PathBuf, String>
    where
        C: FnOnce() -> F,
        F: Future<Output = Result<Client, String>>,
    {
        let path = self.dir.join(format!("{}.tar", digest.hex()));
        // An archive in the cache is whole: it appears there only by a rename once verified.
        if path.is_file() {
            return Ok(path);
        }
        // Connected before the gate, so that the runs waiting for one download all fail at once
        // when the scheduler cannot be reached, not one connect timeout after another.
        let client = connect().await?;
        let gate = {
            let mut downloads =
                self.downloads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            downloads.entry(digest.clone()).or_default().clone()
        };
        let _gate = gate.lock().await;
        if path.is_file() {
            return Ok(path);
        }
        let partial = self.dir.join(format!("{}.partial", digest.hex()));
        let result = self.download(&client, digest, &partial).await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&partial, &path)
                    .await
                    .map_err(|error| format!("cannot cache the snapshot: {error}"))?;
                Ok(path)
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(error)
            }
        }
    }

    async fn download(
        &self,
        client: &Client,
        digest: &SnapshotDigest,
        partial: &Path,
    ) -> Result<(), String> {
        let mut chunks = client
            .download_snapshot(digest)
            .await
            .map_err(|error| format!("cannot download snapshot {digest}: {error}"))?;
        let mut file = tokio::fs::File::create(partial)
            .await
            .map_err(|error| format!("cannot write the snapshot: {error}"))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| format!("the snapshot download broke: {error}"))?;
            size += chunk.len() as u64;
            if size > self.limit {
                return Err(format!(
                    "snapshot {digest} is larger than this worker's limit of {} bytes",
                    self.limit
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|error| format!("cannot write the snapshot: {error}"))?;
        }
        file.sync_all().await.map_err(|error| format!("cannot write the snapshot: {error}"))?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest.as_str() {
            return Err(format!(
                "the downloaded snapshot's digest is {actual}, not {digest}; refusing it"
            ));
        }
        Ok(())
    }

    /// Extracts an archive into a fresh directory, refusing anything unsafe.
    pub async fn extract(&self, archive: &Path, dest: &Path) -> Result<(), String> {
        let archive = archive.to_path_buf();
        let dest = dest.to_path_buf();
        let limit = self.limit;
        // Awaited. Should the run's task be dropped first (when a shutdown runs out of time),
        // the extraction still finishes, into a directory nothing uses and that is cleared
        // before it is used again.
        tokio::task::spawn_blocking(move || {
            if dest.exists() {
                std::fs::remove_dir_all(&dest)
                    .map_err(|error| format!("cannot clear {}: {error}", dest.display()))?;
            }
            snapshot::unpack(&archive, &dest, limit)
                .map_err(|error| format!("the snapshot was refused: {error}"))
        })
        .await
        .map_err(|error| format!("extraction failed: {error}"))?
    }
}
