//! The worker's stream to the scheduler: registration, heartbeats, assignments and
//! cancellations in, reports out. Reports carry sequence numbers and stay in the outbox
//! until acknowledged; after a reconnect the outbox is sent again, in order.
//!
//! The session owns every task the worker runs: one per run, and the tracking proxy's
//! server. It stops them in order when the worker shuts down, each within the shutdown
//! timeout: the runs (whose final reports it delivers first), then the proxy they log through.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::Client;
use drover_proto::execution::{
    AttemptId, RunPhase, SchedulerMessage, WorkerEvent, WorkerMessage, WorkerRegistration,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::executor::docker::{CONTAINER_HOST, DockerExecutor, InContainer};
use crate::options::WorkerOptions;
use crate::runner::{RunContext, Runner};
use crate::snapshots::SnapshotCache;
use crate::tracking_proxy::{ProxyServer, TrackingProxy};

/// Reports waiting for acknowledgement beyond which runs wait (their output backs up).
const MAX_UNACKED: usize = 4096;
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot prepare the work directory {path}: {source}")]
    WorkDir { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// A run in progress: how to ask it to stop.
struct RunControl {
    cancel: watch::Sender<Option<Duration>>,
}

struct Outbox {
    next_seq: u64,
    unacked: BTreeMap<u64, WorkerEvent>,
    /// Final reports not yet acknowledged: their attempts still count as running, so that a
    /// reconnect does not make the scheduler think they were lost.
    finishing: HashMap<u64, AttemptId>,
}

impl Outbox {
    fn push(&mut self, event: WorkerEvent) -> WorkerMessage {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.insert(seq, event.clone());
        WorkerMessage { seq: Some(seq), event }
    }
}

/// Runs the worker until `shutdown` completes; then stops its runs, delivers their final
/// reports (within the shutdown timeout), and returns.
pub async fn run(
    mut options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    if options.slots == 0 {
        return Err(WorkerError::Invalid("a worker needs at least one slot".to_string()));
    }
    let work_dir = options.work_dir.clone();
    let work_error = |source| WorkerError::WorkDir { path: work_dir.display().to_string(), source };
    std::fs::create_dir_all(work_dir.join("runs")).map_err(work_error)?;
    // Docker bind mounts need absolute paths.
    options.work_dir = work_dir.canonicalize().map_err(work_error)?;
    let worker_id = match &options.worker_id {
        Some(id) => id.clone(),
        None => load_or_create_id(&options.work_dir).map_err(work_error)?,
    };
    let mut docker = DockerExecutor::connect(&worker_id).await;
    // A worker in a container starts its runs beside itself, in its own network, with bind
    // mounts named as the Docker host knows its work directory.
    if let Some(engine) = &docker
        && let Some(container) = engine.own_container(&hostname()).await
    {
        let inside = InContainer {
            work_dir: options.work_dir.clone(),
            host_work_dir: options
                .host_work_dir
                .clone()
                .unwrap_or_else(|| options.work_dir.clone()),
            network_mode: format!("container:{container}"),
        };
        tracing::info!(?inside, "this worker runs in a container of the engine it uses");
        docker = docker.map(|docker| docker.inside_container(inside));
    }
    match &docker {
        Some(docker) => docker.reap_orphans().await,
        None => tracing::warn!("Docker is not reachable; this worker takes local runs only"),
    }
    let snapshots =
        SnapshotCache::open(&options.work_dir, options.snapshot_limit).map_err(work_error)?;
    let token = options.token.as_deref();
    let (tracking_proxy, proxy_server) = match (&docker, &options.tracking_uri) {
        (Some(docker), None) => {
            start_tracking_proxy(docker, &options.scheduler, token, options.ca.as_deref())
                .await
                .unzip()
        }
        _ => (None, None),
    };
    // Local runs talk to a scheduler that requires a token through a proxy on loopback that
    // adds it, as containers do through theirs, so no run ever holds the token.
    // Local runs talk to a scheduler that requires a token, or speaks TLS, through a proxy on
    // loopback that adds the token and the TLS, as containers do through theirs.
    let tls = options.scheduler.trim().starts_with("https://");
    let (local_proxy, local_proxy_server) = match (token.is_some() || tls, &options.tracking_uri) {
        (true, None) => {
            let scheduler = drover_proto::client::normalize_address(&options.scheduler)
                .map_err(|error| WorkerError::Invalid(error.to_string()))?;
            let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
            let (proxy, server) = TrackingProxy::start(
                loopback,
                "127.0.0.1",
                &scheduler,
                token,
                options.ca.as_deref(),
            )
            .await
            .map_err(|error| {
                WorkerError::Invalid(format!("cannot start the loopback tracking proxy: {error}"))
            })?;
            (Some(proxy), Some(server))
        }
        _ => (None, None),
    };
    let gpus = match &options.gpus {
        Some(gpus) => gpus.clone(),
        None => detect_gpus().await,
    };
    if !gpus.is_empty() {
        tracing::info!(gpus = gpus.join(","), "GPUs offered");
    }
    let registration = WorkerRegistration {
        gpus: gpus.clone(),
        worker_id: worker_id.clone(),
        hostname: hostname(),
        slots: options.slots,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: total_memory(),
        docker_available: docker.is_some(),
        running: Vec::new(),
        labels: options.labels.clone(),
    };
    let context = Arc::new(RunContext {
        worker_id: worker_id.clone(),
        options: options.clone(),
        docker,
        snapshots,
        tracking_proxy,
        local_proxy,
        gpus,
    });
    let session = Session {
        options,
        registration,
        context,
        runs: HashMap::new(),
        runners: JoinSet::new(),
        proxy_servers: proxy_server.into_iter().chain(local_proxy_server).collect(),
        outbox: Outbox { next_seq: 1, unacked: BTreeMap::new(), finishing: HashMap::new() },
        heartbeat_interval: Duration::from_secs(3),
        drain_deadline: None,
    };
    session.serve(shutdown).await;
    Ok(())
}

struct Session {
    options: WorkerOptions,
    registration: WorkerRegistration,
    context: Arc<RunContext>,
    runs: HashMap<AttemptId, RunControl>,
    /// The runs' tasks. A task outlives its entry in `runs` a little: it cleans up after its
    /// final report.
    runners: JoinSet<()>,
    /// Stopped after the runs, which log through it.
    proxy_servers: Vec<ProxyServer>,
    outbox: Outbox,
    heartbeat_interval: Duration,
    /// Set once shutdown begins: the time by which reports must be delivered.
    drain_deadline: Option<tokio::time::Instant>,
}

enum Ended {
    /// The stream broke; reconnect.
    Disconnected,
    /// Shutting down, and everything is delivered (or the time for it ran out).
    Drained,
}

impl Session {
    fn running(&self) -> Vec<AttemptId> {
        let mut running: Vec<AttemptId> =
            self.runs.keys().chain(self.outbox.finishing.values()).copied().collect();
        running.sort();
        running.dedup();
        running
    }

    /// Stops every run; their final reports are still delivered.
    fn begin_shutdown(&mut self) {
        tracing::info!(runs = self.runs.len(), "worker shutting down; stopping its runs");
        self.drain_deadline = Some(tokio::time::Instant::now() + self.options.shutdown_timeout);
        for control in self.runs.values() {
            let _ = control.cancel.send(Some(Duration::from_secs(5)));
        }
    }

    fn drained(&self) -> bool {
        self.drain_deadline.is_some() && self.runs.is_empty() && self.outbox.unacked.is_empty()
    }

    async fn drain_timeout(deadline: Option<tokio::time::Instant>) {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    }

    /// Serves until shutdown and the delivery of the final reports, then stops the worker's
    /// tasks.
    async fn serve(mut self, shutdown: impl Future<Output = ()> + Send) {
        self.exchange(shutdown).await;
        self.stop_tasks().await;
    }

    /// After the reports are delivered, or the time for it ran out: waits for the runs' tasks,
    /// then stops the tracking proxy, both until the shutdown deadline. A run still going at
    /// the deadline is dropped, as it would be if the process exited; its container, if any,
    /// is removed when this worker starts again.
    async fn stop_tasks(mut self) {
        let deadline = self.drain_deadline.unwrap_or_else(tokio::time::Instant::now);
        let runners = &mut self.runners;
        let joined = tokio::time::timeout_at(deadline, async {
            while let Some(ended) = runners.join_next().await {
                note_panic(ended);
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!(
                runs = self.runners.len(),
                "runs still stopping when the shutdown timeout ran out; dropping them"
            );
            self.runners.shutdown().await;
        }
        for proxy_server in std::mem::take(&mut self.proxy_servers) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            proxy_server.stop(left).await;
        }
    }

    /// Exchanges messages with the scheduler, reconnecting as needed, until shutdown and the
    /// delivery of the final reports (or the end of the time for it).
    async fn exchange(&mut self, shutdown: impl Future<Output = ()> + Send) {
        // The receiver goes on return, so that a run still sending reports never waits for room.
        let (events, mut reports) = mpsc::channel::<WorkerEvent>(1024);
        tokio::pin!(shutdown);
        let mut backoff = INITIAL_BACKOFF;
        loop {
            if let Ended::Drained = self.connect_once(&events, &mut reports, &mut shutdown).await {
                if !self.outbox.unacked.is_empty() {
                    tracing::warn!(
                        undelivered = self.outbox.unacked.len(),
                        "stopped with reports the scheduler has not acknowledged"
                    );
                }
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = &mut shutdown, if self.drain_deadline.is_none() => self.begin_shutdown(),
                () = Session::drain_timeout(self.drain_deadline) => {
                    tracing::warn!(undelivered = self.outbox.unacked.len(), "stopped with reports the scheduler has not acknowledged");
                    return;
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: register, resend the outbox, then exchange messages until the stream
    /// breaks or, when shutting down, everything is delivered.
    async fn connect_once(
        &mut self,
        events: &mpsc::Sender<WorkerEvent>,
        reports: &mut mpsc::Receiver<WorkerEvent>,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Ended {
        let token = self.options.token.as_deref();
        let ca = self.options.ca.as_deref();
        let client = match Client::connect_with(&self.options.scheduler, token, ca).await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "cannot reach the scheduler; retrying");
                return Ended::Disconnected;
            }
        };
        let (outgoing, outgoing_stream) = mpsc::channel::<WorkerMessage>(256);
        let mut registration = self.registration.clone();
        registration.running = self.running();
        let _ = outgoing
            .send(WorkerMessage { seq: None, event: WorkerEvent::Register(registration) })
            .await;
        let mut incoming = match client.attach_worker(ReceiverStream::new(outgoing_stream)).await {
            Ok(incoming) => incoming,
            Err(error) => {
                tracing::warn!(%error, "the scheduler refused the worker's stream; retrying");
                return Ended::Disconnected;
            }
        };
        // Everything not acknowledged goes again, in order; the scheduler stores it once.
        for (seq, event) in &self.outbox.unacked {
            if outgoing.send(WorkerMessage { seq: Some(*seq), event: event.clone() }).await.is_err()
            {
                return Ended::Disconnected;
            }
        }
        tracing::info!(
            scheduler = self.options.scheduler,
            worker_id = self.registration.worker_id,
            "connected to the scheduler"
        );
        let mut heartbeat = tokio::time::interval(self.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.drained() {
                return Ended::Drained;
            }
            tokio::select! {
                () = &mut *shutdown, if self.drain_deadline.is_none() => self.begin_shutdown(),
                () = Session::drain_timeout(self.drain_deadline) => return Ended::Drained,
                message = incoming.next() => match message {
                    Some(Ok(message)) => {
                        if let Some(interval) = self.receive(message, events) {
                            heartbeat = tokio::time::interval(interval);
                            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "the stream to the scheduler broke; reconnecting");
                        return Ended::Disconnected;
                    }
                    None => {
                        tracing::warn!("the scheduler closed the stream; reconnecting");
                        return Ended::Disconnected;
                    }
                },
                report = reports.recv(), if self.outbox.unacked.len() < MAX_UNACKED => {
                    let Some(report) = report else { return Ended::Drained };
                    let message = self.queue(report);
                    if outgoing.send(message).await.is_err() {
                        return Ended::Disconnected;
                    }
                }
                _ = heartbeat.tick() => {
                    let beat = WorkerMessage { seq: None, event: WorkerEvent::Heartbeat { running: self.running() } };
                    if outgoing.send(beat).await.is_err() {
                        return Ended::Disconnected;
                    }
                }
            }
        }
    }

    /// Puts a report in the outbox; a final report moves its attempt from running to
    /// finishing.
    fn queue(&mut self, report: WorkerEvent) -> WorkerMessage {
        let final_attempt = match &report {
            WorkerEvent::Update(update) if update.phase != RunPhase::Started => {
                Some(update.attempt)
            }
            _ => None,
        };
        let message = self.outbox.push(report);
        if let (Some(attempt), Some(seq)) = (final_attempt, message.seq) {
            self.runs.remove(&attempt);
            self.outbox.finishing.insert(seq, attempt);
        }
        message
    }

    /// Handles a message from the scheduler; returns a new heartbeat interval if it set one.
    fn receive(
        &mut self,
        message: SchedulerMessage,
        events: &mpsc::Sender<WorkerEvent>,
    ) -> Option<Duration> {
        match message {
            SchedulerMessage::Registered { heartbeat_interval, .. } => {
                self.heartbeat_interval = heartbeat_interval.max(Duration::from_millis(100));
                return Some(self.heartbeat_interval);
            }
            SchedulerMessage::Ack(seq) => {
                self.outbox.unacked.remove(&seq);
                self.outbox.finishing.remove(&seq);
            }
            SchedulerMessage::Assign(assignment) => {
                let attempt = assignment.attempt;
                if self.runs.contains_key(&attempt)
                    || self.outbox.finishing.values().any(|a| *a == attempt)
                {
                    tracing::debug!(%attempt, "assignment already running");
                    return None;
                }
                let stopping = self.drain_deadline.map(|_| Duration::ZERO);
                let (cancel, cancelled) = watch::channel(stopping);
                self.runs.insert(attempt, RunControl { cancel });
                tracing::info!(%attempt, "run assigned");
                while let Some(ended) = self.runners.try_join_next() {
                    note_panic(ended);
                }
                let runner =
                    Runner::new(self.context.clone(), *assignment, events.clone(), cancelled);
                self.runners.spawn(runner.execute());
            }
            SchedulerMessage::Cancel { attempt, grace_period } => match self.runs.get(&attempt) {
                Some(control) => {
                    tracing::info!(%attempt, "cancelling run");
                    let _ = control.cancel.send(Some(grace_period));
                }
                None => tracing::debug!(%attempt, "cancel for a run that is not here"),
            },
        }
        None
    }
}

/// Logs a run's task that panicked; its run is then never reported as ended.
fn note_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!(%error, "a run's task panicked");
    }
}

/// The proxy containers log through, on the Docker bridge's gateway; `None` (runs then get
/// the scheduler's address) when it cannot be set up.
async fn start_tracking_proxy(
    docker: &DockerExecutor,
    scheduler: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> Option<(TrackingProxy, ProxyServer)> {
    if docker.runs_share_network() {
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        return match TrackingProxy::start(
            loopback,
            "127.0.0.1",
            &scheduler_uri(scheduler)?,
            token,
            ca,
        )
        .await
        {
            Ok(started) => Some(started),
            Err(error) => {
                tracing::warn!(%error, "cannot start the tracking proxy; containers get the scheduler's address");
                None
            }
        };
    }
    let Some(gateway) = docker.bridge_gateway().await else {
        tracing::warn!(
            "cannot find the Docker bridge's gateway; containers get the scheduler's address for tracking"
        );
        return None;
    };
    let scheduler = drover_proto::client::normalize_address(scheduler).ok()?;
    match TrackingProxy::start(gateway, CONTAINER_HOST, &scheduler, token, ca).await {
        Ok(started) => Some(started),
        Err(error) => {
            tracing::warn!(%error, %gateway, "cannot start the tracking proxy; containers get the scheduler's address");
            None
        }
    }
}

/// The GPU device ids `nvidia-smi` lists (as Docker and CUDA number them); none when it is
/// missing or fails.
async fn detect_gpus() -> Vec<String> {
    let listed = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new("nvidia-smi")
            .args(["--query-gpu=index", "--format=csv,noheader"])
            .output(),
    )
    .await;
    match listed {
        Ok(Ok(output)) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn scheduler_uri(scheduler: &str) -> Option<String> {
    drover_proto::client::normalize_address(scheduler).ok()
}

fn load_or_create_id(work_dir: &Path) -> std::io::Result<String> {
    let path = work_dir.join("worker-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("{}-{}", hostname(), hex::encode(rand::random::<[u8; 4]>()));
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

/// Total memory from /proc/meminfo, in bytes (0 where unknown).
fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}
