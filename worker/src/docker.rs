//! The Docker executor (bollard): a container per attempt, from the project's image, with the
//! snapshot bind-mounted as the working directory, labelled with the run and the worker so a
//! restarted worker finds what it left behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use drover_project::docker::DockerOptions;
use drover_proto::domain::Tag;
use drover_proto::execution::{AttemptId, LogStream};
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::runner::{Outcome, Output, Started, cancel_grace};

pub const RUN_LABEL: &str = "drover.run_id";
pub const ATTEMPT_LABEL: &str = "drover.attempt";
pub const WORKER_LABEL: &str = "drover.worker_id";
/// Where the snapshot is mounted, as MLflow does for Docker projects.
pub const PROJECT_MOUNT: &str = "/mlflow/projects/code";

pub struct DockerExecutor {
    docker: Docker,
    worker_id: String,
}

pub struct DockerRun {
    pub attempt: AttemptId,
    pub image: String,
    pub command: String,
    /// The extracted snapshot on this machine.
    pub dir: PathBuf,
    pub volumes: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub options: DockerOptions,
    pub pull: bool,
}

fn is_not_found(error: &DockerError) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code: 404, .. })
}

fn tag(key: &str, value: impl Into<String>) -> Tag {
    Tag { key: key.to_string(), value: value.into() }
}

impl DockerExecutor {
    /// Connects to the local Docker engine; `None` when it does not answer.
    pub async fn connect(worker_id: &str) -> Option<DockerExecutor> {
        let docker = Docker::connect_with_local_defaults().ok()?;
        match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
            Ok(Ok(_)) => Some(DockerExecutor { docker, worker_id: worker_id.to_string() }),
            _ => None,
        }
    }

    /// The Docker bridge's gateway: where containers reach this machine.
    pub async fn bridge_gateway(&self) -> Option<std::net::IpAddr> {
        crate::tracking_proxy::bridge_gateway(&self.docker).await
    }

    /// Removes containers this worker left behind (a previous process crashed or was killed).
    /// The scheduler learns their runs were lost when this worker registers without them.
    pub async fn reap_orphans(&self) {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{WORKER_LABEL}={}", self.worker_id)],
        )]);
        let options =
            ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let containers = match self.docker.list_containers(Some(options)).await {
            Ok(containers) => containers,
            Err(error) => {
                tracing::warn!(%error, "cannot list this worker's old containers");
                return;
            }
        };
        for container in containers {
            let Some(id) = container.id else { continue };
            let run = container
                .labels
                .as_ref()
                .and_then(|labels| labels.get(RUN_LABEL))
                .cloned()
                .unwrap_or_default();
            tracing::warn!(
                container = id,
                run_id = run,
                "removing a container left by this worker's previous process"
            );
            self.remove(&id).await;
        }
    }

    async fn remove(&self, container: &str) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(error) = self.docker.remove_container(container, Some(options)).await
            && !is_not_found(&error)
        {
            tracing::warn!(container, %error, "cannot remove container");
        }
    }

    /// The image's id, pulling it first when allowed and missing.
    async fn image_id(&self, image: &str, pull: bool) -> Result<String, String> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => return Ok(inspect.id.unwrap_or_default()),
            Err(error) if is_not_found(&error) && pull => {}
            Err(error) if is_not_found(&error) => {
                return Err(format!("image '{image}' is not present on worker {}", self.worker_id));
            }
            Err(error) => return Err(format!("cannot inspect image '{image}': {error}")),
        }
        let options =
            CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|error| {
                format!(
                    "image '{image}' is not present on worker {} and pulling it failed: {error}",
                    self.worker_id
                )
            })?;
        }
        let inspect = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|error| format!("cannot inspect image '{image}': {error}"))?;
        Ok(inspect.id.unwrap_or_default())
    }

    pub async fn execute(
        &self,
        run: DockerRun,
        output: Output,
        mut cancelled: watch::Receiver<Option<Duration>>,
        started: Started,
    ) -> Result<Outcome, String> {
        let image_id = self.image_id(&run.image, run.pull).await?;
        let name = format!("drover-{}-{}", run.attempt.run_id, run.attempt.attempt);
        // A container of this name is a leftover of an earlier try at the same attempt.
        self.remove(&name).await;
        let body = self.container_body(&run);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions { name: Some(name.clone()), ..Default::default() }),
                body,
            )
            .await
            .map_err(|error| format!("cannot create the container: {error}"))?;
        let result =
            self.supervise(&created.id, &run, &image_id, output, &mut cancelled, started).await;
        self.remove(&created.id).await;
        result
    }

    async fn supervise(
        &self,
        container: &str,
        run: &DockerRun,
        image_id: &str,
        output: Output,
        cancelled: &mut watch::Receiver<Option<Duration>>,
        started: Started,
    ) -> Result<Outcome, String> {
        self.docker
            .start_container(container, None)
            .await
            .map_err(|error| format!("cannot start the container: {error}"))?;
        let _ = started.send(vec![
            tag("drover.docker.container", container),
            tag("drover.docker.image_id", image_id),
            tag("drover.docker.image", run.image.clone()),
        ]);
        let options =
            LogsOptions { follow: true, stdout: true, stderr: true, ..Default::default() };
        let mut logs = self.docker.logs(container, Some(options));
        let mut killed = false;
        loop {
            tokio::select! {
                entry = logs.next() => match entry {
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        let _ = output.send((LogStream::Stdout, message.to_vec())).await;
                    }
                    Some(Ok(LogOutput::StdErr { message })) => {
                        let _ = output.send((LogStream::Stderr, message.to_vec())).await;
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(error)) => {
                        tracing::warn!(container, %error, "the container's log stream broke");
                        break;
                    }
                    None => break,
                },
                changed = cancelled.changed(), if !killed => {
                    let Some(grace) = cancel_grace(changed, cancelled) else { continue };
                    killed = true;
                    let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
                    let stop = StopContainerOptions { t: Some(seconds), signal: None };
                    if let Err(error) = self.docker.stop_container(container, Some(stop)).await {
                        tracing::warn!(container, %error, "cannot stop the container");
                    }
                }
            }
        }
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|error| format!("cannot inspect the container: {error}"))?;
        let state = inspect.state.unwrap_or_default();
        if state.oom_killed == Some(true) && !killed {
            return Err("the container ran out of memory (OOM killed)".to_string());
        }
        let exit_code = state.exit_code.and_then(|code| i32::try_from(code).ok());
        Ok(Outcome { exit_code, killed })
    }

    fn container_body(&self, run: &DockerRun) -> ContainerCreateBody {
        let mut binds = vec![format!("{}:{PROJECT_MOUNT}", run.dir.display())];
        binds.extend(run.volumes.iter().cloned());
        let options = &run.options;
        let device_requests = options.gpus.as_deref().map(|gpus| {
            let mut request = DeviceRequest {
                capabilities: Some(vec![vec!["gpu".to_string()]]),
                ..Default::default()
            };
            match gpus {
                "all" => request.count = Some(-1),
                other => match other.strip_prefix("device=") {
                    Some(ids) => {
                        request.device_ids = Some(ids.split(',').map(str::to_string).collect())
                    }
                    None => request.count = other.parse().ok(),
                },
            }
            vec![request]
        });
        let host_config = HostConfig {
            binds: Some(binds),
            nano_cpus: options.cpus.map(|cpus| (cpus * 1e9) as i64),
            memory: options.memory_bytes.and_then(|bytes| i64::try_from(bytes).ok()),
            shm_size: options.shm_size_bytes.and_then(|bytes| i64::try_from(bytes).ok()),
            device_requests,
            // Lets a run reach services on the worker's host (the tracking API) by name.
            extra_hosts: Some(vec!["host.docker.internal:host-gateway".to_string()]),
            init: Some(true),
            ..Default::default()
        };
        let labels = HashMap::from([
            (RUN_LABEL.to_string(), run.attempt.run_id.to_string()),
            (ATTEMPT_LABEL.to_string(), run.attempt.attempt.to_string()),
            (WORKER_LABEL.to_string(), self.worker_id.clone()),
        ]);
        ContainerCreateBody {
            image: Some(run.image.clone()),
            cmd: Some(vec!["sh".to_string(), "-c".to_string(), run.command.clone()]),
            entrypoint: Some(Vec::new()),
            env: Some(
                run.environment.iter().map(|(key, value)| format!("{key}={value}")).collect(),
            ),
            working_dir: Some(PROJECT_MOUNT.to_string()),
            labels: Some(labels),
            user: options.user.clone(),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}
