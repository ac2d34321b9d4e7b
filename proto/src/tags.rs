//! The tag keys drover and MLflow reserve on runs, in one place. Code that sets or reads one
//! of these tags names it through a constant here, never as a string literal.

// MLflow's own keys, as its client and UI read them.
pub const RUN_NAME: &str = "mlflow.runName";
pub const USER: &str = "mlflow.user";
pub const PARENT_RUN: &str = "mlflow.parentRunId";
pub const SOURCE_NAME: &str = "mlflow.source.name";
pub const SOURCE_TYPE: &str = "mlflow.source.type";
pub const GIT_COMMIT: &str = "mlflow.source.git.commit";
pub const GIT_REPO_URL: &str = "mlflow.source.git.repoURL";
pub const GIT_BRANCH: &str = "mlflow.source.git.branch";
pub const PROJECT_ENV: &str = "mlflow.project.env";
pub const ENTRY_POINT: &str = "mlflow.project.entryPoint";

// What the CLI records about a submission.
pub const PROJECT_NAME: &str = "drover.project.name";
/// The `-P` values as typed, a JSON object; the run's params are as the command got them,
/// with defaults filled in and paths made relative to the project.
pub const PARAMS_GIVEN: &str = "drover.params.given";
pub const GIT_DIRTY: &str = "drover.source.git.dirty";
/// A dirty tree's changes against the commit, as `+A -D in N files`; the diff itself is kept
/// with the snapshot (`drover runs describe --git-diff`).
pub const GIT_DIFF: &str = "drover.source.git.diff";

// What the scheduler vouches for at submission, whatever the client sent.
pub const SNAPSHOT: &str = "drover.snapshot.digest";
pub const IMAGE: &str = "drover.docker.image";
pub const ENV_MANAGER: &str = "drover.env_manager";

// What the dispatcher records as a run is placed and ends.
pub const WORKER: &str = "drover.worker";
pub const ATTEMPT: &str = "drover.attempt";
pub const EXIT_CODE: &str = "drover.exit_code";
pub const FAILURE_REASON: &str = "drover.failure_reason";
/// Why a queued run waits, e.g. `no worker with 2 free GPUs`; removed once it is placed.
pub const WAITING: &str = "drover.waiting";
/// The GPU devices an attempt holds on its worker.
pub const GPUS: &str = "drover.gpus";

// What a worker records once the process has started.
pub const COMMAND: &str = "drover.command";
/// The drover version of the worker that ran the attempt.
pub const VERSION: &str = "drover.version";
pub const IMAGE_ID: &str = "drover.docker.image_id";
pub const CONTAINER: &str = "drover.docker.container";

// Sweeps: on the parent run, then on each child.
pub const SWEEP_METHOD: &str = "drover.sweep.method";
pub const SWEEP_MAX_RUNS: &str = "drover.sweep.max_runs";
pub const SWEEP_PARALLEL: &str = "drover.sweep.parallel";
pub const SWEEP_SEED: &str = "drover.sweep.seed";
pub const SWEEP_METRIC: &str = "drover.sweep.metric";
pub const SWEEP_GOAL: &str = "drover.sweep.goal";
pub const SWEEP_BEST_RUN: &str = "drover.sweep.best_run_id";
pub const SWEEP_ID: &str = "drover.sweep_id";
pub const SWEEP_TRIAL: &str = "drover.sweep.trial";
pub const EARLY_STOPPED: &str = "drover.early_stopped";
pub const EARLY_STOP_RULE: &str = "drover.early_stop.rule";
pub const EARLY_STOP_AT: &str = "drover.early_stop.at";

// Lineage.
/// The run this one reruns.
pub const RERUN_OF: &str = "drover.rerun_of";
/// Where every data tag starts: `drover.data.<parameter>.digest` and `.source`.
pub const DATA_PREFIX: &str = "drover.data.";
/// Where every environment tag starts: `drover.env.<NAME>`.
pub const ENV_PREFIX: &str = "drover.env.";
/// What an environment tag holds for a variable whose name looks secret.
pub const ENV_REDACTED: &str = "(not recorded: the name looks secret)";

/// The content digest of the data a parameter named: `sha256:` and 64 hex characters.
pub fn data_digest(parameter: &str) -> String {
    format!("{DATA_PREFIX}{parameter}.digest")
}

/// Whether a parameter's name leaves room for its data tags' keys (else it gets none).
pub fn data_tags_fit(parameter: &str) -> bool {
    data_digest(parameter).len() <= crate::validate::MAX_KEY_LEN
}

/// The path or URI a parameter named, as the command got it.
pub fn data_source(parameter: &str) -> String {
    format!("{DATA_PREFIX}{parameter}.source")
}

/// An environment variable passed to the run, with its value or [`ENV_REDACTED`].
pub fn env(name: &str) -> String {
    format!("{ENV_PREFIX}{name}")
}

/// Whether an environment variable's name looks like it holds a secret, whose value is
/// therefore never recorded.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The parameter a data tag is about, and which of its facts (`digest` or `source`).
pub fn parse_data_tag(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(DATA_PREFIX)?;
    rest.strip_suffix(".digest")
        .map(|name| (name, "digest"))
        .or_else(|| rest.strip_suffix(".source").map(|name| (name, "source")))
}
