//! The scheduler's service layer: one cheap-to-clone handle over the store, the artifact and
//! snapshot stores, the dispatcher and the sweep driver. Both faces call it, gRPC through the
//! `Tracking`, `Execution` and `Sweeps` traits and MLflow's REST API through the same methods
//! (and a few of its own, in `tracking.rs`), so each rule of the API lives in one place, here
//! or below, and the faces only translate.

mod execution;
mod follow;
pub mod models;
pub mod paging;
mod sweeps;
mod tables;
mod tracking;
pub mod views;
mod workers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_project::snapshot::DEFAULT_SIZE_LIMIT;
use drover_proto::ApiError;
use drover_proto::domain::{RunId, ViewType};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::artifacts::{ArtifactStore, DEFAULT_ARTIFACT_LIMIT};
use crate::auth::Token;
use crate::dispatch::{DispatchHandle, Dispatcher, LeaseOptions, stopped};
use crate::snapshots::SnapshotStore;
use crate::store::Store;
use crate::sweep::{Driver, SweepHandle};
use crate::telemetry::Telemetry;

/// How the scheduler runs, validated once by whoever starts it.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    pub lease: LeaseOptions,
    /// Largest project snapshot accepted, in bytes.
    pub snapshot_limit: u64,
    /// Largest artifact file accepted, in bytes.
    pub artifact_limit: u64,
    /// Host names HTTP requests may name besides loopback and the listen address (`*` for
    /// any, `*.domain` for a domain's names).
    pub allowed_hosts: Vec<String>,
    pub connections: ConnectionOptions,
    /// The token every call must carry (`--token-file`); none, to serve anyone who can
    /// connect.
    pub token: Option<Arc<Token>>,
    /// Serve `/metrics` without the token.
    pub open_metrics: bool,
    /// Serve over TLS (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            lease: LeaseOptions::default(),
            snapshot_limit: DEFAULT_SIZE_LIMIT,
            artifact_limit: DEFAULT_ARTIFACT_LIMIT,
            allowed_hosts: Vec::new(),
            connections: ConnectionOptions::default(),
            token: None,
            open_metrics: false,
            tls: None,
        }
    }
}

/// How the server bounds its connections (enforced in `server/connections.rs`), so that
/// clients that connect and stall cannot hold the scheduler's sockets forever.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionOptions {
    /// Most connections served at once (at least 1). Beyond it, new connections wait
    /// unanswered in the listen backlog until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request head (over HTTP/2, its preface),
    /// counted from when the connection opens or, over HTTP/1, from the end of the previous
    /// response: so it is also how long an idle HTTP/1 connection is kept.
    pub header_read_timeout: Duration,
    /// How long an HTTP/1 request body may send nothing while it is being read. The request
    /// fails and its connection closes; a slow upload that keeps sending is never cut.
    pub body_stall_timeout: Duration,
    /// How long an HTTP/2 connection may send nothing before the server PINGs it.
    pub keep_alive_interval: Duration,
    /// How long the answer to that PING may take before the connection is closed as dead.
    /// An HTTP/2 connection whose peer answers is kept, however long its streams are quiet.
    pub keep_alive_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            body_stall_timeout: Duration::from_secs(60),
            keep_alive_interval: Duration::from_secs(20),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// A search over experiments, in MLflow's grammar.
#[derive(Clone, Debug, Default)]
pub struct SearchExperiments {
    pub view: ViewType,
    pub filter: Option<String>,
    pub order_by: Vec<String>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
}

/// One metric's history for several runs, sampled to at most `max_results` points per run.
#[derive(Clone, Debug)]
pub struct BulkHistoryQuery {
    pub run_ids: Vec<RunId>,
    pub key: String,
    pub start_step: Option<i64>,
    pub end_step: Option<i64>,
    pub max_results: Option<i64>,
}

#[derive(Clone)]
pub struct Scheduler {
    store: Store,
    artifacts: ArtifactStore,
    snapshots: SnapshotStore,
    dispatch: DispatchHandle,
    sweeps: SweepHandle,
    /// Bumped after every visible change to a run, for followers.
    changes: Arc<watch::Sender<u64>>,
    stopping: watch::Receiver<bool>,
    /// The tasks behind long-lived streams (followers, worker sessions), awaited on shutdown.
    tasks: TaskTracker,
    /// Permits for CPU-heavy work on the blocking pool: a core's worth each.
    heavy: Arc<Semaphore>,
    /// The runs tables the web UI pages through, kept up to date between requests.
    tables: Arc<std::sync::Mutex<tables::Tables>>,
    telemetry: Arc<Telemetry>,
}

/// Tells a scheduler's long-lived streams, its sweep driver and its dispatcher to end, so a
/// graceful shutdown can complete.
pub struct StopSignal {
    stopping: watch::Sender<bool>,
    dispatcher: JoinHandle<()>,
    sweeps: JoinHandle<()>,
    tasks: TaskTracker,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Stops, and waits up to `timeout` for the streams' tasks, then the sweep driver, then
    /// the dispatcher to finish what they are doing. What is still running after that is
    /// abandoned: every write it made is durable or was never acknowledged.
    pub async fn finish(self, timeout: Duration) {
        self.stop();
        let StopSignal { tasks, sweeps, dispatcher, .. } = self;
        tasks.close();
        let in_order = async {
            tasks.wait().await;
            let _ = sweeps.await;
            let _ = dispatcher.await;
        };
        if tokio::time::timeout(timeout, in_order).await.is_err() {
            tracing::warn!(?timeout, "scheduler tasks did not stop in time; leaving them");
        }
    }
}

impl Scheduler {
    /// Recovers the queue, the leases and the sweeps in progress from `store`, and starts the
    /// dispatcher and the sweep driver.
    pub fn start(
        store: Store,
        options: &SchedulerOptions,
    ) -> Result<(Scheduler, StopSignal), ApiError> {
        let snapshots =
            SnapshotStore::open(store.clone(), options.snapshot_limit).map_err(|error| {
                ApiError::Internal(format!("cannot prepare the snapshot directory: {error}"))
            })?;
        let artifacts =
            ArtifactStore::open(store.dir(), options.artifact_limit).map_err(|error| {
                ApiError::Internal(format!("cannot prepare the artifact directory: {error}"))
            })?;
        let changes = Arc::new(watch::Sender::new(0u64));
        let telemetry = Arc::new(Telemetry::new());
        let (dispatcher, dispatch) =
            Dispatcher::recover(store.clone(), options.lease, changes.clone(), telemetry.clone())?;
        let (sweeps, sweep_commands) = SweepHandle::new();
        let driver =
            Driver::recover(store.clone(), dispatch.clone(), snapshots.clone(), sweep_commands)?;
        let (stop, stopping) = watch::channel(false);
        let dispatcher = tokio::spawn(dispatcher.run(until_stopped(stopping.clone())));
        let sweeps_task =
            tokio::spawn(driver.run(changes.subscribe(), until_stopped(stopping.clone())));
        let tasks = TaskTracker::new();
        // Heavy work may take every core but one, which stays with the async threads so that
        // everything else is answered while it runs.
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let heavy_permits = cores.saturating_sub(1).max(1);
        let scheduler = Scheduler {
            store,
            artifacts,
            snapshots,
            dispatch,
            sweeps,
            changes,
            stopping,
            tasks: tasks.clone(),
            heavy: Arc::new(Semaphore::new(heavy_permits)),
            tables: Arc::default(),
            telemetry,
        };
        let signal = StopSignal { stopping: stop, dispatcher, sweeps: sweeps_task, tasks };
        Ok((scheduler, signal))
    }

    /// The artifact store, for the artifact proxy.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Runs CPU-heavy work (a search over every run, a long history, a big page of JSON) on
    /// the blocking pool, on all cores but one, so the async threads go on answering
    /// everything else while it runs.
    pub async fn run_heavy<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.heavy.acquire().await.map_err(|_| stopped())?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| ApiError::Internal(format!("the request's work stopped: {error}")))?
    }

    /// What the scheduler measures about itself, to record calls in.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The metrics in OpenMetrics text, as Prometheus scrapes them.
    pub async fn metrics_text(&self) -> Result<String, ApiError> {
        let mut snapshot = self.dispatch.snapshot().await?;
        snapshot.points = self.store.points_written();
        snapshot.store_bytes = self.store.size_on_disk();
        Ok(self.telemetry.render(&snapshot))
    }

    /// Completes once the scheduler begins shutting down.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        until_stopped(self.stopping.clone())
    }
}

/// Completes once `stopping` says so (or its sender is gone).
async fn until_stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}
