//! What drover adds to running a command:
//! 1. `docker run --rm IMAGE true` against `drover run` of a project with the same image and
//!    command on an idle worker (whole CLI invocations, median of 21 each);
//! 2. submit → process start for the local executor, p50 and p99 over 200 runs: the run's
//!    command prints the time it started, compared with the time just before the submit call.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover_bench::{LocalCluster, drover_binary, print_table, quantile};
use drover_proto::Client;
use drover_proto::domain::{DEFAULT_EXPERIMENT_ID, RunStatus};
use drover_proto::execution::{FollowRun, LogStream, RunEvent, SubmitRun};
use tokio_stream::StreamExt;

const IMAGE: &str = "drover/busybox:1";
const REPEATS: usize = 21;
const LATENCY_RUNS: usize = 200;

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn time_command(command: &mut Command) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = command.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    anyhow::ensure!(status.success(), "{command:?} failed");
    Ok(millis(started.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let cluster = LocalCluster::start(2)?;
    let project = cluster.dir.path().join("true-project");
    std::fs::create_dir_all(&project)?;
    std::fs::write(
        project.join("MLproject"),
        format!("docker_env: {{image: {IMAGE}}}\nentry_points: {{main: {{command: 'true'}}}}\n"),
    )?;

    // Warm both paths once (image layers, snapshot upload, connections).
    time_command(Command::new("docker").args(["run", "--rm", IMAGE, "true"]))?;
    time_command(
        Command::new(drover_binary()).args(["--scheduler", &cluster.address, "run"]).arg(&project),
    )?;

    let mut docker = Vec::new();
    let mut drover = Vec::new();
    for _ in 0..REPEATS {
        docker.push(time_command(Command::new("docker").args(["run", "--rm", IMAGE, "true"]))?);
        drover.push(time_command(
            Command::new(drover_binary())
                .args(["--scheduler", &cluster.address, "run"])
                .arg(&project),
        )?);
    }
    let docker_median = quantile(&docker, 0.5);
    let drover_median = quantile(&drover, 0.5);

    let runtime = tokio::runtime::Runtime::new()?;
    let latencies = runtime.block_on(start_latencies(&cluster))?;

    println!("\nRun overhead (this machine, {REPEATS} runs each, idle worker)\n");
    print_table(
        &["measure", "docker run --rm", "drover run", "drover adds", "goal"],
        &[vec![
            format!("`{IMAGE} true`, median"),
            format!("{docker_median:.0} ms"),
            format!("{drover_median:.0} ms"),
            format!("{:.0} ms", drover_median - docker_median),
            "< 100 ms".to_string(),
        ]],
    );
    println!("\nSubmit -> process start, local executor ({LATENCY_RUNS} runs)\n");
    print_table(
        &["p50", "p99", "max", "goal"],
        &[vec![
            format!("{:.1} ms", quantile(&latencies, 0.5)),
            format!("{:.1} ms", quantile(&latencies, 0.99)),
            format!("{:.1} ms", quantile(&latencies, 1.0)),
            "p99 < 50 ms".to_string(),
        ]],
    );
    Ok(())
}

async fn start_latencies(cluster: &LocalCluster) -> anyhow::Result<Vec<f64>> {
    let client = Client::connect(&cluster.address).await?;
    let spec = cluster
        .local_project(&client, "clock", "entry_points: {main: {command: 'date +%s%N'}}\n")
        .await?;
    let mut latencies = Vec::with_capacity(LATENCY_RUNS);
    for _ in 0..LATENCY_RUNS {
        let request = SubmitRun {
            experiment_id: DEFAULT_EXPERIMENT_ID,
            run_name: None,
            user_id: "bench".into(),
            tags: Vec::new(),
            spec: spec.clone(),
        };
        let submitted = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i128;
        let run = client.submit_run(request).await?;
        let mut events = client
            .follow_run(FollowRun { run_id: run.info.run_id, follow: true, after_cursor: 0 })
            .await?;
        let mut output = String::new();
        while let Some(event) = events.next().await {
            match event? {
                RunEvent::Log { stream: LogStream::Stdout, data, .. } => {
                    output.push_str(&String::from_utf8_lossy(&data))
                }
                RunEvent::Log { .. } => {}
                RunEvent::State { status, .. } => {
                    anyhow::ensure!(
                        status == RunStatus::Finished,
                        "a benchmark run ended {status}"
                    );
                    break;
                }
            }
        }
        let started: i128 = output.trim().parse()?;
        latencies.push((started - submitted) as f64 / 1e6);
    }
    Ok(latencies)
}
