//! One attempt at a run: fetch and extract its snapshot, render its command from the
//! MLproject, execute it, stream its output, and report how it ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drover_project::params::PathCheck;
use drover_project::{EnvVar, Environment, MlProject};
use drover_proto::Client;
use drover_proto::domain::Tag;
use drover_proto::execution::{
    Assignment, AttemptId, EnvManager, LogAppend, LogStream, MetricBatch, MetricSeries, RunPhase,
    RunUpdate, WorkerEvent,
};
use drover_proto::tags;
use tokio::sync::{mpsc, oneshot, watch};

use crate::executor::docker::{DockerExecutor, DockerRun};
use crate::executor::local::LocalRun;
use crate::executor::{Cancellation, ExecutorError, Outcome};
use crate::metrics::{Declared, MetricLines};
use crate::options::WorkerOptions;
use crate::snapshots::SnapshotCache;
use crate::tracking_proxy::TrackingProxy;

/// What every run on this worker shares.
pub struct RunContext {
    pub worker_id: String,
    pub options: WorkerOptions,
    pub docker: Option<DockerExecutor>,
    pub snapshots: SnapshotCache,
    /// Where containers log to, scoped per run; absent without Docker or with an explicit
    /// tracking URI.
    pub tracking_proxy: Option<TrackingProxy>,
    /// Where local runs log to when the scheduler requires a token (it adds the token).
    pub local_proxy: Option<TrackingProxy>,
    /// This worker's GPU device ids.
    pub gpus: Vec<String>,
}

pub struct Runner {
    context: Arc<RunContext>,
    assignment: Assignment,
    events: mpsc::Sender<WorkerEvent>,
    cancelled: watch::Receiver<Option<Duration>>,
}

impl Runner {
    pub fn new(
        context: Arc<RunContext>,
        assignment: Assignment,
        events: mpsc::Sender<WorkerEvent>,
        cancelled: watch::Receiver<Option<Duration>>,
    ) -> Runner {
        Runner { context, assignment, events, cancelled }
    }

    pub async fn execute(self) {
        let attempt = self.assignment.attempt;
        let run_dir = self
            .context
            .options
            .work_dir
            .join("runs")
            .join(format!("{}-{}", attempt.run_id, attempt.attempt));
        let result = self.attempt(&run_dir).await;
        let update = match result {
            Ok(Outcome { killed: true, exit_code }) => RunUpdate {
                attempt,
                phase: RunPhase::Killed,
                exit_code,
                message: "cancelled".to_string(),
                tags: Vec::new(),
            },
            Ok(Outcome { exit_code: Some(0), .. }) => RunUpdate {
                attempt,
                phase: RunPhase::Finished,
                exit_code: Some(0),
                message: String::new(),
                tags: Vec::new(),
            },
            Ok(Outcome { exit_code, .. }) => RunUpdate {
                attempt,
                phase: RunPhase::Failed,
                exit_code,
                message: match exit_code {
                    Some(code) => format!("the command exited with code {code}"),
                    None => "the command ended without an exit code".to_string(),
                },
                tags: Vec::new(),
            },
            Err(reason) => {
                let killed = self.cancelled.borrow().is_some();
                RunUpdate {
                    attempt,
                    phase: if killed { RunPhase::Killed } else { RunPhase::Failed },
                    exit_code: None,
                    message: reason,
                    tags: Vec::new(),
                }
            }
        };
        tracing::info!(%attempt, phase = ?update.phase, exit_code = ?update.exit_code, "run ended");
        let _ = self.events.send(WorkerEvent::Update(update)).await;
        // Awaited, and the session waits for this task when it shuts down. Should the task be
        // dropped first, the removal still finishes on its own; nothing depends on it.
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(run_dir)).await;
    }

    async fn attempt(&self, run_dir: &std::path::Path) -> Result<Outcome, String> {
        let spec = &self.assignment.spec;
        let attempt = self.assignment.attempt;
        if self.cancelled.borrow().is_some() {
            return Ok(Outcome { exit_code: None, killed: true });
        }
        let options = &self.context.options;
        // A cached snapshot needs no connection: one is opened only to download.
        let connect = || async {
            Client::connect_with(
                &options.scheduler,
                options.token.as_deref(),
                options.ca.as_deref(),
            )
            .await
            .map_err(|error| error.to_string())
        };
        let archive = self.context.snapshots.fetch(connect, &spec.snapshot).await?;
        self.context.snapshots.extract(&archive, run_dir).await?;
        let project = MlProject::load(run_dir)
            .map_err(|error| format!("the project's MLproject: {error}"))?;
        let invocation = project
            .invocation(&spec.entry_point, &spec.parameters, &PathCheck::AsSubmitted)
            .map_err(|error| error.to_string())?;

        // A container reaches the tracking API through the worker's proxy, scoped to this run;
        // a local process talks to the scheduler directly, or through the loopback proxy when
        // the scheduler requires a token.
        let proxy = match spec.env_manager {
            EnvManager::Docker => &self.context.tracking_proxy,
            _ => &self.context.local_proxy,
        };
        let grant =
            proxy.as_ref().map(|proxy| proxy.grant(attempt.run_id, self.assignment.experiment_id));
        let tracking_uri = match (&self.context.options.tracking_uri, &grant) {
            (Some(uri), _) => uri.clone(),
            (None, Some(grant)) => grant.uri.clone(),
            (None, None) => {
                drover_proto::client::normalize_address(&self.context.options.scheduler)
                    .unwrap_or_default()
            }
        };
        let mut environment = vec![
            ("MLFLOW_TRACKING_URI".to_string(), tracking_uri),
            ("MLFLOW_RUN_ID".to_string(), attempt.run_id.to_string()),
            ("MLFLOW_EXPERIMENT_ID".to_string(), self.assignment.experiment_id.to_string()),
            ("DROVER_RUN_ID".to_string(), attempt.run_id.to_string()),
            ("DROVER_ATTEMPT".to_string(), attempt.attempt.to_string()),
        ];
        // What the run is given besides drover's own variables, as the project asked for it.
        let mut passed = spec.environment.clone();
        if spec.env_manager == EnvManager::Docker {
            passed.extend(spec.docker.env.iter().cloned());
            // Secrets written in the MLproject itself come from the snapshot, never the spec.
            if let Environment::Docker(docker_env) = &project.environment {
                for variable in &docker_env.environment {
                    if let EnvVar::Set(name, value) = variable
                        && tags::looks_secret(name)
                    {
                        passed.push((name.clone(), value.clone()));
                    }
                }
            }
        }
        for name in &spec.inherited_environment {
            let value = std::env::var(name).map_err(|_| {
                format!(
                    "the run copies '{name}' from the environment of worker {}, where it is not set",
                    self.context.worker_id
                )
            })?;
            passed.push((name.clone(), value));
        }
        // Digesting a large dataset the first time takes a while: a cancel does not wait for
        // it (the digest finishes on its own and is dropped).
        let recording = {
            let (work_dir, run_dir, project, invocation, spec, passed) = (
                options.work_dir.clone(),
                run_dir.to_path_buf(),
                project.clone(),
                invocation.clone(),
                spec.clone(),
                passed.clone(),
            );
            tokio::task::spawn_blocking(move || {
                crate::lineage::record(&work_dir, &run_dir, &project, &invocation, &spec, &passed)
            })
        };
        let mut cancelled = self.cancelled.clone();
        let lineage = tokio::select! {
            recorded = recording => {
                recorded.map_err(|error| format!("reading the run's data failed: {error}"))??
            }
            _ = cancelled.wait_for(Option::is_some) => {
                return Ok(Outcome { exit_code: None, killed: true });
            }
        };
        environment.extend(passed);
        // A run sees the GPU devices it holds, and no others: by id in Docker, through
        // CUDA_VISIBLE_DEVICES for a local process (empty, on a GPU worker, for a run that
        // holds none).
        let gpu_ids = &self.assignment.gpu_ids;
        let mut docker_options = spec.docker.clone();
        docker_options.gpus =
            (!gpu_ids.is_empty()).then(|| format!("device={}", gpu_ids.join(",")));
        if spec.env_manager == EnvManager::Local
            && (!gpu_ids.is_empty() || !self.context.gpus.is_empty())
        {
            environment.push(("CUDA_VISIBLE_DEVICES".to_string(), gpu_ids.join(",")));
        }

        let (output, output_rx) = mpsc::channel::<(LogStream, Vec<u8>)>(64);
        let (started, started_rx) = oneshot::channel::<Vec<Tag>>();
        let mut start_tags = lineage.tags;
        start_tags.push(Tag::new(tags::COMMAND, invocation.command.clone()));
        let forward = Forwarder { attempt, events: self.events.clone(), offset: 0, batches: 0 }
            .run(output_rx, started_rx, start_tags, lineage.notes);
        let cancellation = Cancellation::new(self.cancelled.clone());
        let execution = async {
            match spec.env_manager {
                EnvManager::Local => {
                    let run = LocalRun {
                        command: invocation.command.clone(),
                        dir: PathBuf::from(run_dir),
                        environment,
                    };
                    run.execute(output, cancellation, started).await
                }
                EnvManager::Docker => {
                    let docker = self.context.docker.as_ref().ok_or_else(|| {
                        ExecutorError::DockerUnavailable {
                            worker_id: self.context.worker_id.clone(),
                        }
                    })?;
                    let image = spec.image.clone().ok_or(ExecutorError::NoImage)?;
                    let run = DockerRun {
                        attempt,
                        image,
                        command: invocation.command.clone(),
                        dir: PathBuf::from(run_dir),
                        volumes: spec.volumes.clone(),
                        environment,
                        options: docker_options,
                        pull: self.context.options.pull_images,
                        expect_image_id: spec.expect.as_ref().and_then(|expect| {
                            expect.image_id.clone().map(|id| (id, expect.strict))
                        }),
                    };
                    docker.execute(run, output, cancellation, started).await
                }
            }
        };
        let (outcome, ()) = tokio::join!(execution, forward);
        drop(grant);
        outcome.map_err(|error| error.to_string())
    }
}

/// Longest a metric point waits before it is sent.
const METRIC_FLUSH: Duration = Duration::from_millis(100);
/// Points that make a batch worth sending at once.
const METRIC_BATCH_POINTS: usize = 1000;

/// Turns a run's output into reports: log chunks (every byte, in order) and batches of the
/// metrics, params and tags its lines declare.
struct Forwarder {
    attempt: AttemptId,
    events: mpsc::Sender<WorkerEvent>,
    /// Bytes of this attempt's output sent so far.
    offset: u64,
    batches: u64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Forwarder {
    async fn run(
        mut self,
        mut output: mpsc::Receiver<(LogStream, Vec<u8>)>,
        started: oneshot::Receiver<Vec<Tag>>,
        start_tags: Vec<Tag>,
        notes: Vec<String>,
    ) {
        // The start is reported before any output, so it reaches the scheduler first; then
        // what the worker noted of the run's data, then the run's own output.
        if let Ok(mut tags) = started.await {
            tags.extend(start_tags);
            let update = RunUpdate {
                attempt: self.attempt,
                phase: RunPhase::Started,
                exit_code: None,
                message: String::new(),
                tags,
            };
            let _ = self.events.send(WorkerEvent::Update(update)).await;
        }
        for note in notes {
            self.log(LogStream::System, format!("{note}\n").into_bytes()).await;
        }
        let mut lines = MetricLines::default();
        let mut pending = Declared::default();
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                chunk = output.recv() => {
                    let Some((stream, data)) = chunk else { break };
                    if stream == LogStream::Stdout {
                        let (declared, note) = lines.feed(&data, now_ms());
                        self.log(stream, data).await;
                        if let Some(note) = note {
                            self.log(LogStream::System, note.into_bytes()).await;
                        }
                        if !declared.is_empty() {
                            flush_at.get_or_insert_with(|| tokio::time::Instant::now() + METRIC_FLUSH);
                            pending.append(declared);
                        }
                        if pending.len() >= METRIC_BATCH_POINTS {
                            self.flush(&mut pending).await;
                            flush_at = None;
                        }
                    } else {
                        self.log(stream, data).await;
                    }
                }
                () = sleep_until(flush_at) => {
                    self.flush(&mut pending).await;
                    flush_at = None;
                }
            }
        }
        let (declared, note) = lines.finish(now_ms());
        if let Some(note) = note {
            self.log(LogStream::System, note.into_bytes()).await;
        }
        pending.append(declared);
        self.flush(&mut pending).await;
    }

    async fn log(&mut self, stream: LogStream, data: Vec<u8>) {
        let length = data.len() as u64;
        let log = LogAppend { attempt: self.attempt, stream, offset: self.offset, data };
        let _ = self.events.send(WorkerEvent::Log(log)).await;
        self.offset += length;
    }

    async fn flush(&mut self, pending: &mut Declared) {
        if pending.is_empty() {
            return;
        }
        let declared = std::mem::take(pending);
        self.batches += 1;
        let batch = MetricBatch {
            attempt: self.attempt,
            batch: self.batches,
            series: MetricSeries::group(declared.metrics),
            params: declared.params,
            tags: declared.tags,
        };
        let _ = self.events.send(WorkerEvent::Metrics(batch)).await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
