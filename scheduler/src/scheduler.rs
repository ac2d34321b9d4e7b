//! The scheduler as the API sees it: the store, the snapshot blobs and the dispatcher behind
//! one cheap-to-clone handle that implements the tracking and execution services.

use std::sync::Arc;
use std::time::Duration;

use drover_project::snapshot::{DEFAULT_SIZE_LIMIT, SnapshotDigest};
use drover_proto::ApiError;
use drover_proto::domain::{Run, RunId, RunInfo, Tag};
use drover_proto::execution::{
    AttemptId, BoxStream, ClusterStatus, FollowRun, RunEvent, SchedulerMessage, SnapshotChunk,
    SubmitRun, UploadedSnapshot, WorkerEvent, WorkerMessage,
};
use drover_proto::service::Execution;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::dispatch::{DispatchHandle, Dispatcher, EXIT_CODE_TAG, LeaseOptions};
use crate::rest::ArtifactStore;
use crate::snapshots::SnapshotStore;
use crate::store::{Placement, Store};

/// How the scheduler runs, validated once by whoever starts it.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerOptions {
    pub lease: LeaseOptions,
    /// Largest project snapshot accepted, in bytes.
    pub snapshot_limit: u64,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions { lease: LeaseOptions::default(), snapshot_limit: DEFAULT_SIZE_LIMIT }
    }
}

pub const SNAPSHOT_TAG: &str = "drover.snapshot.digest";
pub const IMAGE_TAG: &str = "drover.docker.image";
pub const ENV_MANAGER_TAG: &str = "drover.env_manager";
pub const ENTRY_POINT_TAG: &str = "mlflow.project.entryPoint";

/// How often a busy worker stream refreshes its worker's lease.
const TOUCH_INTERVAL: Duration = Duration::from_millis(500);

/// Largest piece of log sent in one event.
const FOLLOW_CHUNK_BYTES: usize = 256 << 10;

#[derive(Clone)]
pub struct Scheduler {
    pub(crate) store: Store,
    pub(crate) artifacts: ArtifactStore,
    snapshots: SnapshotStore,
    dispatch: DispatchHandle,
    /// Bumped after every visible change to a run, for followers.
    changes: Arc<watch::Sender<u64>>,
    stopping: watch::Receiver<bool>,
}

/// Tells a scheduler's long-lived streams and its dispatcher to end, so a graceful shutdown
/// can complete.
pub struct StopSignal {
    stopping: watch::Sender<bool>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Stops, and waits for the dispatcher to finish what it is doing.
    pub async fn finish(self) {
        self.stop();
        let _ = self.dispatcher.await;
    }
}

impl Scheduler {
    /// Recovers the queue and leases from `store` and starts the dispatcher.
    pub fn start(
        store: Store,
        options: SchedulerOptions,
    ) -> Result<(Scheduler, StopSignal), ApiError> {
        let snapshots =
            SnapshotStore::open(store.clone(), options.snapshot_limit).map_err(|error| {
                ApiError::Internal(format!("cannot prepare the snapshot directory: {error}"))
            })?;
        let artifacts = ArtifactStore::open(store.dir()).map_err(|error| {
            ApiError::Internal(format!("cannot prepare the artifact directory: {error}"))
        })?;
        let changes = Arc::new(watch::Sender::new(0u64));
        let (dispatcher, dispatch) =
            Dispatcher::recover(store.clone(), options.lease, changes.clone())?;
        let (stop, stopping) = watch::channel(false);
        let dispatcher = tokio::spawn(dispatcher.run(Scheduler::stopped(stopping.clone())));
        let signal = StopSignal { stopping: stop, dispatcher };
        Ok((Scheduler { store, artifacts, snapshots, dispatch, changes, stopping }, signal))
    }
    /// Completes once the scheduler begins shutting down.
    pub(crate) async fn stopped(mut stopping: watch::Receiver<bool>) {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag { key: key.to_string(), value: value.to_string() }
}

impl Execution for Scheduler {
    async fn submit_run(&self, mut request: SubmitRun) -> Result<Run, ApiError> {
        let spec = &request.spec;
        if !self.snapshots.has(&spec.snapshot)? {
            return Err(ApiError::FailedPrecondition(format!(
                "snapshot {} is not on this scheduler; upload it before submitting",
                spec.snapshot
            )));
        }
        // Facts the scheduler vouches for, whatever the client sent.
        let mut facts = vec![
            tag(SNAPSHOT_TAG, spec.snapshot.as_str()),
            tag(ENTRY_POINT_TAG, &spec.entry_point),
            tag(ENV_MANAGER_TAG, spec.env_manager.as_str()),
        ];
        if let Some(image) = &spec.image {
            facts.push(tag(IMAGE_TAG, image));
        }
        request.tags.retain(|tag| !facts.iter().any(|fact| fact.key == tag.key));
        request.tags.extend(facts);
        let (run, record) = self.store.submit_run(request).await?;
        self.store.append_system_log(run.info.run_id, "run queued").await?;
        self.dispatch.submitted(record).await?;
        Ok(run)
    }

    async fn cancel_run(&self, run_id: RunId) -> Result<RunInfo, ApiError> {
        self.dispatch.cancel(run_id).await
    }

    async fn follow_run(
        &self,
        request: FollowRun,
    ) -> Result<BoxStream<Result<RunEvent, ApiError>>, ApiError> {
        self.store.run(request.run_id)?;
        let (sender, receiver) = mpsc::channel(16);
        let follower = Follower { scheduler: self.clone(), request, sender };
        tokio::spawn(follower.run());
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }

    async fn cluster_status(&self) -> Result<ClusterStatus, ApiError> {
        self.dispatch.status().await
    }

    async fn has_snapshot(&self, digest: SnapshotDigest) -> Result<(bool, u64), ApiError> {
        Ok((self.snapshots.has(&digest)?, self.snapshots.limit()))
    }

    async fn upload_snapshot(
        &self,
        chunks: BoxStream<Result<SnapshotChunk, ApiError>>,
    ) -> Result<UploadedSnapshot, ApiError> {
        self.snapshots.upload(chunks).await
    }

    async fn download_snapshot(
        &self,
        digest: SnapshotDigest,
    ) -> Result<BoxStream<Result<Vec<u8>, ApiError>>, ApiError> {
        self.snapshots.download(&digest).await
    }

    async fn connect_worker(
        &self,
        mut incoming: BoxStream<Result<WorkerMessage, ApiError>>,
    ) -> Result<BoxStream<Result<SchedulerMessage, ApiError>>, ApiError> {
        let registration = match incoming.next().await {
            Some(Ok(WorkerMessage { event: WorkerEvent::Register(registration), .. })) => {
                registration
            }
            Some(Ok(_)) => {
                return Err(ApiError::InvalidArgument(
                    "a worker's first message must register it".to_string(),
                ));
            }
            Some(Err(error)) => return Err(error),
            None => {
                return Err(ApiError::InvalidArgument(
                    "the worker closed its stream before registering".to_string(),
                ));
            }
        };
        let (outbox, replies) = mpsc::channel(256);
        let worker_id = registration.worker_id.clone();
        let session = self.dispatch.attach(registration, outbox.clone()).await?;
        let session = WorkerSession { scheduler: self.clone(), worker_id, session, outbox };
        tokio::spawn(session.run(incoming));
        Ok(Box::pin(ReceiverStream::new(replies).map(Ok)))
    }
}

/// Reads one worker's stream: applies its reports and acknowledges them once durable.
struct WorkerSession {
    scheduler: Scheduler,
    worker_id: String,
    session: u64,
    outbox: mpsc::Sender<SchedulerMessage>,
}

impl WorkerSession {
    async fn run(self, mut incoming: BoxStream<Result<WorkerMessage, ApiError>>) {
        let stopped = Scheduler::stopped(self.scheduler.stopping.clone());
        tokio::pin!(stopped);
        let mut last_touch = std::time::Instant::now();
        loop {
            let message = tokio::select! {
                message = incoming.next() => message,
                () = &mut stopped => break,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::info!(worker_id = self.worker_id, %error, "worker stream broke");
                    break;
                }
                None => break,
            };
            // Any message shows the worker is alive; reports queued behind slow writes must
            // not let its lease lapse while its heartbeat waits in line.
            if !matches!(message.event, WorkerEvent::Heartbeat { .. })
                && last_touch.elapsed() >= TOUCH_INTERVAL
            {
                last_touch = std::time::Instant::now();
                let _ =
                    self.scheduler.dispatch.heartbeat(self.worker_id.clone(), self.session).await;
            }
            match self.apply(message.event).await {
                // A report that can never be applied is acknowledged and dropped, or the
                // worker would resend it forever.
                Err(
                    ApiError::InvalidArgument(reason)
                    | ApiError::NotFound(reason)
                    | ApiError::FailedPrecondition(reason),
                ) => {
                    tracing::warn!(worker_id = self.worker_id, reason, "refused a worker report");
                    if let Some(seq) = message.seq
                        && self.outbox.send(SchedulerMessage::Ack(seq)).await.is_err()
                    {
                        break;
                    }
                }
                Ok(()) => {
                    if let Some(seq) = message.seq
                        && self.outbox.send(SchedulerMessage::Ack(seq)).await.is_err()
                    {
                        break;
                    }
                }
                Err(error) => {
                    // Not acknowledged: the worker resends it after reconnecting.
                    tracing::error!(worker_id = self.worker_id, %error, "cannot apply a worker report; closing its stream");
                    break;
                }
            }
        }
        self.scheduler.dispatch.detach(self.worker_id.clone(), self.session).await;
    }

    /// Whether `attempt` is the run's current one, placed on this worker.
    fn is_current(&self, attempt: AttemptId) -> Result<bool, ApiError> {
        Ok(self.scheduler.store.execution(attempt.run_id)?.is_some_and(|record| {
            record.current_attempt() == attempt
                && record.placement.worker() == Some(self.worker_id.as_str())
        }))
    }

    async fn apply(&self, event: WorkerEvent) -> Result<(), ApiError> {
        match event {
            WorkerEvent::Heartbeat { .. } => {
                self.scheduler.dispatch.heartbeat(self.worker_id.clone(), self.session).await
            }
            WorkerEvent::Update(update) => {
                self.scheduler.dispatch.update(self.worker_id.clone(), update).await
            }
            WorkerEvent::Metrics(batch) => {
                if !self.is_current(batch.attempt)? {
                    tracing::debug!(worker_id = self.worker_id, attempt = %batch.attempt, "metrics of a stale attempt dropped");
                    return Ok(());
                }
                let run_id = batch.attempt.run_id;
                for conflict in self.scheduler.store.apply_metric_batch(&batch).await? {
                    let line = format!("ignored a ::param line: {conflict}");
                    self.scheduler.store.append_system_log(run_id, &line).await?;
                }
                Ok(())
            }
            WorkerEvent::Log(log) => {
                if !self.is_current(log.attempt)? {
                    tracing::debug!(worker_id = self.worker_id, attempt = %log.attempt, "log of a stale attempt dropped");
                    return Ok(());
                }
                if self
                    .scheduler
                    .store
                    .append_attempt_log(log.attempt, log.stream, log.offset, &log.data)
                    .await?
                {
                    self.scheduler.changes.send_modify(|generation| *generation += 1);
                }
                Ok(())
            }
            WorkerEvent::Register(_) => {
                Err(ApiError::InvalidArgument("a worker registers once per stream".to_string()))
            }
        }
    }
}

/// Streams a run's log, then (when following) waits for more until the run ends.
struct Follower {
    scheduler: Scheduler,
    request: FollowRun,
    sender: mpsc::Sender<Result<RunEvent, ApiError>>,
}

impl Follower {
    async fn run(self) {
        if let Err(error) = self.stream().await {
            let _ = self.sender.send(Err(error)).await;
        }
    }

    async fn stream(&self) -> Result<(), ApiError> {
        let store = &self.scheduler.store;
        let run_id = self.request.run_id;
        let mut changes = self.scheduler.changes.subscribe();
        let mut cursor = self.request.after_cursor;
        loop {
            changes.borrow_and_update();
            // The state is read before the log: a run's output is stored before its final
            // report, so once the state says "ended", the log read after it is complete.
            // The record is read before the run, because both change in one write.
            let record = store.execution(run_id)?;
            let run = store.run(run_id)?;
            // A run drover executes has ended when its worker's final report is in (a script
            // may mark its run finished through the tracking API before it exits); any other
            // run when its status says so.
            let ended = match &record {
                Some(record) => record.placement == Placement::Done,
                None => run.info.status.is_terminal(),
            };
            loop {
                let chunks = store.read_log(run_id, cursor, FOLLOW_CHUNK_BYTES)?;
                if chunks.is_empty() {
                    break;
                }
                for chunk in chunks {
                    cursor = chunk.end_cursor;
                    let event = RunEvent::Log { stream: chunk.stream, data: chunk.data, cursor };
                    if self.sender.send(Ok(event)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if ended || !self.request.follow {
                let exit_code = record.as_ref().and_then(|r| r.exit_code).or_else(|| {
                    run.data
                        .tags
                        .iter()
                        .find(|t| t.key == EXIT_CODE_TAG)
                        .and_then(|t| t.value.parse().ok())
                });
                let message = record.map(|r| r.message).unwrap_or_default();
                let _ = self
                    .sender
                    .send(Ok(RunEvent::State { status: run.info.status, exit_code, message }))
                    .await;
                return Ok(());
            }
            // Wake on any change, or every few seconds in case a change was made elsewhere
            // (a status set through the tracking API).
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = Scheduler::stopped(self.scheduler.stopping.clone()) => {
                    return Err(ApiError::Unavailable("the scheduler is shutting down".to_string()));
                }
                () = self.sender.closed() => return Ok(()),
            }
        }
    }
}
