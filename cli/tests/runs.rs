//! Running projects end to end through the real `drover` binary: the embedded default, a
//! scheduler and workers as separate processes, local processes and real Docker containers.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{
    SchedulerProcess, WorkerProcess, containers_with_label, describe, docker_ready, drover, fails,
    ok, project, run, run_id_from, send_signal, tag, wait_for_status,
};

const EXIT_PROJECT: &str = r#"
name: exits
entry_points:
  main:
    parameters:
      code: {type: int, default: 0}
    command: "echo exiting with {code}; exit {code}"
"#;

#[test]
fn local_runs_succeed_and_fail_with_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = project(&dir.path().join("exits"), EXIT_PROJECT, &[]);

    let outcome = run(drover(&home).arg("run").arg(&project));
    assert!(outcome.success, "{}", outcome.stderr);
    assert_eq!(outcome.stdout, "exiting with 0\n");
    let run_id = run_id_from(&outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!("=== Run (ID='{run_id}') succeeded ===")),
        "{}",
        outcome.stderr
    );
    let described = describe(&home, None, &run_id);
    assert_eq!(described["info"]["status"], "FINISHED");
    assert_eq!(tag(&described, "drover.exit_code").as_deref(), Some("0"));
    assert_eq!(tag(&described, "drover.command").as_deref(), Some("echo exiting with 0; exit 0"));
    assert_eq!(tag(&described, "mlflow.source.type").as_deref(), Some("PROJECT"));
    assert_eq!(tag(&described, "mlflow.project.entryPoint").as_deref(), Some("main"));
    assert_eq!(tag(&described, "mlflow.project.env").as_deref(), Some("local"));
    assert!(tag(&described, "drover.snapshot.digest").unwrap().starts_with("sha256:"));
    assert_eq!(described["data"]["params"][0]["value"], "0");

    let outcome = run(drover(&home).arg("run").arg(&project).args([
        "-P",
        "code=3",
        "--run-name",
        "bad-exit",
    ]));
    assert!(!outcome.success);
    let run_id = run_id_from(&outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!("=== Run (ID='{run_id}') failed ===")),
        "{}",
        outcome.stderr
    );
    let described = describe(&home, None, &run_id);
    assert_eq!(described["info"]["status"], "FAILED");
    assert_eq!(described["info"]["run_name"], "bad-exit");
    assert_eq!(tag(&described, "drover.exit_code").as_deref(), Some("3"));

    // The stored log replays the run's output and drover's own lines.
    let logs = run(drover(&home).args(["runs", "logs", &run_id]));
    assert_eq!(logs.stdout, "exiting with 3\n");
    assert!(logs.stderr.contains("run ended FAILED"), "{}", logs.stderr);
}

#[test]
fn parameters_arrive_literally_and_extras_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = project(
        &dir.path().join("echo"),
        r#"
entry_points:
  main:
    parameters:
      value: string
      count: {type: int, default: 1}
    command: "python3 show.py {value} {count}"
"#,
        &[("show.py", "import json, sys\nprint(json.dumps(sys.argv[1:]))\n")],
    );
    let hostile = [
        "; touch pwned-semicolon",
        "$(touch pwned-subshell)",
        "`touch pwned-backtick`",
        "it's \"quoted\"",
        "  spaced  out  ",
        "a\nnewline",
    ];
    for value in hostile {
        let outcome = run(drover(&home)
            .arg("run")
            .arg(&project)
            .arg("-P")
            .arg(format!("value={value}"))
            .arg("-P")
            .arg(format!("extra={value}")));
        assert!(outcome.success, "{value:?}: {}", outcome.stderr);
        let argv: Vec<String> = serde_json::from_str(outcome.stdout.trim()).unwrap();
        assert_eq!(
            argv,
            vec![value.to_string(), "1".to_string(), "--extra".to_string(), value.to_string()]
        );
    }
    let leftovers: Vec<_> =
        walk(dir.path()).into_iter().filter(|path| path.contains("pwned")).collect();
    assert!(leftovers.is_empty(), "a parameter was executed: {leftovers:?}");

    // Files that are not declared entry points run with their interpreter.
    let outcome =
        run(drover(&home).arg("run").arg(&project).args(["-e", "show.py", "-P", "k=v w"]));
    assert!(outcome.success, "{}", outcome.stderr);
    assert_eq!(outcome.stdout.trim(), r#"["--k", "v w"]"#);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        found.push(path.display().to_string());
        if path.is_dir() && !path.is_symlink() {
            found.extend(walk(&path));
        }
    }
    found
}

#[test]
fn bad_submissions_are_refused_before_anything_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let typed = project(
        &dir.path().join("typed"),
        r#"
entry_points:
  main:
    parameters:
      alpha: float
      epochs: int
      data: path
    command: "echo {alpha} {epochs} {data}"
  other:
    command: "true"
"#,
        &[("data.csv", "1")],
    );
    let broken = project(&dir.path().join("broken"), "entry_points: [oops\n", &[]);
    let two_envs =
        project(&dir.path().join("two"), "docker_env: {image: a}\nconda_env: c.yaml\n", &[]);
    let no_image = project(&dir.path().join("noimage"), "docker_env: {volumes: []}\n", &[]);
    let typed = typed.to_str().unwrap();
    let base = ["run", typed, "-P", "data=typed/data.csv"];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter().map(|s| s.to_string()).chain(extra.iter().map(|s| s.to_string())).collect()
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            with(&["-P", "alpha=abc", "-P", "epochs=1"]),
            "parameter 'alpha' expects a float, got 'abc'".into(),
        ),
        (
            with(&["-P", "alpha=1", "-P", "epochs=1.5"]),
            "parameter 'epochs' expects an int, got '1.5'".into(),
        ),
        (with(&[]), "missing values for parameters: alpha, epochs".into()),
        (
            with(&["-P", "alpha=1", "-P", "alpha=2"]),
            "parameter 'alpha' is given more than once".into(),
        ),
        (with(&["-P", "alpha"]), "malformed parameter 'alpha': expected key=value".into()),
        (
            with(&["-P", "alpha=1", "-P", "epochs=1", "-e", "train"]),
            "entry point 'train' not found (known entry points: main, other)".into(),
        ),
        (
            with(&[
                "-P",
                "alpha=1",
                "-P",
                "epochs=1",
                "--env-manager",
                "docker",
                "-A",
                "privileged",
            ]),
            "docker argument 'privileged' is not supported".into(),
        ),
        (
            with(&["-P", "alpha=1", "-P", "epochs=1", "-A", "shm-size=1g"]),
            "apply to Docker runs".into(),
        ),
        (
            vec![
                "run".into(),
                typed.into(),
                "-P".into(),
                "alpha=1".into(),
                "-P".into(),
                "epochs=1".into(),
                "-P".into(),
                "data=nope.csv".into(),
            ],
            "parameter 'data' names 'nope.csv', which does not exist".into(),
        ),
        (
            vec!["run".into(), broken.display().to_string()],
            format!("{}/MLproject: not valid YAML", broken.display()),
        ),
        (vec!["run".into(), two_envs.display().to_string()], "at most one environment".into()),
        (
            vec!["run".into(), no_image.display().to_string()],
            "docker_env: `image` is required".into(),
        ),
        (
            vec!["run".into(), dir.path().join("missing").display().to_string()],
            "does not exist".into(),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outcome = run(drover(&home).current_dir(dir.path()).args(&args));
        assert!(!outcome.success, "{args:?} should fail");
        assert!(
            outcome.stderr.contains(&expected),
            "{args:?}: expected {expected:?} in:\n{}",
            outcome.stderr
        );
        assert!(
            outcome.stderr.lines().count() == 1,
            "{args:?}: one line expected:\n{}",
            outcome.stderr
        );
    }
    if home.exists() {
        assert_eq!(ok(&home, &["runs", "list"]).lines().count(), 1, "nothing may be queued");
    }
}

#[test]
fn docker_runs_with_volumes_environment_and_options() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("input.txt"), "from the host volume").unwrap();
    let project = project(
        &dir.path().join("containerized"),
        &format!(
            r#"
name: containerized
docker_env:
  image: drover/busybox:1
  volumes: ["{}:/data"]
  environment: [["SET_HERE", "literal value"], "COPIED_VAR"]
entry_points:
  main:
    parameters:
      word: string
    command: "cat /data/input.txt; echo; echo word={{word}} set=$SET_HERE copied=$COPIED_VAR extra=$EXTRA run=$MLFLOW_RUN_ID uid=$(id -u); pwd; ls"
"#,
            data.display()
        ),
        &[("marker.txt", "in the snapshot")],
    );
    let outcome = run(drover(&home)
        .env("COPIED_VAR", "copied from submitter")
        .arg("run")
        .arg(&project)
        .args([
            "-P",
            "word=$(hostname)",
            "-A",
            "env=EXTRA=from -A",
            "-A",
            "user=1234",
            "--memory",
            "256m",
        ]));
    assert!(outcome.success, "{}\n{}", outcome.stdout, outcome.stderr);
    let run_id = run_id_from(&outcome.stderr);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines[0], "from the host volume");
    assert_eq!(
        lines[1],
        format!(
            "word=$(hostname) set=literal value copied=copied from submitter extra=from -A run={run_id} uid=1234"
        )
    );
    assert_eq!(lines[2], "/mlflow/projects/code");
    assert!(lines.contains(&"marker.txt"), "{}", outcome.stdout);

    let described = describe(&home, None, &run_id);
    assert_eq!(tag(&described, "drover.docker.image").as_deref(), Some("drover/busybox:1"));
    assert!(tag(&described, "drover.docker.image_id").unwrap().starts_with("sha256:"));
    assert_eq!(tag(&described, "mlflow.project.env").as_deref(), Some("docker"));
    assert!(
        containers_with_label(&format!("drover.run_id={run_id}")).is_empty(),
        "the container must be removed"
    );
}

#[test]
fn a_missing_image_fails_the_run_with_its_name() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = project(
        &dir.path().join("p"),
        "docker_env: {image: drover/not-built:7}\nentry_points: {main: {command: 'true'}}\n",
        &[],
    );
    let outcome = run(drover(&home).arg("run").arg(&project));
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("image 'drover/not-built:7' is not present on worker "),
        "{}",
        outcome.stderr
    );
    let described = describe(&home, None, &run_id_from(&outcome.stderr));
    assert_eq!(described["info"]["status"], "FAILED");
}

#[test]
fn the_docker_example_runs_and_the_quickstart_runs_locally() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let outcome = run(drover(&home).arg("run").arg(examples.join("quickstart")).args([
        "-P",
        "alpha=0.3",
        "--experiment-name",
        "quickstart",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stdout.contains("::metric rmse="), "{}", outcome.stdout);
    // The first chart anyone sees must look like training: a curve that moves down.
    let curve: Vec<f64> = outcome
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("::metric train_rmse="))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(curve.len() >= 5, "{}", outcome.stdout);
    assert!(curve.windows(2).all(|pair| pair[1] < pair[0]), "the curve should fall: {curve:?}");
    if !docker_ready() {
        return;
    }
    let outcome =
        run(drover(&home).arg("run").arg(examples.join("docker")).args(["-P", "epochs=3"]));
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stdout.contains("training in docker mode"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("epoch 3: loss"), "{}", outcome.stdout);
}

/// A scheduler and a worker as separate processes, with a short lease.
struct Cluster {
    dir: tempfile::TempDir,
    scheduler: SchedulerProcess,
    worker: Option<WorkerProcess>,
    worker_id: String,
}

static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let scheduler =
            SchedulerProcess::spawn_with(&dir.path().join("store"), &["--lease-timeout", "3s"]);
        // Worker ids name containers on the shared Docker engine: each cluster has its own.
        let worker_id = format!(
            "w1-{}",
            std::process::id() as u64 * 1000
                + u64::from(CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        );
        let worker =
            WorkerProcess::spawn(&scheduler.address, &dir.path().join("work"), &worker_id, 2);
        Cluster { dir, scheduler, worker: Some(worker), worker_id }
    }

    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("client-home")
    }

    fn drover(&self) -> std::process::Command {
        let mut command = drover(&self.home());
        command.args(["--scheduler", &self.scheduler.address]);
        command
    }

    fn submit(&self, project: &std::path::Path, extra: &[&str]) -> String {
        let outcome = run(self.drover().arg("run").arg(project).arg("--detach").args(extra));
        assert!(outcome.success, "{}", outcome.stderr);
        outcome.stdout.trim().to_string()
    }

    fn wait(&self, run_id: &str, status: &str) -> serde_json::Value {
        wait_for_status(
            &self.home(),
            Some(&self.scheduler.address),
            run_id,
            status,
            Duration::from_secs(30),
        )
    }
}

const SLEEP_PROJECT: &str = r#"
entry_points:
  main:
    parameters:
      seconds: {type: int, default: 300}
    command: "echo started; sleep {seconds}; echo done"
"#;

#[test]
fn cancel_stops_local_and_docker_runs() {
    let cluster = Cluster::start();
    let local = project(&cluster.dir.path().join("sleep"), SLEEP_PROJECT, &[]);
    let run_id = cluster.submit(&local, &[]);
    cluster.wait(&run_id, "RUNNING");
    let cancelled = run(cluster.drover().args(["runs", "cancel", &run_id]));
    assert!(cancelled.success, "{}", cancelled.stderr);
    let started = Instant::now();
    let described = cluster.wait(&run_id, "KILLED");
    assert!(started.elapsed() < Duration::from_secs(15), "cancel took {:?}", started.elapsed());
    assert!(tag(&described, "drover.failure_reason").unwrap().contains("cancelled"));

    // A queued run is cancelled before it starts; an ended one cannot be.
    let error = run(cluster.drover().args(["runs", "cancel", &run_id]));
    assert!(
        !error.success && error.stderr.contains("has already ended (KILLED)"),
        "{}",
        error.stderr
    );

    if !docker_ready() {
        return;
    }
    let containerized = project(
        &cluster.dir.path().join("sleep-docker"),
        &format!("docker_env: {{image: drover/busybox:1}}\n{SLEEP_PROJECT}"),
        &[],
    );
    let run_id = cluster.submit(&containerized, &[]);
    cluster.wait(&run_id, "RUNNING");
    assert_eq!(containers_with_label(&format!("drover.run_id={run_id}")).len(), 1);
    assert!(run(cluster.drover().args(["runs", "cancel", &run_id])).success);
    cluster.wait(&run_id, "KILLED");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !containers_with_label(&format!("drover.run_id={run_id}")).is_empty() {
        assert!(Instant::now() < deadline, "the cancelled run's container was not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_in_a_following_cli_cancels_the_run() {
    let cluster = Cluster::start();
    let sleeper = project(&cluster.dir.path().join("sleep"), SLEEP_PROJECT, &[]);
    let mut child = cluster
        .drover()
        .arg("run")
        .arg(&sleeper)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the run's first output line, then interrupt the CLI.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    send_signal(&child, libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cancelling run"), "{stderr}");
    let run_id = run_id_from(&stderr);
    assert!(stderr.contains(&format!("=== Run (ID='{run_id}') failed ===")), "{stderr}");
    cluster.wait(&run_id, "KILLED");
}

#[test]
fn logs_stream_while_the_run_is_going() {
    let cluster = Cluster::start();
    let slow = project(
        &cluster.dir.path().join("slow"),
        "entry_points: {main: {command: 'echo first; sleep 3; echo second'}}\n",
        &[],
    );
    let run_id = cluster.submit(&slow, &[]);
    let mut follower = cluster
        .drover()
        .args(["runs", "logs", "-f", &run_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(follower.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    // The run has not ended when its first line arrives.
    let status =
        describe(&cluster.home(), Some(&cluster.scheduler.address), &run_id)["info"]["status"]
            .clone();
    assert_eq!(status, "RUNNING");
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "second\n");
    assert!(follower.wait().unwrap().success());
}

#[test]
fn a_restarted_worker_reaps_its_containers_and_the_run_is_retried() {
    if !docker_ready() {
        return;
    }
    let mut cluster = Cluster::start();
    let containerized = project(
        &cluster.dir.path().join("retry"),
        "docker_env: {image: drover/busybox:1}\nentry_points: {main: {command: 'if [ \"$DROVER_ATTEMPT\" = 1 ]; then sleep 300; fi; echo attempt $DROVER_ATTEMPT'}}\n",
        &[],
    );
    let run_id = cluster.submit(&containerized, &["--max-retries", "1"]);
    cluster.wait(&run_id, "RUNNING");
    let label = format!("drover.run_id={run_id}");
    assert_eq!(containers_with_label(&label).len(), 1);

    // The worker dies hard; its container outlives it.
    let worker = cluster.worker.take().unwrap();
    worker.signal(libc::SIGKILL);
    drop(worker);
    assert_eq!(containers_with_label(&label).len(), 1, "the container should outlive its worker");

    // Restarted with the same id, the worker removes what it left behind, the scheduler learns
    // the attempt was lost and runs it again.
    cluster.worker = Some(WorkerProcess::spawn(
        &cluster.scheduler.address,
        &cluster.dir.path().join("work"),
        &cluster.worker_id,
        2,
    ));
    let described = cluster.wait(&run_id, "FINISHED");
    assert_eq!(tag(&described, "drover.attempt").as_deref(), Some("2"));
    assert!(containers_with_label(&label).is_empty());
    let logs = run(cluster.drover().args(["runs", "logs", &run_id]));
    assert!(logs.stdout.contains("attempt 2"), "{}", logs.stdout);
    assert!(
        logs.stderr.contains(&format!("worker {} restarted", cluster.worker_id)),
        "{}",
        logs.stderr
    );

    // Both attempts are on record: the lost one with why, then the one that finished.
    let attempts = &api(&cluster.scheduler.address, &format!("/api/drover/runs/{run_id}"))["execution"]
        ["attempts"];
    assert_eq!(attempts.as_array().map(Vec::len), Some(2), "{attempts}");
    assert_eq!(attempts[0]["worker"], cluster.worker_id.as_str());
    assert!(attempts[0]["started"].is_i64() && attempts[0]["ended"].is_i64(), "{attempts}");
    let lost = attempts[0]["outcome"].as_str().unwrap();
    assert!(lost.starts_with("lost: ") && lost.ends_with("; requeued"), "{lost}");
    assert_eq!(attempts[1]["outcome"], "FINISHED");
    assert_eq!(attempts[1]["exit_code"], 0);
    let losses = &api(&cluster.scheduler.address, "/api/drover/cluster")["recent_losses"];
    assert_eq!(losses[0]["run_id"], run_id.as_str(), "{losses}");
    assert_eq!(losses[0]["attempt"], 1);
    assert_eq!(losses[0]["requeued"], true);
}

/// A drover JSON endpoint's answer, which must be 200.
fn api(address: &str, path: &str) -> serde_json::Value {
    let address = address.trim_start_matches("http://");
    let (status, body) = drover_testkit::http::call(address, "GET", path, &[], "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_lost_worker_fails_its_runs_when_no_retry_remains() {
    let mut cluster = Cluster::start();
    let sleeper = project(&cluster.dir.path().join("sleep"), SLEEP_PROJECT, &[]);
    let run_id = cluster.submit(&sleeper, &[]);
    cluster.wait(&run_id, "RUNNING");
    let worker = cluster.worker.take().unwrap();
    worker.signal(libc::SIGKILL);
    drop(worker);
    let described = cluster.wait(&run_id, "FAILED");
    assert!(
        tag(&described, "drover.failure_reason")
            .unwrap()
            .contains("stopped responding (lease expired)"),
        "{described}"
    );
    let attempts = &api(&cluster.scheduler.address, &format!("/api/drover/runs/{run_id}"))["execution"]
        ["attempts"];
    let outcome = attempts[0]["outcome"].as_str().unwrap_or_default();
    assert!(outcome.starts_with("FAILED: worker "), "{attempts}");
    let losses = &api(&cluster.scheduler.address, "/api/drover/cluster")["recent_losses"];
    assert_eq!(losses[0]["run_id"], run_id.as_str(), "{losses}");
    assert_eq!(losses[0]["requeued"], false);
    let status = run(cluster.drover().arg("status"));
    assert!(status.stdout.contains("Attempts lost with their worker"), "{}", status.stdout);
    assert!(status.stdout.contains(&run_id), "{}", status.stdout);
}

#[test]
fn runs_survive_a_scheduler_killed_mid_run() {
    let cluster = Cluster::start();
    let counter = project(
        &cluster.dir.path().join("count"),
        "entry_points: {main: {command: 'for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done'}}\n",
        &[],
    );
    let run_id = cluster.submit(&counter, &[]);
    cluster.wait(&run_id, "RUNNING");
    let store = cluster.dir.path().join("store");
    let Cluster { dir, scheduler, worker, worker_id } = cluster;
    let address = scheduler.address.clone();
    let port = address.rsplit(':').next().unwrap().to_string();
    let mut scheduler = scheduler;
    scheduler.signal(libc::SIGKILL);
    scheduler.wait();
    drop(scheduler);
    // Same store, same address: the worker reconnects and resends what was not acknowledged.
    let scheduler = SchedulerProcess::spawn_at(
        &store,
        &format!("127.0.0.1:{port}"),
        &["--lease-timeout", "3s"],
    );
    let cluster = Cluster { dir, scheduler, worker, worker_id };
    cluster.wait(&run_id, "FINISHED");
    let logs = run(cluster.drover().args(["runs", "logs", &run_id]));
    let expected: String = (1..=6).map(|i| format!("line {i}\n")).collect();
    assert_eq!(logs.stdout, expected, "every line exactly once");
}

#[test]
fn status_shows_workers_and_the_queue() {
    let cluster = Cluster::start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = run(cluster.drover().arg("status"));
        assert!(status.success, "{}", status.stderr);
        if status.stdout.contains(&cluster.worker_id) {
            assert!(status.stdout.contains("connected"), "{}", status.stdout);
            assert!(status.stdout.contains("0/2"), "{}", status.stdout);
            break;
        }
        assert!(Instant::now() < deadline, "the worker never showed up:\n{}", status.stdout);
        std::thread::sleep(Duration::from_millis(100));
    }
    let error = fails(&cluster.home(), &["worker"]);
    assert!(error.contains("a worker needs a scheduler"), "{error}");
}

#[tokio::test]
async fn hostile_snapshots_fail_the_run_and_write_nothing_outside() {
    use drover_proto::Client;
    use drover_proto::domain::DEFAULT_EXPERIMENT_ID;
    use drover_proto::execution::{RunSpec, SubmitRun};
    use sha2::{Digest, Sha256};

    let cluster = Cluster::start();
    let client = Client::connect(&cluster.scheduler.address).await.unwrap();
    let cases: [(&str, tar::EntryType, &str, &str); 4] = [
        ("../escape", tar::EntryType::Regular, "", "contains a '..' component"),
        ("/tmp/drover-hostile-absolute", tar::EntryType::Regular, "", "is an absolute path"),
        ("link", tar::EntryType::Symlink, "/etc", "outside the snapshot"),
        ("device", tar::EntryType::Char, "", "device files are not accepted"),
    ];
    for (path, kind, link, reason) in cases {
        let mut archive = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(1);
        if !link.is_empty() {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        archive.append(&header, &b"x"[..]).unwrap();
        let bytes = archive.into_inner().unwrap();
        let digest: drover_project::snapshot::SnapshotDigest =
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes))).parse().unwrap();
        client
            .upload_snapshot(&digest, bytes.len() as u64, tokio_stream::iter(vec![bytes.clone()]))
            .await
            .unwrap();
        let spec = RunSpec::local("hostile", digest, bytes.len() as u64);
        let request = SubmitRun {
            experiment_id: DEFAULT_EXPERIMENT_ID,
            run_name: None,
            user_id: "attacker".into(),
            tags: Vec::new(),
            spec,
        };
        let run_id = client.submit_run(request).await.unwrap().info.run_id.to_string();
        let described = cluster.wait(&run_id, "FAILED");
        let failure = tag(&described, "drover.failure_reason").unwrap();
        assert!(
            failure.contains("snapshot was refused") && failure.contains(reason),
            "{path}: {failure}"
        );
    }
    assert!(!cluster.dir.path().join("work/runs/escape").exists());
    assert!(!cluster.dir.path().join("work/escape").exists());
    assert!(!std::path::Path::new("/tmp/drover-hostile-absolute").exists());

    // A snapshot whose bytes do not match its digest is refused at upload.
    let digest: drover_project::snapshot::SnapshotDigest =
        format!("sha256:{}", "0".repeat(64)).parse().unwrap();
    let error = client
        .upload_snapshot(&digest, 3, tokio_stream::iter(vec![b"abc".to_vec()]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("digest is sha256:"), "{error}");
}

#[tokio::test]
async fn metric_lines_land_in_the_run_while_it_goes() {
    use drover_proto::Client;
    use drover_proto::domain::{MetricHistoryQuery, RunId};

    let cluster = Cluster::start();
    let printer = project(
        &cluster.dir.path().join("metrics"),
        "entry_points: {main: {command: 'sh emit.sh'}}\n",
        &[(
            "emit.sh",
            "for i in 0 1 2 3 4; do echo \"::metric loss=0.$((9 - i)) acc=0.$i\"; done\n\
             echo '::metric loss=0.1 step=100'\n\
             echo '::metric loss=oops'\n\
             echo '::metric loss=0.05 step=101 junk'\n\
             echo '::param optimizer=adam'\n\
             echo '::tag phase=final'\n\
             sleep 1\n",
        )],
    );
    let run_id = cluster.submit(&printer, &[]);
    let described = cluster.wait(&run_id, "FINISHED");
    let latest: Vec<(String, f64, i64)> = described["data"]["latest_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["key"].as_str().unwrap().to_string(),
                m["value"].as_f64().unwrap(),
                m["step"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(latest.contains(&("loss".to_string(), 0.1, 100)), "{latest:?}");
    assert!(latest.contains(&("acc".to_string(), 0.4, 4)), "{latest:?}");
    assert_eq!(tag(&described, "phase").as_deref(), Some("final"));
    assert!(
        described["data"]["params"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "optimizer" && p["value"] == "adam")
    );

    let client = Client::connect(&cluster.scheduler.address).await.unwrap();
    let run_id: RunId = run_id.parse().unwrap();
    let history = client
        .metric_history(MetricHistoryQuery {
            run_id,
            key: "loss".into(),
            start_step: None,
            end_step: None,
            max_results: None,
            page_token: None,
            attempt: None,
        })
        .await
        .unwrap()
        .items;
    let points: Vec<(i64, f64)> = history.iter().map(|m| (m.step, m.value)).collect();
    assert_eq!(points, vec![(0, 0.9), (1, 0.8), (2, 0.7), (3, 0.6), (4, 0.5), (100, 0.1)]);

    // The lines stay in the log, and the malformed one is noted once.
    let logs = run(cluster.drover().args(["runs", "logs", &run_id.to_string()]));
    assert!(logs.stdout.contains("::metric loss=oops"), "{}", logs.stdout);
    assert_eq!(
        logs.stderr.matches("ignored a malformed metric line").count(),
        1,
        "{}",
        logs.stderr
    );
}

#[test]
fn a_containerized_script_logs_through_the_official_client_to_its_own_run_only() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = project(
        &dir.path().join("client-in-container"),
        "docker_env: {image: drover/python-mlflow:3}\nentry_points: {main: {command: 'python log.py'}}\n",
        &[(
            "log.py",
            r#"
import os
import mlflow
from mlflow.tracking import MlflowClient

mlflow.log_param("source", "container")
for step in range(3):
    mlflow.log_metric("acc", 0.5 + step * 0.1, step=step)
mlflow.set_tag("inside", "docker")
client = MlflowClient()
for name, attempt in [
    ("create_experiment", lambda: client.create_experiment("not-allowed")),
    ("other_run", lambda: client.get_run("0" * 32)),
    ("search_runs", lambda: client.search_runs(["0"])),
]:
    try:
        attempt()
        print(f"scope {name}: allowed")
    except Exception as error:
        print(f"scope {name}: refused ({getattr(error, 'error_code', type(error).__name__)})")
print("tracking host:", os.environ["MLFLOW_TRACKING_URI"].split("/run/")[0])
"#,
        )],
    );
    let outcome = run(drover(&home).arg("run").arg(&project));
    assert!(outcome.success, "{}\n{}", outcome.stdout, outcome.stderr);
    for name in ["create_experiment", "other_run", "search_runs"] {
        assert!(
            outcome.stdout.contains(&format!("scope {name}: refused (PERMISSION_DENIED)")),
            "{}",
            outcome.stdout
        );
    }
    assert!(
        outcome.stdout.contains("tracking host: http://host.docker.internal:"),
        "{}",
        outcome.stdout
    );
    let run_id = run_id_from(&outcome.stderr);
    let described = describe(&home, None, &run_id);
    let acc = described["data"]["latest_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "acc")
        .cloned()
        .unwrap();
    assert_eq!((acc["value"].as_f64().unwrap() * 10.0).round(), 7.0);
    assert_eq!(acc["step"], 2);
    assert_eq!(tag(&described, "inside").as_deref(), Some("docker"));
    assert!(described["data"]["params"].as_array().unwrap().iter().any(|p| p["key"] == "source"));
    assert_eq!(described["info"]["status"], "FINISHED");
}

/// A run whose worker dies mid-run and is retried keeps one history per attempt: its own
/// history is the last attempt's alone, and the lost attempt's points stay readable by number.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_run_keeps_one_metric_history_per_attempt() {
    use drover_proto::Client;
    use drover_proto::domain::{MetricHistoryQuery, RunId};

    let mut cluster = Cluster::start();
    // Attempt 1 counts up from 100 until it is killed; attempt 2 logs steps 0 to 3 and ends.
    let script = "if [ \"$DROVER_ATTEMPT\" = 1 ]; then\n  i=0\n  while true; do echo \"::metric loss=$((100 + i)) step=$i\"; i=$((i + 1)); sleep 0.2; done\nfi\nfor i in 0 1 2 3; do echo \"::metric loss=$i step=$i\"; done\n";
    let counter = project(
        &cluster.dir.path().join("attempts"),
        "entry_points: {main: {command: 'sh count.sh'}}\n",
        &[("count.sh", script)],
    );
    let run_id = cluster.submit(&counter, &["--max-retries", "1"]);
    let id: RunId = run_id.parse().unwrap();
    let client = Client::connect(&cluster.scheduler.address).await.unwrap();
    let history = async |attempt: Option<u32>| {
        let query = MetricHistoryQuery {
            run_id: id,
            key: "loss".into(),
            start_step: None,
            end_step: None,
            max_results: None,
            page_token: None,
            attempt,
        };
        client
            .metric_history(query)
            .await
            .map(|page| page.items.iter().map(|m| (m.step, m.value)).collect::<Vec<(i64, f64)>>())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while history(None).await.unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "attempt 1 logged too little");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The worker dies hard and comes back: the scheduler learns attempt 1 is lost.
    let worker = cluster.worker.take().unwrap();
    worker.signal(libc::SIGKILL);
    drop(worker);
    cluster.worker = Some(WorkerProcess::spawn(
        &cluster.scheduler.address,
        &cluster.dir.path().join("work"),
        &cluster.worker_id,
        2,
    ));
    let described = cluster.wait(&run_id, "FINISHED");
    assert_eq!(tag(&described, "drover.attempt").as_deref(), Some("2"));

    let current = history(None).await.unwrap();
    assert_eq!(current, vec![(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)], "the run's own history");
    assert_eq!(history(Some(2)).await.unwrap(), current);
    let first = history(Some(1)).await.unwrap();
    assert!(first.len() >= 3, "{first:?}");
    for (index, (step, value)) in first.iter().enumerate() {
        assert_eq!((*step, *value), (index as i64, 100.0 + index as f64), "{first:?}");
    }
    let missing = history(Some(3)).await.unwrap_err().to_string();
    assert!(missing.contains("attempts are 1 to 2"), "{missing}");

    // The CLI shows each attempt with its own metrics; the latest of attempt 1 is its own.
    let summary = run(cluster.drover().args(["runs", "describe", &run_id]));
    assert!(summary.stdout.contains("Attempts (each with its own metrics"), "{}", summary.stdout);
    let one = run(cluster.drover().args(["runs", "describe", &run_id, "--attempt", "1"]));
    assert!(one.success, "{}", one.stderr);
    assert!(one.stdout.contains("lost: worker"), "{}", one.stdout);
    let last_of_first = format!("{}", 100 + first.len() - 1);
    assert!(one.stdout.contains(&last_of_first), "{}", one.stdout);
    let json =
        run(cluster.drover().args(["runs", "describe", &run_id, "--attempt", "2", "-o", "json"]));
    let two: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(two["current"], true);
    assert_eq!(two["latest_metrics"][0]["value"], 3.0);
    let none = run(cluster.drover().args(["runs", "describe", &run_id, "--attempt", "5"]));
    assert!(!none.success && none.stderr.contains("its attempts are 1 to 2"), "{}", none.stderr);

    // The chart draws either attempt.
    let chart = api(
        &cluster.scheduler.address,
        &format!("/api/drover/chart?run_ids={run_id}&key=loss&width=100&attempt=1"),
    );
    assert_eq!(chart["series"][0]["points"], first.len(), "{chart}");
}

/// A drained worker takes no new runs while the one it has finishes; undrained, it takes the
/// waiting run. Drains are refused for unknown workers, and the REST face does the same.
#[test]
fn a_drained_worker_takes_nothing_new_while_its_runs_finish() {
    let cluster = Cluster::start();
    let short = project(
        &cluster.dir.path().join("short"),
        "entry_points: {main: {command: 'sleep 2; echo done'}}\n",
        &[],
    );
    let running = cluster.submit(&short, &[]);
    cluster.wait(&running, "RUNNING");
    let drained = run(cluster.drover().args(["workers", "drain", &cluster.worker_id]));
    assert!(drained.success, "{}", drained.stderr);
    assert!(drained.stdout.contains("1 running run(s) finish"), "{}", drained.stdout);
    let listed = run(cluster.drover().args(["workers", "list"]));
    assert!(listed.stdout.contains("draining"), "{}", listed.stdout);

    let waiting = cluster.submit(&short, &[]);
    cluster.wait(&running, "FINISHED");
    std::thread::sleep(Duration::from_secs(2));
    let status = describe(&cluster.home(), Some(&cluster.scheduler.address), &waiting);
    assert_eq!(status["info"]["status"], "SCHEDULED", "a drained worker took a run");

    let unknown = run(cluster.drover().args(["workers", "drain", "no-such-worker"]));
    assert!(!unknown.success);
    assert!(
        unknown.stderr.contains(&format!("the workers are {}", cluster.worker_id)),
        "{}",
        unknown.stderr
    );

    let undrained = run(cluster.drover().args(["workers", "undrain", &cluster.worker_id]));
    assert!(undrained.success, "{}", undrained.stderr);
    cluster.wait(&waiting, "FINISHED");

    // Over REST, as the cluster page does it: JSON only.
    let address = cluster.scheduler.address.trim_start_matches("http://");
    let path = format!("/api/drover/workers/{}/drain", cluster.worker_id);
    let (status, body) = drover_testkit::http::call(address, "POST", &path, &[], "drain=true");
    assert_eq!(status, 400, "{body}");
    let json = [("Content-Type", "application/json")];
    let (status, body) =
        drover_testkit::http::call(address, "POST", &path, &json, r#"{"drain": true}"#);
    assert_eq!(status, 200, "{body}");
    let workers = &api(&cluster.scheduler.address, "/api/drover/cluster")["workers"];
    assert_eq!(workers[0]["draining"], true, "{workers}");
    let (status, _) =
        drover_testkit::http::call(address, "POST", &path, &json, r#"{"drain": "yes"}"#);
    assert_eq!(status, 400);
}

/// Placement by what runs ask: two one-GPU runs on a four-GPU worker hold different devices
/// (each sees only its own, through CUDA_VISIBLE_DEVICES); a run asking for more than is free
/// waits and says why, then runs; requests no worker could ever hold are refused at submit.
#[test]
fn runs_get_the_resources_they_ask_for_and_never_share_a_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = SchedulerProcess::spawn(&dir.path().join("store"));
    let address = scheduler.address.clone();
    let _worker = WorkerProcess::spawn_with(
        &address,
        &dir.path().join("work"),
        "gpu-worker",
        4,
        &["--gpus", "0,1,2,3", "--label", "zone=a"],
    );
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let client = || {
        let mut command = drover(&home);
        command.args(["--scheduler", &address]);
        command
    };
    let holder = project(
        &dir.path().join("holder"),
        "entry_points: {main: {command: 'echo \"devices=[$CUDA_VISIBLE_DEVICES]\"; sleep 3'}}\n",
        &[],
    );
    let submit = |extra: &[&str]| {
        let outcome = run(client().arg("run").arg(&holder).arg("--detach").args(extra));
        assert!(outcome.success, "{}", outcome.stderr);
        outcome.stdout.trim().to_string()
    };
    // Wait until the worker has registered, so submissions are checked against it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run(client().args(["workers", "list"])).stdout.contains("gpu-worker") {
        assert!(Instant::now() < deadline, "the worker did not register");
        std::thread::sleep(Duration::from_millis(50));
    }

    let first = submit(&["--gpus", "1", "--label", "zone=a"]);
    let second = submit(&["--gpus", "1"]);
    let both_running = |ids: &[&str]| {
        ids.iter().all(|id| describe(&home, Some(&address), id)["info"]["status"] == "RUNNING")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !both_running(&[&first, &second]) {
        assert!(Instant::now() < deadline, "the two GPU runs did not run side by side");
        std::thread::sleep(Duration::from_millis(50));
    }
    let gpus_of = |id: &str| tag(&describe(&home, Some(&address), id), "drover.gpus");
    let (one, two) = (gpus_of(&first).unwrap(), gpus_of(&second).unwrap());
    assert_ne!(one, two, "two runs hold the same GPU");
    let listed = run(client().args(["workers", "list"]));
    assert!(listed.stdout.contains("2/4 (0,1,2,3)"), "{}", listed.stdout);

    // Four GPUs are not free now: the run waits, and says why.
    let big = submit(&["--gpus", "4"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let described = describe(&home, Some(&address), &big);
        if tag(&described, "drover.waiting").as_deref() == Some("no worker with 4 free GPUs") {
            assert_eq!(described["info"]["status"], "SCHEDULED");
            break;
        }
        assert!(Instant::now() < deadline, "no waiting reason: {described}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let shown = run(client().args(["runs", "describe", &big]));
    assert!(shown.stdout.contains("no worker with 4 free GPUs"), "{}", shown.stdout);
    // Once the two end, it runs with all four, and the reason is gone.
    for id in [&first, &second] {
        let log = wait_for_status(&home, Some(&address), id, "FINISHED", Duration::from_secs(30));
        drop(log);
    }
    let done = wait_for_status(&home, Some(&address), &big, "FINISHED", Duration::from_secs(30));
    assert_eq!(tag(&done, "drover.gpus").as_deref(), Some("0,1,2,3"));
    assert_eq!(tag(&done, "drover.waiting"), None);
    let log = run(client().args(["runs", "logs", &big]));
    assert!(log.stdout.contains("devices=[0,1,2,3]"), "{}", log.stdout);
    for (id, gpus) in [(&first, &one), (&second, &two)] {
        let log = run(client().args(["runs", "logs", id]));
        assert!(log.stdout.contains(&format!("devices=[{gpus}]")), "{}", log.stdout);
    }

    // What no registered worker could ever hold is refused, with the reason; nothing is queued.
    for (extra, reason) in [
        (vec!["--gpus", "64"], "64 GPUs"),
        (vec!["--label", "zone=b"], "zone=b"),
        (vec!["--cpus", "4096"], "4096 CPUs"),
    ] {
        let refused = run(client().arg("run").arg(&holder).arg("--detach").args(&extra));
        assert!(!refused.success, "{extra:?} was queued");
        assert!(
            refused.stderr.contains("no registered worker could ever run this")
                && refused.stderr.contains(reason),
            "{}",
            refused.stderr
        );
    }
    let runs = run(client().args(["runs", "list", "-o", "json"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&runs.stdout).unwrap().as_array().unwrap().len(),
        3
    );
}

/// Prometheus metrics at /metrics, in OpenMetrics text: what ran, how it ended, how long
/// placement took, the workers, points ingested, store size and request latency by route.
#[test]
fn the_scheduler_serves_prometheus_metrics() {
    let cluster = Cluster::start();
    let printer = project(
        &cluster.dir.path().join("metrics"),
        "entry_points: {main: {command: 'for i in 1 2 3; do echo \"::metric loss=$i step=$i\"; done'}}\n",
        &[],
    );
    let run_id = cluster.submit(&printer, &[]);
    cluster.wait(&run_id, "FINISHED");
    api(&cluster.scheduler.address, "/api/drover/runs");
    let address = cluster.scheduler.address.trim_start_matches("http://");
    let (status, text) = drover_testkit::http::call(address, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{text}");
    for expected in [
        "drover_runs_ended_total{status=\"FINISHED\"} 1",
        "drover_placement_latency_seconds_count 1",
        "drover_workers{state=\"connected\"} 1",
        "drover_metric_points_ingested_total 3",
        "drover_request_duration_seconds_count{route=\"/api/drover/runs\",method=\"GET\",status=\"200\"} 1",
        "# EOF",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let size = text
        .lines()
        .find_map(|line| line.strip_prefix("drover_store_size_bytes "))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap();
    assert!(size > 0, "{text}");
}
