//! Placement throughput and latency of one scheduler, over real gRPC on loopback with a
//! durable store, 100 simulated workers each on its own connection:
//! 1. placement alone, as Nomad's C1M counts it: 100,000 no-op runs queued with no worker
//!    attached, then the workers attach with 1,000 slots each and hold what they are given;
//!    placements/s until the whole backlog is placed (each placement durable before its
//!    worker hears of it);
//! 2. placement with the runs' whole lifecycle, on a fresh scheduler: 20,000 runs queued,
//!    then workers with 16 slots each report every run as started and finished at once;
//!    runs/s until the backlog is placed;
//! 3. a flow: those workers idle, 16 clients submit 10,000 more runs as fast as the
//!    scheduler accepts them; the time from asking to submit a run to its worker holding the
//!    assignment, p50 and p99.
//!
//! The simulated workers speak the worker protocol as `drover worker` does (register,
//! heartbeats, reports numbered and resent until acknowledged), without starting processes:
//! the figures are the scheduler's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_bench::{LocalCluster, attach_worker, create_experiment, print_table, quantile};
use drover_proto::Client;
use drover_proto::domain::{ExperimentId, RunId};
use drover_proto::execution::{
    RunPhase, RunSpec, RunUpdate, SchedulerMessage, SubmitRun, WorkerEvent, WorkerMessage,
};
use tokio_stream::StreamExt;

const WORKERS: usize = 100;
/// Slots per worker when placement is measured alone: room for the whole backlog.
const HOLDING_SLOTS: u32 = 1_000;
/// Slots per worker whose runs end at once.
const SLOTS: u32 = 16;
const BACKLOG: usize = 100_000;
const LIFECYCLE_BACKLOG: usize = 20_000;
const FLOW: usize = 10_000;
const SUBMITTERS: usize = 16;

/// When each run reached its worker, shared by the simulated workers.
type Assigned = Arc<Mutex<HashMap<RunId, Instant>>>;

fn main() -> anyhow::Result<()> {
    let backlog = std::env::var("PLACEMENT_BACKLOG")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(BACKLOG);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // The first scheduler and its workers are gone before the second phase starts.
        let (queue_rate, holding_rate) = {
            let holding = Backlog::place(backlog, HOLDING_SLOTS, false).await?;
            (holding.queue_rate, holding.placements_per_s)
        };
        let lifecycle = Backlog::place(LIFECYCLE_BACKLOG.min(backlog), SLOTS, true).await?;

        eprintln!("submitting {FLOW} runs to the idle workers");
        let asked = Arc::new(Mutex::new(HashMap::new()));
        let started = Instant::now();
        let mut submitters = Vec::new();
        for submitter in 0..SUBMITTERS {
            let (client, spec, asked) =
                (lifecycle.client.clone(), lifecycle.spec.clone(), asked.clone());
            let experiment = lifecycle.experiment;
            submitters.push(tokio::spawn(async move {
                for _ in (submitter..FLOW).step_by(SUBMITTERS) {
                    let at = Instant::now();
                    let run = client.submit_run(submit(experiment, &spec)).await?;
                    asked.lock().expect("not poisoned").insert(run.info.run_id, at);
                }
                anyhow::Ok(())
            }));
        }
        for submitter in submitters {
            submitter.await??;
        }
        wait_for(&lifecycle.assigned, lifecycle.count + FLOW).await?;
        let flow_rate = FLOW as f64 / started.elapsed().as_secs_f64();
        let latencies: Vec<f64> = {
            let asked = asked.lock().expect("not poisoned");
            let assigned = lifecycle.assigned.lock().expect("not poisoned");
            asked
                .iter()
                .filter_map(|(run_id, at)| {
                    assigned.get(run_id).map(|done| done.duration_since(*at).as_secs_f64() * 1e3)
                })
                .collect()
        };
        anyhow::ensure!(latencies.len() == FLOW, "{} of {FLOW} runs were placed", latencies.len());

        println!("\nPlacement: {WORKERS} simulated workers over gRPC on loopback, durable store\n");
        print_table(
            &["measure", "drover", "for scale (documented, not measured here)"],
            &[
                vec![
                    format!(
                        "{backlog} queued runs placed ({HOLDING_SLOTS} slots/worker), placements/s"
                    ),
                    format!("{holding_rate:.0}"),
                    "Nomad C1M: ~3,300/s on 5 servers".into(),
                ],
                vec![
                    format!(
                        "{} queued runs placed, started, finished ({SLOTS} slots/worker), runs/s",
                        lifecycle.count
                    ),
                    format!("{:.0}", lifecycle.placements_per_s),
                    "Slurm: 500 jobs/s".into(),
                ],
                vec![
                    "queueing (16 gRPC clients, no worker), submissions/s".into(),
                    format!("{queue_rate:.0}"),
                    String::new(),
                ],
                vec![
                    format!("{FLOW} runs submitted to idle workers, runs/s"),
                    format!("{flow_rate:.0}"),
                    String::new(),
                ],
                vec![
                    "submit -> assigned, p50 / p99".into(),
                    format!(
                        "{:.1} / {:.1} ms",
                        quantile(&latencies, 0.5),
                        quantile(&latencies, 0.99)
                    ),
                    String::new(),
                ],
            ],
        );
        println!("\nGoal: >= 10,000 placements/s on this 2-core machine.");
        drop(lifecycle);
        anyhow::Ok(())
    })
}

/// A scheduler whose backlog has been placed on simulated workers.
struct Backlog {
    client: Client,
    spec: RunSpec,
    experiment: ExperimentId,
    count: usize,
    assigned: Assigned,
    queue_rate: f64,
    placements_per_s: f64,
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _cluster: LocalCluster,
}

impl Drop for Backlog {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.abort();
        }
    }
}

impl Backlog {
    /// Queues `count` runs on a fresh scheduler, then attaches the workers and waits until
    /// every run has reached one.
    async fn place(count: usize, slots: u32, finish: bool) -> anyhow::Result<Backlog> {
        let cluster = LocalCluster::start(0)?;
        let client = Client::connect(&cluster.address).await?;
        let spec = cluster
            .local_project(&client, "noop", "entry_points: {main: {command: 'true'}}\n")
            .await?;
        let experiment = create_experiment(&client, "placement").await?;
        eprintln!("queueing {count} runs with no worker attached");
        let started = Instant::now();
        submit_all(&client, experiment, &spec, count).await?;
        let queue_rate = count as f64 / started.elapsed().as_secs_f64();
        eprintln!("queued at {queue_rate:.0} submissions/s");

        let assigned: Assigned = Arc::default();
        let started = Instant::now();
        let workers = (0..WORKERS)
            .map(|index| {
                tokio::spawn(simulated_worker(
                    cluster.address.clone(),
                    format!("sim-{index:03}"),
                    slots,
                    finish,
                    assigned.clone(),
                ))
            })
            .collect();
        wait_for(&assigned, count).await?;
        let elapsed = started.elapsed();
        let placements_per_s = count as f64 / elapsed.as_secs_f64();
        eprintln!("{count} runs placed in {elapsed:?}: {placements_per_s:.0}/s");
        Ok(Backlog {
            client,
            spec,
            experiment,
            count,
            assigned,
            queue_rate,
            placements_per_s,
            workers,
            _cluster: cluster,
        })
    }
}

fn submit(experiment: ExperimentId, spec: &RunSpec) -> SubmitRun {
    SubmitRun {
        experiment_id: experiment,
        run_name: None,
        user_id: "bench".into(),
        tags: Vec::new(),
        spec: spec.clone(),
    }
}

async fn submit_all(
    client: &Client,
    experiment: ExperimentId,
    spec: &RunSpec,
    count: usize,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for submitter in 0..SUBMITTERS {
        let (client, spec) = (client.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            for _ in (submitter..count).step_by(SUBMITTERS) {
                client.submit_run(submit(experiment, &spec)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Waits until `count` runs have reached their workers.
async fn wait_for(assigned: &Assigned, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let seen = assigned.lock().expect("not poisoned").len();
        if seen >= count {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "only {seen} of {count} runs were placed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A worker that holds each run it is given or, with `finish`, reports it as started, then
/// finished with exit code 0.
async fn simulated_worker(
    address: String,
    worker_id: String,
    slots: u32,
    finish: bool,
    assigned: Assigned,
) -> anyhow::Result<()> {
    let client = Client::connect(&address).await?;
    let (outgoing, mut incoming) = attach_worker(&client, &worker_id, slots, 4096).await?;
    let heartbeat = tokio::spawn({
        let outgoing = outgoing.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let event = WorkerEvent::Heartbeat { running: Vec::new() };
                if outgoing.send(WorkerMessage { seq: None, event }).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut seq = 0;
    let report = |attempt, phase, seq| WorkerMessage {
        seq: Some(seq),
        event: WorkerEvent::Update(RunUpdate {
            attempt,
            phase,
            exit_code: (phase == RunPhase::Finished).then_some(0),
            message: String::new(),
            tags: Vec::new(),
        }),
    };
    while let Some(message) = incoming.next().await {
        if let SchedulerMessage::Assign(assignment) = message? {
            let attempt = assignment.attempt;
            assigned.lock().expect("not poisoned").insert(attempt.run_id, Instant::now());
            if !finish {
                continue;
            }
            seq += 1;
            outgoing.send(report(attempt, RunPhase::Started, seq)).await?;
            seq += 1;
            outgoing.send(report(attempt, RunPhase::Finished, seq)).await?;
        }
    }
    heartbeat.abort();
    Ok(())
}
