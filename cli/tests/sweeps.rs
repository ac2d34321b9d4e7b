//! Sweeps end to end through the real `drover` binary: grid, random and early stopping on
//! projects whose metric curves follow from their parameters, a scheduler killed in the
//! middle of a grid, the failure budget, and a sweep through Docker containers.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{SchedulerProcess, WorkerProcess, docker_ready, drover, fails, ok, project, run};

/// Prints `loss = q + 1/step` for steps 1..=STEPS, one every `pause` seconds: lower q is
/// better at every step, so which runs early stopping should stop is known in advance.
const CURVE_PROJECT: &str = r#"
name: curves
entry_points:
  main:
    parameters:
      q: {type: float, default: 1}
      steps: {type: int, default: 10}
      pause: {type: float, default: 0.15}
      fail: {type: int, default: 0}
    command: "sh curve.sh {q} {steps} {pause} {fail}"
"#;

const CURVE_SCRIPT: &str = r#"q=$1; steps=$2; pause=$3; fail=$4
s=1
while [ "$s" -le "$steps" ]; do
  echo "::metric loss=$(awk -v q="$q" -v s="$s" 'BEGIN { print q + 1 / s }') step=$s"
  sleep "$pause"
  s=$((s + 1))
done
exit "$fail"
"#;

fn curve_project(dir: &Path) -> std::path::PathBuf {
    project(&dir.join("curves"), CURVE_PROJECT, &[("curve.sh", CURVE_SCRIPT)])
}

/// `drover sweeps describe` as JSON.
fn sweep_json(home: &Path, scheduler: Option<&str>, id: &str) -> serde_json::Value {
    let mut command = drover(home);
    if let Some(address) = scheduler {
        command.args(["--scheduler", address]);
    }
    let outcome = run(command.args(["sweeps", "describe", id, "-o", "json"]));
    assert!(outcome.success, "describe failed: {}", outcome.stderr);
    serde_json::from_str(&outcome.stdout).unwrap()
}

/// The sweep ID from `drover sweep`'s first line on stderr.
fn sweep_id_from(stderr: &str) -> String {
    let start = stderr.find("Sweep (ID='").expect("a sweep ID in the output") + "Sweep (ID='".len();
    stderr[start..start + 32].to_string()
}

/// The sweep's child runs, as `runs list` finds them by their sweep tag.
fn children(home: &Path, scheduler: Option<&str>, id: &str) -> Vec<serde_json::Value> {
    let mut command = drover(home);
    if let Some(address) = scheduler {
        command.args(["--scheduler", address]);
    }
    let filter = format!("tags.`drover.sweep_id` = '{id}'");
    let outcome = run(command.args(["runs", "list", "--filter", &filter, "-o", "json"]));
    assert!(outcome.success, "runs list failed: {}", outcome.stderr);
    serde_json::from_str::<Vec<serde_json::Value>>(&outcome.stdout).unwrap()
}

fn param(run: &serde_json::Value, key: &str) -> String {
    run["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == key)
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("run has no param {key}: {run}"))
        .to_string()
}

fn tag(run: &serde_json::Value, key: &str) -> Option<String> {
    support::tag(run, key)
}

fn wait_for_sweep(
    home: &Path,
    scheduler: Option<&str>,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let sweep = sweep_json(home, scheduler, id);
        if sweep["status"] != "RUNNING" && sweep["counts"]["active"] == 0 {
            return sweep;
        }
        assert!(Instant::now() < deadline, "sweep {id} did not end: {sweep}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_grid_visits_every_combination_once_across_a_scheduler_restart() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let data = dir.path().join("scheduler");
    let project = curve_project(dir.path());
    let mut scheduler = SchedulerProcess::spawn(&data);
    let address = scheduler.address.clone();
    let _worker = WorkerProcess::spawn(&address, &dir.path().join("work"), "grid-worker", 3);

    let outcome = run(drover(&home).args(["--scheduler", &address, "sweep"]).arg(&project).args([
        "-P",
        "q=1,2,3",
        "-P",
        "steps=int(1,4)",
        "-P",
        "pause=0.2",
        "--method",
        "grid",
        "--parallel",
        "3",
        "--metric",
        "loss",
        "--detach",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let id = outcome.stdout.trim().to_string();
    assert_eq!(id.len(), 32, "{}", outcome.stdout);

    // Kill the scheduler once a few trials exist, then bring it back on the same address.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sweep = sweep_json(&home, Some(&address), &id);
        if sweep["counts"]["created"].as_u64().unwrap() >= 4 {
            assert_eq!(sweep["status"], "RUNNING", "killed mid-sweep: {sweep}");
            assert!(sweep["counts"]["created"].as_u64().unwrap() < 12, "{sweep}");
            break;
        }
        assert!(Instant::now() < deadline, "the sweep did not start: {sweep}");
        std::thread::sleep(Duration::from_millis(50));
    }
    scheduler.signal(libc::SIGKILL);
    scheduler.wait();
    drop(scheduler);
    let port = address.rsplit(':').next().unwrap();
    let _scheduler = SchedulerProcess::spawn_at(&data, &format!("127.0.0.1:{port}"), &[]);

    let sweep = wait_for_sweep(&home, Some(&address), &id, Duration::from_secs(90));
    assert_eq!(sweep["status"], "FINISHED", "{sweep}");
    assert_eq!(sweep["counts"]["created"], 12, "{sweep}");
    assert_eq!(sweep["counts"]["finished"], 12, "{sweep}");
    let runs = children(&home, Some(&address), &id);
    assert_eq!(runs.len(), 12, "exactly one run per combination");
    let combinations: BTreeSet<(String, String)> =
        runs.iter().map(|run| (param(run, "q"), param(run, "steps"))).collect();
    let expected: BTreeSet<(String, String)> = ["1", "2", "3"]
        .iter()
        .flat_map(|q| (1..=4).map(move |steps| (q.to_string(), steps.to_string())))
        .collect();
    assert_eq!(combinations, expected);
    for run in &runs {
        assert_eq!(run["info"]["status"], "FINISHED");
        assert_eq!(tag(run, "mlflow.parentRunId").as_deref(), Some(id.as_str()));
    }
    // The best run is the lowest q with the most steps: loss 1 + 1/4.
    let best = &sweep["best"];
    assert_eq!(best["params"]["q"], "1");
    assert_eq!(best["params"]["steps"], "4");
    assert_eq!(best["value"], 1.25);
    assert_eq!(sweep["leaderboard"].as_array().unwrap().len(), 10);
}

#[test]
fn random_search_never_exceeds_max_runs_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    let sweep = |seed: &str| {
        let outcome = run(drover(&home).arg("sweep").arg(&project).args([
            "-P",
            "q=uniform(0,10)",
            "-P",
            "steps=int(1,3)",
            "-P",
            "pause=0",
            "--max-runs",
            "7",
            "--parallel",
            "4",
            "--metric",
            "loss",
            "--seed",
            seed,
        ]));
        assert!(outcome.success, "{}", outcome.stderr);
        assert!(outcome.stderr.contains("finished: 7 runs (7 finished"), "{}", outcome.stderr);
        assert!(outcome.stdout.starts_with("best run "), "{}", outcome.stdout);
        sweep_id_from(&outcome.stderr)
    };
    let first = sweep("11");
    let again = sweep("11");
    let other = sweep("12");
    let points = |id: &str| -> BTreeSet<(String, String)> {
        let runs = children(&home, None, id);
        assert_eq!(runs.len(), 7, "max-runs is a hard limit");
        runs.iter()
            .map(|run| {
                let steps: i64 = param(run, "steps").parse().expect("an int parameter gets ints");
                assert!((1..=3).contains(&steps));
                (param(run, "q"), param(run, "steps"))
            })
            .collect()
    };
    assert_eq!(points(&first), points(&again), "the same seed draws the same trials");
    assert_ne!(points(&first), points(&other));
    let listed = ok(&home, &["sweeps", "list"]);
    assert_eq!(listed.lines().count(), 4, "{listed}");
}

#[test]
fn the_failure_budget_ends_a_sweep_and_cancels_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    let outcome = run(drover(&home).arg("sweep").arg(&project).args([
        "-P",
        "q=uniform(0,1)",
        "-P",
        "fail=1",
        "-P",
        "steps=1",
        "-P",
        "pause=0",
        "--max-runs",
        "50",
        "--parallel",
        "2",
        "--max-failures",
        "2",
    ]));
    assert!(!outcome.success, "a sweep over its failure budget fails");
    let id = sweep_id_from(&outcome.stderr);
    let sweep = sweep_json(&home, None, &id);
    assert_eq!(sweep["status"], "FAILED", "{sweep}");
    assert!(
        sweep["reason"].as_str().unwrap().contains("more than the 2 --max-failures allows"),
        "{sweep}"
    );
    let created = sweep["counts"]["created"].as_u64().unwrap();
    assert!((3..=4).contains(&created), "it stops creating runs at once: {sweep}");
    assert_eq!(sweep["counts"]["active"], 0);
    let parent = support::describe(&home, None, &id);
    assert_eq!(parent["info"]["status"], "FAILED");
}

#[test]
fn median_stopping_kills_the_runs_below_the_median_and_spares_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    // One at a time, in grid order: q = 1, 2, 3 finish and set the median (2 + 1/s); q = 7
    // and 8 are worse at every step and are stopped; q = 1.5 is better and finishes.
    let outcome = run(drover(&home).arg("sweep").arg(&project).args([
        "-P",
        "q=1,2,3,7,8,1.5",
        "--method",
        "grid",
        "--metric",
        "loss",
        "--early-stop",
        "median",
        "--min-step",
        "2",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let id = sweep_id_from(&outcome.stderr);
    assert!(
        outcome.stderr.contains("(4 finished, 0 failed, 2 stopped early"),
        "{}",
        outcome.stderr
    );
    for run in children(&home, None, &id) {
        let q = param(&run, "q");
        let stopped = ["7", "8"].contains(&q.as_str());
        if stopped {
            assert_eq!(run["info"]["status"], "KILLED", "q={q}");
            assert_eq!(tag(&run, "drover.early_stopped").as_deref(), Some("true"));
            assert_eq!(tag(&run, "drover.early_stop.rule").as_deref(), Some("median"));
            assert!(tag(&run, "drover.early_stop.at").unwrap().starts_with("median at step"));
        } else {
            assert_eq!(run["info"]["status"], "FINISHED", "q={q}");
            assert_eq!(tag(&run, "drover.early_stopped"), None);
        }
    }
    let sweep = sweep_json(&home, None, &id);
    assert_eq!(sweep["best"]["params"]["q"], "1");
    let board: Vec<&str> = sweep["leaderboard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|trial| trial["params"]["q"].as_str().unwrap())
        .collect();
    assert_eq!(board, ["1", "1.5", "2", "3"], "stopped runs' partial values stay off the board");
    let described = ok(&home, &["sweeps", "describe", &id]);
    assert!(described.contains("2 stopped early"), "{described}");
}

#[test]
fn asha_stops_runs_at_the_rungs_where_they_fall_behind() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    // Rungs at steps 1, 2, 4, 8, keeping the top half. q = 1 is first at every rung; q = 5
    // and 6 are behind at step 1; q = 0.5 is ahead everywhere.
    let outcome = run(drover(&home).arg("sweep").arg(&project).args([
        "-P",
        "q=1,5,0.5,6",
        "--method",
        "grid",
        "--metric",
        "loss",
        "--goal",
        "min",
        "--early-stop",
        "asha",
        "--min-step",
        "1",
        "--eta",
        "2",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let id = sweep_id_from(&outcome.stderr);
    for run in children(&home, None, &id) {
        let q = param(&run, "q");
        if ["5", "6"].contains(&q.as_str()) {
            assert_eq!(run["info"]["status"], "KILLED", "q={q}");
            assert_eq!(tag(&run, "drover.early_stop.rule").as_deref(), Some("asha"));
            assert_eq!(tag(&run, "drover.early_stop.at").as_deref(), Some("asha rung 0 (step 1)"));
        } else {
            assert_eq!(run["info"]["status"], "FINISHED", "q={q}");
        }
    }
    let sweep = sweep_json(&home, None, &id);
    assert_eq!(sweep["counts"]["stopped"], 2);
    assert_eq!(sweep["best"]["params"]["q"], "0.5");
}

#[test]
fn bad_sweeps_are_refused_before_anything_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    let project = project.to_str().unwrap();
    let file = dir.path().join("sweep.yaml");
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["-P", "q=uniform(0,1)", "--method", "grid"],
            "",
            "grid search cannot enumerate uniform(0,1)",
        ),
        (
            vec!["-P", "q=uniform(2,1)", "--max-runs", "3"],
            "",
            "the minimum must be below the maximum",
        ),
        (
            vec!["-P", "lr=0.1,0.2", "--max-runs", "3"],
            "",
            "'lr' is not declared by entry point 'main'",
        ),
        (vec!["-P", "steps=1,two"], "", "'two' is not a valid int"),
        (
            vec!["-P", "q=uniform(0,1)", "--method", "tpe", "--max-runs", "3"],
            "",
            "needs the metric",
        ),
        (
            vec!["--config"],
            "method: grid\nparameters: {q: {values: [1, 2]}}\nschedule: nightly\n",
            "schedule",
        ),
        (
            vec!["--config"],
            "parameters: {q: {distribution: uniform, min: 1, max: 1}}\nrun_cap: 3\n",
            "minimum must be below the maximum",
        ),
    ];
    for (args, file_text, expected) in cases {
        let mut full = vec!["sweep", project];
        full.extend(&args);
        if !file_text.is_empty() {
            std::fs::write(&file, file_text).unwrap();
            full.push(file.to_str().unwrap());
        }
        let error = fails(&home, &full);
        assert!(error.contains(expected), "{args:?}: expected '{expected}' in: {error}");
    }
    // A refused sweep leaves nothing behind: no sweep, no runs.
    assert_eq!(ok(&home, &["sweeps", "list", "-o", "json"]).trim(), "[]");
    assert_eq!(ok(&home, &["runs", "list", "-o", "json"]).trim(), "[]");
}

#[test]
fn a_sweep_runs_its_children_in_docker_containers() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = project(
        &dir.path().join("docker-sweep"),
        r#"
name: docker-sweep
docker_env:
  image: drover/python:3
entry_points:
  main:
    parameters:
      x: {type: float, default: 0.5}
      depth: {type: int, default: 1}
    command: "python train.py --x {x} --depth {depth}"
"#,
        &[(
            "train.py",
            "import argparse, os\np = argparse.ArgumentParser()\np.add_argument('--x', type=float)\np.add_argument('--depth', type=int)\na = p.parse_args()\nassert os.path.exists('/.dockerenv'), 'not in a container'\nfor step in range(1, 4):\n    print(f'::metric loss={(a.x - 0.25) ** 2 + a.depth / step} step={step}', flush=True)\n",
        )],
    );
    let outcome = run(drover(&home).arg("sweep").arg(&project).args([
        "-P",
        "x=uniform(0,1)",
        "-P",
        "depth=1,2",
        "--max-runs",
        "3",
        "--parallel",
        "3",
        "--metric",
        "loss",
        "--seed",
        "5",
    ]));
    assert!(outcome.success, "{}\n{}", outcome.stdout, outcome.stderr);
    let id = sweep_id_from(&outcome.stderr);
    let runs = children(&home, None, &id);
    assert_eq!(runs.len(), 3);
    for run in &runs {
        assert_eq!(run["info"]["status"], "FINISHED");
        assert_eq!(tag(run, "drover.docker.image").as_deref(), Some("drover/python:3"));
        let loss = run["data"]["latest_metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == "loss")
            .expect("the loss metric landed")["value"]
            .as_f64()
            .unwrap();
        let x: f64 = param(run, "x").parse().unwrap();
        let depth: f64 = param(run, "depth").parse().unwrap();
        assert!((loss - ((x - 0.25f64).powi(2) + depth / 3.0)).abs() < 1e-9);
    }
}

#[test]
fn cancelling_a_sweep_cancels_its_queued_and_running_children() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    let scheduler = SchedulerProcess::spawn(&dir.path().join("scheduler"));
    let address = scheduler.address.clone();
    // One slot for two parallel children: one runs, one waits in the queue.
    let _worker = WorkerProcess::spawn(&address, &dir.path().join("work"), "cancel-worker", 1);
    let outcome = run(drover(&home).args(["--scheduler", &address, "sweep"]).arg(&project).args([
        "-P",
        "q=uniform(0,1)",
        "-P",
        "pause=5",
        "--max-runs",
        "10",
        "--parallel",
        "2",
        "--detach",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let id = outcome.stdout.trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while children(&home, Some(&address), &id)
        .iter()
        .filter(|run| run["info"]["status"] == "RUNNING")
        .count()
        < 1
    {
        assert!(Instant::now() < deadline, "no child started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cancelled = run(drover(&home).args(["--scheduler", &address, "sweeps", "cancel", &id]));
    assert!(cancelled.success, "{}", cancelled.stderr);
    assert!(cancelled.stdout.contains(&format!("Cancelled sweep {id}")), "{}", cancelled.stdout);
    let sweep = wait_for_sweep(&home, Some(&address), &id, Duration::from_secs(30));
    assert_eq!(sweep["status"], "KILLED", "{sweep}");
    assert_eq!(sweep["reason"], "cancelled");
    assert_eq!(sweep["counts"]["created"], 2, "nothing is created after the cancel: {sweep}");
    for run in children(&home, Some(&address), &id) {
        assert_eq!(run["info"]["status"], "KILLED", "{run}");
    }
    // Cancelling again says the sweep has ended, and changes nothing.
    let again = run(drover(&home).args(["--scheduler", &address, "sweeps", "cancel", &id]));
    assert!(!again.success);
    assert!(again.stderr.contains("has already ended (KILLED)"), "{}", again.stderr);
    let unknown = run(drover(&home).args([
        "--scheduler",
        &address,
        "sweeps",
        "describe",
        "0123456789abcdef0123456789abcdef",
    ]));
    assert!(unknown.stderr.contains("no sweep with ID"), "{}", unknown.stderr);
}

#[test]
fn ctrl_c_while_following_cancels_the_sweep() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    let mut child = drover(&home)
        .arg("sweep")
        .arg(&project)
        .args(["-P", "q=uniform(0,1)", "-P", "pause=5", "--max-runs", "5", "--parallel", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "drover sweep ended early: {seen}");
        seen.push_str(&line);
        if line.contains("2 running)") {
            break;
        }
    }
    support::send_signal(&child, libc::SIGINT);
    stderr.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{seen}");
    assert!(seen.contains("cancelling sweep"), "{seen}");
    assert!(seen.contains("was cancelled: 2 runs"), "{seen}");
    let id = sweep_id_from(&seen);
    let sweep = sweep_json(&home, None, &id);
    assert_eq!(sweep["status"], "KILLED");
    assert_eq!(sweep["counts"]["killed"], 2, "{sweep}");
    assert_eq!(support::describe(&home, None, &id)["info"]["status"], "KILLED");
}

#[test]
fn tpe_turns_to_the_better_region_once_it_has_results() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    // loss = q + 1/3: the lower q, the better.
    let outcome = run(drover(&home).arg("sweep").arg(&project).args([
        "-P",
        "q=uniform(0,100)",
        "-P",
        "steps=3",
        "-P",
        "pause=0",
        "--method",
        "bayes",
        "--metric",
        "loss",
        "--max-runs",
        "16",
        "--parallel",
        "2",
        "--seed",
        "4",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let id = sweep_id_from(&outcome.stderr);
    let mut trials: Vec<(u64, f64)> = children(&home, None, &id)
        .iter()
        .map(|run| {
            let index: u64 = tag(run, "drover.sweep.trial").unwrap().parse().unwrap();
            (index, param(run, "q").parse().unwrap())
        })
        .collect();
    trials.sort_by_key(|(index, _)| *index);
    assert_eq!(trials.len(), 16);
    let mean =
        |values: &[(u64, f64)]| values.iter().map(|(_, q)| q).sum::<f64>() / values.len() as f64;
    let (random, modelled) = trials.split_at(10);
    assert!(
        mean(modelled) < mean(random) / 2.0,
        "TPE's trials should aim low: random {random:?}, TPE {modelled:?}"
    );
}

#[test]
fn swept_path_values_are_checked_here_and_resolve_inside_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = project(
        &dir.path().join("paths"),
        r#"
entry_points:
  main:
    parameters:
      data: path
    command: "echo ::metric size=$(wc -c < {data})"
"#,
        &[("a.csv", "1,2\n"), ("b.csv", "1,2,3,4\n")],
    );
    // Given relative to where the command runs (the project's parent), as `drover run` takes them.
    let outcome = run(drover(&home).arg("sweep").arg(&project).args([
        "-P",
        "data=paths/a.csv,paths/b.csv",
        "--method",
        "grid",
        "--metric",
        "size",
        "--goal",
        "max",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let id = sweep_id_from(&outcome.stderr);
    let mut data: Vec<String> =
        children(&home, None, &id).iter().map(|run| param(run, "data")).collect();
    data.sort();
    assert_eq!(data, ["a.csv", "b.csv"], "values are made relative to the project");
    assert_eq!(sweep_json(&home, None, &id)["best"]["value"], 8.0);

    let error = fails(
        &home,
        &[
            "sweep",
            project.to_str().unwrap(),
            "-P",
            "data=paths/a.csv,paths/missing.csv",
            "--method",
            "grid",
        ],
    );
    assert!(error.contains("missing.csv"), "{error}");
}

/// `drover sweeps rerun SWEEP --best` queues the best trial again: its parameters, its
/// snapshot, tagged as a rerun of that trial's run, with the same final metric.
#[test]
fn the_best_trial_of_a_sweep_is_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = curve_project(dir.path());
    let outcome = run(drover(&home).arg("sweep").arg(&project).args([
        "-P", "q=3,1,2", "-P", "steps=2", "-P", "pause=0", "--method", "grid", "--metric", "loss",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let sweep = sweep_id_from(&outcome.stderr);
    let described = sweep_json(&home, None, &sweep);
    let best = described["best"]["run_id"].as_str().unwrap().to_string();

    let outcome = run(drover(&home).args(["sweeps", "rerun", &sweep, "--best"]));
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stderr.contains(&format!("run {best}")), "{}", outcome.stderr);
    let rerun = support::run_id_from(&outcome.stderr);
    let again = support::describe(&home, None, &rerun);
    assert_eq!(support::tag(&again, "drover.rerun_of").as_deref(), Some(best.as_str()));
    assert_eq!(param(&again, "q"), "1");
    assert_eq!(again["data"]["latest_metrics"][0]["value"].as_f64(), Some(1.5));
    let outcome = run(drover(&home).args(["sweeps", "rerun", &sweep]));
    assert!(!outcome.success && outcome.stderr.contains("--best"), "{}", outcome.stderr);
}
