//! The official `mlflow` Python client, unchanged, against a real `drover scheduler`:
//! `tests/mlflow/` (pytest) runs in a virtualenv this test creates with the pinned client.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{SchedulerProcess, test_pki};

/// Logs a run with the official client, which sends MLFLOW_TRACKING_TOKEN as a bearer token.
const WITH_TOKEN: &str = r#"
import mlflow
mlflow.set_experiment("with-token")
with mlflow.start_run() as run:
    mlflow.log_param("alpha", "0.5")
    mlflow.log_metric("rmse", 0.25)
print("logged", run.info.run_id)
"#;

/// The full client, so models log and load through its scikit-learn flavour.
const MLFLOW_CLIENT: &str = "mlflow==3.17.2";
const SCIKIT_LEARN: &str = "scikit-learn==1.9.1";

/// A virtualenv with the pinned client and pytest, made once per target directory (and once
/// at a time, for the tests of this file run side by side).
fn virtualenv() -> PathBuf {
    static MADE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MADE.get_or_init(make_virtualenv).clone()
}

fn make_virtualenv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mlflow-venv");
    let marker = venv.join(".drover-installed");
    let wanted = format!("{MLFLOW_CLIENT} {SCIKIT_LEARN} pytest");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == wanted) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status =
        Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 -m venv");
    assert!(status.success(), "cannot create a virtualenv (python3 -m venv)");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", MLFLOW_CLIENT, SCIKIT_LEARN])
        .arg("pytest")
        .status()
        .expect("pip install");
    assert!(status.success(), "cannot install {MLFLOW_CLIENT} from PyPI");
    std::fs::write(&marker, wanted).expect("write the virtualenv marker");
    venv
}

#[test]
fn the_official_mlflow_client_works_unchanged() {
    let venv = virtualenv();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let scheduler = SchedulerProcess::spawn(&data_dir);
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mlflow");
    let output = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short"])
        .arg(&tests)
        .env("MLFLOW_TRACKING_URI", &scheduler.address)
        .env("DROVER_DATA_DIR", &data_dir)
        // The client must not try to reach anything but the scheduler under test.
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env_remove("MLFLOW_RUN_ID")
        .env_remove("MLFLOW_EXPERIMENT_ID")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .current_dir(dir.path())
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the mlflow client tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}");
}

#[test]
fn the_official_client_sends_mlflow_tracking_token() {
    let venv = virtualenv();
    let dir = tempfile::tempdir().unwrap();
    let token = "drover-test-token-for-the-official-client";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let scheduler = SchedulerProcess::spawn_with(
        &dir.path().join("store"),
        &["--token-file", token_file.to_str().unwrap()],
    );
    let client = |token: Option<&str>| {
        let mut command = Command::new(venv.join("bin/python"));
        command
            .args(["-c", WITH_TOKEN])
            .env("MLFLOW_TRACKING_URI", &scheduler.address)
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env_remove("MLFLOW_RUN_ID")
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .current_dir(dir.path());
        if let Some(token) = token {
            command.env("MLFLOW_TRACKING_TOKEN", token);
        }
        command.output().expect("run python")
    };
    let refused = client(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a client without the token was served");
    assert!(stderr.contains("UNAUTHENTICATED") || stderr.contains("401"), "{stderr}");
    let wrong = client(Some("drover-test-wrong-token-wrong-token"));
    assert!(!wrong.status.success(), "a client with a wrong token was served");
    let logged = client(Some(token));
    let stdout = String::from_utf8_lossy(&logged.stdout);
    assert!(logged.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&logged.stderr));
    assert!(stdout.contains("logged "), "{stdout}");
}

#[test]
fn the_official_client_verifies_a_tls_scheduler_with_its_ca() {
    let venv = virtualenv();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path(), &[]);
    let token = "drover-test-token-for-the-official-client";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let scheduler = SchedulerProcess::spawn_with(
        &dir.path().join("store"),
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(scheduler.address.starts_with("https://"), "{}", scheduler.address);
    let client = |ca: Option<&Path>| {
        let mut command = Command::new(venv.join("bin/python"));
        command
            .args(["-c", WITH_TOKEN])
            .env("MLFLOW_TRACKING_URI", &scheduler.address)
            .env("MLFLOW_TRACKING_TOKEN", token)
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env_remove("MLFLOW_RUN_ID")
            .env_remove("MLFLOW_TRACKING_SERVER_CERT_PATH")
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .current_dir(dir.path());
        if let Some(ca) = ca {
            command.env("MLFLOW_TRACKING_SERVER_CERT_PATH", ca);
        }
        command.output().expect("run python")
    };
    let unverified = client(None);
    assert!(!unverified.status.success(), "the client trusted an unknown CA");
    let logged = client(Some(&ca));
    let stdout = String::from_utf8_lossy(&logged.stdout);
    assert!(logged.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&logged.stderr));
    assert!(stdout.contains("logged "), "{stdout}");
}
