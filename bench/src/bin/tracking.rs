//! drover's own tracking figures against the issue's goals (the peers' side of the tracking
//! benchmark is not in this binary yet):
//! 1. metric ingest over gRPC: the worker path (one worker's stream carrying batches of
//!    1,000 points for 16 runs assigned to it, each batch acknowledged only once durable) and
//!    the tracking API's LogBatch from 16 concurrent clients — points/s;
//! 2. `runs/search` over an experiment of 100,000 runs with a metric and a param filter,
//!    through the REST API — latency;
//! 3. the history of a 1,000,000-point metric, through the REST API (paged, as the official
//!    client reads it) and through gRPC (pages of 250,000) — latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_bench::{
    HttpClient, LocalCluster, attach_worker, create_experiment, print_table, quantile,
};
use drover_proto::Client;
use drover_proto::domain::{CreateRun, Metric, MetricHistoryQuery, Param, RunId, RunStatus};
use drover_proto::execution::{
    MetricBatch, MetricSeries, SchedulerMessage, SubmitRun, WorkerEvent, WorkerMessage,
};
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

const INGEST_WRITERS: usize = 16;
/// Runs one worker streams metrics for, and the batches it sends for each.
const STREAM_RUNS: usize = 16;
const STREAM_BATCHES: usize = 200;
/// Batches the bench worker lets wait for acknowledgement (the real worker allows 4,096).
const STREAM_WINDOW: usize = 256;
const INGEST_BATCHES: usize = 200;
const BATCH_POINTS: usize = 1000;
const SEARCH_RUNS: usize = 100_000;
const HISTORY_POINTS: usize = 1_000_000;

fn main() -> anyhow::Result<()> {
    let cluster = LocalCluster::start(0)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = Client::connect(&cluster.address).await?;
        // DROVER_BENCH_ONLY=history measures the history alone (the search setup takes minutes).
        if std::env::var("DROVER_BENCH_ONLY").is_ok_and(|only| only == "history") {
            let (rest, grpc) = history(&client, &cluster.address).await?;
            println!("history of {HISTORY_POINTS} points: REST {rest:.0} ms, gRPC {grpc:.0} ms");
            return Ok(());
        }
        let stream = worker_stream_ingest(&client, &cluster).await?;
        eprintln!("worker stream ingest: {stream:.0} points/s");
        let ingest = ingest(&client).await?;
        eprintln!("LogBatch ingest: {ingest:.0} points/s");
        // DROVER_BENCH_ONLY=ingest measures the ingest alone.
        if std::env::var("DROVER_BENCH_ONLY").is_ok_and(|only| only == "ingest") {
            return Ok(());
        }
        let (search, search_matches) = search(&client, &cluster.address).await?;
        eprintln!("runs/search over {SEARCH_RUNS} runs: {search:?} ms");
        let (history_rest, history_grpc) = history(&client, &cluster.address).await?;
        println!("\nTracking (this machine)\n");
        print_table(
            &["measure", "drover", "goal"],
            &[
                vec![
                    format!("worker stream ingest, {STREAM_RUNS} runs x {BATCH_POINTS}-point batches, durable"),
                    format!("{stream:.0} points/s"),
                    ">= 1,000,000 points/s".to_string(),
                ],
                vec![
                    format!("gRPC LogBatch, {INGEST_WRITERS} clients x {BATCH_POINTS}-point batches, durable"),
                    format!("{ingest:.0} points/s"),
                    "-".to_string(),
                ],
                vec![
                    format!("runs/search, {SEARCH_RUNS} runs, metric+param filter ({search_matches} matches), p50"),
                    format!("{:.0} ms", quantile(&search, 0.5)),
                    "< 100 ms".to_string(),
                ],
                vec![
                    format!("metrics/get-history, {HISTORY_POINTS} points (REST, paged)"),
                    format!("{:.0} ms", history_rest),
                    "< 1 s".to_string(),
                ],
                vec![
                    format!("metric history, {HISTORY_POINTS} points (gRPC, pages of 250,000)"),
                    format!("{:.0} ms", history_grpc),
                    "< 1 s".to_string(),
                ],
            ],
        );
        anyhow::Ok(())
    })
}

async fn new_run(
    client: &Client,
    experiment: drover_proto::domain::ExperimentId,
) -> anyhow::Result<RunId> {
    let request = CreateRun {
        experiment_id: experiment,
        run_name: None,
        user_id: "bench".into(),
        start_time_ms: None,
        tags: Vec::new(),
        status: RunStatus::Running,
    };
    Ok(client.create_run(request).await?.info.run_id)
}

/// Points of one bench batch: 1,000 points over ten keys.
fn batch_points(batch: usize) -> Vec<Metric> {
    const KEYS: [&str; 10] = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"];
    (0..BATCH_POINTS)
        .map(|i| Metric {
            key: KEYS[i % 10].to_string(),
            value: i as f64,
            timestamp_ms: batch as i64,
            step: (batch * BATCH_POINTS + i) as i64,
        })
        .collect()
}

/// The worker path: this process attaches as a worker, takes STREAM_RUNS runs and streams
/// their metric batches as the worker does, counting points once their batch is
/// acknowledged (which the scheduler sends only once it is durable).
async fn worker_stream_ingest(client: &Client, cluster: &LocalCluster) -> anyhow::Result<f64> {
    let spec =
        cluster.local_project(client, "noop", "entry_points: {main: {command: 'true'}}\n").await?;
    let experiment = create_experiment(client, "worker-stream").await?;
    for _ in 0..STREAM_RUNS {
        let request = SubmitRun {
            experiment_id: experiment,
            run_name: None,
            user_id: "bench".into(),
            tags: Vec::new(),
            spec: spec.clone(),
        };
        client.submit_run(request).await?;
    }

    let (outgoing, mut incoming) =
        attach_worker(client, "bench-stream", STREAM_RUNS as u32, STREAM_WINDOW * 2).await?;
    let mut attempts = Vec::new();
    while attempts.len() < STREAM_RUNS {
        match incoming.next().await {
            Some(Ok(SchedulerMessage::Assign(assignment))) => attempts.push(assignment.attempt),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("the scheduler closed the worker stream"),
        }
    }

    let window = Arc::new(Semaphore::new(STREAM_WINDOW));
    let started = Instant::now();
    let sender = tokio::spawn({
        let window = window.clone();
        let attempts = attempts.clone();
        async move {
            let mut seq = 0;
            let mut last_heartbeat = Instant::now();
            for batch in 1..=STREAM_BATCHES {
                for attempt in &attempts {
                    window.acquire().await?.forget();
                    seq += 1;
                    let event = WorkerEvent::Metrics(MetricBatch {
                        attempt: *attempt,
                        batch: batch as u64,
                        series: MetricSeries::group(batch_points(batch)),
                        params: Vec::new(),
                        tags: Vec::new(),
                    });
                    outgoing.send(WorkerMessage { seq: Some(seq), event }).await?;
                    if last_heartbeat.elapsed() >= Duration::from_secs(1) {
                        last_heartbeat = Instant::now();
                        let running = attempts.clone();
                        let event = WorkerEvent::Heartbeat { running };
                        outgoing.send(WorkerMessage { seq: None, event }).await?;
                    }
                }
            }
            anyhow::Ok(outgoing)
        }
    });
    let mut acknowledged = 0;
    while acknowledged < STREAM_RUNS * STREAM_BATCHES {
        match incoming.next().await {
            Some(Ok(SchedulerMessage::Ack(_))) => {
                acknowledged += 1;
                window.add_permits(1);
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("the scheduler closed the worker stream"),
        }
    }
    let elapsed = started.elapsed();
    drop(sender.await??);
    let points = (STREAM_RUNS * STREAM_BATCHES * BATCH_POINTS) as f64;
    Ok(points / elapsed.as_secs_f64())
}

async fn ingest(client: &Client) -> anyhow::Result<f64> {
    let experiment = create_experiment(client, "ingest").await?;
    let mut runs = Vec::new();
    for _ in 0..INGEST_WRITERS {
        runs.push(new_run(client, experiment).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for run_id in runs {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..INGEST_BATCHES {
                client.log_metrics(run_id, batch_points(batch)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let points = (INGEST_WRITERS * INGEST_BATCHES * BATCH_POINTS) as f64;
    Ok(points / started.elapsed().as_secs_f64())
}

async fn search(client: &Client, address: &str) -> anyhow::Result<(Vec<f64>, usize)> {
    let experiment = create_experiment(client, "search").await?;
    eprintln!("creating {SEARCH_RUNS} runs for the search benchmark");
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in (writer..SEARCH_RUNS).step_by(32) {
                let run_id = new_run(&client, experiment).await?;
                let metric = Metric {
                    key: "rmse".into(),
                    value: (i % 1000) as f64 / 1000.0,
                    timestamp_ms: 0,
                    step: 0,
                };
                client.log_metrics(run_id, vec![metric]).await?;
                client
                    .log_params(
                        run_id,
                        vec![Param { key: "alpha".into(), value: format!("0.{}", i % 10) }],
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let http = HttpClient::new(address);
    let body = format!(
        r#"{{"experiment_ids": ["{experiment}"], "filter": "metrics.rmse < 0.1 and params.alpha = '0.3'", "max_results": 1000}}"#
    );
    let mut latencies = Vec::new();
    let mut matches = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let response = http.post("/api/2.0/mlflow/runs/search", &body).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let response: serde_json::Value = serde_json::from_str(&response)?;
        matches = response["runs"].as_array().map_or(0, Vec::len);
    }
    Ok((latencies, matches))
}

async fn history(client: &Client, address: &str) -> anyhow::Result<(f64, f64)> {
    let experiment = create_experiment(client, "history").await?;
    let run_id = new_run(client, experiment).await?;
    for chunk in 0..HISTORY_POINTS / 10_000 {
        let points = (0..10_000)
            .map(|i| {
                let step = (chunk * 10_000 + i) as i64;
                Metric {
                    key: "loss".into(),
                    value: 1.0 / (step + 1) as f64,
                    timestamp_ms: step,
                    step,
                }
            })
            .collect();
        client.log_metrics(run_id, points).await?;
    }
    // Read as a client would: typed pages of 25,000 points, following the page tokens.
    #[derive(serde::Deserialize)]
    struct Point {
        #[allow(dead_code)]
        step: i64,
    }
    #[derive(serde::Deserialize)]
    struct HistoryPage {
        metrics: Vec<Point>,
        next_page_token: Option<String>,
    }
    let http = HttpClient::new(address);
    let started = Instant::now();
    let mut token = String::new();
    let mut total = 0;
    loop {
        let query = format!(
            "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss&max_results=25000&page_token={token}"
        );
        let page: HistoryPage = serde_json::from_str(&http.get(&query).await?)?;
        total += page.metrics.len();
        match page.next_page_token {
            Some(next) => token = next,
            None => break,
        }
    }
    let rest = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(total == HISTORY_POINTS, "REST history returned {total} points");
    eprintln!("get-history over REST: {rest:.0} ms");
    let started = Instant::now();
    let mut total = 0;
    let mut page_token = None;
    loop {
        let page = client
            .metric_history(MetricHistoryQuery {
                run_id,
                key: "loss".into(),
                start_step: None,
                end_step: None,
                max_results: Some(250_000),
                page_token,
                attempt: None,
            })
            .await?;
        total += page.items.len();
        page_token = page.next_page_token;
        if page_token.is_none() {
            break;
        }
    }
    let grpc = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(total == HISTORY_POINTS, "gRPC history returned {total} points");
    Ok((rest, grpc))
}
