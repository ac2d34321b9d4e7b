//! The scale of one scheduler: a store of 1,000,000 finished runs and a store of 100,000,000
//! metric points, each measured by
//! - the store's size on disk (blocks allocated, as `du` counts them), per run or per point;
//! - the restart time of the release `drover scheduler` on it: from process start until it
//!   answers a gRPC call;
//! - the scheduler's resident memory once it answers, and after a query that reads the whole
//!   store (a `runs/search` over every run, or one run's whole history).
//!
//! The stores are filled in this process through the store API the scheduler itself writes
//! with (submitted runs with their execution records, parameters, metrics, log lines and
//! final state; metric batches of 1,000 points over ten keys), which takes a minute or two
//! where going through gRPC would take most of an hour. The `tracking` and `placement`
//! benchmarks measure those paths over the network.
//!
//! `DROVER_SCALE_RUNS` and `DROVER_SCALE_POINTS` change the sizes for a quick look.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_bench::{HttpClient, Process, drover_binary, print_table};
use drover_project::snapshot;
use drover_proto::Client;
use drover_proto::domain::{
    CreateExperiment, CreateRun, ExperimentId, ExperimentName, Metric, MetricHistoryQuery, Param,
    RunStatus, ViewType,
};
use drover_proto::execution::{RunSpec, SubmitRun};
use drover_scheduler::Store;
use drover_scheduler::store::{AttemptRecord, Placement, RunChange};

/// Tasks writing at once while a store is filled (their writes share group commits).
const WRITERS: usize = 256;
/// Metric keys per run of the points store, and points per key per write.
const KEYS: usize = 10;
const STEPS_PER_WRITE: usize = 100;
const POINT_RUNS: usize = 1_000;

fn size_from_env(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .replace(['_', ','], "")
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Blocks the files under `dir` take on disk, in bytes.
fn disk_usage(dir: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total +=
            if metadata.is_dir() { disk_usage(&entry.path())? } else { metadata.blocks() * 512 };
    }
    Ok(total)
}

/// A field of /proc/PID/status in bytes (VmRSS, VmHWM).
fn memory(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))?;
    let kib: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A scheduler started on an existing store, and what it took to answer.
struct Restarted {
    process: Process,
    address: String,
    client: Client,
    seconds: f64,
    rss: u64,
}

/// Starts the release scheduler on the store in `dir` and waits until a gRPC call succeeds.
async fn restart(dir: &Path) -> anyhow::Result<Restarted> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let process = Process(
        std::process::Command::new(drover_binary())
            .args(["scheduler", "--listen", &address, "--data-dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let deadline = started + Duration::from_secs(600);
    let client = loop {
        if let Ok(client) = Client::connect(&address).await
            && client.list_experiments(ViewType::ActiveOnly).await.is_ok()
        {
            break client;
        }
        anyhow::ensure!(Instant::now() < deadline, "the scheduler did not answer in 600 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let rss = memory(process.0.id(), "VmRSS:")?;
    Ok(Restarted { process, address, client, seconds, rss })
}

/// Figures of one store.
struct Figures {
    fill_rate: f64,
    disk: u64,
    restart_seconds: f64,
    rss_ready: u64,
    query_ms: f64,
    rss_after_query: u64,
}

impl Restarted {
    /// The figures of its store, with the scheduler's peak RSS so far.
    fn figures(&self, fill_rate: f64, disk: u64, query_ms: f64) -> anyhow::Result<Figures> {
        Ok(Figures {
            fill_rate,
            disk,
            restart_seconds: self.seconds,
            rss_ready: self.rss,
            query_ms,
            rss_after_query: memory(self.process.0.id(), "VmHWM:")?,
        })
    }
}

async fn new_experiment(store: &Store, name: &str) -> anyhow::Result<ExperimentId> {
    let request = CreateExperiment {
        name: ExperimentName::parse(name)?,
        artifact_location: None,
        tags: Vec::new(),
    };
    Ok(store.create_experiment(request).await?.id)
}

/// The spec of a local-process run of a one-file project in `dir`.
fn run_spec(dir: &Path) -> anyhow::Result<RunSpec> {
    let project = dir.join("project");
    std::fs::create_dir_all(&project)?;
    std::fs::write(project.join("MLproject"), "entry_points: {main: {command: 'true'}}\n")?;
    let packed = snapshot::pack(&project, snapshot::DEFAULT_SIZE_LIMIT)?;
    Ok(RunSpec::local("scale", packed.digest.clone(), packed.size))
}

/// Submits `runs` runs, each with two parameters, and ends each as the scheduler does for a
/// run its worker finished: one attempt on a worker, three final metrics, FINISHED.
async fn fill_runs(store: &Store, dir: &Path, runs: usize) -> anyhow::Result<ExperimentId> {
    let experiment = new_experiment(store, "finished-runs").await?;
    let spec = Arc::new(run_spec(dir)?);
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, spec) = (store.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            for i in (writer..runs).step_by(WRITERS) {
                let mut spec = (*spec).clone();
                spec.parameters = vec![
                    ("alpha".into(), format!("0.{}", i % 10)),
                    ("l1_ratio".into(), format!("0.{}", i % 7)),
                ];
                let request = SubmitRun {
                    experiment_id: experiment,
                    run_name: None,
                    user_id: "bench".into(),
                    tags: Vec::new(),
                    spec,
                };
                let (run, mut record) = store.submit_run(request).await?;
                let run_id = run.info.run_id;
                let now = run.info.start_time_ms;
                let metric = |key: &str, value: f64| Metric {
                    key: key.into(),
                    value,
                    timestamp_ms: now + 900,
                    step: 0,
                };
                let metrics = vec![
                    metric("rmse", (i % 100_000) as f64 / 100_000.0),
                    metric("r2", 1.0 - (i % 1_000) as f64 / 1_000.0),
                    metric("mae", (i % 977) as f64 / 977.0),
                ];
                store.log_batch(run_id, metrics, Vec::new(), Vec::new()).await?;
                record.attempt = 1;
                record.placement = Placement::Done;
                record.exit_code = Some(0);
                record.attempts = vec![AttemptRecord {
                    attempt: 1,
                    worker_id: format!("worker-{}", i % 100),
                    assigned_ms: now + 10,
                    started_ms: Some(now + 20),
                    ended_ms: Some(now + 1_000),
                    exit_code: Some(0),
                    outcome: "FINISHED".into(),
                    gpu_ids: Vec::new(),
                }];
                let change = RunChange {
                    status: Some(RunStatus::Finished),
                    log_line: Some("run finished (exit code 0)".into()),
                    ..Default::default()
                };
                store.save_execution(&record, change).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(experiment)
}

async fn finished_runs(runs: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir)?;
    let started = Instant::now();
    let experiment = fill_runs(&store, dir.path(), runs).await?;
    let fill_rate = runs as f64 / started.elapsed().as_secs_f64();
    store.close_and_release(Duration::from_secs(10)).await;
    let disk = disk_usage(&store_dir)?;
    eprintln!("{runs} finished runs written at {fill_rate:.0} runs/s, {}", mib(disk));

    let restarted = restart(&store_dir).await?;
    // A search that has to look at every run's metric: the first after the restart.
    let http = HttpClient::new(&restarted.address);
    let body = format!(
        r#"{{"experiment_ids": ["{experiment}"], "filter": "metrics.rmse < 0.0001", "max_results": 1000}}"#
    );
    let started = Instant::now();
    let response: serde_json::Value =
        serde_json::from_str(&http.post("/api/2.0/mlflow/runs/search", &body).await?)?;
    let query_ms = started.elapsed().as_secs_f64() * 1000.0;
    let matches = response["runs"].as_array().map_or(0, Vec::len);
    let expected = (0..runs).filter(|i| i % 100_000 < 10).count().min(1000);
    anyhow::ensure!(matches == expected, "the search found {matches} runs, not {expected}");
    restarted.figures(fill_rate, disk, query_ms)
}

/// The points of one write: `STEPS_PER_WRITE` steps from `first` of each of `KEYS` keys,
/// a noisy decreasing curve in full `f64`, a timestamp per step.
fn curve_points(run: usize, first: usize) -> Vec<Metric> {
    let mut points = Vec::with_capacity(KEYS * STEPS_PER_WRITE);
    for key in 0..KEYS {
        for step in first..first + STEPS_PER_WRITE {
            let x = step as f64;
            points.push(Metric {
                key: format!("metric_{key}"),
                value: 1.0 / (1.0 + x * (key + 1) as f64 / 100.0)
                    + ((x + run as f64) * 0.37).sin() * 1e-3,
                timestamp_ms: 1_764_000_000_000 + step as i64 * 40,
                step: step as i64,
            });
        }
    }
    points
}

async fn metric_points(points: usize) -> anyhow::Result<(Figures, usize)> {
    let steps = points / (POINT_RUNS * KEYS);
    anyhow::ensure!(
        steps >= STEPS_PER_WRITE && steps.is_multiple_of(STEPS_PER_WRITE),
        "DROVER_SCALE_POINTS must be a multiple of {}",
        POINT_RUNS * KEYS * STEPS_PER_WRITE
    );
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir)?;
    let experiment = new_experiment(&store, "curves").await?;
    let mut runs = Vec::new();
    for _ in 0..POINT_RUNS {
        let request = CreateRun {
            experiment_id: experiment,
            run_name: None,
            user_id: "bench".into(),
            start_time_ms: None,
            tags: Vec::new(),
            status: RunStatus::Running,
        };
        runs.push(store.create_run(request).await?.info.run_id);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, runs) = (store.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            // Each writer logs its runs' curves a write at a time, runs in turn, as training
            // jobs running side by side do.
            for first in (0..steps).step_by(STEPS_PER_WRITE) {
                for (index, run_id) in runs.iter().enumerate().skip(writer).step_by(WRITERS) {
                    store.log_metrics(*run_id, curve_points(index, first)).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let fill_rate = points as f64 / started.elapsed().as_secs_f64();
    let params = vec![Param { key: "steps".into(), value: steps.to_string() }];
    store.log_params(runs[0], params).await?;
    store.close_and_release(Duration::from_secs(10)).await;
    let disk = disk_usage(&store_dir)?;
    eprintln!("{points} points written at {fill_rate:.0} points/s, {}", mib(disk));

    let restarted = restart(&store_dir).await?;
    // One run's whole history of one metric, then every metric of that run.
    let started = Instant::now();
    let mut read = 0;
    for key in 0..KEYS {
        let page = restarted
            .client
            .metric_history(MetricHistoryQuery {
                run_id: runs[POINT_RUNS / 2],
                key: format!("metric_{key}"),
                start_step: None,
                end_step: None,
                max_results: Some(steps as u32),
                page_token: None,
                attempt: None,
            })
            .await?;
        read += page.items.len();
    }
    let query_ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(read == steps * KEYS, "read {read} points of one run, not {}", steps * KEYS);
    Ok((restarted.figures(fill_rate, disk, query_ms)?, steps * KEYS))
}

fn main() -> anyhow::Result<()> {
    let runs = size_from_env("DROVER_SCALE_RUNS", 1_000_000)?;
    let points = size_from_env("DROVER_SCALE_POINTS", 100_000_000)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let finished = finished_runs(runs).await?;
        let (curves, run_points) = metric_points(points).await?;
        println!("\nScale of one scheduler (this machine)\n");
        // A measure both stores report alike, and one each reports its own way.
        let same = |label: &str, show: fn(&Figures) -> String| {
            vec![label.to_string(), show(&finished), show(&curves)]
        };
        let rows = vec![
            vec![
                "store filled (in-process, durable writes)".to_string(),
                format!("{:.0} runs/s", finished.fill_rate),
                format!("{:.0} points/s", curves.fill_rate),
            ],
            same("store on disk", |figures| mib(figures.disk)),
            vec![
                "  per run / per point".to_string(),
                format!("{:.0} bytes", finished.disk as f64 / runs as f64),
                format!("{:.1} bytes", curves.disk as f64 / points as f64),
            ],
            same("restart: start to first answer", |figures| {
                format!("{:.2} s", figures.restart_seconds)
            }),
            same("RSS once answering", |figures| mib(figures.rss_ready)),
            vec![
                "first query after restart".to_string(),
                format!("{:.0} ms (search, all runs)", finished.query_ms),
                format!("{:.0} ms ({run_points} points, one run)", curves.query_ms),
            ],
            same("peak RSS after it", |figures| mib(figures.rss_after_query)),
        ];
        print_table(
            &[
                "measure",
                &format!("{runs} finished runs"),
                &format!("{points} metric points ({POINT_RUNS} runs x {KEYS} keys)"),
            ],
            &rows,
        );
        println!(
            "\nBytes per metric point on disk, for scale: goal <= 25; MLflow's sqlite about 260 and FastTrackML's about 210 (see peers.py's table)."
        );
        anyhow::Ok(())
    })
}
