//! The web UI at scale, as a user would time it: an experiment of 100,000 runs with 10 params
//! and 10 metrics each, and a run with 1,000,000 points of one metric. Measured end to end
//! over HTTP (the server's answer) and in headless Chromium (from navigation to the first
//! rows, or the chart's line, on screen), beside MLflow 3.17.2's UI on the same data.

use std::time::{Duration, Instant};

use drover_bench::{HttpClient, LocalCluster, print_table, quantile};
use drover_proto::Client;
use drover_proto::domain::{
    CreateExperiment, CreateRun, ExperimentId, ExperimentName, Metric, Param, RunId, RunStatus,
};
use drover_testkit::browser::Browser;

const RUNS: usize = 100_000;
const KEYS: usize = 10;
const HISTORY_POINTS: usize = 1_000_000;
const TRIES: usize = 5;
const BROWSER_TRIES: usize = 3;

fn main() -> anyhow::Result<()> {
    let cluster = LocalCluster::start(0)?;
    let base = format!("http://{}", cluster.address);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
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
    let (table_ms, table_total) =
        runtime.block_on(server_time(&cluster.address, &table_path, "total"))?;
    let (chart_ms, _) = runtime.block_on(server_time(&cluster.address, &chart_path, "key"))?;
    eprintln!("server: table {table_ms:?} ms ({table_total} matches), chart {chart_ms:?} ms");

    let table_url = format!(
        "{base}/runs?e={experiment}&q=metrics.m0%20%3C%200.5&sort=metrics.m1&cols=metrics.m1"
    );
    let rows = "return document.querySelectorAll('table.runs tbody tr[data-run]').length >= 100";
    let table_rendered = rendered(&table_url, rows, "table")?;
    let chart_url = format!("{base}/runs/{long_run}");
    let line = "const c = document.querySelector('canvas.chart'); return c && Number(c.dataset.drawn) > 500";
    let chart_rendered = rendered(&chart_url, line, "chart")?;
    eprintln!("rendered: table {table_rendered:?} ms, chart {chart_rendered:?} ms");

    println!("\nWeb UI at scale (this machine; MLflow 3.17.2 as measured in the UI anchors)\n");
    let ms = |samples: &[f64]| format!("{:.0} ms", quantile(samples, 0.5));
    print_table(
        &["what the user does", "drover", "MLflow 3.17.2", "goal"],
        &[
            vec![
                format!(
                    "runs table, {RUNS} runs: filtered by a metric, sorted by another, first page (server)"
                ),
                ms(&table_ms),
                "519 s (sorting by a metric alone)".to_string(),
                "< 50 ms".to_string(),
            ],
            vec![
                "the same table, rendered in Chromium".to_string(),
                ms(&table_rendered),
                "a spinner after 180 s".to_string(),
                "< 1 s".to_string(),
            ],
            vec![
                format!("chart of a {HISTORY_POINTS}-point metric at 1,000 px (server)"),
                ms(&chart_ms),
                "36 s to page through it all".to_string(),
                "< 50 ms".to_string(),
            ],
            vec![
                "the same chart, drawn in Chromium (min and max of every pixel)".to_string(),
                ms(&chart_rendered),
                "4.3 s to a 320-point sample; 48.7 s of downloads".to_string(),
                "< 1 s".to_string(),
            ],
        ],
    );
    Ok(())
}

/// Fills one experiment with RUNS runs of KEYS params and KEYS metrics each.
async fn fill(client: &Client) -> anyhow::Result<ExperimentId> {
    let experiment = client
        .create_experiment(CreateExperiment {
            name: ExperimentName::parse("ui-bench")?,
            artifact_location: None,
            tags: Vec::new(),
        })
        .await?
        .id;
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
                        value: ((i * 7919 + k * 104_729) % 100_000) as f64 / 100_000.0,
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
    let warm: serde_json::Value = serde_json::from_str(&http.get(path).await?)?;
    let mut samples = Vec::new();
    for _ in 0..TRIES {
        let started = Instant::now();
        http.get(path).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((samples, warm[field].to_string()))
}

/// BROWSER_TRIES times, each in a fresh browser: from asking for `url` until `ready` holds.
/// The last try's page is saved as `target/tmp/ui-bench-<name>.png`, to look at.
fn rendered(url: &str, ready: &str, name: &str) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::new();
    for _ in 0..BROWSER_TRIES {
        let browser = Browser::start(1600, 1000).map_err(anyhow::Error::msg)?;
        browser.goto("about:blank").map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        browser.goto(url).map_err(anyhow::Error::msg)?;
        browser.wait_for(url, ready, Duration::from_secs(120)).map_err(anyhow::Error::msg)?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
        std::fs::create_dir_all(&shots)?;
        browser
            .screenshot(&shots.join(format!("ui-bench-{name}.png")))
            .map_err(anyhow::Error::msg)?;
    }
    Ok(samples)
}
