//! The web UI at scale, as a user would time it: an experiment of 100,000 runs with 10 params
//! and 10 metrics each, and a run with 1,000,000 points of one metric. Measured end to end
//! over HTTP (the server's answer) and in headless Chromium (from navigation to the first
//! rows, or the chart's line, on screen), beside MLflow 3.17.2's UI on the same data.
//!
//! MLflow is measured now when MLFLOW_BIN names the `mlflow` executable of a virtualenv with
//! mlflow==3.17.2 (bench/run.sh passes it): `bench/mlflow_ui.py`, run by the python beside
//! that executable, fills a sqlite store of the same shape by bulk SQL and serves it with
//! `mlflow server` (4 workers), and the same headless Chromium times MLflow's own pages. Each
//! MLflow figure waits at most 120 s per try, and takes one try instead of three once a try
//! passes 60 s; what does not happen in time is reported as such. Without MLFLOW_BIN (or if
//! MLflow cannot be measured), the MLflow column repeats the figures of the UI anchors
//! (../shared/ui-anchors/README.md), and the title says so.
//!
//! UI_BENCH_ONLY_MLFLOW=1 skips drover's part (its column reads "not measured"), to work on
//! MLflow's part quickly.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_bench::{HttpClient, LocalCluster, create_experiment, print_table, quantile};
use drover_proto::Client;
use drover_proto::domain::{CreateRun, ExperimentId, Metric, Param, RunId, RunStatus};
use drover_testkit::browser::Browser;
use serde_json::Value;
use tokio::runtime::Runtime;

const RUNS: usize = 100_000;
const KEYS: usize = 10;
const HISTORY_POINTS: usize = 1_000_000;
const TRIES: usize = 5;
const BROWSER_TRIES: usize = 3;
/// How long one try may wait, in the browser or for an answer.
const TIMEOUT: Duration = Duration::from_secs(120);
/// A try slower than this is not repeated.
const SLOW: Duration = Duration::from_secs(60);
/// The page size MLflow's client and UI ask for when reading a metric's history.
const MLFLOW_PAGE: usize = 25_000;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let drover = if std::env::var("UI_BENCH_ONLY_MLFLOW").is_ok_and(|value| value == "1") {
        DroverFigures::not_measured()
    } else {
        measure_drover(&runtime)?
    };
    let mlflow = match std::env::var_os("MLFLOW_BIN") {
        Some(bin) => measure_mlflow(Path::new(&bin), &runtime).unwrap_or_else(|error| {
            eprintln!("MLflow could not be measured, so its figures are the anchors': {error:#}");
            anchored()
        }),
        None => anchored(),
    };
    print_report(&drover, &mlflow);
    Ok(())
}

/// Prints the table: drover's figures, MLflow's, and the goals.
fn print_report(drover: &DroverFigures, mlflow: &MlflowColumn) {
    println!("\nWeb UI at scale (this machine; {})\n", mlflow.source);
    let row = |what: String, drover: &Timing, mlflow: &str, goal: &str| {
        let drover = format!("{}{}", drover.cell("did not render"), one_try_note(&[drover]));
        vec![what, drover, mlflow.to_string(), goal.to_string()]
    };
    print_table(
        &["what the user does", "drover", "MLflow 3.17.2", "goal"],
        &[
            row(
                format!("runs table, {RUNS} runs, newest first, rendered in Chromium"),
                &drover.table,
                &mlflow.table,
                "< 1 s",
            ),
            row(
                format!(
                    "runs table, {RUNS} runs: filtered by a metric, sorted by another, first page (server)"
                ),
                &drover.search,
                &mlflow.search,
                "< 50 ms",
            ),
            row(
                "the same table, rendered in Chromium".to_string(),
                &drover.sorted_table,
                &mlflow.sorted_table,
                "< 1 s",
            ),
            row(
                format!("chart of a {HISTORY_POINTS}-point metric at 1,000 px (server)"),
                &drover.chart_server,
                &mlflow.history,
                "< 50 ms",
            ),
            row(
                "the same chart, drawn in Chromium (min and max of every pixel)".to_string(),
                &drover.chart,
                &mlflow.chart,
                "< 1 s",
            ),
        ],
    );
}

/// What one action measured: each try's milliseconds, or the wait it was given up after.
#[derive(Debug, Clone)]
enum Timing {
    Done(Vec<f64>),
    TimedOut(Duration),
    NotMeasured,
}

impl Timing {
    /// The table's cell: the median of the tries, or `missed` and the wait, or "not measured".
    fn cell(&self, missed: &str) -> String {
        match self {
            Timing::Done(samples) => duration(quantile(samples, 0.5)),
            Timing::TimedOut(wait) => format!("{missed} within {} s", wait.as_secs()),
            Timing::NotMeasured => "not measured".to_string(),
        }
    }

    /// Whether this was measured in one try only (it was too slow to repeat).
    fn one_try(&self) -> bool {
        matches!(self, Timing::Done(samples) if samples.len() == 1)
    }
}

/// " (1 try)" when any of `timings` was measured once only, else nothing.
fn one_try_note(timings: &[&Timing]) -> &'static str {
    if timings.iter().any(|timing| timing.one_try()) { " (1 try)" } else { "" }
}

/// Milliseconds as the table shows them: whole milliseconds below 10 s, else tenths of seconds.
fn duration(ms: f64) -> String {
    if ms < 10_000.0 { format!("{ms:.0} ms") } else { format!("{:.1} s", ms / 1000.0) }
}

/// Milliseconds since `started`.
fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Up to `count` tries of `attempt`, which times one or more milestones of a try (None: not
/// reached within TIMEOUT). Stops after a try that missed a milestone or took longer than
/// SLOW. One Timing per milestone: every try's time, or TimedOut when a try missed it.
fn tries(
    count: usize,
    mut attempt: impl FnMut() -> anyhow::Result<Vec<Option<f64>>>,
) -> anyhow::Result<Vec<Timing>> {
    let mut samples: Vec<Vec<f64>> = Vec::new();
    let mut missed: Vec<bool> = Vec::new();
    for _ in 0..count {
        let times = attempt()?;
        samples.resize(times.len(), Vec::new());
        missed.resize(times.len(), false);
        for (index, time) in times.iter().enumerate() {
            match time {
                Some(ms) => samples[index].push(*ms),
                None => missed[index] = true,
            }
        }
        let slowest = times.iter().map(|time| time.unwrap_or(f64::INFINITY)).fold(0.0, f64::max);
        if slowest > SLOW.as_secs_f64() * 1000.0 {
            break;
        }
    }
    let timing = |(samples, missed): (Vec<f64>, bool)| {
        if missed { Timing::TimedOut(TIMEOUT) } else { Timing::Done(samples) }
    };
    Ok(samples.into_iter().zip(missed).map(timing).collect())
}

/// Up to `count` tries (see `tries`), each in a fresh browser, of asking for `url` and
/// waiting until each of `milestones` (JS conditions, in the order they come true) holds.
/// The last try's page is saved as `target/tmp/ui-bench-<name>.png`, to look at. Returns one
/// Timing per milestone, and what the first milestone's condition gave on the last try.
fn rendered(
    url: &str,
    milestones: &[&str],
    name: &str,
    count: usize,
) -> anyhow::Result<(Vec<Timing>, Value)> {
    let mut first = Value::Null;
    let timings = tries(count, || {
        let (times, value) = render_once(url, milestones, name)?;
        first = value;
        Ok(times)
    })?;
    Ok((timings, first))
}

/// One try of `rendered`: the milliseconds until each milestone held (None for one that did
/// not within TIMEOUT of asking for the page, and for those after it), and the first
/// milestone's value.
fn render_once(
    url: &str,
    milestones: &[&str],
    name: &str,
) -> anyhow::Result<(Vec<Option<f64>>, Value)> {
    let browser = Browser::start(1600, 1000).map_err(anyhow::Error::msg)?;
    browser.goto("about:blank").map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    browser.goto(url).map_err(anyhow::Error::msg)?;
    let mut times = Vec::new();
    let mut first = Value::Null;
    for ready in milestones {
        match browser.wait_for(url, ready, TIMEOUT.saturating_sub(started.elapsed())) {
            Ok(value) => {
                if times.is_empty() {
                    first = value;
                }
                times.push(Some(ms_since(started)));
            }
            Err(error) if started.elapsed() >= TIMEOUT => {
                eprintln!("{name}: {error}");
                break;
            }
            Err(error) => anyhow::bail!("{name}: {error}"),
        }
    }
    times.resize(milestones.len(), None);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    std::fs::create_dir_all(&shots)?;
    if let Err(error) = browser.screenshot(&shots.join(format!("ui-bench-{name}.png"))) {
        eprintln!("{name}: no screenshot: {error}");
    }
    Ok((times, first))
}

/// The milliseconds `call` took, or None when it did not answer within TIMEOUT (HttpClient
/// gives up at about that time too, with an error).
async fn timed<T>(call: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<Option<f64>> {
    let started = Instant::now();
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(Some(ms_since(started))),
        Ok(Err(_)) if started.elapsed() + Duration::from_secs(1) >= TIMEOUT => Ok(None),
        Ok(Err(error)) => Err(error),
        Err(_) => Ok(None),
    }
}

/// The value run `i` has for metric `m{k}`, in drover's store and MLflow's alike.
fn metric_value(i: usize, k: usize) -> f64 {
    ((i * 7919 + k * 104_729) % 100_000) as f64 / 100_000.0
}

/// The name of the run first in the table filtered by `m0 < 0.5` and sorted by `m1`, highest
/// first (the values of `m1` are all different).
fn top_run() -> String {
    let best = (0..RUNS)
        .filter(|&i| metric_value(i, 0) < 0.5)
        .max_by(|&a, &b| metric_value(a, 1).total_cmp(&metric_value(b, 1)))
        .unwrap_or_default();
    format!("run-{best}")
}

// drover.

/// drover's figures, one per row of the table.
struct DroverFigures {
    table: Timing,
    search: Timing,
    sorted_table: Timing,
    chart_server: Timing,
    chart: Timing,
}

impl DroverFigures {
    fn not_measured() -> DroverFigures {
        DroverFigures {
            table: Timing::NotMeasured,
            search: Timing::NotMeasured,
            sorted_table: Timing::NotMeasured,
            chart_server: Timing::NotMeasured,
            chart: Timing::NotMeasured,
        }
    }
}

/// Fills a fresh drover with the experiment and the long run, then times its server and its
/// pages.
fn measure_drover(runtime: &Runtime) -> anyhow::Result<DroverFigures> {
    let cluster = LocalCluster::start(0)?;
    let base = format!("http://{}", cluster.address);
    let (experiment, long_run) = runtime.block_on(async {
        let client = Client::connect(&cluster.address).await?;
        let experiment = fill(&client).await?;
        let long_run = long_history(&client, experiment).await?;
        anyhow::Ok((experiment, long_run))
    })?;

    let table_path = format!(
        "/api/drover/runs?experiment_ids={experiment}&filter=metrics.m0%20%3C%200.5&order_by=metrics.m1%20DESC&max_results=100&fold=1"
    );
    let chart_path = format!("/api/drover/chart?run_ids={long_run}&key=loss&width=1000");
    let (search, total) = runtime.block_on(server_time(&cluster.address, &table_path, "total"))?;
    let (chart_server, _) = runtime.block_on(server_time(&cluster.address, &chart_path, "key"))?;
    eprintln!("server: table {search:?} ms ({total} matches), chart {chart_server:?} ms");

    let rows = "return document.querySelectorAll('table.runs tbody tr[data-run]').length >= 100";
    let table_url = format!("{base}/runs?e={experiment}");
    let table = rendered(&table_url, &[rows], "table-newest", BROWSER_TRIES)?.0.remove(0);
    let sorted_url = format!(
        "{base}/runs?e={experiment}&q=metrics.m0%20%3C%200.5&sort=metrics.m1&cols=metrics.m1"
    );
    let sorted_table = rendered(&sorted_url, &[rows], "table", BROWSER_TRIES)?.0.remove(0);
    let chart_url = format!("{base}/runs/{long_run}");
    let line = "const c = document.querySelector('canvas.chart'); return c && Number(c.dataset.drawn) > 500";
    let chart = rendered(&chart_url, &[line], "chart", BROWSER_TRIES)?.0.remove(0);
    eprintln!("rendered: table {table:?}, sorted {sorted_table:?}, chart {chart:?}");
    Ok(DroverFigures {
        table,
        search: Timing::Done(search),
        sorted_table,
        chart_server: Timing::Done(chart_server),
        chart,
    })
}

/// Fills one experiment with RUNS runs of KEYS params and KEYS metrics each.
async fn fill(client: &Client) -> anyhow::Result<ExperimentId> {
    let experiment = create_experiment(client, "ui-bench").await?;
    eprintln!("creating {RUNS} runs of {KEYS} params and {KEYS} metrics");
    let started = Instant::now();
    let mut tasks = Vec::new();
    const WRITERS: usize = 32;
    for writer in 0..WRITERS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in (writer..RUNS).step_by(WRITERS) {
                let run = client
                    .create_run(CreateRun {
                        experiment_id: experiment,
                        run_name: Some(format!("run-{i}")),
                        user_id: "bench".into(),
                        start_time_ms: Some(1_700_000_000_000 + i as i64),
                        tags: Vec::new(),
                        status: RunStatus::Finished,
                    })
                    .await?;
                let run_id = run.info.run_id;
                let params = (0..KEYS)
                    .map(|k| Param {
                        key: format!("p{k}"),
                        value: format!("{}", (i * (k + 7)) % 97),
                    })
                    .collect();
                client.log_params(run_id, params).await?;
                let metrics = (0..KEYS)
                    .map(|k| Metric {
                        key: format!("m{k}"),
                        value: metric_value(i, k),
                        timestamp_ms: 1_700_000_000_000,
                        step: 0,
                    })
                    .collect();
                client.log_metrics(run_id, metrics).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    eprintln!("filled in {:.0} s", started.elapsed().as_secs_f64());
    Ok(experiment)
}

/// A run with HISTORY_POINTS points of `loss`: a decaying curve with a fast wave and a spike.
async fn long_history(client: &Client, experiment: ExperimentId) -> anyhow::Result<RunId> {
    let run_id = client
        .create_run(CreateRun {
            experiment_id: experiment,
            run_name: Some("long-history".into()),
            user_id: "bench".into(),
            start_time_ms: Some(1_700_000_000_000),
            tags: Vec::new(),
            status: RunStatus::Finished,
        })
        .await?
        .info
        .run_id;
    for chunk in 0..HISTORY_POINTS / 10_000 {
        let points = (0..10_000)
            .map(|i| {
                let step = (chunk * 10_000 + i) as i64;
                let wave = if step % 7 < 3 { 0.05 } else { -0.05 };
                let spike = if step == 654_321 { 5.0 } else { 0.0 };
                Metric {
                    key: "loss".into(),
                    value: 1.0 / (1.0 + step as f64 / 10_000.0) + wave + spike,
                    timestamp_ms: 1_700_000_000_000 + step,
                    step,
                }
            })
            .collect();
        client.log_metrics(run_id, points).await?;
    }
    Ok(run_id)
}

/// TRIES timings of one GET, end to end over HTTP, after a warm-up; and a field of the answer.
async fn server_time(address: &str, path: &str, field: &str) -> anyhow::Result<(Vec<f64>, String)> {
    let http = HttpClient::new(address);
    let warm: Value = serde_json::from_str(&http.get(path).await?)?;
    let mut samples = Vec::new();
    for _ in 0..TRIES {
        let started = Instant::now();
        http.get(path).await?;
        samples.push(ms_since(started));
    }
    Ok((samples, warm[field].to_string()))
}

// MLflow.

/// The MLflow column of the table, one cell per row, and where its figures come from.
struct MlflowColumn {
    source: String,
    table: String,
    search: String,
    sorted_table: String,
    history: String,
    chart: String,
}

/// The figures of the UI anchors (MLflow 3.17.2 on this kind of machine, same data), for
/// when MLflow is not measured now.
fn anchored() -> MlflowColumn {
    MlflowColumn {
        source:
            "MLflow 3.17.2 as measured in the UI anchors, not now: set MLFLOW_BIN to measure it"
                .to_string(),
        table: "2.0 s".to_string(),
        search: "519 s (sorting by a metric alone)".to_string(),
        sorted_table: "a spinner after 180 s".to_string(),
        history: "36 s to page through it all".to_string(),
        chart: "4.3 s to a 320-point sample; 48.7 s of downloads".to_string(),
    }
}

/// `bench/mlflow_ui.py`.
fn mlflow_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mlflow_ui.py")
}

/// MLflow 3.17.2 measured now (see the file's top comment), with the python beside
/// `mlflow_bin`: fills its store, serves it, and times its REST API and its pages.
fn measure_mlflow(mlflow_bin: &Path, runtime: &Runtime) -> anyhow::Result<MlflowColumn> {
    let python = mlflow_bin.with_file_name("python");
    let store = MlflowStore::fill(&python)?;
    let mut server = MlflowServer::start(&python, store.dir.path(), runtime)?;
    let base = format!("http://{}", server.address);
    let (experiment, long_run) = (&store.experiment, &store.long_run);
    let http = HttpClient::new(&server.address);

    // A fresh profile opens MLflow on its GenAI pages; workflowType picks "Model training".
    let table_url = format!("{base}/#/experiments/{experiment}/runs?workflowType=machine_learning");
    let any_run = "return [...document.querySelectorAll('.ag-row a[href*=\"/runs/\"]')].some(a => /^run-[0-9]+$/.test(a.textContent.trim()))";
    let table = rendered(&table_url, &[any_run], "mlflow-table", BROWSER_TRIES)?.0.remove(0);
    eprintln!("mlflow: table {table:?}");

    let (chart, drawn, downloaded) = mlflow_chart(&base, experiment, long_run)?;
    eprintln!("mlflow: chart {chart:?} ({drawn} points drawn), downloads {downloaded:?}");

    let mut points = 0;
    let history = tries(BROWSER_TRIES, || {
        let (time, read) = runtime.block_on(mlflow_history(&http, long_run))?;
        points = read;
        Ok(vec![time])
    })?
    .remove(0);
    eprintln!("mlflow: history {history:?} ({points} points)");

    let search = tries(BROWSER_TRIES, || {
        Ok(vec![runtime.block_on(timed(mlflow_search(&http, experiment)))?])
    })?
    .remove(0);
    eprintln!("mlflow: search {search:?}");
    if matches!(search, Timing::TimedOut(_)) {
        // The server is still at that query; the page should not share the machine with it.
        drop(server);
        server = MlflowServer::start(&python, store.dir.path(), runtime)?;
    }

    let base = format!("http://{}", server.address);
    let sorted_url = format!(
        "{base}/#/experiments/{experiment}/runs?workflowType=machine_learning&searchFilter=metrics.m0%20%3C%200.5&orderByKey=metrics.%60m1%60&orderByAsc=false"
    );
    let top = format!(
        "return [...document.querySelectorAll('.ag-row a[href*=\"/runs/\"]')].some(a => a.textContent.trim() === '{}')",
        top_run()
    );
    let sorted_table =
        rendered(&sorted_url, &[&top], "mlflow-table-sorted", BROWSER_TRIES)?.0.remove(0);
    eprintln!("mlflow: sorted table {sorted_table:?}");

    let timed = |timing: &Timing, missed: &str| {
        format!("{}{}", timing.cell(missed), one_try_note(&[timing]))
    };
    Ok(MlflowColumn {
        source: "MLflow 3.17.2 measured now on the same data, in the same Chromium".to_string(),
        table: timed(&table, "did not render"),
        search: timed(&search, "did not answer"),
        sorted_table: timed(&sorted_table, "did not render"),
        history: match history {
            Timing::TimedOut(wait) => {
                format!("not done paging within {} s ({points} points by then)", wait.as_secs())
            }
            _ => format!("{} to page through all {points} points", timed(&history, "")),
        },
        chart: chart_cell(&chart, &drawn, &downloaded),
    })
}

/// The cell of MLflow's chart: when its line was drawn and of how many points, and when it
/// had downloaded the whole history.
fn chart_cell(chart: &Timing, drawn: &Value, downloaded: &Timing) -> String {
    let note = one_try_note(&[chart, downloaded]);
    match (chart, downloaded) {
        (Timing::TimedOut(_), _) => format!("{}{note}", chart.cell("no line drawn")),
        (_, Timing::TimedOut(wait)) => format!(
            "{} to a {drawn}-point sample; downloads not done within {} s{note}",
            chart.cell(""),
            wait.as_secs()
        ),
        _ => format!(
            "{} to a {drawn}-point sample; {} of downloads{note}",
            chart.cell(""),
            downloaded.cell("")
        ),
    }
}

/// MLflow's metric page for `loss` of the long run: the time until its line is drawn, the
/// points it draws, and the time until it has downloaded the whole history, which it keeps
/// doing after drawing.
fn mlflow_chart(
    base: &str,
    experiment: &str,
    long_run: &str,
) -> anyhow::Result<(Timing, Value, Timing)> {
    // The link MLflow's own pages make (getMetricPageRoute), URL-encoded.
    let url = format!(
        "{base}/#/metric?runs=%5B%22{long_run}%22%5D&metric=%22loss%22&experiments=%5B%22{experiment}%22%5D&plot_metric_keys=%5B%22loss%22%5D&plot_layout=%7B%7D&x_axis=step&y_axis_scale=linear&line_smoothness=1&show_point=false&deselected_curves=%5B%5D&last_linear_y_axis_range=%5B%5D"
    );
    // Plotly's line, once it has more than a few points: how many it has.
    let line = "const p = [...document.querySelectorAll('.scatterlayer path.js-line')].find(p => (p.getAttribute('d') || '').length > 100); return p ? (p.getAttribute('d').match(/[MLCQ]/g) || []).length : 0";
    // The history's last page has arrived (its page_token encodes its offset).
    let downloaded = format!(
        "performance.setResourceTimingBufferSize(100000);
         return performance.getEntriesByType('resource').some(e => {{
             const query = new URL(e.name).searchParams;
             try {{
                 const offset = JSON.parse(atob(query.get('page_token'))).offset;
                 return e.name.includes('get-history') && offset + Number(query.get('max_results')) >= {HISTORY_POINTS};
             }} catch (_) {{ return false; }}
         }})"
    );
    let (mut timings, drawn) = rendered(&url, &[line, &downloaded], "mlflow-chart", BROWSER_TRIES)?;
    let downloaded = timings.remove(1);
    Ok((timings.remove(0), drawn, downloaded))
}

/// One POST runs/search, filtered and sorted as drover's table is, first page of 100.
async fn mlflow_search(http: &HttpClient, experiment: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({
        "experiment_ids": [experiment],
        "filter": "metrics.m0 < 0.5",
        "order_by": ["metrics.m1 DESC"],
        "max_results": 100,
    });
    http.post("/api/2.0/mlflow/runs/search", &body.to_string()).await
}

/// Pages through the long run's history of `loss` as MLflow's client does (MLFLOW_PAGE points a
/// page): the milliseconds it took, or None when it was not done within TIMEOUT; and the points
/// read.
async fn mlflow_history(http: &HttpClient, run_id: &str) -> anyhow::Result<(Option<f64>, usize)> {
    let started = Instant::now();
    let mut points = 0;
    let mut token = String::new();
    loop {
        let mut path = format!(
            "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss&max_results={MLFLOW_PAGE}"
        );
        if !token.is_empty() {
            path.push_str(&format!("&page_token={}", percent_encode(&token)));
        }
        let left = TIMEOUT.saturating_sub(started.elapsed());
        let Ok(body) = tokio::time::timeout(left, http.get(&path)).await else {
            return Ok((None, points));
        };
        let page: Value = serde_json::from_str(&body?)?;
        points += page["metrics"].as_array().map_or(0, Vec::len);
        match page["next_page_token"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_string(),
            _ => return Ok((Some(ms_since(started)), points)),
        }
    }
}

/// `text` with every byte but letters, digits and `-._~` percent-encoded, for a query string.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// MLflow's sqlite store, filled by `mlflow_ui.py fill` in a temporary directory.
struct MlflowStore {
    dir: tempfile::TempDir,
    experiment: String,
    long_run: String,
}

impl MlflowStore {
    /// RUNS runs of KEYS params and KEYS metrics, and the long run of HISTORY_POINTS points.
    fn fill(python: &Path) -> anyhow::Result<MlflowStore> {
        let dir = tempfile::tempdir()?;
        eprintln!("filling MLflow's store with {RUNS} runs and {HISTORY_POINTS} points");
        let output = Command::new(python)
            .arg(mlflow_script())
            .args(["fill", "--dir"])
            .arg(dir.path())
            .args(["--runs", &RUNS.to_string(), "--points", &HISTORY_POINTS.to_string()])
            .stderr(Stdio::inherit())
            .output()?;
        anyhow::ensure!(output.status.success(), "mlflow_ui.py fill: {}", output.status);
        let stdout = String::from_utf8(output.stdout)?;
        let answer: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
        let field = |name: &str| -> anyhow::Result<String> {
            answer[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("mlflow_ui.py fill gave no {name}: {stdout}"))
        };
        Ok(MlflowStore { experiment: field("experiment_id")?, long_run: field("long_run")?, dir })
    }
}

/// `mlflow server` over the store in a directory, run by `mlflow_ui.py serve` in a process
/// group of its own (the server, its uvicorn workers, its job runner), all killed when dropped.
struct MlflowServer {
    process: Child,
    address: String,
}

impl MlflowServer {
    /// Starts it on a free port and waits until it answers /health (at most 180 s), then 5 s
    /// more for the rest of its workers to finish starting.
    fn start(python: &Path, dir: &Path, runtime: &Runtime) -> anyhow::Result<MlflowServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let process = Command::new(python)
            .arg(mlflow_script())
            .args(["serve", "--dir"])
            .arg(dir)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        let mut server = MlflowServer { process, address: format!("127.0.0.1:{port}") };
        let http = HttpClient::new(&server.address);
        let deadline = Instant::now() + Duration::from_secs(180);
        while runtime.block_on(http.get("/health")).is_err() {
            if let Some(status) = server.process.try_wait()? {
                anyhow::bail!("mlflow server exited: {status}; see {}/server.log", dir.display());
            }
            anyhow::ensure!(Instant::now() < deadline, "mlflow server did not answer in 180 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(5));
        Ok(server)
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // The group's id is the script's process id; its workers would outlive it otherwise.
        let group = format!("-{}", self.process.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.process.wait();
    }
}
