//! `drover runs diff` (what differs between two runs: code, parameters, data, image, command,
//! environment, then final metrics) and `drover runs rerun` / `drover sweeps rerun --best`
//! (queue a run again from the same snapshot, entry point, parameters, image and resources).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use drover_project::compare::{CodeDiff, Tree, compare};
use drover_project::digest::{DigestCache, digest_path};
use drover_project::snapshot::{self, SnapshotDigest};
use drover_project::{MlProject, PathCheck, parse_param_args};
use drover_proto::domain::{Run, RunId, Tag};
use drover_proto::execution::{EnvManager, Expectation, RunSpec, SubmitRun};
use drover_proto::lineage::{self, CodeSection, RunDiff};
use drover_proto::{ApiError, Client, tags};
use tempfile::NamedTempFile;
use tokio_stream::StreamExt;

use crate::GlobalOptions;
use crate::backend::{Backend, Embedding, with_client};
use crate::follow::{follow_run, report_end};
use crate::output::{OutputFormat, print_json};

#[derive(Args, Debug)]
pub struct DiffOptions {
    /// The first run's ID.
    run_a: String,
    /// The second run's ID (of any experiment).
    run_b: String,
    /// Only the summary of the code: which files changed and by how many lines.
    #[arg(long)]
    stat: bool,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

pub async fn diff(global: &GlobalOptions, options: DiffOptions) -> anyhow::Result<ExitCode> {
    let a: RunId = options.run_a.parse()?;
    let b: RunId = options.run_b.parse()?;
    let diff = with_client(global, async |client| {
        let (run_a, run_b) = (client.get_run(a).await?, client.get_run(b).await?);
        let code = code_section(client, &run_a, &run_b).await?;
        Ok(lineage::run_diff(&run_a, &run_b, code))
    })
    .await?;
    match options.output {
        OutputFormat::Json => print_json(&diff)?,
        OutputFormat::Table => print!("{}", render(&diff, options.stat)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The two snapshots compared file by file; the same snapshot has no differences to read.
async fn code_section(client: &Client, a: &Run, b: &Run) -> anyhow::Result<CodeSection> {
    let files = match lineage::snapshots_to_compare(a, b) {
        Some((x, y)) => {
            let (tree_a, tree_b) = (tree(client, &x).await?, tree(client, &y).await?);
            tokio::task::spawn_blocking(move || compare(&tree_a, &tree_b)).await?
        }
        None => CodeDiff::default(),
    };
    Ok(lineage::code_section(a, b, files))
}

/// A snapshot, downloaded into a temporary file.
async fn download(client: &Client, digest: &SnapshotDigest) -> anyhow::Result<NamedTempFile> {
    let mut chunks = client
        .download_snapshot(digest)
        .await
        .with_context(|| format!("cannot fetch snapshot {digest}"))?;
    let mut file = NamedTempFile::new().context("cannot make a temporary file")?;
    while let Some(chunk) = chunks.next().await {
        std::io::Write::write_all(&mut file, &chunk?).context("cannot write the snapshot")?;
    }
    Ok(file)
}

/// A snapshot's files, read from its archive.
async fn tree(client: &Client, digest: &str) -> anyhow::Result<Tree> {
    let file = download(client, &digest.parse()?).await?;
    tokio::task::spawn_blocking(move || {
        let archive = std::fs::File::open(file.path())?;
        Ok::<_, anyhow::Error>(Tree::read(std::io::BufReader::new(archive))?)
    })
    .await?
}

/// Checks changed parameters against the project in the run's snapshot, as the worker will
/// render them, so a bad value is refused before anything is queued.
async fn check_parameters(client: &Client, spec: &RunSpec) -> anyhow::Result<()> {
    let archive = download(client, &spec.snapshot).await?;
    let (entry, params) = (spec.entry_point.clone(), spec.parameters.clone());
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        snapshot::unpack(archive.path(), dir.path(), snapshot::DEFAULT_SIZE_LIMIT)?;
        let project = MlProject::load(dir.path())?;
        project.invocation(&entry, &params, &PathCheck::AsSubmitted)?;
        Ok(())
    })
    .await?
}

fn side(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(none)")
}

fn render(diff: &RunDiff, stat: bool) -> String {
    let mut out = format!("Comparing run {} with run {}\n", diff.run_a, diff.run_b);
    let code = &diff.code;
    out.push_str("\nCode\n");
    match (&code.snapshot_a, &code.snapshot_b) {
        (Some(a), Some(b)) if a == b => out.push_str(&format!("  same snapshot {a}\n")),
        (Some(a), Some(b)) => {
            out.push_str(&format!("  snapshot {a} -> {b}\n"));
            let files = &code.files;
            for path in &files.added {
                out.push_str(&format!("  added    {path}\n"));
            }
            for path in &files.removed {
                out.push_str(&format!("  removed  {path}\n"));
            }
            for file in &files.changed {
                let lines = match file.patch {
                    Some(_) => format!("+{} -{}", file.insertions, file.deletions),
                    None => "binary or large".to_string(),
                };
                out.push_str(&format!("  changed  {}  ({lines})\n", file.path));
            }
            let (insertions, deletions) = files
                .changed
                .iter()
                .fold((0, 0), |(i, d), file| (i + file.insertions, d + file.deletions));
            out.push_str(&format!(
                "  {} changed, {} added, {} removed; {insertions} insertions(+), {deletions} deletions(-)\n",
                files.changed.len(),
                files.added.len(),
                files.removed.len()
            ));
            if !stat {
                for patch in files.changed.iter().filter_map(|file| file.patch.as_deref()) {
                    out.push('\n');
                    out.push_str(patch);
                }
            }
        }
        _ => out.push_str("  not known: drover did not execute both runs\n"),
    }
    for (title, changes) in [
        ("Parameters", &diff.parameters),
        ("Data", &diff.data),
        ("Image", &diff.image),
        ("Command", &diff.command),
        ("Environment", &diff.environment),
    ] {
        out.push_str(&format!("\n{title}\n"));
        if changes.is_empty() {
            out.push_str("  same\n");
        }
        for change in changes {
            out.push_str(&format!(
                "  {}: {} -> {}\n",
                change.key,
                side(&change.a),
                side(&change.b)
            ));
        }
    }
    out.push_str("\nFinal metrics\n");
    if diff.metrics.is_empty() {
        out.push_str("  none\n");
    }
    for metric in &diff.metrics {
        let value = |value: Option<f64>| value.map_or("(none)".to_string(), |v| v.to_string());
        let delta = metric.delta.map_or(String::new(), |delta| format!("  ({delta:+})"));
        out.push_str(&format!(
            "  {}: {} -> {}{delta}\n",
            metric.key,
            value(metric.a),
            value(metric.b)
        ));
    }
    out.push('\n');
    out.push_str(if diff.matches {
        "The runs match: the same code, parameters, data, image, command and environment.\n"
    } else {
        "The runs differ in what is listed above.\n"
    });
    out
}

#[derive(Args, Debug)]
pub struct RerunOptions {
    /// The run to run again.
    run_id: String,
    #[command(flatten)]
    again: AgainOptions,
}

/// What a rerun may change, and how strict it is.
#[derive(Args, Debug)]
pub struct AgainOptions {
    /// A parameter to change, key=value (repeatable); the others are the run's.
    #[arg(short = 'P', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Refuse to run when the image's id or a data digest differs from the run's.
    #[arg(long)]
    strict: bool,
    /// Queue the run and return without following it.
    #[arg(long)]
    detach: bool,
}

pub async fn rerun(global: &GlobalOptions, options: RerunOptions) -> anyhow::Result<ExitCode> {
    rerun_run(global, options.run_id.parse()?, options.again).await
}

/// Queues `run_id` again, then follows it unless detached.
pub async fn rerun_run(
    global: &GlobalOptions,
    run_id: RunId,
    again: AgainOptions,
) -> anyhow::Result<ExitCode> {
    let overrides = parse_param_args(&again.params)?;
    let backend = Backend::connect_with(global, Embedding::WithWorker).await?;
    let result =
        rerun_with(&backend.client, run_id, &overrides, &again, backend.is_embedded()).await;
    backend.close().await?;
    result
}

async fn rerun_with(
    client: &Client,
    run_id: RunId,
    overrides: &[(String, String)],
    again: &AgainOptions,
    here: bool,
) -> anyhow::Result<ExitCode> {
    let original = client.get_run(run_id).await?;
    let mut spec = match client.run_spec(run_id).await {
        Ok(spec) => spec,
        Err(ApiError::FailedPrecondition(reason)) => bail!("{reason}"),
        Err(error) => return Err(error.into()),
    };
    for (key, value) in overrides {
        match spec.parameters.iter_mut().find(|(name, _)| name == key) {
            Some((_, old)) => *old = value.clone(),
            None => spec.parameters.push((key.clone(), value.clone())),
        }
    }
    if !overrides.is_empty() {
        check_parameters(client, &spec).await?;
    }
    let changed = |parameter: &str| overrides.iter().any(|(key, _)| key == parameter);
    let expect = expectation(&original, &spec, &changed, again.strict, here)?;
    spec.expect = Some(expect);
    let mut run_tags = vec![Tag::new(tags::RERUN_OF, run_id.to_string())];
    for tag in &original.data.tags {
        let kept = [
            tags::SOURCE_NAME,
            tags::SOURCE_TYPE,
            tags::PROJECT_ENV,
            tags::PROJECT_NAME,
            tags::GIT_COMMIT,
            tags::GIT_REPO_URL,
            tags::GIT_BRANCH,
            tags::GIT_DIRTY,
            tags::GIT_DIFF,
        ]
        .contains(&tag.key.as_str());
        // The worker records the data anew as the run starts.
        if kept {
            run_tags.push(tag.clone());
        }
    }
    // As typed: the original run's values, with those given here over them.
    let mut given: serde_json::Map<String, serde_json::Value> = original
        .tag(tags::PARAMS_GIVEN)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    for (key, value) in overrides {
        given.insert(key.clone(), value.clone().into());
    }
    run_tags.extend(super::run::given_tag(given));
    run_tags.push(Tag::new(tags::USER, super::run::user()));
    let run = client
        .submit_run(SubmitRun {
            experiment_id: original.info.experiment_id,
            run_name: None,
            user_id: super::run::user(),
            tags: run_tags,
            spec,
        })
        .await?;
    let new_id = run.info.run_id;
    eprintln!("=== Run (ID='{new_id}') queued: a rerun of {run_id} ===");
    if again.detach {
        println!("{new_id}");
        return Ok(ExitCode::SUCCESS);
    }
    let end = follow_run(client, new_id, true, true).await?;
    Ok(report_end(new_id, &end))
}

/// What the worker must find again: the image's id and the digest of each unchanged data
/// path outside the project. When the run will execute `here` (the embedded worker), its data
/// and image are checked before anything is queued; a scheduler's worker may be anywhere, so
/// it checks them itself as the run starts.
fn expectation(
    original: &Run,
    spec: &RunSpec,
    changed: &dyn Fn(&str) -> bool,
    strict: bool,
    here: bool,
) -> anyhow::Result<Expectation> {
    let mut expect = Expectation {
        image_id: original.tag(tags::IMAGE_ID).map(str::to_string),
        strict,
        ..Default::default()
    };
    let mut differences = Vec::new();
    let mut cache = DigestCache::open(&crate::drover_home().join("cache").join("digests"));
    for (parameter, value) in &spec.parameters {
        let Some(before) = original.tag(&tags::data_digest(parameter)) else { continue };
        if changed(parameter) || !std::path::Path::new(value).is_absolute() {
            // A path inside the project is pinned by the snapshot itself.
            continue;
        }
        expect.data.push((parameter.clone(), before.to_string()));
        if !here {
            continue;
        }
        if let Some(path) = spec.data_path(value)
            && let Ok(now) = digest_path(&path, &mut cache)
            && now.digest != before
        {
            differences.push(format!(
                "data parameter '{parameter}' ({value}) differs: {before} then, {} now",
                now.digest
            ));
        }
    }
    let _ = cache.save();
    if let (true, EnvManager::Docker, Some(image), Some(before)) =
        (here, spec.env_manager, &spec.image, &expect.image_id)
        && let Some(now) = local_image_id(image)
        && now != *before
    {
        differences.push(format!("image '{image}' is now {now}, not {before}"));
    }
    for difference in &differences {
        eprintln!("drover: {difference}");
    }
    if strict && !differences.is_empty() {
        bail!(
            "a strict rerun does not run with different data or image (rerun without --strict to run it anyway)"
        );
    }
    Ok(expect)
}

/// The id of `image` in a Docker engine on this machine, if there is one that has it.
fn local_image_id(image: &str) -> Option<String> {
    let output = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[derive(Args, Debug)]
pub struct SweepRerunOptions {
    /// The sweep's ID (its parent run's ID).
    sweep_id: String,
    /// Rerun the sweep's best trial.
    #[arg(long, required = true)]
    best: bool,
    #[command(flatten)]
    again: AgainOptions,
}

/// `drover sweeps rerun SWEEP --best`.
pub async fn rerun_best(
    global: &GlobalOptions,
    options: SweepRerunOptions,
) -> anyhow::Result<ExitCode> {
    let sweep_id: RunId = options.sweep_id.parse()?;
    let sweep = with_client(global, async |client| Ok(client.get_sweep(sweep_id).await?)).await?;
    let Some(best) = sweep.best else {
        bail!(
            "sweep {sweep_id} has no best trial yet: none has finished with its objective metric"
        );
    };
    eprintln!(
        "Rerunning trial {} of sweep {sweep_id}, run {} ({} = {})",
        best.index,
        best.run_id,
        sweep.spec.objective.as_ref().map_or("objective", |objective| objective.metric.as_str()),
        best.value.map_or("-".to_string(), |value| value.to_string())
    );
    rerun_run(global, best.run_id, options.again).await
}
