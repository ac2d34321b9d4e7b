//! A cluster on real hosts: drover's own image, a scheduler and three workers each in its own
//! container on a private Docker network. Each scenario runs a 60-trial sweep of short runs
//! that print metric lines, breaks something mid-sweep (or, on a cluster over TLS, has
//! intruders knock first), and checks that every trial ended once, FINISHED, with exactly its
//! final attempt's points.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    DockerCleanup, build_drover_image, docker, docker_ready, drover, project, run,
    start_scheduler_container, test_pki, unique_name,
};

const TOKEN: &str = "drover-test-token-for-the-cluster";
const TRIALS: usize = 60;

/// Four steps of `loss`, a little apart, the same on every attempt.
const STEPS_SCRIPT: &str =
    "for i in 1 2 3 4; do echo \"::metric loss=$((i * 10)) step=$i\"; sleep 0.3; done\n";

struct Cluster {
    dir: tempfile::TempDir,
    network: String,
    scheduler: String,
    workers: Vec<String>,
    /// The private CA's certificate on this host, when the scheduler serves TLS.
    ca: Option<PathBuf>,
    _cleanup: DockerCleanup,
}

/// Where a TLS cluster's certificates are mounted in its containers.
const TLS_DIR: &str = "/etc/drover/tls";

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// With `tls`, the scheduler serves TLS with a certificate of a private CA for its
    /// container's name and 127.0.0.1, and the workers and this host's clients trust that CA.
    fn start_with(tls: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let unique = unique_name(dir.path());
        let image = build_drover_image(&unique);
        let network = format!("drover-cluster-{unique}");
        let scheduler = format!("sched-{unique}");
        let workers: Vec<String> = (1..=3).map(|n| format!("worker{n}-{unique}")).collect();
        let mut containers = vec![scheduler.clone()];
        containers.extend(workers.iter().cloned());
        let cleanup = DockerCleanup { containers, network: network.clone(), image: image.clone() };
        docker(&["network", "create", &network]);
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let token_mount = format!("{}:/etc/drover/token:ro", token_file.display());
        let tls_dir = dir.path().join("tls");
        let tls_mount = format!("{}:{TLS_DIR}:ro", tls_dir.display());
        let mut scheduler_flags = vec!["--lease-timeout".to_string(), "3s".to_string()];
        let mut worker_flags = vec!["--token-file".to_string(), "/etc/drover/token".to_string()];
        let ca = tls.then(|| {
            std::fs::create_dir_all(&tls_dir).unwrap();
            let (ca, _, _) = test_pki(&tls_dir, &[&scheduler]);
            scheduler_flags.extend([
                "--tls-cert".to_string(),
                format!("{TLS_DIR}/cert.pem"),
                "--tls-key".to_string(),
                format!("{TLS_DIR}/key.pem"),
            ]);
            worker_flags.extend(["--ca".to_string(), format!("{TLS_DIR}/ca.pem")]);
            ca
        });
        let flags: Vec<&str> = scheduler_flags.iter().map(String::as_str).collect();
        let mut volumes = vec![token_mount.as_str()];
        if tls {
            volumes.push(&tls_mount);
        }
        start_scheduler_container(&scheduler, &network, &image, &volumes, &flags);
        let scheme = if tls { "https" } else { "http" };
        let inside = format!("{scheme}://{scheduler}:7070");
        for worker in &workers {
            let mut args = vec!["run", "-d", "--name", worker, "--network", &network];
            for volume in &volumes {
                args.extend(["-v", volume]);
            }
            args.extend([image.as_str(), "--scheduler", &inside]);
            args.extend(worker_flags.iter().map(String::as_str));
            args.extend(["worker", "--worker-id", worker, "--slots", "2", "--work-dir", "/work"]);
            docker(&args);
        }
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let cluster = Cluster { dir, network, scheduler, workers, ca, _cleanup: cleanup };
        cluster.wait_for_workers();
        cluster
    }

    /// The scheduler's published address; it changes when its container restarts.
    fn address(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        let published = docker(&["port", &self.scheduler, "7070"]);
        format!("{scheme}://{}", published.lines().next().unwrap())
    }

    /// The CLI against the scheduler, trusting its CA, with no token.
    fn anonymous_client(&self) -> Command {
        let mut command = drover(&self.dir.path().join("home"));
        command.args(["--scheduler", &self.address()]).env_remove("DROVER_TOKEN");
        if let Some(ca) = &self.ca {
            command.arg("--ca").arg(ca);
        }
        command
    }

    fn client(&self) -> Command {
        let mut command = self.anonymous_client();
        command.env("DROVER_TOKEN", TOKEN);
        command
    }

    /// An HTTP GET with `token`: (status, body).
    fn call(&self, path: &str, token: &str) -> (u16, String) {
        let address = self.address();
        let Some(ca) = &self.ca else {
            let authorization = format!("Bearer {token}");
            return drover_testkit::http::call(
                address.trim_start_matches("http://"),
                "GET",
                path,
                &[("Authorization", &authorization)],
                "",
            );
        };
        let output = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(ca)
            .args(["-H", &format!("Authorization: Bearer {token}"), &format!("{address}{path}")])
            .output()
            .unwrap();
        assert!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.trim().parse().unwrap(), body.to_string())
    }

    fn wait_for_workers(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = run(self.client().args(["workers", "list"])).stdout;
            let connected = |worker: &String| {
                listed
                    .lines()
                    .any(|line| line.starts_with(worker.as_str()) && line.contains(" connected "))
            };
            if self.workers.iter().all(connected) {
                return;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .workers
                    .iter()
                    .filter(|worker| !connected(worker))
                    .map(|worker| {
                        let output = Command::new("docker")
                            .args(["logs", "--tail", "30", worker])
                            .output()
                            .unwrap();
                        format!("{worker}:\n{}", String::from_utf8_lossy(&output.stderr))
                    })
                    .collect();
                panic!("the workers did not all connect:\n{listed}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(path, TOKEN);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Starts the 60-trial sweep; its ID.
    fn sweep(&self) -> String {
        let steps = project(
            &self.dir.path().join("steps"),
            "entry_points: {main: {parameters: {trial: {type: int}}, command: 'sh steps.sh'}}\n",
            &[("steps.sh", STEPS_SCRIPT)],
        );
        let grid =
            format!("trial={}", (1..=TRIALS).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        let started = run(self.client().arg("sweep").arg(&steps).args([
            "-P",
            &grid,
            "--method",
            "grid",
            "--parallel",
            "6",
            "--max-retries",
            "3",
            "--detach",
        ]));
        assert!(started.success, "{}", started.stderr);
        started.stdout.trim().to_string()
    }

    fn finished_trials(&self, sweep: &str) -> u64 {
        self.get(&format!("/api/drover/sweeps/{sweep}"))["sweep"]["counts"]["finished"]
            .as_u64()
            .unwrap_or(0)
    }

    fn wait_for_finished(&self, sweep: &str, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.finished_trials(sweep) < count {
            assert!(Instant::now() < deadline, "fewer than {count} trials finished");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the sweep to end and checks every trial: FINISHED once, with exactly its
    /// final attempt's four points. Returns each trial's attempts.
    fn check_sweep(&self, sweep: &str) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(300);
        let answer = loop {
            let answer = self.get(&format!("/api/drover/sweeps/{sweep}"));
            if answer["sweep"]["status"] != "RUNNING" {
                break answer;
            }
            assert!(
                Instant::now() < deadline,
                "the sweep did not end: {}",
                answer["sweep"]["counts"]
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(answer["sweep"]["status"], "FINISHED", "{}", answer["sweep"]);
        let trials = answer["trials"].as_array().unwrap();
        assert_eq!(trials.len(), TRIALS, "{}", answer["sweep"]["counts"]);
        trials
            .iter()
            .map(|trial| {
                let run_id = trial["run_id"].as_str().unwrap();
                let detail = self.get(&format!("/api/drover/runs/{run_id}"));
                assert_eq!(detail["run"]["info"]["status"], "FINISHED", "{run_id}");
                let attempts = detail["execution"]["attempts"].as_array().unwrap().clone();
                let finished = attempts.iter().filter(|a| a["outcome"] == "FINISHED").count();
                assert_eq!(finished, 1, "{run_id} finished {finished} times: {attempts:?}");
                assert_eq!(attempts.last().unwrap()["outcome"], "FINISHED", "{attempts:?}");
                let history = self.get(&format!(
                    "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss"
                ));
                let points: Vec<(i64, f64)> = history["metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| (m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap()))
                    .collect();
                assert_eq!(points, vec![(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)], "{run_id}");
                attempts
            })
            .collect()
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
}

#[test]
fn a_sweep_survives_a_killed_worker_and_a_drained_one() {
    if !docker_ready() {
        return;
    }
    let cluster = Cluster::start();
    let sweep = cluster.sweep();
    cluster.wait_for_finished(&sweep, 3);
    let drained = run(cluster.client().args(["workers", "drain", &cluster.workers[2]]));
    assert!(drained.success, "{}", drained.stderr);
    let drained_at = now_ms();
    docker(&["kill", &cluster.workers[1]]);

    let attempts = cluster.check_sweep(&sweep);
    let requeued: usize = attempts.iter().map(|a| a.len() - 1).sum();
    assert!(requeued > 0, "the killed worker held no run: the test did not test a loss");
    for attempt in attempts.iter().flatten() {
        if attempt["worker"] == cluster.workers[2].as_str() {
            let assigned = attempt["assigned"].as_i64().unwrap();
            assert!(assigned <= drained_at, "the drained worker took {attempt}");
        }
    }
    let status = run(cluster.client().arg("status"));
    assert!(status.stdout.contains(&cluster.workers[1]), "{}", status.stdout);
    assert!(cluster.home().exists());
}

#[test]
fn a_sweep_survives_its_scheduler_killed_twice() {
    if !docker_ready() {
        return;
    }
    let cluster = Cluster::start();
    let sweep = cluster.sweep();
    for finished in [5, 20] {
        cluster.wait_for_finished(&sweep, finished);
        docker(&["kill", "--signal", "KILL", &cluster.scheduler]);
        docker(&["start", &cluster.scheduler]);
        cluster.wait_for_workers();
    }
    cluster.check_sweep(&sweep);
}

#[test]
fn a_sweep_survives_a_worker_cut_off_past_its_lease() {
    if !docker_ready() {
        return;
    }
    let cluster = Cluster::start();
    let sweep = cluster.sweep();
    cluster.wait_for_finished(&sweep, 3);
    // Cut off well past the 3 s lease: its runs are requeued elsewhere while it keeps
    // running them; back on the network, its stale attempts must be fenced and stopped.
    let cut = &cluster.workers[0];
    docker(&["network", "disconnect", &cluster.network, cut]);
    std::thread::sleep(Duration::from_secs(8));
    docker(&["network", "connect", &cluster.network, cut]);
    let attempts = cluster.check_sweep(&sweep);
    let lost = attempts
        .iter()
        .flatten()
        .filter(|attempt| attempt["worker"] == cut.as_str())
        .filter(|attempt| attempt["outcome"].as_str().unwrap_or("").starts_with("lost"))
        .count();
    assert!(lost > 0, "the cut-off worker lost no attempt: the test did not test a cut");
    cluster.wait_for_workers();
}

#[test]
fn a_cluster_over_tls_refuses_wrong_tokens_missing_tokens_and_plain_text_and_changes_nothing() {
    if !docker_ready() {
        return;
    }
    // The workers reach the scheduler over TLS with the token, or this would not return.
    let cluster = Cluster::start_with(true);
    let experiments = || run(cluster.client().args(["experiments", "list"])).stdout;
    let workers = || -> Vec<String> {
        let listed = run(cluster.client().args(["workers", "list"])).stdout;
        listed
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next())
            .map(String::from)
            .collect()
    };
    let (experiments_before, workers_before) = (experiments(), workers());

    let create = ["experiments", "create", "--experiment-name", "intruder"];
    let missing = run(cluster.anonymous_client().args(create));
    assert!(!missing.success && missing.stderr.contains("requires a token"), "{}", missing.stderr);
    let wrong = run(cluster.anonymous_client().env("DROVER_TOKEN", "not-the-token").args(create));
    assert!(!wrong.success && wrong.stderr.contains("not this scheduler's"), "{}", wrong.stderr);
    let plain_address = cluster.address().replace("https://", "http://");
    let plain = run(drover(&cluster.home())
        .args(["--scheduler", &plain_address])
        .args(create)
        .env("DROVER_TOKEN", TOKEN));
    assert!(!plain.success, "a plain-text client was served: {}", plain.stdout);
    for token in ["", "not-the-token"] {
        let (status, body) =
            cluster.call("/api/2.0/mlflow/experiments/search?max_results=10", token);
        assert_eq!(status, 401, "{body}");
    }
    // A worker with the wrong token never joins.
    let intruder = format!("intruder-{}", cluster.workers[0]);
    let tls_mount = format!("{}:{TLS_DIR}:ro", cluster.dir.path().join("tls").display());
    let bad_token = cluster.dir.path().join("bad-token");
    std::fs::write(&bad_token, "not-the-token").unwrap();
    let bad_token_mount = format!("{}:/etc/drover/token:ro", bad_token.display());
    let image = docker(&["inspect", "--format", "{{.Config.Image}}", &cluster.scheduler]);
    let _intruder_cleanup = support::ContainerCleanup(intruder.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &intruder,
        "--network",
        &cluster.network,
        "-v",
        &tls_mount,
        "-v",
        &bad_token_mount,
        &image,
        "--scheduler",
        &format!("https://{}:7070", cluster.scheduler),
        "--ca",
        &format!("{TLS_DIR}/ca.pem"),
        "--token-file",
        "/etc/drover/token",
        "worker",
        "--worker-id",
        &intruder,
        "--slots",
        "2",
        "--work-dir",
        "/work",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    let refused = container_log(&intruder);
    assert!(refused.contains("not this scheduler's"), "the intruder's log: {refused}");
    assert_eq!(experiments(), experiments_before, "a refused client changed the experiments");
    assert_eq!(workers(), workers_before, "a refused worker joined");
    let scheduler_log = container_log(&cluster.scheduler);
    assert!(
        scheduler_log.contains("refused a request without this scheduler's token")
            && scheduler_log.contains("peer"),
        "refusals are logged with the peer: {scheduler_log}"
    );
    assert!(!scheduler_log.contains(TOKEN) && !scheduler_log.contains("not-the-token"));

    // The cluster itself works as on a trusted network.
    let sweep = cluster.sweep();
    cluster.check_sweep(&sweep);
}

/// What a container printed, both streams.
fn container_log(container: &str) -> String {
    let output = Command::new("docker").args(["logs", container]).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
