//! Submitting, following and cancelling runs; snapshots; the workers' streams.

use drover_project::snapshot::SnapshotDigest;
use drover_proto::ApiError;
use drover_proto::domain::{Run, RunId, RunInfo};
use drover_proto::execution::{
    AttemptView, BoxStream, ClusterStatus, FollowRun, RunEvent, RunSpec, SchedulerMessage,
    SnapshotChunk, SubmitRun, UploadedSnapshot, WorkerEvent, WorkerMessage, WorkerStatus,
};
use drover_proto::service::Execution;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

use super::Scheduler;
use super::follow::Follower;
use super::workers::WorkerSession;

impl Execution for Scheduler {
    async fn submit_run(&self, request: SubmitRun) -> Result<Run, ApiError> {
        self.snapshots.require(&request.spec.snapshot)?;
        self.dispatch.submit_run(request).await
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
        self.tasks.spawn(follower.run());
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }

    async fn cluster_status(&self) -> Result<ClusterStatus, ApiError> {
        self.dispatch.status().await
    }

    async fn drain_worker(&self, worker_id: String, drain: bool) -> Result<WorkerStatus, ApiError> {
        self.dispatch.drain(worker_id, drain).await
    }

    async fn run_spec(&self, run_id: RunId) -> Result<RunSpec, ApiError> {
        self.store.run(run_id)?;
        match self.store.execution(run_id)? {
            Some(record) => Ok(record.spec),
            None => Err(ApiError::FailedPrecondition(format!(
                "run {run_id} was not executed by drover, so it has no spec to run again"
            ))),
        }
    }

    async fn list_attempts(&self, run_id: RunId) -> Result<Vec<AttemptView>, ApiError> {
        let run = self.store.run(run_id)?;
        let Some(record) = self.store.execution(run_id)? else {
            return Err(ApiError::FailedPrecondition(format!(
                "run {run_id} was not executed by drover, so it has no attempts"
            )));
        };
        record
            .attempts
            .iter()
            .map(|attempt| {
                let current = attempt.attempt == record.attempt;
                let latest_metrics = if current {
                    run.data.latest_metrics.clone()
                } else {
                    self.store.attempt_latest_metrics(run_id, attempt.attempt)?
                };
                Ok(AttemptView {
                    attempt: attempt.attempt,
                    worker_id: attempt.worker_id.clone(),
                    assigned_ms: attempt.assigned_ms,
                    started_ms: attempt.started_ms,
                    ended_ms: attempt.ended_ms,
                    exit_code: attempt.exit_code,
                    outcome: attempt.outcome.clone(),
                    current,
                    latest_metrics,
                })
            })
            .collect()
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

    async fn put_source_diff(
        &self,
        digest: SnapshotDigest,
        commit: String,
        diff: Vec<u8>,
    ) -> Result<(), ApiError> {
        self.snapshots.put_diff(&digest, &commit, diff).await
    }

    async fn source_diff(&self, run_id: RunId) -> Result<Vec<u8>, ApiError> {
        self.run_source_diff(run_id).await
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
        let (outbox, replies) = mpsc::unbounded_channel();
        let worker_id = registration.worker_id.clone();
        let session = self.dispatch.attach(registration, outbox.clone()).await?;
        let session = WorkerSession { scheduler: self.clone(), worker_id, session, outbox };
        self.tasks.spawn(session.run(incoming));
        Ok(Box::pin(UnboundedReceiverStream::new(replies).map(Ok)))
    }
}
