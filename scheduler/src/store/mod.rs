//! The durable store: experiments, runs, params, tags and metric history in one sled
//! database under the data directory.
//!
//! Every mutation hands one atomic batch to the key-value layer (`kv.rs`) under the store's
//! write lock, readable at once, then waits for group commit, which applies the batches of a
//! pass to sled together and flushes: nothing is acknowledged before it is on disk.

mod chunk;
mod commit;
mod execution;
mod experiments;
mod history;
mod ingest;
mod keys;
mod kv;
mod lock;
mod models;
mod records;
mod registry;
mod runs;
mod staging;
mod sweeps;
mod values;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use drover_proto::ApiError;
use drover_proto::domain::{
    DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, Experiment, ExperimentId, LifecycleStage, Run,
    RunId,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use lock::{Holder, read_holder};
pub use records::{
    AttemptRecord, ExecutionRecord, LogChunk, Placement, RunChange, SnapshotRecord, SweepRecord,
    TrialRecord, TrialTemplate,
};

use self::commit::GroupCommit;
pub use self::commit::Ticket;
use self::kv::{Batch, Kv};
use self::lock::{DirLock, LockError};

/// Runs whose log ends are kept in memory, at most (about 32 bytes each): past it the
/// memory starts over.
const MAX_KNOWN_LOG_ENDS: usize = 1_000_000;

/// Runs whose search views are kept in memory, at most (about 1 KiB each).
const MAX_CACHED_RUNS: usize = 500_000;

/// The newest store layout this build reads and writes. Schema 1 kept one key per metric
/// point; schema 2 kept chunks of 24 bytes per point; schema 3 keeps chunks of compactly
/// encoded points (see `history.rs`) and an index of the executions not done. Opening an
/// older store builds the index, then rewrites its history. Schema 4 no longer keeps a log's
/// length (`oz/`): its last chunk ends it. Builds before it would append after a stale
/// length, so they must refuse the store, and the version says so. Schema 5 keeps the
/// history and log chunks in the value log (`values.rs`), sled only pointers to them; opening
/// a schema-4 store moves them there.
pub const SCHEMA_VERSION: u32 = 5;
/// The last schema whose sled held the bulk values itself: where the older stores' rewrites
/// leave them, for the move into the value log to take over.
const INLINE_VALUES_SCHEMA: u32 = 4;
/// Bytes of values moved into the value log per write when a schema-4 store is opened.
const MIGRATION_BATCH_BYTES: usize = 32 << 20;

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the data directory {} is a file, not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot open the data directory {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}", locked_message(path, holder.as_ref()))]
    Locked { path: PathBuf, holder: Option<Holder> },
    #[error(
        "the store in {} was written by a newer drover (schema {found}; this build reads up to {supported}); upgrade drover to open it",
        path.display()
    )]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    #[error("the store in {} cannot be read: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
}

fn locked_message(path: &Path, holder: Option<&Holder>) -> String {
    let path = path.display();
    match holder {
        Some(Holder { pid, address: Some(address) }) => format!(
            "the store in {path} is held by another drover process (pid {pid}) serving at {address}; pass --scheduler {address} to use it"
        ),
        Some(Holder { pid, address: None }) => format!(
            "the store in {path} is held by another drover process (pid {pid}); wait for it to finish, or start `drover scheduler` on it and pass --scheduler"
        ),
        None => format!(
            "the store in {path} is held by another drover process; wait for it to finish, or start `drover scheduler` on it and pass --scheduler"
        ),
    }
}

/// A cheap-to-clone handle on the open store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

// Fields drop in order: the flusher stops (flushing), then sled closes, then the directory
// lock is released, so the next holder never sees a half-closed store.
struct Inner {
    commit: GroupCommit,
    kv: Arc<Kv>,
    /// Serializes read-check-write sequences (write-once params, unique names, id allocation).
    write_lock: Mutex<()>,
    /// Metric, param and tag logging waiting to be written together.
    ingest: ingest::Ingest,
    /// Runs as searches read them, filled on first read and dropped on every write to the
    /// run (under the write lock), so a search never decodes a run twice.
    runs: std::sync::RwLock<std::collections::HashMap<RunId, Arc<Run>>>,
    /// Runs written since [`Store::take_changed_runs`] was last called, for views kept beside
    /// the store (the runs tables) to catch up with. `None` until first called, so a store
    /// nobody browses keeps nothing.
    changed: Mutex<Option<std::collections::HashSet<RunId>>>,
    /// Where the logs of runs being executed end, so an append need not look for the last
    /// chunk. Written under the write lock after the append; a run is forgotten once done.
    log_ends: Mutex<std::collections::HashMap<RunId, u64>>,
    /// Metric points staged for writing since the store opened.
    points_written: std::sync::atomic::AtomicU64,
    dir: PathBuf,
    lock: DirLock,
}

impl Store {
    /// Opens (creating when absent) the store in `dir`, holding it until the last handle drops.
    pub fn open(dir: &Path) -> Result<Store, OpenError> {
        if dir.exists() && !dir.is_dir() {
            return Err(OpenError::NotADirectory { path: dir.to_path_buf() });
        }
        let io_error = |source| OpenError::Io { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let lock = DirLock::acquire(dir).map_err(|error| match error {
            LockError::Held(holder) => OpenError::Locked { path: dir.to_path_buf(), holder },
            LockError::Io(source) => io_error(source),
        })?;
        let corrupt = |error: sled::Error| OpenError::Corrupt {
            path: dir.to_path_buf(),
            detail: error.to_string(),
        };
        let db = open_database(dir).map_err(|error| match error {
            sled::Error::Io(source) => io_error(source),
            other => corrupt(other),
        })?;
        // A store whose sled may already point into the value log must have it.
        let schema = stored_schema(&db).map_err(|error| error.opening(dir))?;
        if let Some(found) = schema.filter(|version| *version > SCHEMA_VERSION) {
            return Err(InitError::Newer(found).opening(dir));
        }
        let values =
            values::ValueLog::open(dir, schema.is_none_or(|version| version < SCHEMA_VERSION))
                .map_err(io_error)?;
        let kv = Arc::new(Kv::new(db, values));
        let commit = GroupCommit::start(kv.clone()).map_err(io_error)?;
        let store = Store {
            inner: Arc::new(Inner {
                commit,
                kv,
                write_lock: Mutex::new(()),
                ingest: Default::default(),
                runs: Default::default(),
                changed: Mutex::new(None),
                log_ends: Mutex::default(),
                points_written: std::sync::atomic::AtomicU64::new(0),
                dir: dir.to_path_buf(),
                lock,
            }),
        };
        store.initialize().map_err(|error| error.opening(dir))?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Tells other processes that this one serves the store's API at `address`.
    pub fn announce(&self, address: &str) -> std::io::Result<()> {
        self.inner.lock.announce(address)
    }

    /// Flushes everything to disk and stops the flusher; later writes fail.
    pub fn close(&self) {
        self.inner.commit.close();
    }

    /// Closes the store, then waits (up to `timeout`) for the tasks still holding handles
    /// to let go, so the directory is free for the next holder when this returns.
    pub async fn close_and_release(self, timeout: std::time::Duration) {
        self.close();
        let deadline = tokio::time::Instant::now() + timeout;
        while Arc::strong_count(&self.inner) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&self.inner) > 1 {
            tracing::warn!(
                "tasks still hold the store after shutdown; it is released when they end"
            );
        }
    }

    /// Writes the schema version and the default experiment into a new store, and refuses
    /// stores from a newer build.
    fn initialize(&self) -> Result<(), InitError> {
        let db = self.inner.kv.sled()?;
        match stored_schema(db)? {
            Some(version) => {
                if version > SCHEMA_VERSION {
                    return Err(InitError::Newer(version));
                }
                if version < 3 {
                    let indexed = Store::index_pending_executions(db)?;
                    tracing::info!(indexed, "indexed the executions not done (schema 3)");
                }
                if version < 2 {
                    let points =
                        Store::migrate_history_to_chunks(db, history::MIGRATION_BATCH_POINTS)?;
                    db.flush()?;
                    tracing::info!(points, "rewrote the metric history in chunks (schema 3)");
                } else if version < 3 {
                    let started = std::time::Instant::now();
                    let points =
                        Store::migrate_chunks_to_compact(db, history::MIGRATION_BATCH_CHUNKS)?;
                    db.flush()?;
                    tracing::info!(
                        points,
                        seconds = started.elapsed().as_secs_f64(),
                        "rewrote the metric history compactly (schema 3)"
                    );
                }
                // A move cut short has already set the new version, and left its progress.
                if version < SCHEMA_VERSION || db.get(keys::MIGRATION_PROGRESS)?.is_some() {
                    let started = std::time::Instant::now();
                    let moved = values::move_into_log(
                        db,
                        self.inner.kv.value_log(),
                        MIGRATION_BATCH_BYTES,
                        SCHEMA_VERSION,
                    )?;
                    tracing::info!(
                        moved,
                        seconds = started.elapsed().as_secs_f64(),
                        "moved the history and log chunks into the value log (schema 5)"
                    );
                }
                Ok(())
            }
            None => {
                let now = now_ms();
                let default = Experiment {
                    id: DEFAULT_EXPERIMENT_ID,
                    name: DEFAULT_EXPERIMENT_NAME.to_string(),
                    artifact_location: default_artifact_location(DEFAULT_EXPERIMENT_ID),
                    lifecycle_stage: LifecycleStage::Active,
                    creation_time_ms: now,
                    last_update_time_ms: now,
                    tags: Vec::new(),
                };
                let mut batch = sled::Batch::default();
                batch.insert(keys::experiment(DEFAULT_EXPERIMENT_ID), encode(&default));
                batch.insert(
                    keys::experiment_name(DEFAULT_EXPERIMENT_NAME),
                    &DEFAULT_EXPERIMENT_ID.0.to_be_bytes(),
                );
                batch.insert(keys::NEXT_EXPERIMENT_ID, &1u64.to_be_bytes());
                batch.insert(keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes());
                db.apply_batch(batch)?;
                db.flush()?;
                Ok(())
            }
        }
    }

    fn write_guard(&self) -> MutexGuard<'_, ()> {
        // The guarded data lives in sled, which a panicking writer cannot leave half-applied
        // (batches are atomic), so a poisoned lock is safe to take over.
        self.inner.write_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn db(&self) -> &Kv {
        &self.inner.kv
    }

    /// Applies a batch that changes `run_id`, and forgets the run's cached view. Call under
    /// the write lock.
    fn write_run(&self, run_id: RunId, batch: Batch) -> Result<(), ApiError> {
        self.db().apply_batch(batch).map_err(storage_error)?;
        self.inner.runs.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&run_id);
        self.note_changed([run_id]);
        Ok(())
    }

    /// Applies a batch that creates `run_id`. Call under the write lock, or where no other
    /// write can name the new run yet.
    fn write_new_run(&self, run_id: RunId, batch: Batch) -> Result<(), ApiError> {
        self.db().apply_batch(batch).map_err(storage_error)?;
        self.note_changed([run_id]);
        Ok(())
    }

    fn log_ends(&self) -> MutexGuard<'_, std::collections::HashMap<RunId, u64>> {
        self.inner.log_ends.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the run's log ends, if known without reading the store.
    fn known_log_end(&self, run_id: RunId) -> Option<u64> {
        self.log_ends().get(&run_id).copied()
    }

    /// Notes where the run's log ends after a write. Call under the write lock.
    fn logged_to(&self, run_id: RunId, end: u64) {
        let mut ends = self.log_ends();
        if ends.len() >= MAX_KNOWN_LOG_ENDS && !ends.contains_key(&run_id) {
            ends.clear();
        }
        ends.insert(run_id, end);
    }

    /// Notes where a new run's log ends, unless an append has noted it since.
    fn log_begun(&self, run_id: RunId, end: u64) {
        let mut ends = self.log_ends();
        if ends.len() < MAX_KNOWN_LOG_ENDS {
            ends.entry(run_id).or_insert(end);
        }
    }

    fn forget_log_end(&self, run_id: RunId) {
        self.log_ends().remove(&run_id);
    }

    /// Records that runs changed; call after the write and the cache reflect the change, so
    /// whoever reads the runs after taking the change sees it.
    fn note_changed(&self, run_ids: impl IntoIterator<Item = RunId>) {
        let mut changed =
            self.inner.changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(changed) = changed.as_mut() {
            changed.extend(run_ids);
        }
    }

    /// The runs written since the last call (none, on the first), forgetting them: a reader
    /// that keeps its own view of runs reads these again, and has every change.
    pub fn take_changed_runs(&self) -> std::collections::HashSet<RunId> {
        let mut changed =
            self.inner.changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        changed.replace(std::collections::HashSet::new()).unwrap_or_default()
    }

    /// Metric points written since the store opened.
    pub fn points_written(&self) -> u64 {
        self.inner.points_written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db().size_on_disk().unwrap_or(0)
    }

    /// Runs as searches read them, shared with the cache.
    pub fn run_views(&self, run_ids: Vec<RunId>) -> Result<Vec<Arc<Run>>, ApiError> {
        self.cached_runs(run_ids)
    }

    /// The cached search view of a run, if there is one.
    fn cached_run(&self, run_id: RunId) -> Option<Arc<Run>> {
        self.inner
            .runs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&run_id)
            .cloned()
    }

    /// Caches search views just brought up to date, up to the bound. Call under the write
    /// lock, after the write they reflect.
    fn cache_runs(&self, views: Vec<Arc<Run>>) {
        let mut changed = Vec::with_capacity(views.len());
        {
            let mut cache =
                self.inner.runs.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            for view in views {
                changed.push(view.info.run_id);
                if cache.len() < MAX_CACHED_RUNS || cache.contains_key(&view.info.run_id) {
                    cache.insert(view.info.run_id, view);
                }
            }
        }
        self.note_changed(changed);
    }

    /// Cached views of runs, reading (under the write lock, so no write races the read) the
    /// ones not cached yet.
    fn cached_runs(&self, run_ids: Vec<RunId>) -> Result<Vec<Arc<Run>>, ApiError> {
        let mut runs = Vec::with_capacity(run_ids.len());
        let mut missing = Vec::new();
        {
            let cache = self.inner.runs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            for run_id in run_ids {
                match cache.get(&run_id) {
                    Some(run) => runs.push(run.clone()),
                    None => missing.push(run_id),
                }
            }
        }
        if !missing.is_empty() {
            let _guard = self.write_guard();
            let mut cache =
                self.inner.runs.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            for run_id in missing {
                let run =
                    Arc::new(Run { info: self.run_info(run_id)?, data: self.run_data(run_id)? });
                // Past the bound, runs are read for each search rather than kept.
                if cache.len() < MAX_CACHED_RUNS {
                    cache.insert(run_id, run.clone());
                }
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// Waits until every write applied so far is on disk.
    pub async fn durable(&self) -> Result<(), ApiError> {
        self.inner.commit.durable().await
    }

    /// A ticket for every write applied so far, to wait on with [`Store::wait`]: callers that
    /// apply writes back to back can acknowledge each once durable without waiting between.
    pub fn ticket(&self) -> Ticket {
        self.inner.commit.ticket()
    }

    /// A ticket like [`Store::ticket`] for a waiter nothing waits on in turn (a worker's
    /// report): its flush may start a few milliseconds late, shared with other writes.
    pub fn lazy_ticket(&self) -> Ticket {
        self.inner.commit.lazy_ticket()
    }

    /// Waits until the writes `ticket` covers are on disk.
    pub async fn wait(&self, ticket: Ticket) -> Result<(), ApiError> {
        self.inner.commit.wait(ticket).await
    }
}

/// Opens the sled database of the data directory `dir`. A sled lock still held on it belongs to
/// a store that is closing (sled's background threads let go of the file moments after its
/// last handle drops, after the directory lock is released): wait for it. `Store::open` holds
/// the directory lock by then; tools and tests may call this on a closed store, where sled
/// holds pointers into the value log (`values.rs`) for the history and log chunks.
pub fn open_database(dir: &Path) -> sled::Result<sled::Db> {
    let path = dir.join("db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(&path).open() {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

enum InitError {
    Newer(u32),
    Sled(sled::Error),
    Invalid(String),
}

impl InitError {
    /// What opening the store in `dir` failed with.
    fn opening(self, dir: &Path) -> OpenError {
        let path = dir.to_path_buf();
        match self {
            InitError::Newer(found) => {
                OpenError::NewerSchema { path, found, supported: SCHEMA_VERSION }
            }
            // Out of disk space while a schema is rewritten, say: not a damaged store.
            InitError::Sled(sled::Error::Io(source)) => OpenError::Io { path, source },
            InitError::Sled(error) => OpenError::Corrupt { path, detail: error.to_string() },
            InitError::Invalid(detail) => OpenError::Corrupt { path, detail },
        }
    }
}

/// The schema version a store's sled records, if it records one.
fn stored_schema(db: &sled::Db) -> Result<Option<u32>, InitError> {
    let Some(version) = db.get(keys::SCHEMA)? else {
        return Ok(None);
    };
    <[u8; 4]>::try_from(version.as_ref())
        .map(|bytes| Some(u32::from_be_bytes(bytes)))
        .map_err(|_| InitError::Invalid("the schema version is unreadable".into()))
}

impl From<sled::Error> for InitError {
    fn from(error: sled::Error) -> Self {
        InitError::Sled(error)
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn default_artifact_location(experiment: ExperimentId) -> String {
    format!("mlflow-artifacts:/{experiment}")
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Records are plain data with string keys; serializing them cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::Internal(format!("stored {what} is unreadable: {error}")))
}

fn storage_error(error: sled::Error) -> ApiError {
    ApiError::Internal(format!("store error: {error}"))
}
