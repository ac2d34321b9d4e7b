//! Sweep figures:
//! 1. scheduler overhead: a 10,000-trial random sweep of a no-op local-process project on one
//!    worker — trials completed per second, and the scheduler's CPU per trial;
//! 2. TPE suggestion latency with 1,000 and 10,000 finished trials in the history — ms per
//!    suggestion (the peer, Optuna's TPE sampler, is measured by `optuna_tpe.py`).

use std::time::{Duration, Instant};

use drover_bench::{LocalCluster, print_table, quantile};
use drover_project::sweep::{Domain, Method, Objective, SweepParameter, SweepSpec};
use drover_proto::Client;
use drover_proto::domain::DEFAULT_EXPERIMENT_ID;
use drover_proto::execution::SubmitRun;
use drover_proto::sweep::CreateSweep;
use drover_scheduler::sweep::space::{Observation, Rng, Space};

const OVERHEAD_TRIALS: u32 = 10_000;
const OVERHEAD_PARALLEL: u32 = 16;
const SUGGESTIONS: usize = 50;

fn parameters() -> Vec<SweepParameter> {
    vec![
        SweepParameter {
            name: "lr".into(),
            domain: Domain::LogUniform { low: 1e-5, high: 1e-1 },
            integer: false,
        },
        SweepParameter {
            name: "dropout".into(),
            domain: Domain::Uniform { low: 0.0, high: 0.5 },
            integer: false,
        },
        SweepParameter {
            name: "layers".into(),
            domain: Domain::Int { low: 1, high: 8 },
            integer: true,
        },
        SweepParameter {
            name: "optimizer".into(),
            domain: Domain::Values(vec!["sgd".into(), "adam".into(), "rmsprop".into()]),
            integer: false,
        },
    ]
}

/// ms per TPE suggestion with `finished` random trials (and their synthetic losses) known.
fn tpe_latency(finished: usize) -> Vec<f64> {
    let space = Space::new(&parameters());
    let points: Vec<Vec<(String, String)>> =
        (0..finished as u64).map(|trial| space.random_point(1, trial)).collect();
    let mut rng = Rng::new(2, 0);
    let history: Vec<Observation> = points
        .iter()
        .map(|params| {
            let lr: f64 = params[0].1.parse().unwrap_or(0.0);
            Observation { params, loss: (lr.log10() + 3.0).powi(2) + rng.unit() }
        })
        .collect();
    (0..SUGGESTIONS)
        .map(|index| {
            let started = Instant::now();
            let point = space.tpe_point(7, (finished + index) as u64, &history);
            std::hint::black_box(point);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

async fn overhead(cluster: &LocalCluster) -> anyhow::Result<(f64, f64)> {
    let client = Client::connect(&cluster.address).await?;
    let run_spec = cluster
        .local_project(
            &client,
            "noop",
            "entry_points:\n  main:\n    parameters: {x: float}\n    command: 'true'\n",
        )
        .await?;
    let spec = SweepSpec {
        method: Method::Random,
        parameters: vec![SweepParameter {
            name: "x".into(),
            domain: Domain::Uniform { low: 0.0, high: 1.0 },
            integer: false,
        }],
        objective: Some(Objective {
            metric: "loss".into(),
            goal: drover_proto::sweep::Goal::Minimize,
        }),
        max_runs: OVERHEAD_TRIALS,
        parallel: OVERHEAD_PARALLEL,
        max_failures: None,
        early_stop: None,
        seed: 1,
    };
    let run = SubmitRun {
        experiment_id: DEFAULT_EXPERIMENT_ID,
        run_name: None,
        user_id: "bench".into(),
        tags: Vec::new(),
        spec: run_spec,
    };
    let cpu_before = cluster.scheduler_cpu()?;
    let started = Instant::now();
    let sweep =
        client.create_sweep(CreateSweep { spec, run, name: Some("overhead".into()) }).await?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sweep = client.get_sweep(sweep.id).await?;
        eprintln!(
            "  {} of {OVERHEAD_TRIALS} trials created, {} active",
            sweep.counts.created, sweep.counts.active
        );
        if sweep.status.is_terminal() && sweep.counts.active == 0 {
            anyhow::ensure!(
                sweep.counts.finished == OVERHEAD_TRIALS,
                "the sweep ended with {} of {OVERHEAD_TRIALS} trials finished: {}",
                sweep.counts.finished,
                sweep.reason
            );
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cluster.scheduler_cpu()? - cpu_before).as_secs_f64();
    Ok((f64::from(OVERHEAD_TRIALS) / elapsed, cpu * 1000.0 / f64::from(OVERHEAD_TRIALS)))
}

/// Optuna's figures, when `OPTUNA_PYTHON` names an interpreter with Optuna installed:
/// (version, ms at 1,000 trials, ms at 10,000).
fn optuna() -> anyhow::Result<Option<(String, f64, f64)>> {
    let Some(python) = std::env::var_os("OPTUNA_PYTHON") else { return Ok(None) };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("optuna_tpe.py");
    let output = std::process::Command::new(python).arg(script).output()?;
    anyhow::ensure!(
        output.status.success(),
        "optuna_tpe.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let figures: serde_json::Value = serde_json::from_str(last)?;
    let number = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
    Ok(Some((
        figures["optuna"].as_str().unwrap_or("?").to_string(),
        number("tpe_1k_ms"),
        number("tpe_10k_ms"),
    )))
}

fn main() -> anyhow::Result<()> {
    let peer = optuna()?;
    let tpe_1k = tpe_latency(1_000);
    let tpe_10k = tpe_latency(10_000);
    eprintln!(
        "TPE suggestion: {:.2} ms at 1,000 trials, {:.2} ms at 10,000",
        quantile(&tpe_1k, 0.5),
        quantile(&tpe_10k, 0.5)
    );
    let cluster = LocalCluster::start(OVERHEAD_PARALLEL)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (trials_per_second, cpu_per_trial) = runtime.block_on(overhead(&cluster))?;

    let optuna_header = match &peer {
        Some((version, ..)) => format!("Optuna {version} TPESampler"),
        None => "Optuna (OPTUNA_PYTHON unset)".to_string(),
    };
    let optuna_cell = |figure: fn(&(String, f64, f64)) -> f64| match &peer {
        Some(figures) => format!("{:.2} ms", figure(figures)),
        None => "-".to_string(),
    };
    println!("\nSweeps (this machine)\n");
    print_table(
        &["measure", "drover", optuna_header.as_str(), "goal"],
        &[
            vec![
                format!(
                    "random sweep, {OVERHEAD_TRIALS} no-op local trials, {OVERHEAD_PARALLEL} at a time"
                ),
                format!("{trials_per_second:.0} trials/s"),
                "-".to_string(),
                "-".to_string(),
            ],
            vec![
                "  scheduler CPU per trial".to_string(),
                format!("{cpu_per_trial:.2} ms"),
                "-".to_string(),
                "-".to_string(),
            ],
            vec![
                "TPE suggestion, 1,000 finished trials, 4 parameters (median)".to_string(),
                format!("{:.2} ms", quantile(&tpe_1k, 0.5)),
                optuna_cell(|figures| figures.1),
                "-".to_string(),
            ],
            vec![
                "TPE suggestion, 10,000 finished trials, 4 parameters (median)".to_string(),
                format!("{:.2} ms", quantile(&tpe_10k, 0.5)),
                optuna_cell(|figures| figures.2),
                "< 5 ms".to_string(),
            ],
        ],
    );
    Ok(())
}
