//! Helpers for the CLI's end-to-end tests: the built `drover` binary, run against a temporary
//! home (the embedded default) or `drover scheduler` and `drover worker` child processes;
//! Docker and the project images for the tests that need them.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use drover_scheduler::{Holder, read_holder};

pub const DROVER: &str = env!("CARGO_BIN_EXE_drover");

/// A `drover` command whose embedded default store is `home`.
pub fn drover(home: &Path) -> Command {
    let mut command = Command::new(DROVER);
    command
        .env("DROVER_HOME", home)
        .env_remove("DROVER_SCHEDULER")
        .env_remove("DROVER_LOG")
        .current_dir(home.parent().unwrap_or(home))
        .stdin(Stdio::null());
    command
}

/// What a finished command printed and how it exited.
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(command: &mut Command) -> Outcome {
    let Output { status, stdout, stderr } = command.output().expect("run drover");
    Outcome {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `args` on `home` and expects success; returns stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let outcome = run(drover(home).args(args));
    assert!(outcome.success, "drover {args:?} failed:\n{}", outcome.stderr);
    outcome.stdout
}

/// Runs `args` on `home` and expects a failure with a one-line error; returns that line.
pub fn fails(home: &Path, args: &[&str]) -> String {
    let outcome = run(drover(home).args(args));
    assert!(!outcome.success, "drover {args:?} should have failed:\n{}", outcome.stdout);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected a one-line error from drover {args:?}, got:\n{}",
        outcome.stderr
    );
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    lines[0].trim_start_matches("error: ").to_string()
}

/// A `drover scheduler` child process on an ephemeral loopback port.
pub struct SchedulerProcess {
    pub child: Child,
    pub address: String,
}

impl SchedulerProcess {
    pub fn spawn(data_dir: &Path) -> SchedulerProcess {
        SchedulerProcess::spawn_with(data_dir, &[])
    }

    pub fn spawn_with(data_dir: &Path, extra: &[&str]) -> SchedulerProcess {
        SchedulerProcess::spawn_at(data_dir, "127.0.0.1:0", extra)
    }

    pub fn spawn_at(data_dir: &Path, listen: &str, extra: &[&str]) -> SchedulerProcess {
        let child = Command::new(DROVER)
            .args(["scheduler", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env_remove("DROVER_SCHEDULER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn drover scheduler");
        // Owned from here on, so a failed start still kills the child.
        let mut process = SchedulerProcess { child, address: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Holder { pid, address: Some(address) }) = read_holder(data_dir)
                && pid == process.child.id()
            {
                process.address = address;
                return process;
            }
            assert!(Instant::now() < deadline, "the scheduler did not announce its address");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        #[allow(unsafe_code)]
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }

    /// Waits for the process to exit and returns whether it exited with status 0.
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the scheduler did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `drover worker` child process.
pub struct WorkerProcess {
    pub child: Child,
}

impl WorkerProcess {
    pub fn spawn(scheduler: &str, work_dir: &Path, worker_id: &str, slots: u32) -> WorkerProcess {
        WorkerProcess::spawn_with(scheduler, work_dir, worker_id, slots, &[])
    }

    /// A worker with more flags, e.g. `--gpus 0,1` or `--label zone=a`.
    pub fn spawn_with(
        scheduler: &str,
        work_dir: &Path,
        worker_id: &str,
        slots: u32,
        extra: &[&str],
    ) -> WorkerProcess {
        let child = Command::new(DROVER)
            .args([
                "--scheduler",
                scheduler,
                "worker",
                "--worker-id",
                worker_id,
                "--slots",
                &slots.to_string(),
                "--work-dir",
            ])
            .arg(work_dir)
            .args(extra)
            .env_remove("DROVER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn drover worker");
        WorkerProcess { child }
    }

    pub fn signal(&self, signal: i32) {
        send_signal(&self.child, signal);
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn send_signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal})");
}

/// A project directory: an MLproject and files, under `dir`.
pub fn project(dir: &Path, mlproject: &str, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("MLproject"), mlproject).unwrap();
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir.to_path_buf()
}

/// The run's JSON description, through the CLI.
pub fn describe(home: &Path, scheduler: Option<&str>, run_id: &str) -> serde_json::Value {
    let mut command = drover(home);
    if let Some(address) = scheduler {
        command.args(["--scheduler", address]);
    }
    let outcome = run(command.args(["runs", "describe", run_id, "-o", "json"]));
    assert!(outcome.success, "describe failed: {}", outcome.stderr);
    serde_json::from_str(&outcome.stdout).unwrap()
}

pub fn tag(run: &serde_json::Value, key: &str) -> Option<String> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
        .map(str::to_string)
}

/// Polls until the run has `status`, failing after `timeout`.
pub fn wait_for_status(
    home: &Path,
    scheduler: Option<&str>,
    run_id: &str,
    status: &str,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let run = describe(home, scheduler, run_id);
        if run["info"]["status"] == status {
            return run;
        }
        if run["info"]["status"]
            .as_str()
            .is_some_and(|s| ["FINISHED", "FAILED", "KILLED"].contains(&s))
        {
            panic!(
                "run {run_id} ended {} while waiting for {status}: {:?}",
                run["info"]["status"],
                tag(&run, "drover.failure_reason")
            );
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not reach {status}; it is {}",
            run["info"]["status"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The run ID from `drover run`'s first line on stderr.
pub fn run_id_from(stderr: &str) -> String {
    let start = stderr.find("Run (ID='").expect("a run ID in the output") + "Run (ID='".len();
    stderr[start..start + 32].to_string()
}

/// Whether Docker tests can run here. In CI (CI=true) a missing engine is a failure, not a skip.
pub fn docker_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let engine = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
        let available = engine.as_ref().is_ok_and(|output| output.status.success());
        if !available {
            let message = "the Docker engine is not reachable (`docker info` failed); Docker-backed tests need it";
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("{message}");
            }
            eprintln!("skipping: {message}");
            return false;
        }
        let missing = ["drover/python:3", "drover/busybox:1", "drover/python-mlflow:3"]
            .iter()
            .any(|image| !Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success()));
        if missing {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build.sh");
            let status = Command::new("bash").arg(&script).status().expect("run deploy/images/build.sh");
            assert!(status.success(), "deploy/images/build.sh failed");
        }
        true
    })
}

/// Containers carrying a label, e.g. `drover.run_id=...`.
pub fn containers_with_label(label: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("label={label}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

/// A private CA and a certificate it signed for `localhost`, 127.0.0.1 and `names`, written
/// to `dir` as PEM: (CA, certificate, key).
pub fn test_pki(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a certificate named as its issuer for a self-signed one.
    ca_params.distinguished_name.push(DnType::CommonName, "drover test CA");
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let key = KeyPair::generate().expect("a server key");
    let mut subjects = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    subjects.extend(names.iter().map(|name| name.to_string()));
    let mut params = CertificateParams::new(subjects).expect("server parameters");
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).expect("a server certificate");
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Runs `docker` and returns what it printed; a failure fails the test.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Removes the containers, the network and the image, whatever happens to the test.
pub struct DockerCleanup {
    pub containers: Vec<String>,
    pub network: String,
    pub image: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", container]).output();
        }
        let _ = Command::new("docker").args(["network", "rm", &self.network]).output();
        let _ = Command::new("docker").args(["rmi", &self.image]).output();
    }
}

/// drover's image (deploy/image/build.sh) from the binary under test, tagged for one test.
pub fn build_drover_image(unique: &str) -> String {
    let image = format!("drover-test:{unique}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/image/build.sh");
    let built = Command::new("bash").arg(&script).args([DROVER, &image]).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    image
}

/// A run's Python script that logs the metric `key` = 1 to its own run through
/// MLFLOW_TRACKING_URI with MLflow's REST API, then prints the address it used (`tracking
/// at: ...`) and its whole environment (`environment: ...`), for a test to inspect.
pub fn tracking_script(key: &str) -> String {
    format!(
        r#"
import json, os, time, urllib.request
base = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
body = json.dumps({{"run_id": os.environ["MLFLOW_RUN_ID"], "key": "{key}", "value": 1,
                   "timestamp": int(time.time() * 1000), "step": 0}}).encode()
request = urllib.request.Request(base + "/api/2.0/mlflow/runs/log-metric", data=body,
                                 headers={{"Content-Type": "application/json"}})
urllib.request.urlopen(request).read()
print("tracking at:", base)
print("environment:", sorted(os.environ.items()))
"#
    )
}

/// A name for one test's Docker objects, unique on a shared engine: the process and the
/// test's temporary directory.
pub fn unique_name(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy().to_lowercase().replace('.', "");
    format!("{}-{name}", std::process::id())
}

/// Starts `drover scheduler` in a container of `image` named `name` on `network`, its port
/// published on a loopback port of the host, requiring the token mounted at
/// /etc/drover/token (`volumes` are `-v` values, that mount among them); `extra` are more
/// scheduler flags.
pub fn start_scheduler_container(
    name: &str,
    network: &str,
    image: &str,
    volumes: &[&str],
    extra: &[&str],
) {
    let mut args = vec!["run", "-d", "--name", name, "--network", network, "-p", "127.0.0.1::7070"];
    for volume in volumes {
        args.extend(["-v", volume]);
    }
    args.extend([
        image,
        "scheduler",
        "--listen",
        "0.0.0.0:7070",
        "--data-dir",
        "/var/lib/drover",
        "--token-file",
        "/etc/drover/token",
    ]);
    args.extend_from_slice(extra);
    docker(&args);
}

/// Removes a container, whatever happens to the test.
pub struct ContainerCleanup(pub String);

impl Drop for ContainerCleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}
