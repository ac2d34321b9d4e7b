//! The dispatcher: one task that owns the queue, the workers and their leases, and every
//! placement decision. Other tasks talk to it through a [`DispatchHandle`].
//!
//! Each state change is written to the store before it is acted on or acknowledged, so a
//! restarted scheduler rebuilds the queue and the leases from the store alone.
//!
//! Submissions (`submit.rs`) are written by the caller's task, which then hands the queued
//! run to the dispatcher: concurrent submissions share the store's flushes instead of
//! waiting in the dispatcher's line. Messages to workers go through the courier
//! (`courier.rs`), in order, each once the writes it depends on are durable.

mod assign;
mod courier;
mod placement;
mod submit;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::ApiError;
use drover_proto::domain::{RunId, RunInfo, RunStatus, Tag};
use drover_proto::execution::{
    AttemptId, ClusterStatus, LostAttempt, RunPhase, RunSpec, RunUpdate, SchedulerMessage,
    WorkerRegistration, WorkerStatus,
};
use drover_proto::tags;
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{ExecutionRecord, Placement, RunChange, Store, now_ms};
use crate::telemetry::{Snapshot, Telemetry};

/// Timings of the worker protocol.
#[derive(Clone, Copy, Debug)]
pub struct LeaseOptions {
    /// How often workers say they are alive.
    pub heartbeat_interval: Duration,
    /// How long a worker may stay silent before its runs are requeued or failed.
    pub lease_timeout: Duration,
    /// How long a cancelled run gets between SIGTERM and SIGKILL.
    pub cancel_grace: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            heartbeat_interval: Duration::from_secs(3),
            lease_timeout: Duration::from_secs(15),
            cancel_grace: Duration::from_secs(10),
        }
    }
}

/// Commands handled before one placement pass, at most, so a flood of them cannot hold
/// placement back.
const COMMANDS_PER_PASS: usize = 256;

enum Command {
    Submitted(Box<ExecutionRecord>),
    Cancel {
        run_id: RunId,
        reply: oneshot::Sender<Result<RunInfo, ApiError>>,
    },
    Attach {
        registration: WorkerRegistration,
        /// Unbounded, so that no slow worker holds the dispatcher up: what it carries is
        /// bounded by the worker's slots (assignments), its attempts (cancels) and its
        /// unacknowledged reports (acknowledgements).
        outbox: mpsc::UnboundedSender<SchedulerMessage>,
        reply: oneshot::Sender<u64>,
    },
    Detach {
        worker_id: String,
        session: u64,
    },
    Heartbeat {
        worker_id: String,
        session: u64,
        reply: oneshot::Sender<bool>,
    },
    Update {
        worker_id: String,
        update: RunUpdate,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Status {
        reply: oneshot::Sender<ClusterStatus>,
    },
    Drain {
        worker_id: String,
        drain: bool,
        reply: oneshot::Sender<Result<WorkerStatus, ApiError>>,
    },
    Check {
        spec: Box<RunSpec>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
}

/// A cheap-to-clone handle on the dispatcher task.
#[derive(Clone)]
pub struct DispatchHandle {
    commands: mpsc::Sender<Command>,
    /// Where submissions are written before the dispatcher hears of them.
    store: Store,
}

/// What a handle on a scheduler task answers once the task has stopped.
pub(crate) fn stopped() -> ApiError {
    ApiError::Unavailable("the scheduler is shutting down".to_string())
}

impl DispatchHandle {
    async fn send(&self, command: Command) -> Result<(), ApiError> {
        self.commands.send(command).await.map_err(|_| stopped())
    }

    /// Hands the dispatcher a run whose submission is already in the store.
    async fn submitted(&self, record: ExecutionRecord) -> Result<(), ApiError> {
        self.send(Command::Submitted(Box::new(record))).await
    }

    pub async fn cancel(&self, run_id: RunId) -> Result<RunInfo, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Cancel { run_id, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Registers a worker's stream; returns the session that later messages name.
    pub async fn attach(
        &self,
        registration: WorkerRegistration,
        outbox: mpsc::UnboundedSender<SchedulerMessage>,
    ) -> Result<u64, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Attach { registration, outbox, reply }).await?;
        answer.await.map_err(|_| stopped())
    }

    pub async fn detach(&self, worker_id: String, session: u64) {
        let _ = self.send(Command::Detach { worker_id, session }).await;
    }

    /// Renews a worker's lease; `false` when its session is no longer the registered one
    /// (its lease lapsed, or it registered again), so that its stream must end.
    pub async fn heartbeat(&self, worker_id: String, session: u64) -> Result<bool, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Heartbeat { worker_id, session, reply }).await?;
        answer.await.map_err(|_| stopped())
    }

    /// Applies a worker's report; stale reports (an attempt that is not current) are ignored.
    pub async fn update(&self, worker_id: String, update: RunUpdate) -> Result<(), ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Update { worker_id, update, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn status(&self) -> Result<ClusterStatus, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Status { reply }).await?;
        answer.await.map_err(|_| stopped())
    }

    /// Refuses a run no registered worker could ever hold (64 GPUs, a label nobody has), with
    /// the reason; an unreadable resource request is refused too.
    pub async fn check(&self, spec: &RunSpec) -> Result<(), ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Check { spec: Box::new(spec.clone()), reply }).await?;
        answer.await.map_err(|_| stopped())?.map_err(ApiError::InvalidArgument)
    }

    /// Runs by state, the queue by priority and workers by state, for the metrics.
    pub async fn snapshot(&self) -> Result<Snapshot, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot { reply }).await?;
        answer.await.map_err(|_| stopped())
    }

    /// Stops (`drain`) or resumes placing runs on a worker; the runs it has finish.
    pub async fn drain(&self, worker_id: String, drain: bool) -> Result<WorkerStatus, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Drain { worker_id, drain, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }
}

struct Worker {
    registration: WorkerRegistration,
    /// None while the worker is disconnected but its lease has not lapsed.
    outbox: Option<courier::Outbox>,
    session: u64,
    last_seen: Instant,
    last_seen_ms: i64,
    /// Its current attempts, and what each holds of it.
    attempts: HashMap<AttemptId, Hold>,
}

/// What a current attempt holds of its worker, counted once when it is placed so that a
/// placement pass does not re-read every running attempt's spec.
#[derive(Debug, Default)]
struct Hold {
    cpus: f64,
    memory_bytes: u64,
    gpu_ids: Vec<String>,
}

impl Hold {
    fn of(record: &ExecutionRecord) -> Hold {
        let (cpus, memory_bytes) = placement::Request::of(&record.spec)
            .map_or((0.0, 0), |request| (request.cpus, request.memory_bytes));
        let gpu_ids =
            record.attempts.last().map(|attempt| attempt.gpu_ids.clone()).unwrap_or_default();
        Hold { cpus, memory_bytes, gpu_ids }
    }
}

/// Queue order: higher priority first, then earlier submission.
type QueueKey = (Reverse<i32>, i64, RunId);

fn queue_key(record: &ExecutionRecord) -> QueueKey {
    (Reverse(record.spec.priority), record.submitted_ms, record.run_id)
}

pub struct Dispatcher {
    store: Store,
    options: LeaseOptions,
    commands: mpsc::Receiver<Command>,
    /// Records of runs that have not ended.
    records: HashMap<RunId, ExecutionRecord>,
    queue: BTreeSet<QueueKey>,
    workers: HashMap<String, Worker>,
    next_session: u64,
    /// Bumped after every visible change, for followers.
    changes: Arc<watch::Sender<u64>>,
    /// Attempts whose worker was lost, newest first.
    recent_losses: VecDeque<LostAttempt>,
    /// Workers that take no new runs (kept in the store, so a restart keeps them drained).
    drained: HashSet<String>,
    /// Why queued runs wait, where it is more than a full cluster (also in their tags).
    waiting: HashMap<RunId, String>,
    telemetry: Arc<Telemetry>,
    /// The last pass stopped at its scan limit with room left, so another is due at once.
    place_again: bool,
    /// Every message to a worker goes through it, in order.
    courier: courier::Courier,
}

/// Lost attempts the cluster view keeps.
const MAX_RECENT_LOSSES: usize = 50;

impl Dispatcher {
    /// Rebuilds the dispatcher's state from the store. Runs that were placed on a worker keep
    /// their lease for one lease period, so their worker can reconnect and claim them.
    pub fn recover(
        store: Store,
        options: LeaseOptions,
        changes: Arc<watch::Sender<u64>>,
        telemetry: Arc<Telemetry>,
    ) -> Result<(Dispatcher, DispatchHandle), ApiError> {
        let (sender, commands) = mpsc::channel(1024);
        let handle = DispatchHandle { commands: sender, store: store.clone() };
        let mut dispatcher = Dispatcher {
            store,
            options,
            commands,
            records: HashMap::new(),
            queue: BTreeSet::new(),
            workers: HashMap::new(),
            next_session: 1,
            changes,
            recent_losses: VecDeque::new(),
            place_again: false,
            drained: HashSet::new(),
            waiting: HashMap::new(),
            telemetry,
            courier: courier::Courier::new(),
        };
        dispatcher.drained = dispatcher.store.drained_workers()?;
        for record in dispatcher.store.pending_executions()? {
            match record.placement.worker() {
                Some(worker_id) => {
                    let worker =
                        dispatcher.workers.entry(worker_id.to_string()).or_insert_with(|| Worker {
                            registration: WorkerRegistration {
                                worker_id: worker_id.to_string(),
                                hostname: String::new(),
                                slots: 0,
                                cpus: 0,
                                memory_bytes: 0,
                                docker_available: false,
                                running: Vec::new(),
                                labels: Vec::new(),
                                gpus: Vec::new(),
                            },
                            outbox: None,
                            session: 0,
                            last_seen: Instant::now(),
                            last_seen_ms: now_ms(),
                            attempts: HashMap::new(),
                        });
                    worker.attempts.insert(record.current_attempt(), Hold::of(&record));
                }
                None => {
                    dispatcher.queue.insert(queue_key(&record));
                }
            }
            dispatcher.records.insert(record.run_id, record);
        }
        Ok((dispatcher, handle))
    }

    /// Serves commands until `stop` completes or every handle is dropped.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticks =
            tokio::time::interval(self.options.heartbeat_interval.min(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.courier.start(self.store.clone(), self.changes.clone());
        self.place().await;
        loop {
            tokio::select! {
                () = &mut stop => break,
                command = self.commands.recv() => match command {
                    Some(command) => {
                        // Commands that queued up meanwhile share one placement pass.
                        let mut place = self.handle(command).await;
                        for _ in 1..COMMANDS_PER_PASS {
                            let Ok(command) = self.commands.try_recv() else { break };
                            place |= self.handle(command).await;
                        }
                        if place {
                            self.place().await;
                        }
                    }
                    None => break,
                },
                _ = ticks.tick() => {
                    self.expire_leases().await;
                    self.place().await;
                }
                () = std::future::ready(()), if self.place_again => self.place().await,
            }
        }
        tracing::debug!("dispatcher stopped");
    }

    fn changed(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Handles one command; returns whether it may let a queued run be placed.
    async fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Submitted(record) => {
                self.queue.insert(queue_key(&record));
                self.records.insert(record.run_id, *record);
                true
            }
            Command::Cancel { run_id, reply } => {
                let result = self.cancel(run_id).await;
                let _ = reply.send(result);
                true
            }
            Command::Attach { registration, outbox, reply } => {
                let session = self.attach(registration, outbox).await;
                let _ = reply.send(session);
                true
            }
            Command::Detach { worker_id, session } => {
                if let Some(worker) = self.workers.get_mut(&worker_id)
                    && worker.session == session
                {
                    tracing::info!(worker_id, "worker disconnected; its lease runs on");
                    worker.outbox = None;
                }
                false
            }
            Command::Heartbeat { worker_id, session, reply } => {
                let current = match self.workers.get_mut(&worker_id) {
                    Some(worker) if worker.session == session => {
                        worker.last_seen = Instant::now();
                        worker.last_seen_ms = now_ms();
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(current);
                false
            }
            Command::Update { worker_id, update, reply } => {
                let result = self.update(&worker_id, update).await;
                let _ = reply.send(result);
                true
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
                false
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
                false
            }
            Command::Check { spec, reply } => {
                let _ = reply.send(self.check_possible(&spec));
                false
            }
            Command::Drain { worker_id, drain, reply } => {
                let result = self.drain(worker_id, drain).await;
                let _ = reply.send(result);
                true
            }
        }
    }

    async fn drain(&mut self, worker_id: String, drain: bool) -> Result<WorkerStatus, ApiError> {
        let Some(worker) = self.workers.get(&worker_id) else {
            let mut known: Vec<&str> = self.workers.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(ApiError::NotFound(match known.len() {
                0 => format!("no worker '{worker_id}': no worker has registered"),
                _ => format!("no worker '{worker_id}'; the workers are {}", known.join(", ")),
            }));
        };
        let status = self.worker_status(worker);
        self.store.set_worker_drained(&worker_id, drain).await?;
        if drain {
            tracing::info!(
                worker_id,
                running = status.busy_slots,
                "worker drained: it takes no new runs"
            );
            self.drained.insert(worker_id);
        } else {
            tracing::info!(worker_id, "worker undrained: it takes runs again");
            self.drained.remove(&worker_id);
        }
        self.changed();
        Ok(WorkerStatus { draining: drain, ..status })
    }

    fn worker_status(&self, worker: &Worker) -> WorkerStatus {
        let view = self.view(worker);
        WorkerStatus {
            gpus: worker.registration.gpus.clone(),
            gpus_in_use: view.gpus_used.iter().map(|id| id.to_string()).collect(),
            cpus_in_use: view.cpus_used,
            memory_in_use_bytes: view.memory_used,
            worker_id: worker.registration.worker_id.clone(),
            hostname: worker.registration.hostname.clone(),
            slots: worker.registration.slots,
            busy_slots: worker.attempts.len() as u32,
            cpus: worker.registration.cpus,
            memory_bytes: worker.registration.memory_bytes,
            docker_available: worker.registration.docker_available,
            connected: worker.outbox.is_some(),
            last_seen_ms: worker.last_seen_ms,
            labels: worker.registration.labels.clone(),
            draining: self.drained.contains(&worker.registration.worker_id),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut runs: BTreeMap<&'static str, u64> = BTreeMap::new();
        for record in self.records.values() {
            let state = match record.placement {
                Placement::Queued => "queued",
                Placement::Assigned { .. } => "assigned",
                Placement::Running { .. } => "running",
                Placement::Done => continue,
            };
            *runs.entry(state).or_insert(0) += 1;
        }
        let mut queue: BTreeMap<i32, u64> = BTreeMap::new();
        for (Reverse(priority), ..) in &self.queue {
            *queue.entry(*priority).or_insert(0) += 1;
        }
        let mut workers: BTreeMap<&'static str, u64> = BTreeMap::new();
        for worker in self.workers.values() {
            let state = match (
                worker.outbox.is_some(),
                self.drained.contains(&worker.registration.worker_id),
            ) {
                (false, _) => "disconnected",
                (true, true) => "draining",
                (true, false) => "connected",
            };
            *workers.entry(state).or_insert(0) += 1;
        }
        Snapshot {
            runs: runs.into_iter().collect(),
            queue: queue.into_iter().collect(),
            workers: workers.into_iter().collect(),
            ..Snapshot::default()
        }
    }

    fn status(&self) -> ClusterStatus {
        let mut workers: Vec<WorkerStatus> =
            self.workers.values().map(|worker| self.worker_status(worker)).collect();
        workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        ClusterStatus {
            workers,
            queued_runs: self.queue.len() as u32,
            recent_losses: self.recent_losses.iter().cloned().collect(),
        }
    }

    async fn attach(
        &mut self,
        registration: WorkerRegistration,
        outbox: mpsc::UnboundedSender<SchedulerMessage>,
    ) -> u64 {
        let session = self.next_session;
        self.next_session += 1;
        let worker_id = registration.worker_id.clone();
        let claimed: HashSet<AttemptId> = registration.running.iter().copied().collect();
        tracing::info!(
            worker_id,
            slots = registration.slots,
            running = claimed.len(),
            "worker attached"
        );
        let registered = SchedulerMessage::Registered {
            heartbeat_interval: self.options.heartbeat_interval,
            lease_timeout: self.options.lease_timeout,
        };
        self.courier.send(&outbox, registered);
        let previous =
            self.workers.remove(&worker_id).map(|worker| worker.attempts).unwrap_or_default();
        let mut worker = Worker {
            registration,
            outbox: Some(outbox.clone()),
            session,
            last_seen: Instant::now(),
            last_seen_ms: now_ms(),
            attempts: HashMap::new(),
        };
        // Attempts the worker still runs and we still expect from it stay; others are stale.
        for attempt in &claimed {
            let current = self.records.get(&attempt.run_id).filter(|record| {
                record.current_attempt() == *attempt
                    && record.placement.worker() == Some(worker_id.as_str())
            });
            if let Some(record) = current {
                worker.attempts.insert(*attempt, Hold::of(record));
            } else {
                tracing::warn!(worker_id, %attempt, "worker runs an attempt that is no longer current; cancelling it");
                let cancel = SchedulerMessage::Cancel {
                    attempt: *attempt,
                    grace_period: self.options.cancel_grace,
                };
                self.courier.send(&outbox, cancel);
            }
        }
        self.workers.insert(worker_id.clone(), worker);
        // Attempts placed on this worker that it no longer has were lost with its old process.
        for attempt in previous.keys().filter(|attempt| !claimed.contains(attempt)) {
            self.lose_attempt(
                *attempt,
                &format!("worker {worker_id} restarted and no longer runs it"),
            )
            .await;
        }
        self.changed();
        session
    }

    async fn update(&mut self, worker_id: &str, update: RunUpdate) -> Result<(), ApiError> {
        let attempt = update.attempt;
        let Some(record) = self.records.get(&attempt.run_id) else {
            tracing::warn!(worker_id, %attempt, "report for a run that is not pending; ignored");
            return Ok(());
        };
        if record.current_attempt() != attempt || record.placement.worker() != Some(worker_id) {
            tracing::warn!(worker_id, %attempt, current = record.attempt, "stale report ignored");
            return Ok(());
        }
        let mut record = record.clone();
        let mut change = RunChange { tags: update.tags, ..RunChange::default() };
        let log_line;
        match update.phase {
            RunPhase::Started => {
                record.placement = Placement::Running { worker_id: worker_id.to_string() };
                if let Some(open) = record.open_attempt() {
                    open.started_ms = Some(now_ms());
                }
                change.status = Some(RunStatus::Running);
                log_line = format!("attempt {} started on worker {worker_id}", attempt.attempt);
            }
            phase => {
                let status = match phase {
                    RunPhase::Finished => RunStatus::Finished,
                    RunPhase::Killed => RunStatus::Killed,
                    _ => RunStatus::Failed,
                };
                record.placement = Placement::Done;
                self.telemetry.ended(status.as_str());
                record.exit_code = update.exit_code;
                record.message = update.message.clone();
                let outcome = if update.message.is_empty() {
                    status.to_string()
                } else {
                    format!("{status}: {}", update.message)
                };
                record.end_attempt(now_ms(), update.exit_code, outcome);
                change.status = Some(status);
                if let Some(code) = update.exit_code {
                    change.tags.push(Tag::new(tags::EXIT_CODE, code.to_string()));
                }
                if !update.message.is_empty() {
                    change.tags.push(Tag::new(tags::FAILURE_REASON, &update.message));
                }
                log_line = match (&update.exit_code, update.message.as_str()) {
                    (_, message) if !message.is_empty() => format!("run ended {status}: {message}"),
                    (Some(code), _) => format!("run ended {status} (exit code {code})"),
                    (None, _) => format!("run ended {status}"),
                };
            }
        }
        change.log_line = Some(log_line);
        // Acknowledged to the worker once durable; anything the dispatcher sends on the
        // strength of it (an assignment to the freed slot) waits for a later flush.
        self.store.write_execution(&record, change)?;
        if record.placement == Placement::Done {
            self.records.remove(&attempt.run_id);
            if let Some(worker) = self.workers.get_mut(worker_id) {
                worker.attempts.remove(&attempt);
            }
        } else {
            self.records.insert(attempt.run_id, record);
        }
        self.changed();
        Ok(())
    }

    async fn cancel(&mut self, run_id: RunId) -> Result<RunInfo, ApiError> {
        let Some(record) = self.records.get(&run_id).cloned() else {
            return match self.store.execution(run_id)? {
                Some(_) => {
                    let info = self.store.run(run_id)?.info;
                    Err(ApiError::FailedPrecondition(format!(
                        "run {run_id} has already ended ({})",
                        info.status
                    )))
                }
                None => {
                    self.store.run(run_id)?;
                    Err(ApiError::FailedPrecondition(format!(
                        "run {run_id} was not submitted to drover's queue, so there is nothing to cancel; set its status instead"
                    )))
                }
            };
        };
        if record.cancel_requested {
            return Ok(self.store.run(run_id)?.info);
        }
        match record.placement.clone() {
            Placement::Queued => {
                self.queue.remove(&queue_key(&record));
                let info =
                    self.finish(record, RunStatus::Killed, "cancelled before it started").await?;
                Ok(info)
            }
            Placement::Assigned { worker_id } | Placement::Running { worker_id } => {
                let mut record = record;
                record.cancel_requested = true;
                let change = RunChange {
                    log_line: Some("cancel requested; stopping the run".to_string()),
                    ..RunChange::default()
                };
                let info = self.store.save_execution(&record, change).await?;
                let attempt = record.current_attempt();
                self.records.insert(run_id, record);
                if let Some(outbox) = self.workers.get(&worker_id).and_then(|w| w.outbox.as_ref()) {
                    let cancel = SchedulerMessage::Cancel {
                        attempt,
                        grace_period: self.options.cancel_grace,
                    };
                    self.courier.send(outbox, cancel);
                }
                self.changed();
                Ok(info)
            }
            Placement::Done => {
                Err(ApiError::FailedPrecondition(format!("run {run_id} has already ended")))
            }
        }
    }

    /// Ends a run that no worker will report on.
    async fn finish(
        &mut self,
        mut record: ExecutionRecord,
        status: RunStatus,
        reason: &str,
    ) -> Result<RunInfo, ApiError> {
        record.placement = Placement::Done;
        record.message = reason.to_string();
        self.telemetry.ended(status.as_str());
        record.end_attempt(now_ms(), None, format!("{status}: {reason}"));
        let change = RunChange {
            status: Some(status),
            tags: vec![Tag::new(tags::FAILURE_REASON, reason)],
            log_line: Some(format!("run ended {status}: {reason}")),
            ..RunChange::default()
        };
        let info = self.store.save_execution(&record, change).await?;
        self.records.remove(&record.run_id);
        self.waiting.remove(&record.run_id);
        self.changed();
        Ok(info)
    }

    /// An attempt whose worker is gone: requeue it while retries remain, else fail it.
    async fn lose_attempt(&mut self, attempt: AttemptId, reason: &str) {
        let Some(record) = self.records.get(&attempt.run_id).cloned() else { return };
        if record.current_attempt() != attempt {
            return;
        }
        let requeued = !record.cancel_requested
            && (matches!(record.placement, Placement::Assigned { .. })
                || record.retries_used < record.spec.max_retries);
        if self.recent_losses.len() >= MAX_RECENT_LOSSES {
            self.recent_losses.pop_back();
        }
        self.recent_losses.push_front(LostAttempt {
            attempt,
            worker_id: record.placement.worker().unwrap_or_default().to_string(),
            time_ms: now_ms(),
            reason: reason.to_string(),
            requeued,
        });
        let result = if record.cancel_requested {
            self.finish(record, RunStatus::Killed, &format!("cancelled; {reason}"))
                .await
                .map(|_| ())
        } else if matches!(record.placement, Placement::Assigned { .. })
            || record.retries_used < record.spec.max_retries
        {
            // An attempt that never started costs no retry.
            let mut record = record;
            if matches!(record.placement, Placement::Running { .. }) {
                record.retries_used += 1;
            }
            record.placement = Placement::Queued;
            record.end_attempt(now_ms(), None, format!("lost: {reason}; requeued"));
            let line = format!(
                "{reason}; requeued (retries used: {} of {})",
                record.retries_used, record.spec.max_retries
            );
            let change = RunChange {
                status: Some(RunStatus::Scheduled),
                log_line: Some(line),
                ..RunChange::default()
            };
            let saved = self.store.save_execution(&record, change).await;
            if saved.is_ok() {
                self.queue.insert(queue_key(&record));
                self.records.insert(record.run_id, record);
                self.changed();
            }
            saved.map(|_| ())
        } else {
            self.finish(record, RunStatus::Failed, reason).await.map(|_| ())
        };
        if let Err(error) = result {
            tracing::error!(%attempt, %error, "could not record a lost attempt");
        }
    }

    async fn expire_leases(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, worker)| now.duration_since(worker.last_seen) > self.options.lease_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for worker_id in expired {
            let Some(worker) = self.workers.remove(&worker_id) else { continue };
            tracing::warn!(worker_id, attempts = worker.attempts.len(), "worker lease expired");
            for attempt in worker.attempts.into_keys() {
                self.lose_attempt(
                    attempt,
                    &format!("worker {worker_id} stopped responding (lease expired)"),
                )
                .await;
            }
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests;
