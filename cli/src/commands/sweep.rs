//! `drover sweep` (start a parameter sweep and follow it) and `drover sweeps ...` (list,
//! describe, cancel).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use drover_project::sweep::{SweepArgs as SweepFlags, build_sweep, sweep_file_name};
use drover_project::{MlProject, PathCheck, parse_param_args};
use drover_proto::domain::{ExperimentId, ExperimentRef, RunId};
use drover_proto::execution::SubmitRun;
use drover_proto::sweep::{CreateSweep, Domain, Sweep, SweepStatus, Trial};
use drover_proto::{ApiError, Client, tags};
use drover_scheduler::sweep::sweep_json;

use super::run::{
    RunArgs, keep_source_diff, prepare_with, resolve_experiment, upload_snapshot, user,
};
use crate::GlobalOptions;
use crate::backend::{Backend, Embedding, with_client};
use crate::output::{OutputFormat, Table, format_duration, format_time, print_json, terminal_safe};

/// How often a followed sweep is looked at.
const POLL: Duration = Duration::from_millis(500);

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// A sweep file with W&B's keys: method, metric, parameters, run_cap, parallel,
    /// max_failures, early_terminate, seed. Flags and -P values override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How to search: grid, random, or tpe (bayes is accepted as tpe). Default: random.
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
    /// Child runs to create at most (a grid defaults to all its combinations).
    #[arg(long, value_name = "N")]
    pub max_runs: Option<u32>,
    /// Child runs queued or running at once (default 1).
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,
    /// The metric the sweep optimizes.
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,
    /// Whether lower (min) or higher (max) is better (default min).
    #[arg(long, value_name = "min|max")]
    pub goal: Option<String>,
    /// Failed child runs tolerated; one more ends the sweep FAILED (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u32>,
    /// Stop losing runs early on their live metric: median or asha.
    #[arg(long, value_name = "RULE")]
    pub early_stop: Option<String>,
    /// No run is stopped before this step; ASHA's first rung (default 1).
    #[arg(long, value_name = "STEP")]
    pub min_step: Option<i64>,
    /// ASHA's reduction factor: each rung keeps the top 1/eta (default 3).
    #[arg(long, value_name = "N")]
    pub eta: Option<u32>,
    /// Seed for random and TPE search (default: a random one, recorded on the sweep).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List sweeps, oldest first.
    List(ListOptions),
    /// Show a sweep: progress, its best run with its params, and a leaderboard.
    Describe(DescribeOptions),
    /// Cancel a sweep: it ends KILLED and its queued and running runs are cancelled.
    Cancel(SweepArgument),
    /// Queue the sweep's best trial again, as `drover runs rerun` does.
    Rerun(super::lineage::SweepRerunOptions),
}

#[derive(Args, Debug)]
pub struct ListOptions {
    /// Only sweeps of this experiment.
    #[arg(long, value_name = "NAME", conflicts_with = "experiment_id")]
    experiment_name: Option<String>,
    /// Only sweeps of this experiment ID.
    #[arg(long, value_name = "ID")]
    experiment_id: Option<String>,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct DescribeOptions {
    /// The sweep's ID (its parent run's ID).
    sweep_id: String,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct SweepArgument {
    /// The sweep's ID (its parent run's ID).
    sweep_id: String,
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish() % (1 << 31)
}

/// `drover sweep`: checks the sweep against the project, ships the project once, creates the
/// sweep, and follows it to the end.
pub async fn sweep(global: &GlobalOptions, args: SweepArgs) -> anyhow::Result<ExitCode> {
    let project_dir = &args.run.uri;
    if !project_dir.is_dir() {
        bail!("project directory '{}' does not exist", project_dir.display());
    }
    let project = MlProject::load(project_dir)?;
    let flags = SweepFlags {
        parameters: parse_param_args(&args.run.params)?,
        method: args.method.clone(),
        max_runs: args.max_runs,
        parallel: args.parallel,
        metric: args.metric.clone(),
        goal: args.goal.clone(),
        max_failures: args.max_failures,
        early_stop: args.early_stop.clone(),
        min_step: args.min_step,
        eta: args.eta,
        seed: args.seed,
    };
    let cwd = std::env::current_dir()?;
    let paths = PathCheck::Local { cwd, project_dir: project_dir.clone() };
    let spec = build_sweep(
        args.config.as_deref(),
        &flags,
        &project,
        &args.run.entry_point,
        &paths,
        random_seed(),
    )?;
    let name = match (&args.run.run_name, &args.config) {
        (Some(name), _) => Some(name.clone()),
        (None, Some(file)) => sweep_file_name(file)?,
        (None, None) => None,
    };
    // The run every child makes, checked with each parameter's first value.
    let sample: Vec<(String, String)> = spec
        .parameters
        .iter()
        .map(|parameter| (parameter.name.clone(), parameter.first_value()))
        .collect();
    let mut prepared = prepare_with(&args.run, &sample)?;
    let spec = resolve_paths(spec, &project, &args.run.entry_point, &paths, &sample)?;
    if args.run.detach
        && global.scheduler.is_none()
        && drover_scheduler::read_holder(&crate::drover_home()).is_none_or(|h| h.address.is_none())
    {
        bail!(
            "--detach needs a running scheduler (start `drover scheduler` and `drover worker`, or pass --scheduler); without one the sweep would stop with this command"
        );
    }
    let backend = Backend::connect_with(global, Embedding::WithWorker).await?;
    let result = async {
        let client = &backend.client;
        let experiment_id = resolve_experiment(client, &args.run).await?;
        upload_snapshot(client, &prepared.snapshot).await?;
        keep_source_diff(client, &mut prepared).await?;
        let request = CreateSweep {
            spec,
            run: SubmitRun {
                experiment_id,
                run_name: None,
                user_id: user(),
                // One trial's parameters were checked; what each trial's data and typed
                // values are is its own, recorded as it runs.
                tags: prepared
                    .tags()
                    .into_iter()
                    .filter(|tag| {
                        tag.key != tags::PARAMS_GIVEN && tags::parse_data_tag(&tag.key).is_none()
                    })
                    .collect(),
                spec: prepared.spec.clone(),
            },
            name,
        };
        let sweep = client.create_sweep(request).await?;
        eprintln!(
            "=== Sweep (ID='{}') '{}' started in experiment {experiment_id}: {} search, up to {} runs, {} at a time ===",
            sweep.id,
            sweep.name,
            sweep.spec.method.as_str(),
            sweep.spec.max_runs,
            sweep.spec.parallel
        );
        if args.run.detach {
            println!("{}", sweep.id);
            return Ok(ExitCode::SUCCESS);
        }
        let sweep = follow_sweep(client, sweep.id).await?;
        Ok(report_sweep(&sweep))
    }
    .await;
    backend.close().await?;
    result
}

/// Checks each value of a `path` parameter on this machine and rewrites it as `drover run`
/// does (relative to the project, so it resolves inside the run's snapshot).
fn resolve_paths(
    mut spec: drover_proto::sweep::SweepSpec,
    project: &MlProject,
    entry: &str,
    paths: &PathCheck,
    sample: &[(String, String)],
) -> anyhow::Result<drover_proto::sweep::SweepSpec> {
    let Some(entry_point) = project.entry_points.get(entry) else { return Ok(spec) };
    for parameter in &mut spec.parameters {
        let declared_path = entry_point.parameters.iter().any(|declared| {
            declared.name == parameter.name && declared.kind == drover_project::ParamType::Path
        });
        if !declared_path {
            continue;
        }
        let resolve = |value: &str| -> anyhow::Result<String> {
            let mut given = sample.to_vec();
            for (name, current) in &mut given {
                if *name == parameter.name {
                    *current = value.to_string();
                }
            }
            let invocation = project.invocation(entry, &given, paths)?;
            Ok(invocation
                .params
                .into_iter()
                .find(|(name, _)| *name == parameter.name)
                .map_or_else(|| value.to_string(), |(_, resolved)| resolved))
        };
        parameter.domain = match &parameter.domain {
            Domain::Fixed(value) => Domain::Fixed(resolve(value)?),
            Domain::Values(values) => {
                Domain::Values(values.iter().map(|value| resolve(value)).collect::<Result<_, _>>()?)
            }
            other => other.clone(),
        };
    }
    Ok(spec)
}

/// Polls the sweep until it ends, showing progress; the first Ctrl-C cancels it, a second
/// stops following.
async fn follow_sweep(client: &Client, id: RunId) -> anyhow::Result<Sweep> {
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut interrupts = 0;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("sweep {bar:30} {pos}/{len} runs ended  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_line = String::new();
    let mut failures = 0;
    loop {
        let sweep = match client.get_sweep(id).await {
            Ok(sweep) => {
                failures = 0;
                sweep
            }
            // The scheduler restarting: keep following.
            Err(ApiError::Unavailable(_)) if failures < 60 => {
                failures += 1;
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let counts = sweep.counts;
        let ended = counts.created - counts.active;
        let best = sweep
            .best
            .as_ref()
            .and_then(|best| {
                Some(format!("best {} = {}", sweep.spec.objective.as_ref()?.metric, best.value?))
            })
            .unwrap_or_default();
        let line = format!(
            "{ended}/{} runs ended ({} finished, {} failed, {} stopped early, {} running) {best}",
            sweep.spec.max_runs, counts.finished, counts.failed, counts.stopped, counts.active
        )
        .trim_end()
        .to_string();
        match &bar {
            Some(bar) => {
                bar.set_length(u64::from(sweep.spec.max_runs));
                bar.set_position(u64::from(ended));
                bar.set_message(format!(
                    "{} failed, {} stopped early  {best}",
                    counts.failed, counts.stopped
                ));
            }
            None if line != last_line => eprintln!("drover: {line}"),
            None => {}
        }
        last_line = line;
        if sweep.status.is_terminal() && counts.active == 0 {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(sweep);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            Some(()) = interrupt.recv() => {
                interrupts += 1;
                if interrupts > 1 {
                    if let Some(bar) = &bar {
                        bar.abandon();
                    }
                    eprintln!("drover: stopped following sweep {id}");
                    return client.get_sweep(id).await.map_err(Into::into);
                }
                eprintln!("drover: cancelling sweep {id} (Ctrl-C again to stop following)");
                if let Err(error) = client.cancel_sweep(id).await {
                    eprintln!("drover: cannot cancel the sweep: {error}");
                }
            }
        }
    }
}

fn params_text(trial: &Trial) -> String {
    trial.params.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(" ")
}

/// Prints how the sweep ended and its best run; returns the command's exit code.
fn report_sweep(sweep: &Sweep) -> ExitCode {
    let counts = sweep.counts;
    let verdict = match sweep.status {
        SweepStatus::Finished => "finished",
        SweepStatus::Failed => "failed",
        SweepStatus::Killed => "was cancelled",
        SweepStatus::Running => "is still running",
    };
    eprintln!(
        "=== Sweep (ID='{}') {verdict}: {} runs ({} finished, {} failed, {} stopped early, {} killed) ===",
        sweep.id, counts.created, counts.finished, counts.failed, counts.stopped, counts.killed
    );
    if !sweep.reason.is_empty() {
        eprintln!("reason: {}", sweep.reason);
    }
    if let (Some(best), Some(objective)) = (&sweep.best, &sweep.spec.objective) {
        println!(
            "best run {}: {} = {}  {}",
            best.run_id,
            objective.metric,
            best.value.map(|v| v.to_string()).unwrap_or_default(),
            params_text(best)
        );
    }
    match sweep.status {
        SweepStatus::Finished => ExitCode::SUCCESS,
        SweepStatus::Running => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    }
}

pub async fn run(global: &GlobalOptions, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Rerun(options) => super::lineage::rerun_best(global, options).await,
        Command::List(options) => {
            let experiment = match (&options.experiment_id, &options.experiment_name) {
                (Some(id), _) => Some(ExperimentRef::Id(id.parse::<ExperimentId>()?)),
                (None, Some(name)) => Some(ExperimentRef::Name(name.clone())),
                (None, None) => None,
            };
            let sweeps = with_client(global, async |client| {
                let experiment = match experiment {
                    Some(reference) => Some(client.get_experiment(reference).await?.id),
                    None => None,
                };
                Ok(client.list_sweeps(experiment).await?)
            })
            .await?;
            match options.output {
                OutputFormat::Json => {
                    print_json(&sweeps.iter().map(sweep_json).collect::<Vec<_>>())?;
                }
                OutputFormat::Table => {
                    let mut table = Table::new(&[
                        "SWEEP ID", "NAME", "STATUS", "METHOD", "RUNS", "FAILED", "STOPPED",
                        "BEST", "CREATED",
                    ]);
                    for sweep in &sweeps {
                        table.row(vec![
                            sweep.id.to_string(),
                            sweep.name.clone(),
                            sweep.status.as_str().to_string(),
                            sweep.spec.method.as_str().to_string(),
                            format!("{}/{}", sweep.counts.created, sweep.spec.max_runs),
                            sweep.counts.failed.to_string(),
                            sweep.counts.stopped.to_string(),
                            best_text(sweep),
                            format_time(sweep.created_ms),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe(options) => {
            let id: RunId = options.sweep_id.parse()?;
            let sweep = with_client(global, async |client| Ok(client.get_sweep(id).await?)).await?;
            match options.output {
                OutputFormat::Json => print_json(&sweep_json(&sweep))?,
                OutputFormat::Table => print!("{}", describe_text(&sweep)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel(argument) => {
            let id: RunId = argument.sweep_id.parse()?;
            let sweep =
                with_client(global, async |client| Ok(client.cancel_sweep(id).await?)).await?;
            println!(
                "Cancelled sweep {id}; its {} queued or running runs are being cancelled",
                sweep.counts.active
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn best_text(sweep: &Sweep) -> String {
    match (&sweep.best, &sweep.spec.objective) {
        (Some(best), Some(objective)) => match best.value {
            Some(value) => format!("{}={value}", objective.metric),
            None => String::new(),
        },
        _ => String::new(),
    }
}

fn describe_text(sweep: &Sweep) -> String {
    let spec = &sweep.spec;
    let counts = sweep.counts;
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&terminal_safe(&text));
        out.push('\n');
    };
    line(format!("Sweep:       {} ({})", sweep.id, sweep.name));
    line(format!("Experiment:  {}", sweep.experiment_id));
    line(format!("Status:      {}", sweep.status.as_str()));
    if !sweep.reason.is_empty() {
        line(format!("Reason:      {}", sweep.reason));
    }
    line(format!("Created:     {}", format_time(sweep.created_ms)));
    if let Some(ended) = sweep.ended_ms {
        line(format!(
            "Ended:       {} (after {})",
            format_time(ended),
            format_duration(ended - sweep.created_ms)
        ));
    }
    line(format!(
        "Method:      {} (seed {}), up to {} runs, {} at a time{}",
        spec.method.as_str(),
        spec.seed,
        spec.max_runs,
        spec.parallel,
        spec.max_failures.map(|n| format!(", at most {n} failures")).unwrap_or_default()
    ));
    if let Some(objective) = &spec.objective {
        line(format!("Objective:   {} ({})", objective.metric, objective.goal.as_str()));
    }
    if let Some(stop) = &spec.early_stop {
        line(format!(
            "Early stop:  {} from step {}{}",
            stop.rule.as_str(),
            stop.min_step,
            if stop.rule == drover_proto::sweep::StopRule::Asha {
                format!(", eta {}", stop.eta)
            } else {
                String::new()
            }
        ));
    }
    line("Parameters:".to_string());
    for parameter in &spec.parameters {
        line(format!(
            "  {} = {}{}",
            parameter.name,
            parameter.domain,
            if parameter.integer { " (int)" } else { "" }
        ));
    }
    line(format!(
        "Progress:    {} of {} runs created: {} finished, {} failed, {} stopped early, {} killed, {} queued or running",
        counts.created,
        spec.max_runs,
        counts.finished,
        counts.failed,
        counts.stopped,
        counts.killed,
        counts.active
    ));
    if let (Some(best), Some(objective)) = (&sweep.best, &spec.objective) {
        line(format!(
            "Best run:    {} ({} = {})",
            best.run_id,
            objective.metric,
            best.value.map(|v| v.to_string()).unwrap_or_default()
        ));
        line(format!("  params:    {}", params_text(best)));
    }
    if !sweep.leaderboard.is_empty() {
        line(String::new());
        let metric = spec.objective.as_ref().map_or("value", |o| o.metric.as_str());
        let mut table = Table::new(&["#", "TRIAL", "RUN ID", metric, "STATE", "PARAMS"]);
        for (rank, trial) in sweep.leaderboard.iter().enumerate() {
            table.row(vec![
                (rank + 1).to_string(),
                trial.index.to_string(),
                trial.run_id.to_string(),
                trial.value.map(|v| v.to_string()).unwrap_or_default(),
                trial.state.as_str().to_string(),
                params_text(trial),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}
