//! The official `mlflow` Python client, unchanged, against a real `drover scheduler`:
//! `tests/mlflow/` (pytest) runs in a virtualenv this test creates with the pinned client.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::SchedulerProcess;

const MLFLOW_CLIENT: &str = "mlflow-skinny==3.17.2";

/// A virtualenv with the pinned client and pytest, made once per target directory.
fn virtualenv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mlflow-venv");
    let marker = venv.join(".drover-installed");
    let wanted = format!("{MLFLOW_CLIENT} pytest");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == wanted) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status =
        Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 -m venv");
    assert!(status.success(), "cannot create a virtualenv (python3 -m venv)");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", MLFLOW_CLIENT, "pytest"])
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
