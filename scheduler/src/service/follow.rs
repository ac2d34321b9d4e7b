//! Following a run: its stored log from a cursor, then (when following) more as it comes,
//! until the run ends.

use std::time::Duration;

use drover_proto::ApiError;
use drover_proto::execution::{FollowRun, RunEvent};
use drover_proto::tags;
use tokio::sync::mpsc;

use super::Scheduler;
use crate::store::Placement;

/// Largest piece of log sent in one event.
const FOLLOW_CHUNK_BYTES: usize = 256 << 10;

/// Streams a run's log, then (when following) waits for more until the run ends.
pub(super) struct Follower {
    pub(super) scheduler: Scheduler,
    pub(super) request: FollowRun,
    pub(super) sender: mpsc::Sender<Result<RunEvent, ApiError>>,
}

impl Follower {
    pub(super) async fn run(self) {
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
                        .find(|t| t.key == tags::EXIT_CODE)
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
                () = self.scheduler.stopped() => {
                    return Err(ApiError::Unavailable("the scheduler is shutting down".to_string()));
                }
                () = self.sender.closed() => return Ok(()),
            }
        }
    }
}
