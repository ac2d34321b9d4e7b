//! `drover run`: check a project and its parameters, ship it as a snapshot, queue the run,
//! and follow it to the end.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use drover_project::docker::DockerOptions;
use drover_project::snapshot::{self, PackedSnapshot};
use drover_project::{EnvVar, Environment, MlProject, PathCheck, parse_param_args};
use drover_proto::ApiError;
use drover_proto::Client;
use drover_proto::domain::{
    CreateExperiment, DEFAULT_EXPERIMENT_ID, ExperimentId, ExperimentName, ExperimentRef, Tag,
};
use drover_proto::execution::{self, EnvManager, RunSpec, SubmitRun};
use drover_proto::tags;

use crate::GlobalOptions;
use crate::backend::{Backend, Embedding};
use crate::follow::{follow_run, report_end};
use crate::git::GitFacts;

/// The image for Docker runs of projects without `docker_env`.
pub const DEFAULT_IMAGE: &str = "drover/python:3";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EnvManagerArg {
    Local,
    Docker,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The project directory.
    #[arg(default_value = ".", value_name = "URI")]
    pub uri: PathBuf,
    /// Entry point: one declared in MLproject, or a .py or .sh file of the project.
    #[arg(short = 'e', long = "entry-point", default_value = "main", value_name = "ENTRY")]
    pub entry_point: String,
    /// A parameter, key=value (repeatable).
    #[arg(short = 'P', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// A docker run argument, name=value or name: gpus, cpus, memory, shm-size, env, user.
    #[arg(short = 'A', long = "docker-arg", value_name = "ARG")]
    pub docker_args: Vec<String>,
    /// Experiment to run in, by name (created when missing).
    #[arg(long, conflicts_with = "experiment_id", value_name = "NAME")]
    pub experiment_name: Option<String>,
    /// Experiment to run in, by ID.
    #[arg(long, value_name = "ID")]
    pub experiment_id: Option<String>,
    /// A name for the run (default: a generated one).
    #[arg(long, value_name = "NAME")]
    pub run_name: Option<String>,
    /// Where the run executes: a local process, or a Docker container (the default for
    /// projects with docker_env).
    #[arg(long, value_enum, value_name = "MANAGER")]
    pub env_manager: Option<EnvManagerArg>,
    /// CPUs the run needs, e.g. 1.5: placed where that many are free (a Docker run is
    /// limited to them).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Memory the run needs, e.g. 4g: placed where that much is free (a Docker run is
    /// limited to it).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// GPUs the run needs: a count, all, or device=ID[,ID]. It gets devices no other run on
    /// its worker holds (by id in Docker, CUDA_VISIBLE_DEVICES for a local process).
    #[arg(long, value_name = "GPUS")]
    pub gpus: Option<String>,
    /// A label the worker must have, key=value (repeatable), e.g. --label zone=a.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Higher runs first when the cluster is busy.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Times the run is requeued when its worker is lost.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_retries: u32,
    /// Queue the run and return without following it.
    #[arg(long)]
    pub detach: bool,
}

/// A run checked and ready to submit, with its snapshot packed.
pub struct PreparedRun {
    pub spec: RunSpec,
    pub command: String,
    pub snapshot: PackedSnapshot,
    /// The tags known at once; [`PreparedRun::tags`] adds the git facts.
    tags: Vec<Tag>,
    git: GitFacts,
}

impl PreparedRun {
    /// Every tag the run is submitted with, the git facts last (read while the rest went on).
    pub fn tags(&mut self) -> Vec<Tag> {
        // The snapshot's paths, gathered only if a dirty tree's diff asks, and once.
        let entries = &self.snapshot.entries;
        let packed = std::cell::OnceCell::new();
        let in_snapshot = |path: &str| {
            packed
                .get_or_init(|| {
                    entries.iter().map(PathBuf::as_path).collect::<std::collections::HashSet<_>>()
                })
                .contains(Path::new(path))
        };
        let mut tags = self.tags.clone();
        tags.extend(self.git.tags(&in_snapshot));
        tags
    }
}

pub async fn run(global: &GlobalOptions, args: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    // A named scheduler is connected to while the project is checked and packed; anything
    // wrong with the project is still reported first.
    let connecting = global.scheduler.is_some().then(|| {
        let global = global.clone();
        tokio::spawn(async move { Backend::connect_with(&global, Embedding::WithWorker).await })
    });
    let prepared = prepare(&args)?;
    if args.detach
        && global.scheduler.is_none()
        && drover_scheduler::read_holder(&crate::drover_home()).is_none_or(|h| h.address.is_none())
    {
        bail!(
            "--detach needs a running scheduler (start `drover scheduler` and `drover worker`, or pass --scheduler); without one the run would stop with this command"
        );
    }
    let backend = match connecting {
        Some(connecting) => connecting.await.context("connecting to the scheduler stopped")??,
        None => Backend::connect_with(global, Embedding::WithWorker).await?,
    };
    let result = submit_and_follow(&backend.client, &args, prepared).await;
    backend.close().await?;
    result
}

async fn submit_and_follow(
    client: &Client,
    args: &RunArgs,
    mut prepared: PreparedRun,
) -> anyhow::Result<std::process::ExitCode> {
    let experiment_id = resolve_experiment(client, args).await?;
    let request = SubmitRun {
        experiment_id,
        run_name: args.run_name.clone(),
        user_id: user(),
        tags: prepared.tags(),
        spec: prepared.spec.clone(),
    };
    let run = if prepared.git.has_source_diff() {
        // The uncommitted changes are kept beside the snapshot, which must be there first.
        upload_snapshot(client, &prepared.snapshot).await?;
        keep_source_diff(client, &mut prepared).await?;
        client.submit_run(request).await?
    } else {
        // Submitted at once, the snapshot uploaded only if the scheduler lacks it: a project
        // it already has costs one round trip, not two.
        match client.submit_run(request.clone()).await {
            Err(error) if execution::is_missing_snapshot(&error) => {
                upload_snapshot(client, &prepared.snapshot).await?;
                client.submit_run(request).await?
            }
            result => result?,
        }
    };
    let run_id = run.info.run_id;
    let place = match (&prepared.spec.env_manager, &prepared.spec.image) {
        (EnvManager::Docker, Some(image)) => format!("in a Docker container from {image}"),
        _ => "as a local process".to_string(),
    };
    eprintln!("=== Run (ID='{run_id}') queued in experiment {experiment_id} ===");
    eprintln!("=== Running command '{}' {place} ===", prepared.command);
    if args.detach {
        println!("{run_id}");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let end = follow_run(client, run_id, true, true).await?;
    Ok(report_end(run_id, &end))
}

/// Checks everything that can be checked locally and packs the snapshot.
pub fn prepare(args: &RunArgs) -> anyhow::Result<PreparedRun> {
    prepare_with(args, &parse_param_args(&args.params)?)
}

/// As [`prepare`], with the parameters already parsed (a sweep passes one trial's values).
pub fn prepare_with(args: &RunArgs, given: &[(String, String)]) -> anyhow::Result<PreparedRun> {
    let project_dir = &args.uri;
    let uri = project_dir.display().to_string();
    if uri.contains("://") || uri.starts_with("git@") {
        bail!(
            "'{uri}' is not a local directory; drover runs projects from local directories (clone the repository first)"
        );
    }
    if !project_dir.is_dir() {
        bail!("project directory '{uri}' does not exist");
    }
    let git = GitFacts::start(project_dir);
    let project = MlProject::load(project_dir)?;
    let mut docker = DockerOptions::parse_args(&args.docker_args)?;
    if let Some(cpus) = &args.cpus {
        docker.set_cpus(cpus)?;
    }
    if let Some(memory) = &args.memory {
        docker.set_memory(memory)?;
    }
    if let Some(gpus) = &args.gpus {
        docker.set_gpus(gpus)?;
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let paths = PathCheck::Local { cwd, project_dir: project_dir.clone() };
    let invocation = project.invocation(&args.entry_point, given, &paths)?;

    let env_manager = match (args.env_manager, &project.environment) {
        (Some(EnvManagerArg::Local), _) => EnvManager::Local,
        (Some(EnvManagerArg::Docker), _) | (None, Environment::Docker(_)) => EnvManager::Docker,
        (None, _) => EnvManager::Local,
    };
    // --cpus, --memory and --gpus are what a run needs of its worker, local or not; the
    // rest of -A configures a container.
    let container_only =
        DockerOptions { cpus: None, memory_bytes: None, gpus: None, ..docker.clone() };
    if env_manager == EnvManager::Local && container_only != DockerOptions::default() {
        bail!(
            "docker arguments (-A shm-size, env, user) apply to Docker runs; this run is a local process (use --env-manager docker)"
        );
    }
    if let Some((name, _)) = docker.env.iter().find(|(name, _)| tags::looks_secret(name)) {
        bail!(
            "-A env={name}=...: drover never carries or stores the value of a variable whose name looks secret; list '{name}' in the MLproject's docker_env.environment to have the worker copy it from its own environment"
        );
    }
    let mut inherited_environment = Vec::new();
    let (image, volumes, environment) = match (&project.environment, env_manager) {
        (Environment::Docker(docker_env), EnvManager::Docker) => {
            let mut environment = Vec::new();
            for variable in &docker_env.environment {
                match variable {
                    // A secret written in the MLproject travels in the snapshot, where the
                    // worker reads it; the spec never holds it.
                    EnvVar::Set(name, _) if tags::looks_secret(name) => {}
                    EnvVar::Set(name, value) => environment.push((name.clone(), value.clone())),
                    // A secret is copied where the run starts, so it is never carried or
                    // stored; for a run on this machine that is this environment.
                    EnvVar::Copy(name) if tags::looks_secret(name) => {
                        inherited_environment.push(name.clone())
                    }
                    EnvVar::Copy(name) => match std::env::var(name) {
                        Ok(value) => environment.push((name.clone(), value)),
                        Err(_) => bail!(
                            "MLproject: docker_env.environment copies '{name}', which is not set in your environment"
                        ),
                    },
                }
            }
            (Some(docker_env.image.clone()), docker_env.volumes.clone(), environment)
        }
        (_, EnvManager::Docker) => {
            let image =
                std::env::var("DROVER_DEFAULT_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_string());
            (Some(image), Vec::new(), Vec::new())
        }
        (_, EnvManager::Local) => (None, Vec::new(), Vec::new()),
    };

    let snapshot = snapshot::pack(project_dir, snapshot::DEFAULT_SIZE_LIMIT)?;
    let mut run_tags = vec![
        Tag::new(tags::SOURCE_NAME, absolute(project_dir).display().to_string()),
        Tag::new(tags::SOURCE_TYPE, "PROJECT"),
        Tag::new(tags::PROJECT_ENV, project.environment.kind()),
        Tag::new(tags::USER, user()),
        Tag::new(tags::PROJECT_NAME, &project.name),
    ];
    if let Some(run_name) = &args.run_name {
        run_tags.push(Tag::new(tags::RUN_NAME, run_name));
    }
    run_tags.extend(data_tags(&project, &invocation));
    // The parameters as typed; the run's params are as rendered, with defaults filled in.
    run_tags.extend(given_tag(
        given.iter().map(|(key, value)| (key.clone(), value.clone().into())).collect(),
    ));
    let spec = RunSpec {
        project_name: project.name.clone(),
        snapshot: snapshot.digest.clone(),
        snapshot_size: snapshot.size,
        entry_point: invocation.entry_point.clone(),
        parameters: invocation.params.clone(),
        env_manager,
        image,
        volumes,
        environment,
        docker,
        max_retries: args.max_retries,
        priority: args.priority,
        labels: args
            .labels
            .iter()
            .map(|label| match label.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
                _ => bail!("malformed label '{label}': expected key=value"),
            })
            .collect::<anyhow::Result<_>>()?,
        inherited_environment,
        expect: None,
    };
    Ok(PreparedRun { spec, command: invocation.command, snapshot, tags: run_tags, git })
}

/// The `-P` values as typed, as a tag; none when they are too long for one (the run's
/// params still hold them as rendered).
pub fn given_tag(given: serde_json::Map<String, serde_json::Value>) -> Option<Tag> {
    let text = serde_json::Value::Object(given).to_string();
    (text.len() <= drover_proto::validate::MAX_TAG_VALUE_LEN)
        .then(|| Tag::new(tags::PARAMS_GIVEN, text))
}

/// What the run's data parameters name, as sources; the worker records each one's digest as
/// the run starts, from the run's own copy of the project for a path inside it.
fn data_tags(project: &MlProject, invocation: &drover_project::Invocation) -> Vec<Tag> {
    project
        .data_params(&invocation.entry_point, &invocation.params)
        .into_iter()
        .filter(|param| tags::data_tags_fit(&param.name))
        .map(|param| Tag::new(tags::data_source(&param.name), &param.value))
        .collect()
}

/// The experiment to run in: by ID (must exist), by name (created when missing), or Default.
pub async fn resolve_experiment(client: &Client, args: &RunArgs) -> anyhow::Result<ExperimentId> {
    if let Some(id) = &args.experiment_id {
        let id: ExperimentId = id.parse()?;
        return Ok(client.get_experiment(ExperimentRef::Id(id)).await?.id);
    }
    let Some(name) = &args.experiment_name else { return Ok(DEFAULT_EXPERIMENT_ID) };
    match client.get_experiment(ExperimentRef::Name(name.clone())).await {
        Ok(experiment) => Ok(experiment.id),
        Err(ApiError::NotFound(_)) => {
            let request = CreateExperiment {
                name: ExperimentName::parse(name)?,
                artifact_location: None,
                tags: Vec::new(),
            };
            match client.create_experiment(request).await {
                Ok(experiment) => {
                    eprintln!("Created experiment '{}' with ID {}", experiment.name, experiment.id);
                    Ok(experiment.id)
                }
                // Another submission created it in the meantime.
                Err(ApiError::AlreadyExists(_)) => {
                    Ok(client.get_experiment(ExperimentRef::Name(name.clone())).await?.id)
                }
                Err(error) => Err(error.into()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Keeps a dirty tree's diff against its commit with the snapshot (uploaded before). A diff
/// too large to keep is left out with a warning: the snapshot holds the files all the same.
pub async fn keep_source_diff(client: &Client, prepared: &mut PreparedRun) -> anyhow::Result<()> {
    prepared.tags();
    let Some((commit, diff)) = prepared.git.source_diff() else { return Ok(()) };
    let size = diff.len();
    match client.put_source_diff(&prepared.snapshot.digest, &commit, diff).await {
        Ok(()) => Ok(()),
        Err(ApiError::InvalidArgument(reason)) if size > 0 => {
            eprintln!("drover: the uncommitted changes are not kept beside the snapshot: {reason}");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Uploads the snapshot unless the scheduler already has it.
pub async fn upload_snapshot(client: &Client, snapshot: &PackedSnapshot) -> anyhow::Result<()> {
    let (present, limit) = client.has_snapshot(&snapshot.digest).await?;
    if present {
        return Ok(());
    }
    if snapshot.size > limit {
        bail!(
            "the project snapshot is {} bytes; the scheduler accepts up to {limit} bytes",
            snapshot.size
        );
    }
    let progress = crate::output::upload_progress(snapshot.size);
    let file = tokio::fs::File::open(snapshot.file.path())
        .await
        .context("cannot read the packed snapshot")?;
    let chunks = crate::output::file_chunks(file, progress.clone());
    client.upload_snapshot(&snapshot.digest, snapshot.size, chunks).await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|user| user.name)
        })
        .unwrap_or_else(|| "unknown".to_string())
}
