//! The Docker executor (bollard): a container per attempt, from the project's image, with the
//! snapshot bind-mounted as the working directory, labelled with the run and the worker so a
//! restarted worker finds what it left behind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
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
use drover_proto::tags;
use tokio_stream::StreamExt;

use super::{Cancellation, ExecutorError, Outcome, Output, Started};

// Container labels (not run tags): they let a restarted worker find what it left behind.
pub const RUN_LABEL: &str = "drover.run_id";
pub const ATTEMPT_LABEL: &str = "drover.attempt";
pub const WORKER_LABEL: &str = "drover.worker_id";
/// Where the snapshot is mounted, as MLflow does for Docker projects.
pub const PROJECT_MOUNT: &str = "/mlflow/projects/code";
/// The name containers reach the worker's host by (mapped to the bridge's gateway).
pub const CONTAINER_HOST: &str = "host.docker.internal";

pub struct DockerExecutor {
    docker: Docker,
    worker_id: String,
    /// For a worker that itself runs in a container: where its work directory is on the
    /// Docker host, and the network its runs join (its own: `container:<id>`).
    in_container: Option<InContainer>,
}

/// How a worker inside a container starts runs beside itself on the same engine.
#[derive(Clone, Debug)]
pub struct InContainer {
    /// The work directory as the worker sees it, and where it is on the Docker host (bind
    /// mounts name host paths).
    pub work_dir: PathBuf,
    pub host_work_dir: PathBuf,
    /// `container:<worker's container>`: runs share the worker's network, so they reach its
    /// tracking proxy on loopback.
    pub network_mode: String,
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
    /// The image id a rerun expects, and whether a different one refuses the start.
    pub expect_image_id: Option<(String, bool)>,
}

fn is_not_found(error: &DockerError) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code: 404, .. })
}

impl DockerExecutor {
    /// Connects to the local Docker engine; `None` when it does not answer.
    pub async fn connect(worker_id: &str) -> Option<DockerExecutor> {
        let docker = Docker::connect_with_local_defaults().ok()?;
        match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
            Ok(Ok(_)) => Some(DockerExecutor {
                docker,
                worker_id: worker_id.to_string(),
                in_container: None,
            }),
            _ => None,
        }
    }

    /// The id of the container this process runs in, when it is one of this engine's: a
    /// container's hostname is its short id, and the engine knows it. A process in some
    /// other container (another engine's, a sandbox) or on the host gets `None`.
    pub async fn own_container(&self, hostname: &str) -> Option<String> {
        if !Path::new("/.dockerenv").exists() {
            return None;
        }
        let options = None::<bollard::query_parameters::InspectContainerOptions>;
        let container = self.docker.inspect_container(hostname, options).await.ok()?;
        let id = container.id?;
        id.starts_with(hostname).then_some(id)
    }

    /// Starts runs as a worker inside a container must: see [`InContainer`].
    pub fn inside_container(mut self, in_container: InContainer) -> DockerExecutor {
        self.in_container = Some(in_container);
        self
    }

    /// Whether runs share the worker's own network (the worker runs in a container).
    pub fn runs_share_network(&self) -> bool {
        self.in_container.is_some()
    }

    /// A path of this worker's as the Docker host knows it.
    fn host_path(&self, path: &Path) -> PathBuf {
        match &self.in_container {
            Some(inside) => match path.strip_prefix(&inside.work_dir) {
                Ok(rest) => inside.host_work_dir.join(rest),
                Err(_) => path.to_path_buf(),
            },
            None => path.to_path_buf(),
        }
    }

    /// The Docker bridge's gateway: where containers reach this machine.
    /// Engines that do not report it use the subnet's first address, as Docker assigns it.
    pub async fn bridge_gateway(&self) -> Option<IpAddr> {
        let options = None::<bollard::query_parameters::InspectNetworkOptions>;
        let network = self.docker.inspect_network("bridge", options).await.ok()?;
        let configs = network.ipam?.config?;
        configs
            .iter()
            .find_map(|config| config.gateway.as_deref()?.parse().ok())
            .or_else(|| configs.iter().find_map(|config| first_host(config.subnet.as_deref()?)))
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
    async fn image_id(&self, image: &str, pull: bool) -> Result<String, ExecutorError> {
        let inspect_failed =
            |source| ExecutorError::InspectImage { image: image.to_string(), source };
        match self.docker.inspect_image(image).await {
            Ok(inspect) => return Ok(inspect.id.unwrap_or_default()),
            Err(error) if is_not_found(&error) && pull => {}
            Err(error) if is_not_found(&error) => {
                return Err(ExecutorError::ImageMissing {
                    image: image.to_string(),
                    worker_id: self.worker_id.clone(),
                });
            }
            Err(error) => return Err(inspect_failed(error)),
        }
        let options =
            CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|source| ExecutorError::PullFailed {
                image: image.to_string(),
                worker_id: self.worker_id.clone(),
                source,
            })?;
        }
        let inspect = self.docker.inspect_image(image).await.map_err(inspect_failed)?;
        Ok(inspect.id.unwrap_or_default())
    }

    pub async fn execute(
        &self,
        run: DockerRun,
        output: Output,
        mut cancellation: Cancellation,
        started: Started,
    ) -> Result<Outcome, ExecutorError> {
        let image_id = self.image_id(&run.image, run.pull).await?;
        if let Some((expected, strict)) = &run.expect_image_id
            && *expected != image_id
        {
            if *strict {
                return Err(ExecutorError::ImageChanged {
                    image: run.image.clone(),
                    expected: expected.clone(),
                    found: image_id,
                });
            }
            let note = format!(
                "image '{}' is now {image_id}; the run this reruns had {expected}\n",
                run.image
            );
            let _ = output.send((LogStream::System, note.into_bytes())).await;
        }
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
            .map_err(|source| ExecutorError::CreateContainer { source })?;
        let result =
            self.supervise(&created.id, &run, &image_id, output, &mut cancellation, started).await;
        self.remove(&created.id).await;
        result
    }

    async fn supervise(
        &self,
        container: &str,
        run: &DockerRun,
        image_id: &str,
        output: Output,
        cancellation: &mut Cancellation,
        started: Started,
    ) -> Result<Outcome, ExecutorError> {
        self.docker
            .start_container(container, None)
            .await
            .map_err(|source| ExecutorError::StartContainer { source })?;
        let _ = started.send(vec![
            Tag::new(tags::CONTAINER, container),
            Tag::new(tags::IMAGE_ID, image_id),
            Tag::new(tags::IMAGE, run.image.clone()),
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
                grace = cancellation.requested(), if !killed => {
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
            .map_err(|source| ExecutorError::InspectContainer { source })?;
        let state = inspect.state.unwrap_or_default();
        if state.oom_killed == Some(true) && !killed {
            return Err(ExecutorError::OutOfMemory);
        }
        let exit_code = state.exit_code.and_then(|code| i32::try_from(code).ok());
        Ok(Outcome { exit_code, killed })
    }

    fn container_body(&self, run: &DockerRun) -> ContainerCreateBody {
        let mut binds = vec![format!("{}:{PROJECT_MOUNT}", self.host_path(&run.dir).display())];
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
            // Lets a run reach services on the worker's host (the tracking API) by name; a
            // worker in a container has its runs share its network instead.
            extra_hosts: match &self.in_container {
                Some(_) => None,
                None => Some(vec![format!("{CONTAINER_HOST}:host-gateway")]),
            },
            network_mode: self.in_container.as_ref().map(|inside| inside.network_mode.clone()),
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

/// The first host address of an IPv4 subnet such as `172.17.0.0/16`.
fn first_host(subnet: &str) -> Option<IpAddr> {
    let (network, _) = subnet.split_once('/')?;
    let network: std::net::Ipv4Addr = network.parse().ok()?;
    Some(IpAddr::V4(std::net::Ipv4Addr::from(u32::from(network).checked_add(1)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_defaults_to_the_subnets_first_address() {
        assert_eq!(first_host("172.17.0.0/16"), Some("172.17.0.1".parse().unwrap()));
        assert_eq!(first_host("garbage"), None);
    }
}
