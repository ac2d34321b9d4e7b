//! A worker's stream, as the scheduler reads it: reports applied in order, each acknowledged
//! once durable.

use std::time::{Duration, Instant};

use drover_proto::ApiError;
use drover_proto::execution::{AttemptId, BoxStream, SchedulerMessage, WorkerEvent, WorkerMessage};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::Scheduler;
use crate::store::Ticket;

/// How often a busy worker stream refreshes its worker's lease.
const TOUCH_INTERVAL: Duration = Duration::from_millis(500);

/// Reads one worker's stream: applies its reports in order and acknowledges each once
/// durable. Logs and metrics are written without waiting for the disk; an acknowledger task
/// waits, in order, for the flush covering each, so one worker's reports share group commits
/// instead of paying one flush apiece. A crash loses only unacknowledged reports, which the
/// worker resends and the store applies once.
pub(super) struct WorkerSession {
    pub(super) scheduler: Scheduler,
    pub(super) worker_id: String,
    pub(super) session: u64,
    pub(super) outbox: mpsc::UnboundedSender<SchedulerMessage>,
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
    pub(super) async fn run(self, mut incoming: BoxStream<Result<WorkerMessage, ApiError>>) {
        let stopped = self.scheduler.stopped();
        tokio::pin!(stopped);
        let (pending, acknowledger) = mpsc::channel(ACK_PIPELINE);
        let acknowledger = tokio::spawn(acknowledge(
            self.scheduler.clone(),
            self.worker_id.clone(),
            acknowledger,
            self.outbox.clone(),
        ));
        let mut last_touch = Instant::now();
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
            let beat = matches!(message.event, WorkerEvent::Heartbeat { .. });
            if beat || last_touch.elapsed() >= TOUCH_INTERVAL {
                last_touch = Instant::now();
                let current = self
                    .scheduler
                    .dispatch
                    .heartbeat(self.worker_id.clone(), self.session)
                    .await
                    .unwrap_or(false);
                // A stream that outlived its lease (a network cut that healed before the
                // connection noticed) ends, so the worker registers again and its stale
                // attempts are sorted out.
                if !current {
                    tracing::warn!(
                        worker_id = self.worker_id,
                        "a worker's stream outlived its lease; closing it so the worker registers again"
                    );
                    break;
                }
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
            // The worker keeps a report until it is acknowledged and waits for nothing: its
            // flush may be shared with the next placement's.
            let ticket = applied.needs_flush.then(|| self.scheduler.store.lazy_ticket());
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
            // Renewed above, for every message.
            WorkerEvent::Heartbeat { .. } => Ok(Applied::default()),
            WorkerEvent::Update(update) => {
                // The dispatcher writes a report without waiting for the disk.
                self.scheduler.dispatch.update(self.worker_id.clone(), update).await?;
                Ok(Applied { needs_flush: true, log_changed: false })
            }
            WorkerEvent::Metrics(batch) => {
                if !self.scheduler.store.write_metric_batch(&batch, &self.worker_id)? {
                    tracing::debug!(worker_id = self.worker_id, attempt = %batch.attempt, "metrics of a stale attempt dropped");
                    return Ok(Applied::default());
                }
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
    outbox: mpsc::UnboundedSender<SchedulerMessage>,
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
            && outbox.send(SchedulerMessage::Ack(seq)).is_err()
        {
            return;
        }
    }
}
