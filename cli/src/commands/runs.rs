//! `drover runs ...`

use anyhow::bail;
use clap::{Args, Subcommand};
use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, ExperimentRef, ListRuns, Run, RunId};
use drover_proto::execution::AttemptView;
use drover_proto::tags;

use super::View;
use std::process::ExitCode;

use crate::GlobalOptions;
use crate::backend::{Backend, with_client};
use crate::follow::{follow_run, report_end};
use crate::output::{OutputFormat, Table, format_duration, format_time, indent, print_json};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List runs, newest first.
    List(ListOptions),
    /// Show a run: status, times, params, latest metrics, tags, and how it executed.
    Describe(DescribeOptions),
    /// Print a run's output; with -f, follow it until the run ends.
    Logs(LogsOptions),
    /// Cancel a queued or running run: SIGTERM, then SIGKILL after a grace period.
    Cancel(RunArgument),
    /// Delete a run (it can be restored).
    Delete(RunArgument),
    /// Restore a deleted run.
    Restore(RunArgument),
    /// What differs between two runs: code, parameters, data, image, command, environment,
    /// then final metrics.
    Diff(super::lineage::DiffOptions),
    /// Queue a run again: the same snapshot, entry point, parameters (but those given with
    /// -P), image and resources; says first what differs of its data or image.
    Rerun(super::lineage::RerunOptions),
}

#[derive(Args, Debug)]
pub struct ListOptions {
    /// Only runs of this experiment (default: every active experiment).
    #[arg(long, value_name = "NAME", conflicts_with = "experiment_id")]
    experiment_name: Option<String>,
    /// Only runs of this experiment ID.
    #[arg(long, value_name = "ID")]
    experiment_id: Option<String>,
    /// Which runs to show.
    #[arg(long, value_enum, default_value_t)]
    view: View,
    /// Only runs matching this search, in MLflow's grammar, e.g.
    /// "metrics.rmse < 0.8 and params.alpha = '0.5'".
    #[arg(long, value_name = "FILTER")]
    filter: Option<String>,
    /// Order by this clause, e.g. "metrics.rmse ASC" (repeatable; default: newest first).
    #[arg(long = "order-by", value_name = "CLAUSE")]
    order_by: Vec<String>,
    /// Show at most this many runs.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    max_results: u32,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: ListFormat,
}

/// How `runs list` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
    /// One row per run: attributes, then every param, metric and tag as a column.
    Csv,
}

#[derive(Args, Debug)]
pub struct DescribeOptions {
    /// The run's ID (32 hex characters).
    run_id: String,
    /// One attempt of a run drover executed more than once: where and when it ran, how it
    /// ended, and its own metrics (never mixed with another attempt's).
    #[arg(long, value_name = "N")]
    attempt: Option<u32>,
    /// Print only the uncommitted changes the run's snapshot was made with, as a diff
    /// against its commit.
    #[arg(long, conflicts_with = "attempt")]
    git_diff: bool,
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct LogsOptions {
    /// The run's ID (32 hex characters).
    run_id: String,
    /// Keep printing output as it arrives, until the run ends.
    #[arg(short = 'f', long)]
    follow: bool,
}

#[derive(Args, Debug)]
pub struct RunArgument {
    /// The run's ID (32 hex characters).
    run_id: String,
}

pub async fn run(global: &GlobalOptions, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List(options) => list(global, options).await.map(|()| ExitCode::SUCCESS),
        Command::Describe(options) => describe(global, options).await.map(|()| ExitCode::SUCCESS),
        Command::Logs(options) => logs(global, options).await,
        Command::Diff(options) => super::lineage::diff(global, options).await,
        Command::Rerun(options) => super::lineage::rerun(global, options).await,
        Command::Cancel(argument) => {
            let run_id: RunId = argument.run_id.parse()?;
            let info =
                with_client(global, async |client| Ok(client.cancel_run(run_id).await?)).await?;
            if info.status.is_terminal() {
                println!("Cancelled run {run_id} before it started");
            } else {
                println!("Cancelling run {run_id}: it stops within the grace period");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete(argument) => {
            let run_id: RunId = argument.run_id.parse()?;
            with_client(global, async |client| Ok(client.delete_run(run_id).await?)).await?;
            println!("Deleted run {run_id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(argument) => {
            let run_id: RunId = argument.run_id.parse()?;
            with_client(global, async |client| Ok(client.restore_run(run_id).await?)).await?;
            println!("Restored run {run_id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn logs(global: &GlobalOptions, options: LogsOptions) -> anyhow::Result<ExitCode> {
    let run_id: RunId = options.run_id.parse()?;
    let backend = Backend::connect(global).await?;
    // An embedded scheduler has no worker: nothing would ever arrive to follow.
    let follow = options.follow && !backend.is_embedded();
    if options.follow && !follow {
        eprintln!(
            "drover: no scheduler serves this store, so the run is not executing; printing its stored log"
        );
    }
    let result = follow_run(&backend.client, run_id, follow, false).await;
    backend.close().await?;
    let end = result?;
    Ok(if options.follow && end.status.is_terminal() {
        report_end(run_id, &end)
    } else {
        ExitCode::SUCCESS
    })
}

async fn list(global: &GlobalOptions, options: ListOptions) -> anyhow::Result<()> {
    let experiment = match (&options.experiment_id, &options.experiment_name) {
        (Some(id), _) => Some(ExperimentRef::Id(id.parse::<ExperimentId>()?)),
        (None, Some(name)) => Some(ExperimentRef::Name(name.clone())),
        (None, None) => None,
    };
    let (runs, experiment_names) = with_client(global, async |client| {
        let experiment_ids = match experiment {
            Some(reference) => vec![client.get_experiment(reference).await?.id],
            None => Vec::new(),
        };
        let mut runs = Vec::new();
        let mut page_token = None;
        while runs.len() < options.max_results as usize {
            let page = client
                .list_runs(ListRuns {
                    experiment_ids: experiment_ids.clone(),
                    view_type: options.view.into(),
                    max_results: Some(i64::from(
                        (options.max_results - runs.len() as u32).min(ListRuns::MAX_PAGE),
                    )),
                    page_token,
                    filter: options.filter.clone(),
                    order_by: options.order_by.clone(),
                })
                .await?;
            runs.extend(page.items);
            page_token = page.next_page_token;
            if page_token.is_none() {
                break;
            }
        }
        let experiments = client.list_experiments(drover_proto::domain::ViewType::All).await?;
        let names: std::collections::HashMap<ExperimentId, String> =
            experiments.into_iter().map(|e| (e.id, e.name)).collect();
        Ok((runs, names))
    })
    .await?;
    match options.output {
        ListFormat::Json => print_json(&runs),
        ListFormat::Csv => {
            print!("{}", runs_csv(&runs));
            Ok(())
        }
        ListFormat::Table => {
            let mut table = Table::new(&[
                "RUN ID",
                "NAME",
                "EXPERIMENT",
                "STATUS",
                "STARTED",
                "DURATION",
                "METRICS",
            ]);
            for run in runs {
                let metrics = metrics_summary(&run);
                let info = run.info;
                let experiment = experiment_names.get(&info.experiment_id).map_or_else(
                    || info.experiment_id.to_string(),
                    |name| format!("{name} ({})", info.experiment_id),
                );
                table.row(vec![
                    info.run_id.to_string(),
                    info.run_name,
                    experiment,
                    info.status.to_string(),
                    format_time(info.start_time_ms),
                    info.end_time_ms
                        .map_or_else(String::new, |end| format_duration(end - info.start_time_ms)),
                    metrics,
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }
    }
}

/// The latest value of each metric, short enough for a table cell.
fn metrics_summary(run: &Run) -> String {
    const SHOWN: usize = 4;
    let mut parts: Vec<String> = run
        .data
        .latest_metrics
        .iter()
        .take(SHOWN)
        .map(|m| format!("{}={}", m.key, m.value))
        .collect();
    if run.data.latest_metrics.len() > SHOWN {
        parts.push(format!("(+{})", run.data.latest_metrics.len() - SHOWN));
    }
    parts.join(" ")
}

/// Runs as CSV, in the column layout of `mlflow.search_runs`: attributes, then
/// `params.*`, `metrics.*` and `tags.*` for every key any run has.
fn runs_csv(runs: &[Run]) -> String {
    use std::collections::BTreeSet;
    let params: BTreeSet<&str> =
        runs.iter().flat_map(|r| r.data.params.iter().map(|p| p.key.as_str())).collect();
    let metrics: BTreeSet<&str> =
        runs.iter().flat_map(|r| r.data.latest_metrics.iter().map(|m| m.key.as_str())).collect();
    let tags: BTreeSet<&str> =
        runs.iter().flat_map(|r| r.data.tags.iter().map(|t| t.key.as_str())).collect();
    let mut header: Vec<String> = [
        "run_id",
        "experiment_id",
        "run_name",
        "status",
        "user_id",
        "start_time",
        "end_time",
        "artifact_uri",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(params.iter().map(|k| format!("params.{k}")));
    header.extend(metrics.iter().map(|k| format!("metrics.{k}")));
    header.extend(tags.iter().map(|k| format!("tags.{k}")));
    let mut out = csv_line(&header);
    for run in runs {
        let info = &run.info;
        let mut row = vec![
            info.run_id.to_string(),
            info.experiment_id.to_string(),
            info.run_name.clone(),
            info.status.to_string(),
            info.user_id.clone(),
            info.start_time_ms.to_string(),
            info.end_time_ms.map_or_else(String::new, |end| end.to_string()),
            info.artifact_uri.clone(),
        ];
        row.extend(params.iter().map(|k| {
            run.data
                .params
                .iter()
                .find(|p| p.key == *k)
                .map_or_else(String::new, |p| p.value.clone())
        }));
        row.extend(metrics.iter().map(|k| {
            run.data
                .latest_metrics
                .iter()
                .find(|m| m.key == *k)
                .map_or_else(String::new, |m| m.value.to_string())
        }));
        row.extend(tags.iter().map(|k| {
            run.data.tags.iter().find(|t| t.key == *k).map_or_else(String::new, |t| t.value.clone())
        }));
        out.push_str(&csv_line(&row));
    }
    out
}

/// One CSV record (RFC 4180): fields with commas, quotes or line breaks are quoted.
fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|field| {
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.clone()
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

async fn describe(global: &GlobalOptions, options: DescribeOptions) -> anyhow::Result<()> {
    let run_id: RunId = options.run_id.parse()?;
    if options.git_diff {
        let diff =
            with_client(global, async |client| Ok(client.source_diff(run_id).await?)).await?;
        std::io::Write::write_all(&mut std::io::stdout(), &diff)?;
        return Ok(());
    }
    let (run, experiment, attempts) = with_client(global, async |client| {
        let run = client.get_run(run_id).await?;
        let experiment = client.get_experiment(ExperimentRef::Id(run.info.experiment_id)).await?;
        // A run a client logged, rather than one drover executed, has no attempts.
        let attempts = match client.list_attempts(run_id).await {
            Ok(attempts) => attempts,
            Err(ApiError::FailedPrecondition(_)) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        Ok((run, experiment, attempts))
    })
    .await?;
    if let Some(number) = options.attempt {
        let Some(attempt) = attempts.iter().find(|attempt| attempt.attempt == number) else {
            match attempts.len() {
                0 => bail!(
                    "run {run_id} has no attempts: drover did not execute it, or it has not been placed yet"
                ),
                last => bail!("run {run_id} has no attempt {number}: its attempts are 1 to {last}"),
            }
        };
        return match options.output {
            OutputFormat::Json => print_json(attempt),
            OutputFormat::Table => {
                print!("{}", render_attempt(&run, attempt));
                Ok(())
            }
        };
    }
    match options.output {
        OutputFormat::Json => print_json(&run),
        OutputFormat::Table => {
            print!("{}", render_run(&run, &experiment.name));
            if attempts.len() > 1 {
                print!("{}", render_attempts(&attempts));
            }
            Ok(())
        }
    }
}

/// One attempt, with the latest value of each metric it logged.
fn render_attempt(run: &Run, attempt: &AttemptView) -> String {
    let mut fields = Table::new(&["Run ID", &run.info.run_id.to_string()]);
    fields.row(vec!["Name".into(), run.info.run_name.clone()]);
    let current = if attempt.current { " (current)" } else { "" };
    fields.row(vec!["Attempt".into(), format!("{}{current}", attempt.attempt)]);
    fields.row(vec!["Worker".into(), attempt.worker_id.clone()]);
    fields.row(vec!["Assigned".into(), format_time(attempt.assigned_ms)]);
    for (label, time) in [("Started", attempt.started_ms), ("Ended", attempt.ended_ms)] {
        fields.row(vec![label.into(), time.map_or("-".to_string(), format_time)]);
    }
    fields.row(vec![
        "Exit code".into(),
        attempt.exit_code.map_or("-".to_string(), |code| code.to_string()),
    ]);
    let outcome = if attempt.outcome.is_empty() { "running" } else { &attempt.outcome };
    fields.row(vec!["Outcome".into(), outcome.to_string()]);
    let mut out = fields.render();
    if attempt.latest_metrics.is_empty() {
        out.push_str("\nMetrics of this attempt: none\n");
    } else {
        let mut metrics = Table::new(&["KEY", "VALUE", "STEP", "TIME"]);
        for m in &attempt.latest_metrics {
            metrics.row(vec![
                m.key.clone(),
                m.value.to_string(),
                m.step.to_string(),
                format_time(m.timestamp_ms),
            ]);
        }
        out.push_str(&format!(
            "\nMetrics of this attempt (latest):\n{}",
            indent(&metrics.render())
        ));
    }
    out
}

/// Every attempt of a run executed more than once, one line each.
fn render_attempts(attempts: &[AttemptView]) -> String {
    let mut table = Table::new(&["#", "WORKER", "STARTED", "ENDED", "EXIT", "OUTCOME"]);
    for attempt in attempts {
        table.row(vec![
            attempt.attempt.to_string(),
            attempt.worker_id.clone(),
            attempt.started_ms.map_or("-".to_string(), format_time),
            attempt.ended_ms.map_or("-".to_string(), format_time),
            attempt.exit_code.map_or("-".to_string(), |code| code.to_string()),
            if attempt.outcome.is_empty() {
                "running".to_string()
            } else {
                attempt.outcome.clone()
            },
        ]);
    }
    format!(
        "\nAttempts (each with its own metrics: drover runs describe RUN --attempt N):\n{}",
        indent(&table.render())
    )
}

fn render_run(run: &Run, experiment_name: &str) -> String {
    let info = &run.info;
    let mut fields = Table::new(&["Run ID", &info.run_id.to_string()]);
    fields.row(vec!["Name".into(), info.run_name.clone()]);
    fields.row(vec!["Experiment".into(), format!("{experiment_name} (ID {})", info.experiment_id)]);
    fields.row(vec!["Status".into(), info.status.to_string()]);
    fields.row(vec!["Lifecycle".into(), info.lifecycle_stage.as_str().to_string()]);
    fields.row(vec!["User".into(), info.user_id.clone()]);
    fields.row(vec!["Started".into(), format_time(info.start_time_ms)]);
    if let Some(end) = info.end_time_ms {
        fields.row(vec![
            "Ended".into(),
            format!("{} (took {})", format_time(end), format_duration(end - info.start_time_ms)),
        ]);
    }
    fields.row(vec!["Artifacts".into(), info.artifact_uri.clone()]);
    let tag = |key: &str| run.data.tags.iter().find(|t| t.key == key).map(|t| t.value.clone());
    for (label, key) in EXECUTION_FIELDS {
        if let Some(value) = tag(key) {
            fields.row(vec![label.to_string(), value]);
        }
    }
    let mut out = fields.render();

    let section = |title: &str, rows: Vec<Vec<String>>, header: &[&str]| -> String {
        if rows.is_empty() {
            return format!("\n{title}: none\n");
        }
        let mut table = Table::new(header);
        for row in rows {
            table.row(row);
        }
        format!("\n{title}:\n{}", indent(&table.render()))
    };
    let data: Vec<Vec<String>> = run
        .data
        .tags
        .iter()
        .filter_map(|t| match tags::parse_data_tag(&t.key) {
            Some((parameter, "source")) => Some(vec![
                parameter.to_string(),
                t.value.clone(),
                tag(&tags::data_digest(parameter)).unwrap_or_else(|| "(not read)".into()),
            ]),
            _ => None,
        })
        .collect();
    if !data.is_empty() {
        out.push_str(&section("Data", data, &["PARAMETER", "SOURCE", "DIGEST"]));
    }
    out.push_str(&section(
        "Params",
        run.data.params.iter().map(|p| vec![p.key.clone(), p.value.clone()]).collect(),
        &["KEY", "VALUE"],
    ));
    out.push_str(&section(
        "Metrics (latest)",
        run.data
            .latest_metrics
            .iter()
            .map(|m| {
                vec![
                    m.key.clone(),
                    m.value.to_string(),
                    m.step.to_string(),
                    format_time(m.timestamp_ms),
                ]
            })
            .collect(),
        &["KEY", "VALUE", "STEP", "TIME"],
    ));
    out.push_str(&section(
        "Tags",
        run.data.tags.iter().map(|t| vec![t.key.clone(), t.value.clone()]).collect(),
        &["KEY", "VALUE"],
    ));
    out
}

/// How a run executed, shown beside its status when drover ran it.
const EXECUTION_FIELDS: &[(&str, &str)] = &[
    ("Exit code", tags::EXIT_CODE),
    ("Failure", tags::FAILURE_REASON),
    ("Worker", tags::WORKER),
    ("Attempt", tags::ATTEMPT),
    ("Entry point", tags::ENTRY_POINT),
    ("Command", tags::COMMAND),
    ("Image", tags::IMAGE),
    ("Image ID", tags::IMAGE_ID),
    ("Snapshot", tags::SNAPSHOT),
    ("Git commit", tags::GIT_COMMIT),
    ("Uncommitted", tags::GIT_DIFF),
    ("Source", tags::SOURCE_NAME),
    ("Rerun of", tags::RERUN_OF),
    ("drover", tags::VERSION),
];
