//! A scheduler on TLS (`--tls-cert`, `--tls-key`) with a token, as a cluster admin runs it
//! beyond loopback: the CLI and a worker verify it against the cluster's CA (`--ca`); a
//! client without the CA, and a plain-text one, are refused and change nothing; a run logs
//! through its worker's proxy, which speaks TLS to the scheduler for it.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use drover_scheduler::{Holder, read_holder};
use support::{SchedulerProcess, WorkerProcess, drover, project, run, test_pki, tracking_script};

const TOKEN: &str = "drover-test-token-over-tls";

#[test]
fn a_tls_scheduler_serves_only_clients_that_verify_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path(), &[]);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let data_dir = dir.path().join("store");
    let scheduler = SchedulerProcess::spawn_with(
        &data_dir,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let address = scheduler.address.clone();
    assert!(address.starts_with("https://127.0.0.1:"), "{address}");
    let Some(Holder { address: Some(announced), .. }) = read_holder(&data_dir) else {
        panic!("no announced address")
    };
    assert_eq!(announced, address);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let client = |ca: Option<&std::path::Path>| {
        let mut command = drover(&home);
        command.args(["--scheduler", &address]).env("DROVER_TOKEN", TOKEN);
        if let Some(ca) = ca {
            command.arg("--ca").arg(ca);
        }
        command
    };

    let created =
        run(client(Some(&ca)).args(["experiments", "create", "--experiment-name", "over-tls"]));
    assert!(created.success, "{}", created.stderr);
    let unverified =
        run(client(None).args(["experiments", "create", "--experiment-name", "unverified"]));
    assert!(!unverified.success);
    assert!(unverified.stderr.to_lowercase().contains("certificate"), "{}", unverified.stderr);
    let plain = address.replace("https://", "http://");
    let cleartext = run(drover(&home)
        .args(["--scheduler", &plain, "experiments", "create", "--experiment-name", "plain"])
        .env("DROVER_TOKEN", TOKEN));
    assert!(!cleartext.success, "a plain-text client was served");
    let (status, _) = drover_testkit::http::call(
        address.trim_start_matches("https://"),
        "GET",
        "/api/drover/experiments",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_ne!(status, 200, "plain HTTP was answered");
    let listed = run(client(Some(&ca)).args(["experiments", "list"]));
    assert!(listed.stdout.contains("over-tls"), "{}", listed.stdout);
    assert!(!listed.stdout.contains("unverified") && !listed.stdout.contains("plain"));

    // A worker verifying the scheduler runs a local project that logs through the worker's
    // loopback proxy in plain HTTP; the proxy carries it over TLS with the token.
    let _worker = WorkerProcess::spawn_with(
        &address,
        &dir.path().join("work"),
        "tls-worker",
        1,
        &["--ca", ca.to_str().unwrap(), "--token-file", token_file.to_str().unwrap()],
    );
    let logs = project(
        &dir.path().join("logs"),
        "entry_points: {main: {command: 'python3 track.py'}}\n",
        &[("track.py", &tracking_script("over_tls"))],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let submitted = run(client(Some(&ca)).arg("run").arg(&logs));
        let printed = format!("{}{}", submitted.stdout, submitted.stderr);
        if submitted.success {
            assert!(printed.contains("succeeded"), "{printed}");
            // The run spoke plain HTTP to the worker's loopback proxy.
            assert!(printed.contains("tracking at: http://127.0.0.1:"), "{printed}");
            let run_id =
                printed.split("ID='").nth(1).and_then(|rest| rest.split('\'').next()).unwrap();
            let described = run(client(Some(&ca)).args(["runs", "describe", run_id]));
            assert!(described.stdout.contains("over_tls"), "{}", described.stdout);
            break;
        }
        assert!(Instant::now() < deadline, "{printed}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
