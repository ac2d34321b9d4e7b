//! The scheduler as the API sees it: the store, the snapshot blobs and the dispatcher behind
//! one cheap-to-clone handle that implements the tracking and execution services.

use std::sync::Arc;
use std::time::Duration;

use drover_project::snapshot::{DEFAULT_SIZE_LIMIT, SnapshotDigest};
use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, Run, RunId, RunInfo, Tag};
use drover_proto::execution::{
    AttemptId, BoxStream, ClusterStatus, FollowRun, RunEvent, SchedulerMessage, SnapshotChunk,
    SubmitRun, UploadedSnapshot, WorkerEvent, WorkerMessage,
};
use drover_proto::service::{Execution, Sweeps};
use drover_proto::sweep::{CreateSweep, Sweep, Trial};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::dispatch::{DispatchHandle, Dispatcher, EXIT_CODE_TAG, LeaseOptions};
use crate::rest::ArtifactStore;
use crate::snapshots::SnapshotStore;
use crate::store::{Placement, Store, SweepRecord, Ticket, TrialRecord};
use crate::sweep::{self, Driver, SweepHandle};

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
    sweeps: SweepHandle,
    /// Bumped after every visible change to a run, for followers.
    changes: Arc<watch::Sender<u64>>,
    stopping: watch::Receiver<bool>,
}

/// Tells a scheduler's long-lived streams and its dispatcher to end, so a graceful shutdown
/// can complete.
pub struct StopSignal {
    stopping: watch::Sender<bool>,
    dispatcher: tokio::task::JoinHandle<()>,
    sweeps: tokio::task::JoinHandle<()>,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Stops, and waits for the dispatcher to finish what it is doing.
    pub async fn finish(self) {
        self.stop();
        let _ = self.sweeps.await;
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
        let (sweeps, sweep_commands) = SweepHandle::new();
        let scheduler =
            Scheduler { store, artifacts, snapshots, dispatch, sweeps, changes, stopping };
        let driver = Driver::recover(scheduler.clone(), sweep_commands)?;
        let sweeps = tokio::spawn(
            driver
                .run(scheduler.changes.subscribe(), Scheduler::stopped(scheduler.stopping.clone())),
        );
        let signal = StopSignal { stopping: stop, dispatcher, sweeps };
        Ok((scheduler, signal))
    }

    pub(crate) fn has_snapshot(&self, digest: &SnapshotDigest) -> Result<bool, ApiError> {
        self.snapshots.has(digest)
    }

    /// Adds the tags the scheduler vouches for, whatever the client sent.
    fn add_facts(request: &mut SubmitRun) {
        let spec = &request.spec;
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
    }

    /// Queues a sweep's trial: its run, its record and the sweep's cursor in one write.
    pub(crate) async fn submit_trial(
        &self,
        sweep: &SweepRecord,
        trial: Trial,
        mut request: SubmitRun,
    ) -> Result<TrialRecord, ApiError> {
        Scheduler::add_facts(&mut request);
        let (run, record, trial) = self.store.submit_trial(sweep, trial, request).await?;
        // The trial is stored and its run queued in the store (the dispatcher recovers it
        // from there after a restart); what follows cannot undo that.
        let run_id = run.info.run_id;
        if let Err(error) = self.store.append_system_log(run_id, "run queued").await {
            tracing::warn!(%run_id, %error, "cannot note the queued trial in its log");
        }
        if let Err(error) = self.dispatch.submitted(record).await {
            tracing::warn!(%run_id, %error, "the dispatcher did not take the trial's run");
        }
        Ok(trial)
    }

    pub(crate) async fn cancel_child(&self, run_id: RunId) -> Result<RunInfo, ApiError> {
        self.dispatch.cancel(run_id).await
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
        Scheduler::add_facts(&mut request);
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

impl Sweeps for Scheduler {
    async fn create_sweep(&self, request: CreateSweep) -> Result<Sweep, ApiError> {
        let id = self.sweeps.create(request).await?;
        self.get_sweep(id).await
    }

    async fn get_sweep(&self, sweep_id: RunId) -> Result<Sweep, ApiError> {
        let record = self
            .store
            .sweep_record(sweep_id)?
            .ok_or_else(|| ApiError::NotFound(format!("no sweep with ID {sweep_id}")))?;
        let trials = self.store.trial_records(sweep_id)?;
        Ok(sweep::view(&record, &trials))
    }

    async fn list_sweeps(&self, experiment: Option<ExperimentId>) -> Result<Vec<Sweep>, ApiError> {
        let mut sweeps = Vec::new();
        for record in self.store.sweep_records()? {
            if sweep::in_experiment(&record, experiment) {
                let trials = self.store.trial_records(record.id)?;
                sweeps.push(sweep::view(&record, &trials));
            }
        }
        Ok(sweeps)
    }

    async fn cancel_sweep(&self, sweep_id: RunId) -> Result<Sweep, ApiError> {
        self.sweeps.cancel(sweep_id).await?;
        self.get_sweep(sweep_id).await
    }
}

/// Reads one worker's stream: applies its reports in order and acknowledges each once
/// durable. Logs and metrics are written without waiting for the disk; an acknowledger task
/// waits, in order, for the flush covering each, so one worker's reports share group commits
/// instead of paying one flush apiece. A crash loses only unacknowledged reports, which the
/// worker resends and the store applies once.
struct WorkerSession {
    scheduler: Scheduler,
    worker_id: String,
    session: u64,
    outbox: mpsc::Sender<SchedulerMessage>,
}

/// Reports applied but not yet acknowledged, at most.
const ACK_PIPELINE: usize = 256;

/// What an applied report waits for before its acknowledgement.
struct Pending {
    seq: Option<u64>,
    /// The flush covering its writes; `None` when it wrote nothing, or waited already.
    ticket: Option<Ticket>,
    /// Whether it added to a run's log, which followers are told once it is durable.
    log_changed: bool,
}

impl WorkerSession {
    async fn run(self, mut incoming: BoxStream<Result<WorkerMessage, ApiError>>) {
        let stopped = Scheduler::stopped(self.scheduler.stopping.clone());
        tokio::pin!(stopped);
        let (pending, acknowledger) = mpsc::channel(ACK_PIPELINE);
        let acknowledger = tokio::spawn(acknowledge(
            self.scheduler.clone(),
            self.worker_id.clone(),
            acknowledger,
            self.outbox.clone(),
        ));
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
            let applied = match self.apply(message.event).await {
                Ok(applied) => applied,
                // A report that can never be applied is acknowledged and dropped, or the
                // worker would resend it forever.
                Err(
                    ApiError::InvalidArgument(reason)
                    | ApiError::NotFound(reason)
                    | ApiError::FailedPrecondition(reason),
                ) => {
                    tracing::warn!(worker_id = self.worker_id, reason, "refused a worker report");
                    Applied::default()
                }
                Err(error) => {
                    // Not acknowledged: the worker resends it after reconnecting.
                    tracing::error!(worker_id = self.worker_id, %error, "cannot apply a worker report; closing its stream");
                    break;
                }
            };
            let ticket = applied.needs_flush.then(|| self.scheduler.store.ticket());
            let entry = Pending { seq: message.seq, ticket, log_changed: applied.log_changed };
            if pending.send(entry).await.is_err() {
                break; // The acknowledger stopped: the store failed, or the worker left.
            }
        }
        drop(pending);
        let _ = acknowledger.await;
        self.scheduler.dispatch.detach(self.worker_id.clone(), self.session).await;
    }

    /// Whether `attempt` is the run's current one, placed on this worker.
    fn is_current(&self, attempt: AttemptId) -> Result<bool, ApiError> {
        Ok(self.scheduler.store.execution(attempt.run_id)?.is_some_and(|record| {
            record.current_attempt() == attempt
                && record.placement.worker() == Some(self.worker_id.as_str())
        }))
    }

    async fn apply(&self, event: WorkerEvent) -> Result<Applied, ApiError> {
        match event {
            WorkerEvent::Heartbeat { .. } => {
                self.scheduler.dispatch.heartbeat(self.worker_id.clone(), self.session).await?;
                Ok(Applied::default())
            }
            WorkerEvent::Update(update) => {
                self.scheduler.dispatch.update(self.worker_id.clone(), update).await?;
                Ok(Applied::default())
            }
            WorkerEvent::Metrics(batch) => {
                if !self.is_current(batch.attempt)? {
                    tracing::debug!(worker_id = self.worker_id, attempt = %batch.attempt, "metrics of a stale attempt dropped");
                    return Ok(Applied::default());
                }
                self.scheduler.store.write_metric_batch(&batch)?;
                Ok(Applied { needs_flush: true, log_changed: false })
            }
            WorkerEvent::Log(log) => {
                if !self.is_current(log.attempt)? {
                    tracing::debug!(worker_id = self.worker_id, attempt = %log.attempt, "log of a stale attempt dropped");
                    return Ok(Applied::default());
                }
                let wrote = self.scheduler.store.write_attempt_log(
                    log.attempt,
                    log.stream,
                    log.offset,
                    &log.data,
                )?;
                // A resent chunk writes nothing now, but its first copy may still be on its
                // way to disk: its acknowledgement waits for a flush all the same.
                Ok(Applied { needs_flush: true, log_changed: wrote })
            }
            WorkerEvent::Register(_) => {
                Err(ApiError::InvalidArgument("a worker registers once per stream".to_string()))
            }
        }
    }
}

/// What applying a report did.
#[derive(Default)]
struct Applied {
    /// Its acknowledgement waits for a flush: it wrote without waiting for the disk, or it
    /// repeats a write that may not be on disk yet.
    needs_flush: bool,
    log_changed: bool,
}

/// Acknowledges applied reports in order, each once its writes are durable.
async fn acknowledge(
    scheduler: Scheduler,
    worker_id: String,
    mut pending: mpsc::Receiver<Pending>,
    outbox: mpsc::Sender<SchedulerMessage>,
) {
    while let Some(Pending { seq, ticket, log_changed }) = pending.recv().await {
        if let Some(ticket) = ticket
            && let Err(error) = scheduler.store.wait(ticket).await
        {
            tracing::error!(worker_id, %error, "worker reports are not durable; closing its stream");
            return;
        }
        if log_changed {
            scheduler.changes.send_modify(|generation| *generation += 1);
        }
        if let Some(seq) = seq
            && outbox.send(SchedulerMessage::Ack(seq)).await.is_err()
        {
            return;
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
