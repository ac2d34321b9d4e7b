//! Running projects: run specs, submissions, run events, snapshots and the worker protocol.

use std::time::Duration;

use drover_project::docker::DockerOptions;
use drover_project::snapshot::SnapshotDigest;

use super::tracking::{non_empty, run_status_from_wire};
use crate::domain::{RunStatus, Tag};
use crate::error::ApiError;
use crate::execution::{
    Assignment, AttemptId, AttemptView, ClusterStatus, EnvManager, Expectation, LogAppend,
    LogStream, LostAttempt, MetricBatch, MetricPoint, MetricSeries, RunEvent, RunPhase, RunSpec,
    RunUpdate, SchedulerMessage, SnapshotChunk, SubmitRun, WorkerEvent, WorkerMessage,
    WorkerRegistration, WorkerStatus,
};
use crate::pb;

fn invalid(what: &str) -> ApiError {
    ApiError::InvalidArgument(what.to_string())
}

pub(crate) fn parse_digest(text: &str) -> Result<SnapshotDigest, ApiError> {
    text.parse().map_err(|error: drover_project::snapshot::SnapshotError| {
        ApiError::InvalidArgument(error.to_string())
    })
}

fn pairs_to_wire(pairs: Vec<(String, String)>) -> Vec<pb::Param> {
    pairs.into_iter().map(|(key, value)| pb::Param { key, value }).collect()
}

fn pairs_from_wire(params: Vec<pb::Param>) -> Vec<(String, String)> {
    params.into_iter().map(|param| (param.key, param.value)).collect()
}

fn tags_to_wire(tags: Vec<Tag>) -> Vec<pb::Tag> {
    tags.into_iter().map(Into::into).collect()
}

fn tags_from_wire(tags: Vec<pb::Tag>) -> Vec<Tag> {
    tags.into_iter().map(Into::into).collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Run specs and submissions
// ---------------------------------------------------------------------------

impl From<EnvManager> for pb::EnvManager {
    fn from(manager: EnvManager) -> Self {
        match manager {
            EnvManager::Local => pb::EnvManager::Local,
            EnvManager::Docker => pb::EnvManager::Docker,
        }
    }
}

fn env_manager_from_wire(value: i32) -> Result<EnvManager, ApiError> {
    match pb::EnvManager::try_from(value) {
        Ok(pb::EnvManager::Local) => Ok(EnvManager::Local),
        Ok(pb::EnvManager::Docker) => Ok(EnvManager::Docker),
        _ => Err(invalid("the run spec needs an environment manager (local or docker)")),
    }
}

impl From<DockerOptions> for pb::DockerOptions {
    fn from(options: DockerOptions) -> Self {
        pb::DockerOptions {
            gpus: options.gpus,
            cpus: options.cpus,
            memory_bytes: options.memory_bytes,
            shm_size_bytes: options.shm_size_bytes,
            env: pairs_to_wire(options.env),
            user: options.user,
        }
    }
}

impl From<pb::DockerOptions> for DockerOptions {
    fn from(options: pb::DockerOptions) -> Self {
        DockerOptions {
            gpus: options.gpus,
            cpus: options.cpus,
            memory_bytes: options.memory_bytes,
            shm_size_bytes: options.shm_size_bytes,
            env: pairs_from_wire(options.env),
            user: options.user,
        }
    }
}

impl From<RunSpec> for pb::RunSpec {
    fn from(spec: RunSpec) -> Self {
        pb::RunSpec {
            project_name: spec.project_name,
            snapshot_digest: spec.snapshot.to_string(),
            snapshot_size_bytes: spec.snapshot_size,
            entry_point: spec.entry_point,
            parameters: pairs_to_wire(spec.parameters),
            env_manager: pb::EnvManager::from(spec.env_manager) as i32,
            image: spec.image.unwrap_or_default(),
            volumes: spec.volumes,
            environment: pairs_to_wire(spec.environment),
            docker: Some(spec.docker.into()),
            max_retries: spec.max_retries,
            priority: spec.priority,
            labels: pairs_to_wire(spec.labels),
            inherited_environment: spec.inherited_environment,
            expect: spec.expect.map(|expect| pb::Expectation {
                image_id: expect.image_id.unwrap_or_default(),
                data: pairs_to_wire(expect.data),
                strict: expect.strict,
            }),
        }
    }
}

impl TryFrom<pb::RunSpec> for RunSpec {
    type Error = ApiError;

    fn try_from(spec: pb::RunSpec) -> Result<Self, ApiError> {
        let env_manager = env_manager_from_wire(spec.env_manager)?;
        let image = non_empty(spec.image);
        if env_manager == EnvManager::Docker && image.is_none() {
            return Err(invalid("a Docker run needs an image"));
        }
        if spec.entry_point.is_empty() {
            return Err(invalid("the run spec needs an entry point"));
        }
        let docker: DockerOptions = spec.docker.unwrap_or_default().into();
        let environment = pairs_from_wire(spec.environment);
        if let Some((name, _)) =
            environment.iter().chain(&docker.env).find(|(name, _)| crate::tags::looks_secret(name))
        {
            return Err(invalid(&format!(
                "environment variable '{name}' looks secret, and drover never carries or stores such a value: name it alone in docker_env.environment, and the worker copies it from its own environment"
            )));
        }
        Ok(RunSpec {
            project_name: spec.project_name,
            snapshot: parse_digest(&spec.snapshot_digest)?,
            snapshot_size: spec.snapshot_size_bytes,
            entry_point: spec.entry_point,
            parameters: pairs_from_wire(spec.parameters),
            env_manager,
            image,
            volumes: spec.volumes,
            environment,
            docker,
            max_retries: spec.max_retries,
            priority: spec.priority,
            labels: pairs_from_wire(spec.labels),
            inherited_environment: spec.inherited_environment,
            expect: spec.expect.map(|expect| Expectation {
                image_id: non_empty(expect.image_id),
                data: pairs_from_wire(expect.data),
                strict: expect.strict,
            }),
        })
    }
}

impl From<SubmitRun> for pb::SubmitRunRequest {
    fn from(request: SubmitRun) -> Self {
        pb::SubmitRunRequest {
            experiment_id: request.experiment_id.to_string(),
            run_name: request.run_name.unwrap_or_default(),
            user_id: request.user_id,
            tags: tags_to_wire(request.tags),
            spec: Some(request.spec.into()),
        }
    }
}

impl TryFrom<pb::SubmitRunRequest> for SubmitRun {
    type Error = ApiError;

    fn try_from(request: pb::SubmitRunRequest) -> Result<Self, ApiError> {
        Ok(SubmitRun {
            experiment_id: request.experiment_id.parse()?,
            run_name: non_empty(request.run_name),
            user_id: request.user_id,
            tags: tags_from_wire(request.tags),
            spec: request
                .spec
                .ok_or_else(|| invalid("a submission needs a run spec"))?
                .try_into()?,
        })
    }
}

impl TryFrom<pb::SnapshotChunk> for SnapshotChunk {
    type Error = ApiError;

    fn try_from(chunk: pb::SnapshotChunk) -> Result<Self, ApiError> {
        let digest =
            if chunk.digest.is_empty() { None } else { Some(parse_digest(&chunk.digest)?) };
        Ok(SnapshotChunk { digest, size: chunk.size_bytes, data: chunk.data })
    }
}

// ---------------------------------------------------------------------------
// Run events
// ---------------------------------------------------------------------------

impl From<LogStream> for pb::LogStream {
    fn from(stream: LogStream) -> Self {
        match stream {
            LogStream::Stdout => pb::LogStream::Stdout,
            LogStream::Stderr => pb::LogStream::Stderr,
            LogStream::System => pb::LogStream::System,
        }
    }
}

fn log_stream_from_wire(value: i32) -> Result<LogStream, ApiError> {
    match pb::LogStream::try_from(value) {
        Ok(pb::LogStream::Stdout) => Ok(LogStream::Stdout),
        Ok(pb::LogStream::Stderr) => Ok(LogStream::Stderr),
        Ok(pb::LogStream::System) => Ok(LogStream::System),
        _ => Err(invalid("a log chunk needs a stream (stdout, stderr or system)")),
    }
}

impl From<RunEvent> for pb::RunEvent {
    fn from(event: RunEvent) -> Self {
        let event = match event {
            RunEvent::Log { stream, data, cursor } => pb::run_event::Event::Log(pb::LogOutput {
                stream: pb::LogStream::from(stream) as i32,
                data,
                cursor,
            }),
            RunEvent::State { status, exit_code, message } => {
                pb::run_event::Event::State(pb::RunState {
                    status: pb::RunStatus::from(status) as i32,
                    exit_code,
                    message,
                })
            }
        };
        pb::RunEvent { event: Some(event) }
    }
}

impl TryFrom<pb::RunEvent> for RunEvent {
    type Error = ApiError;

    fn try_from(event: pb::RunEvent) -> Result<Self, ApiError> {
        match event.event {
            Some(pb::run_event::Event::Log(log)) => Ok(RunEvent::Log {
                stream: log_stream_from_wire(log.stream)?,
                data: log.data,
                cursor: log.cursor,
            }),
            Some(pb::run_event::Event::State(state)) => Ok(RunEvent::State {
                status: run_status_from_wire(state.status)?.unwrap_or(RunStatus::Running),
                exit_code: state.exit_code,
                message: state.message,
            }),
            None => Err(ApiError::Internal("empty run event on the wire".to_string())),
        }
    }
}

impl From<WorkerStatus> for pb::WorkerStatus {
    fn from(worker: WorkerStatus) -> Self {
        pb::WorkerStatus {
            worker_id: worker.worker_id,
            hostname: worker.hostname,
            slots: worker.slots,
            busy_slots: worker.busy_slots,
            cpus: worker.cpus,
            memory_bytes: worker.memory_bytes,
            docker_available: worker.docker_available,
            connected: worker.connected,
            last_seen_ms: worker.last_seen_ms,
            labels: tags_to_wire(worker.labels),
            draining: worker.draining,
            gpus: worker.gpus,
            gpus_in_use: worker.gpus_in_use,
            cpus_in_use: worker.cpus_in_use,
            memory_in_use_bytes: worker.memory_in_use_bytes,
        }
    }
}

impl From<pb::WorkerStatus> for WorkerStatus {
    fn from(worker: pb::WorkerStatus) -> Self {
        WorkerStatus {
            worker_id: worker.worker_id,
            hostname: worker.hostname,
            slots: worker.slots,
            busy_slots: worker.busy_slots,
            cpus: worker.cpus,
            memory_bytes: worker.memory_bytes,
            docker_available: worker.docker_available,
            connected: worker.connected,
            last_seen_ms: worker.last_seen_ms,
            labels: tags_from_wire(worker.labels),
            draining: worker.draining,
            gpus: worker.gpus,
            gpus_in_use: worker.gpus_in_use,
            cpus_in_use: worker.cpus_in_use,
            memory_in_use_bytes: worker.memory_in_use_bytes,
        }
    }
}

impl From<ClusterStatus> for pb::ListWorkersResponse {
    fn from(status: ClusterStatus) -> Self {
        pb::ListWorkersResponse {
            workers: status.workers.into_iter().map(Into::into).collect(),
            queued_runs: status.queued_runs,
            recent_losses: status
                .recent_losses
                .into_iter()
                .map(|lost| pb::LostAttempt {
                    attempt: Some(lost.attempt.into()),
                    worker_id: lost.worker_id,
                    time_ms: lost.time_ms,
                    reason: lost.reason,
                    requeued: lost.requeued,
                })
                .collect(),
        }
    }
}

impl From<pb::ListWorkersResponse> for ClusterStatus {
    fn from(status: pb::ListWorkersResponse) -> Self {
        ClusterStatus {
            workers: status.workers.into_iter().map(Into::into).collect(),
            queued_runs: status.queued_runs,
            // An entry whose attempt does not parse names no run to show; it is left out.
            recent_losses: status
                .recent_losses
                .into_iter()
                .filter_map(|lost| {
                    Some(LostAttempt {
                        attempt: lost.attempt?.try_into().ok()?,
                        worker_id: lost.worker_id,
                        time_ms: lost.time_ms,
                        reason: lost.reason,
                        requeued: lost.requeued,
                    })
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// The worker protocol
// ---------------------------------------------------------------------------

impl From<AttemptId> for pb::Attempt {
    fn from(attempt: AttemptId) -> Self {
        pb::Attempt { run_id: attempt.run_id.to_string(), attempt: attempt.attempt }
    }
}

impl TryFrom<pb::Attempt> for AttemptId {
    type Error = ApiError;

    fn try_from(attempt: pb::Attempt) -> Result<Self, ApiError> {
        Ok(AttemptId { run_id: attempt.run_id.parse()?, attempt: attempt.attempt })
    }
}

fn attempt_from_wire(attempt: Option<pb::Attempt>) -> Result<AttemptId, ApiError> {
    attempt.ok_or_else(|| invalid("the message names no attempt"))?.try_into()
}

fn attempts_from_wire(attempts: Vec<pb::Attempt>) -> Result<Vec<AttemptId>, ApiError> {
    attempts.into_iter().map(TryInto::try_into).collect()
}

fn attempts_to_wire(attempts: Vec<AttemptId>) -> Vec<pb::Attempt> {
    attempts.into_iter().map(Into::into).collect()
}

impl From<RunPhase> for pb::RunPhase {
    fn from(phase: RunPhase) -> Self {
        match phase {
            RunPhase::Started => pb::RunPhase::Started,
            RunPhase::Finished => pb::RunPhase::Finished,
            RunPhase::Failed => pb::RunPhase::Failed,
            RunPhase::Killed => pb::RunPhase::Killed,
        }
    }
}

fn run_phase_from_wire(value: i32) -> Result<RunPhase, ApiError> {
    match pb::RunPhase::try_from(value) {
        Ok(pb::RunPhase::Started) => Ok(RunPhase::Started),
        Ok(pb::RunPhase::Finished) => Ok(RunPhase::Finished),
        Ok(pb::RunPhase::Failed) => Ok(RunPhase::Failed),
        Ok(pb::RunPhase::Killed) => Ok(RunPhase::Killed),
        _ => Err(invalid("a run update needs a phase")),
    }
}

impl From<WorkerMessage> for pb::WorkerMessage {
    fn from(message: WorkerMessage) -> Self {
        use pb::worker_message::Body;
        let body = match message.event {
            WorkerEvent::Register(registration) => Body::Register(pb::RegisterWorker {
                worker_id: registration.worker_id,
                hostname: registration.hostname,
                slots: registration.slots,
                cpus: registration.cpus,
                memory_bytes: registration.memory_bytes,
                docker_available: registration.docker_available,
                running: attempts_to_wire(registration.running),
                labels: tags_to_wire(registration.labels),
                gpus: registration.gpus,
            }),
            WorkerEvent::Heartbeat { running } => {
                Body::Heartbeat(pb::Heartbeat { running: attempts_to_wire(running) })
            }
            WorkerEvent::Update(update) => Body::Update(pb::RunUpdate {
                attempt: Some(update.attempt.into()),
                phase: pb::RunPhase::from(update.phase) as i32,
                exit_code: update.exit_code,
                message: update.message,
                tags: tags_to_wire(update.tags),
            }),
            WorkerEvent::Log(log) => Body::Log(pb::LogAppend {
                attempt: Some(log.attempt.into()),
                stream: pb::LogStream::from(log.stream) as i32,
                offset: log.offset,
                data: log.data,
            }),
            WorkerEvent::Metrics(batch) => Body::Metrics(pb::MetricBatch {
                attempt: Some(batch.attempt.into()),
                batch: batch.batch,
                series: batch.series.into_iter().map(Into::into).collect(),
                params: batch.params.into_iter().map(Into::into).collect(),
                tags: tags_to_wire(batch.tags),
            }),
        };
        pb::WorkerMessage { seq: message.seq.unwrap_or(0), body: Some(body) }
    }
}

impl From<MetricSeries> for pb::MetricSeries {
    fn from(series: MetricSeries) -> Self {
        pb::MetricSeries {
            key: series.key,
            steps: series.points.iter().map(|point| point.step).collect(),
            timestamps_ms: series.points.iter().map(|point| point.timestamp_ms).collect(),
            values: series.points.iter().map(|point| point.value).collect(),
        }
    }
}

impl TryFrom<pb::MetricSeries> for MetricSeries {
    type Error = ApiError;

    fn try_from(series: pb::MetricSeries) -> Result<Self, ApiError> {
        let length = series.steps.len();
        if series.timestamps_ms.len() != length || series.values.len() != length {
            return Err(ApiError::InvalidArgument(format!(
                "metric series '{}' has {} steps, {} timestamps and {} values; they must match",
                series.key,
                length,
                series.timestamps_ms.len(),
                series.values.len()
            )));
        }
        let points = (series.steps.iter().zip(&series.timestamps_ms).zip(&series.values))
            .map(|((step, timestamp_ms), value)| MetricPoint {
                step: *step,
                timestamp_ms: *timestamp_ms,
                value: *value,
            })
            .collect();
        Ok(MetricSeries { key: series.key, points })
    }
}

impl TryFrom<pb::WorkerMessage> for WorkerMessage {
    type Error = ApiError;

    fn try_from(message: pb::WorkerMessage) -> Result<Self, ApiError> {
        use pb::worker_message::Body;
        let event = match message.body.ok_or_else(|| invalid("empty worker message"))? {
            Body::Register(registration) => {
                if registration.worker_id.trim().is_empty() {
                    return Err(invalid("a worker registers with an id"));
                }
                WorkerEvent::Register(WorkerRegistration {
                    worker_id: registration.worker_id,
                    hostname: registration.hostname,
                    slots: registration.slots,
                    cpus: registration.cpus,
                    memory_bytes: registration.memory_bytes,
                    docker_available: registration.docker_available,
                    running: attempts_from_wire(registration.running)?,
                    labels: tags_from_wire(registration.labels),
                    gpus: registration.gpus,
                })
            }
            Body::Heartbeat(heartbeat) => {
                WorkerEvent::Heartbeat { running: attempts_from_wire(heartbeat.running)? }
            }
            Body::Update(update) => WorkerEvent::Update(RunUpdate {
                attempt: attempt_from_wire(update.attempt)?,
                phase: run_phase_from_wire(update.phase)?,
                exit_code: update.exit_code,
                message: update.message,
                tags: tags_from_wire(update.tags),
            }),
            Body::Log(log) => WorkerEvent::Log(LogAppend {
                attempt: attempt_from_wire(log.attempt)?,
                stream: log_stream_from_wire(log.stream)?,
                offset: log.offset,
                data: log.data,
            }),
            Body::Metrics(batch) => WorkerEvent::Metrics(MetricBatch {
                attempt: attempt_from_wire(batch.attempt)?,
                batch: batch.batch,
                series: batch
                    .series
                    .into_iter()
                    .map(MetricSeries::try_from)
                    .collect::<Result<_, _>>()?,
                params: batch.params.into_iter().map(Into::into).collect(),
                tags: tags_from_wire(batch.tags),
            }),
        };
        Ok(WorkerMessage { seq: (message.seq != 0).then_some(message.seq), event })
    }
}

impl From<SchedulerMessage> for pb::SchedulerMessage {
    fn from(message: SchedulerMessage) -> Self {
        use pb::scheduler_message::Body;
        let body = match message {
            SchedulerMessage::Registered { heartbeat_interval, lease_timeout } => {
                Body::Registered(pb::Registered {
                    heartbeat_interval_ms: millis(heartbeat_interval),
                    lease_timeout_ms: millis(lease_timeout),
                })
            }
            SchedulerMessage::Ack(seq) => Body::Ack(seq),
            SchedulerMessage::Assign(assignment) => Body::Assign(pb::Assignment {
                attempt: Some(assignment.attempt.into()),
                experiment_id: assignment.experiment_id.to_string(),
                spec: Some(assignment.spec.into()),
                gpu_ids: assignment.gpu_ids,
            }),
            SchedulerMessage::Cancel { attempt, grace_period } => Body::Cancel(pb::CancelAttempt {
                attempt: Some(attempt.into()),
                grace_period_ms: millis(grace_period),
            }),
        };
        pb::SchedulerMessage { body: Some(body) }
    }
}

impl TryFrom<pb::SchedulerMessage> for SchedulerMessage {
    type Error = ApiError;

    fn try_from(message: pb::SchedulerMessage) -> Result<Self, ApiError> {
        use pb::scheduler_message::Body;
        Ok(match message.body.ok_or_else(|| invalid("empty scheduler message"))? {
            Body::Registered(registered) => SchedulerMessage::Registered {
                heartbeat_interval: Duration::from_millis(registered.heartbeat_interval_ms),
                lease_timeout: Duration::from_millis(registered.lease_timeout_ms),
            },
            Body::Ack(seq) => SchedulerMessage::Ack(seq),
            Body::Assign(assignment) => SchedulerMessage::Assign(Box::new(Assignment {
                attempt: attempt_from_wire(assignment.attempt)?,
                experiment_id: assignment.experiment_id.parse()?,
                spec: assignment
                    .spec
                    .ok_or_else(|| invalid("an assignment needs a run spec"))?
                    .try_into()?,
                gpu_ids: assignment.gpu_ids,
            })),
            Body::Cancel(cancel) => SchedulerMessage::Cancel {
                attempt: attempt_from_wire(cancel.attempt)?,
                grace_period: Duration::from_millis(cancel.grace_period_ms),
            },
        })
    }
}

impl From<AttemptView> for pb::AttemptView {
    fn from(view: AttemptView) -> Self {
        pb::AttemptView {
            attempt: view.attempt,
            worker_id: view.worker_id,
            assigned_ms: view.assigned_ms,
            started_ms: view.started_ms,
            ended_ms: view.ended_ms,
            exit_code: view.exit_code,
            outcome: view.outcome,
            current: view.current,
            latest_metrics: view.latest_metrics.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::AttemptView> for AttemptView {
    fn from(view: pb::AttemptView) -> Self {
        AttemptView {
            attempt: view.attempt,
            worker_id: view.worker_id,
            assigned_ms: view.assigned_ms,
            started_ms: view.started_ms,
            ended_ms: view.ended_ms,
            exit_code: view.exit_code,
            outcome: view.outcome,
            current: view.current,
            latest_metrics: view.latest_metrics.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Vec<AttemptView>> for pb::ListAttemptsResponse {
    fn from(attempts: Vec<AttemptView>) -> Self {
        pb::ListAttemptsResponse { attempts: attempts.into_iter().map(Into::into).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_carrying_a_secret_looking_value_is_refused() {
        let digest = format!("sha256:{}", "0".repeat(64)).parse().expect("a digest");
        let mut spec = RunSpec::local("p", digest, 0);
        spec.environment = vec![("BATCH".into(), "32".into())];
        assert!(RunSpec::try_from(pb::RunSpec::from(spec.clone())).is_ok());
        for (name, docker) in [("HF_TOKEN", false), ("aws_secret_access_key", true)] {
            let mut hostile = spec.clone();
            let pair = vec![(name.to_string(), "value".to_string())];
            if docker {
                hostile.docker.env = pair;
            } else {
                hostile.environment = pair;
            }
            let refused = RunSpec::try_from(pb::RunSpec::from(hostile)).expect_err("refused");
            assert!(refused.to_string().contains(&format!("'{name}' looks secret")), "{refused}");
        }
    }
}
