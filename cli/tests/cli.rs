//! The `drover` binary end to end: the embedded default store, a running scheduler, bad
//! input, graceful shutdown, and durability across a hard kill.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use drover_proto::Client;
use drover_proto::domain::{
    CreateExperiment, CreateRun, ExperimentName, ExperimentRef, Metric, MetricHistoryQuery, Param,
    RunId, RunStatus, Tag, UpdateRun,
};
use drover_scheduler::{Store, read_holder};
use support::{DROVER, SchedulerProcess, drover, fails, ok, run, send_signal};

fn experiment_names(home: &std::path::Path) -> Vec<(String, String, String)> {
    let listed: serde_json::Value = serde_json::from_str(&ok(
        home,
        &["experiments", "list", "--view", "all", "--output", "json"],
    ))
    .unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
                e["lifecycle_stage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn experiments_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");

    let created = ok(&home, &["experiments", "create", "--experiment-name", "model-training"]);
    assert_eq!(created, "Created experiment 'model-training' with ID 1\n");
    let error = fails(&home, &["experiments", "create", "--experiment-name", "model-training"]);
    assert_eq!(error, "experiment 'model-training' already exists (ID 1)");
    ok(&home, &["experiments", "create", "--experiment-name", "other"]);

    let table = ok(&home, &["experiments", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("NAME"), "{table}");
    assert!(lines[1].starts_with("0 ") && lines[1].contains("Default"), "{table}");
    assert!(lines[2].starts_with("1 ") && lines[2].contains("model-training"), "{table}");

    assert_eq!(
        ok(
            &home,
            &[
                "experiments",
                "rename",
                "--experiment-name",
                "model-training",
                "--new-name",
                "training"
            ]
        ),
        "Renamed experiment 'model-training' (ID 1) to 'training'\n"
    );
    assert_eq!(
        ok(&home, &["experiments", "delete", "--experiment-id", "1"]),
        "Deleted experiment 'training' (ID 1)\n"
    );
    assert_eq!(experiment_names(&home)[1], ("1".into(), "training".into(), "deleted".into()));
    assert!(!ok(&home, &["experiments", "list"]).contains("training"));
    assert!(ok(&home, &["experiments", "list", "--view", "deleted"]).contains("training"));
    assert_eq!(
        ok(&home, &["experiments", "restore", "--experiment-name", "training"]),
        "Restored experiment 'training' (ID 1)\n"
    );
    assert_eq!(experiment_names(&home)[1], ("1".into(), "training".into(), "active".into()));
}

#[test]
fn bad_experiment_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    ok(&home, &["experiments", "create", "--experiment-name", "a"]);
    ok(&home, &["experiments", "create", "--experiment-name", "b"]);
    let before = experiment_names(&home);

    let long = "x".repeat(501);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["experiments", "create", "--experiment-name", ""],
            "experiment name must not be empty",
        ),
        (
            vec!["experiments", "create", "--experiment-name", "  \t "],
            "experiment name must not be empty",
        ),
        (vec!["experiments", "create", "--experiment-name", &long], "the limit is 500"),
        (
            vec!["experiments", "rename", "--experiment-name", "a", "--new-name", "b"],
            "experiment 'b' already exists (ID 2)",
        ),
        (
            vec!["experiments", "rename", "--experiment-id", "9", "--new-name", "c"],
            "no experiment with ID 9",
        ),
        (
            vec!["experiments", "rename", "--experiment-id", "x1", "--new-name", "c"],
            "invalid experiment id 'x1'",
        ),
        (
            vec!["experiments", "delete", "--experiment-name", "missing"],
            "no experiment named 'missing'",
        ),
        (
            vec!["experiments", "delete", "--experiment-id", "0"],
            "the default experiment (ID 0) cannot be deleted",
        ),
        (
            vec!["experiments", "restore", "--experiment-name", "a"],
            "experiment 'a' (ID 1) is not deleted",
        ),
        (vec!["runs", "list", "--experiment-name", "missing"], "no experiment named 'missing'"),
        (vec!["runs", "describe", "xyz"], "invalid run id 'xyz': expected 32 hex characters"),
        (vec!["runs", "describe", "0123456789abcdef0123456789abcdeg"], "invalid run id"),
        (
            vec!["runs", "describe", "0123456789abcdef0123456789abcdef"],
            "no run with ID 0123456789abcdef0123456789abcdef",
        ),
    ];
    for (args, expected) in cases {
        let error = fails(&home, &args);
        assert!(error.contains(expected), "drover {args:?}: expected {expected:?} in {error:?}");
    }
    assert_eq!(experiment_names(&home), before);
}

#[tokio::test]
async fn runs_list_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let (run_id, other_run) = {
        let store = Store::open(&home).unwrap();
        let experiment = store
            .create_experiment(CreateExperiment {
                name: ExperimentName::parse("elastic").unwrap(),
                artifact_location: None,
                tags: Vec::new(),
            })
            .await
            .unwrap();
        let request = CreateRun {
            experiment_id: experiment.id,
            run_name: Some("first-try".into()),
            user_id: "ada".into(),
            start_time_ms: Some(1_700_000_000_000),
            tags: vec![Tag { key: "team".into(), value: "vision".into() }],
            status: RunStatus::Running,
        };
        let run = store.create_run(request).await.unwrap();
        let run_id = run.info.run_id;
        store
            .log_params(run_id, vec![Param { key: "alpha".into(), value: "0.5".into() }])
            .await
            .unwrap();
        store
            .log_metrics(
                run_id,
                vec![Metric {
                    key: "rmse".into(),
                    value: 0.75,
                    timestamp_ms: 1_700_000_001_000,
                    step: 3,
                }],
            )
            .await
            .unwrap();
        store
            .update_run(UpdateRun {
                run_id,
                status: Some(RunStatus::Finished),
                end_time_ms: Some(1_700_000_004_200),
                run_name: None,
            })
            .await
            .unwrap();
        let mut other = CreateRun {
            run_name: None,
            start_time_ms: Some(1_700_000_100_000),
            tags: Vec::new(),
            ..request_default(experiment.id)
        };
        other.user_id = "bob".into();
        let other_run = store.create_run(other).await.unwrap().info.run_id;
        (run_id, other_run)
    };

    let table = ok(&home, &["runs", "list", "--experiment-name", "elastic"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1].starts_with(&other_run.to_string()), "newest first:\n{table}");
    assert!(
        lines[2].starts_with(&run_id.to_string())
            && lines[2].contains("FINISHED")
            && lines[2].contains("4.2s"),
        "{table}"
    );
    assert!(lines[2].contains("first-try") && lines[2].contains("elastic (1)"), "{table}");
    assert_eq!(ok(&home, &["runs", "list"]).lines().count(), 3);
    assert_eq!(ok(&home, &["runs", "list", "--experiment-id", "0"]).lines().count(), 1);

    let json: serde_json::Value =
        serde_json::from_str(&ok(&home, &["runs", "list", "--output", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    let described = ok(&home, &["runs", "describe", &run_id.to_string()]);
    for expected in [
        "first-try",
        "elastic (ID 1)",
        "FINISHED",
        "ada",
        "alpha",
        "0.5",
        "rmse",
        "0.75",
        "team",
        "vision",
        "took 4.2s",
    ] {
        assert!(described.contains(expected), "{expected:?} missing from:\n{described}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&home, &["runs", "describe", &run_id.to_string(), "-o", "json"]))
            .unwrap();
    assert_eq!(json["info"]["status"], "FINISHED");
    assert_eq!(json["data"]["params"][0]["value"], "0.5");

    assert_eq!(
        ok(&home, &["runs", "delete", &other_run.to_string()]),
        format!("Deleted run {other_run}\n")
    );
    assert_eq!(ok(&home, &["runs", "list"]).lines().count(), 2);
    assert_eq!(ok(&home, &["runs", "list", "--view", "deleted"]).lines().count(), 2);
    ok(&home, &["runs", "restore", &other_run.to_string()]);
    assert_eq!(ok(&home, &["runs", "list"]).lines().count(), 3);
}

fn request_default(experiment_id: drover_proto::domain::ExperimentId) -> CreateRun {
    CreateRun {
        experiment_id,
        run_name: None,
        user_id: String::new(),
        start_time_ms: None,
        tags: Vec::new(),
        status: RunStatus::Running,
    }
}

#[test]
fn commands_reach_a_running_scheduler_and_it_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let mut scheduler = SchedulerProcess::spawn(&home);

    // Explicitly, by flag and by environment, in both address forms.
    let elsewhere = dir.path().join("elsewhere");
    let created = ok(
        &elsewhere,
        &[
            "--scheduler",
            &scheduler.address,
            "experiments",
            "create",
            "--experiment-name",
            "remote",
        ],
    );
    assert_eq!(created, "Created experiment 'remote' with ID 1\n");
    let bare = scheduler.address.trim_start_matches("http://").to_string();
    let listed =
        run(drover(&elsewhere).env("DROVER_SCHEDULER", &bare).args(["experiments", "list"]));
    assert!(listed.success && listed.stdout.contains("remote"), "{}", listed.stderr);
    assert!(!elsewhere.exists(), "talking to a scheduler must not create a local store");

    // Implicitly: the scheduler holds the local store, so the CLI finds it.
    assert_eq!(
        ok(&home, &["experiments", "create", "--experiment-name", "found"]),
        "Created experiment 'found' with ID 2\n"
    );

    // A second scheduler on the same store is refused, naming the holder.
    let second =
        run(drover(&home).args(["scheduler", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&home));
    assert!(!second.success);
    assert!(second.stderr.contains(&format!("pid {}", scheduler.child.id())), "{}", second.stderr);
    assert!(second.stderr.contains(&scheduler.address), "{}", second.stderr);

    scheduler.signal(libc::SIGTERM);
    assert_eq!(scheduler.wait(), Some(0), "SIGTERM should stop the scheduler with status 0");
    // The store is released and everything is there for the embedded default.
    let names: Vec<String> = experiment_names(&home).into_iter().map(|(_, name, _)| name).collect();
    assert_eq!(names, vec!["Default", "remote", "found"]);
}

#[test]
fn sigint_stops_the_scheduler_with_status_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut scheduler = SchedulerProcess::spawn(dir.path());
    scheduler.signal(libc::SIGINT);
    assert_eq!(scheduler.wait(), Some(0));
}

#[test]
fn a_shell_pointed_at_a_cluster_can_start_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    // DROVER_SCHEDULER is for clients and workers: the scheduler ignores it.
    let mut child = std::process::Command::new(DROVER)
        .args(["scheduler", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("DROVER_SCHEDULER", "127.0.0.1:7070")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while read_holder(dir.path()).and_then(|holder| holder.address).is_none() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the scheduler exited with {status} instead of serving");
        }
        assert!(std::time::Instant::now() < deadline, "the scheduler did not announce itself");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    send_signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // The flag, typed on the scheduler's own command line, is a mistake worth refusing.
    let home = dir.path().join(".drover");
    let error = fails(&home, &["--scheduler", "127.0.0.1:7070", "scheduler"]);
    assert_eq!(error, "`drover scheduler` serves a store itself; drop --scheduler");
    let error = fails(&home, &["scheduler", "--scheduler", "127.0.0.1:7070"]);
    assert_eq!(error, "`drover scheduler` serves a store itself; drop --scheduler");
}

#[test]
fn unreachable_or_malformed_addresses_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().to_string();
    drop(listener);

    let error = fails(&home, &["--scheduler", &dead, "experiments", "list"]);
    assert!(error.contains(&format!("no scheduler answers at http://{dead}")), "{error}");
    assert!(error.contains("drop --scheduler"), "{error}");
    let outcome =
        run(drover(&home).env("DROVER_SCHEDULER", format!("http://{dead}")).args(["runs", "list"]));
    assert!(!outcome.success && outcome.stderr.contains("drop --scheduler"), "{}", outcome.stderr);

    let error = fails(&home, &["--scheduler", "no-port-here", "experiments", "list"]);
    assert!(error.contains("invalid scheduler address 'no-port-here'"), "{error}");
    assert!(!home.exists(), "a failed connection must not create a local store");
}

#[test]
fn bad_store_directories_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "not a store").unwrap();
    let error = fails(&file, &["experiments", "list"]);
    assert_eq!(error, format!("the data directory {} is a file, not a directory", file.display()));

    let newer = dir.path().join("newer");
    drop(Store::open(&newer).unwrap());
    {
        let db = drover_scheduler::store::open_database(&newer).unwrap();
        db.insert(b"m/schema", &7u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let error = fails(&newer, &["experiments", "list"]);
    assert!(error.contains("written by a newer drover (schema 7"), "{error}");
    let error = fails(&newer, &["scheduler", "--listen", "127.0.0.1:0"]);
    assert!(error.contains("written by a newer drover"), "{error}");
}

#[test]
fn the_scheduler_refuses_to_listen_beyond_loopback_without_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let error = fails(&dir.path().join("s"), &["scheduler", "--listen", "0.0.0.0:0"]);
    assert!(error.contains("--insecure") && error.contains("0.0.0.0:0"), "{error}");
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &[],
        &["experiments"],
        &["experiments", "create"],
        &["experiments", "list"],
        &["experiments", "rename"],
        &["experiments", "delete"],
        &["experiments", "restore"],
        &["runs"],
        &["runs", "list"],
        &["runs", "describe"],
        &["runs", "delete"],
        &["runs", "restore"],
        &["runs", "logs"],
        &["runs", "cancel"],
        &["run"],
        &["sweep"],
        &["sweeps"],
        &["sweeps", "list"],
        &["sweeps", "describe"],
        &["sweeps", "cancel"],
        &["scheduler"],
        &["worker"],
        &["status"],
    ];
    for command in commands {
        let outcome = run(drover(dir.path()).args(*command).arg("--help"));
        assert!(outcome.success, "drover {command:?} --help failed: {}", outcome.stderr);
        assert!(outcome.stdout.contains("Usage: drover"), "{}", outcome.stdout);
    }
}

/// Everything the scheduler acknowledged survives a SIGKILL at an arbitrary moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_a_hard_kill() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let scheduler = SchedulerProcess::spawn(&home);
    let client = Client::connect(&scheduler.address).await.unwrap();
    let experiment = client
        .create_experiment(CreateExperiment {
            name: ExperimentName::parse("durable").unwrap(),
            artifact_location: None,
            tags: Vec::new(),
        })
        .await
        .unwrap();

    // Writers log until the kill; each remembers what was acknowledged.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for writer in 0..8 {
        let client = client.clone();
        let stopped = stopped.clone();
        let experiment_id = experiment.id;
        writers.push(tokio::spawn(async move {
            let mut acknowledged: Vec<(RunId, i64)> = Vec::new();
            let mut step = 0;
            let mut run_id = None;
            while !*stopped.borrow() {
                let current = match run_id {
                    Some(id) if step % 50 != 0 => id,
                    _ => match client.create_run(request_default(experiment_id)).await {
                        Ok(run) => {
                            let id = run.info.run_id;
                            if client
                                .log_params(
                                    id,
                                    vec![Param { key: "writer".into(), value: writer.to_string() }],
                                )
                                .await
                                .is_err()
                            {
                                break;
                            }
                            run_id = Some(id);
                            id
                        }
                        Err(_) => break,
                    },
                };
                let points = (0..10)
                    .map(|i| Metric {
                        key: "m".into(),
                        value: i as f64,
                        timestamp_ms: step,
                        step: step * 10 + i,
                    })
                    .collect();
                match client.log_metrics(current, points).await {
                    Ok(_) => acknowledged.push((current, step)),
                    Err(_) => break,
                }
                step += 1;
            }
            acknowledged
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut scheduler = scheduler;
    scheduler.signal(libc::SIGKILL);
    scheduler.wait();
    let _ = stop.send(true);

    let mut expected: HashMap<RunId, Vec<i64>> = HashMap::new();
    for writer in writers {
        for (run_id, step) in writer.await.unwrap() {
            expected.entry(run_id).or_default().push(step);
        }
    }
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total > 50, "too few acknowledged writes to prove anything: {total}");

    let store = Store::open(&home).unwrap();
    assert_eq!(store.experiment(&ExperimentRef::Name("durable".into())).unwrap().id, experiment.id);
    for (run_id, steps) in expected {
        let run = store.run(run_id).unwrap();
        assert_eq!(run.data.params.len(), 1, "params of {run_id} lost");
        let history = store
            .metric_history(MetricHistoryQuery {
                run_id,
                key: "m".into(),
                start_step: None,
                end_step: None,
                max_results: None,
                page_token: None,
                attempt: None,
            })
            .unwrap()
            .items;
        let stored: std::collections::HashSet<i64> =
            history.iter().map(|m| m.timestamp_ms).collect();
        for step in steps {
            assert!(stored.contains(&step), "acknowledged batch {step} of run {run_id} was lost");
        }
    }
}

#[tokio::test]
async fn runs_list_filters_orders_and_prints_csv() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let mut ids = Vec::new();
    {
        let store = Store::open(&home).unwrap();
        for i in 0..4 {
            let mut request = request_default(drover_proto::domain::DEFAULT_EXPERIMENT_ID);
            request.run_name = Some(format!("trial, \"{i}\""));
            request.start_time_ms = Some(1_000 + i);
            let run_id = store.create_run(request).await.unwrap().info.run_id;
            store
                .log_params(run_id, vec![Param { key: "alpha".into(), value: format!("0.{i}") }])
                .await
                .unwrap();
            store
                .log_metrics(
                    run_id,
                    vec![Metric {
                        key: "rmse".into(),
                        value: 1.0 - i as f64 / 10.0,
                        timestamp_ms: 1,
                        step: 0,
                    }],
                )
                .await
                .unwrap();
            ids.push(run_id.to_string());
        }
    }
    let listed = ok(
        &home,
        &[
            "runs",
            "list",
            "--filter",
            "metrics.rmse < 0.85 and params.alpha != '0.3'",
            "-o",
            "json",
        ],
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let found: Vec<&str> =
        listed.as_array().unwrap().iter().map(|r| r["info"]["run_id"].as_str().unwrap()).collect();
    assert_eq!(found, vec![ids[2].as_str()]);

    let ordered = ok(&home, &["runs", "list", "--order-by", "metrics.rmse ASC", "-o", "csv"]);
    let lines: Vec<&str> = ordered.lines().collect();
    assert_eq!(
        lines[0],
        "run_id,experiment_id,run_name,status,user_id,start_time,end_time,artifact_uri,params.alpha,metrics.rmse,tags.mlflow.runName"
    );
    assert!(
        lines[1].starts_with(&format!("{},0,\"trial, \"\"3\"\"\",RUNNING", ids[3])),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(",0.3,0.7,"), "{}", lines[1]);
    assert!(lines[4].starts_with(&ids[0]), "{ordered}");

    let table = ok(&home, &["runs", "list"]);
    assert!(table.contains("rmse=0.7"), "{table}");
    let error = fails(&home, &["runs", "list", "--filter", "metrics.rmse <> 1"]);
    assert!(error.starts_with("invalid filter"), "{error}");
    let error = fails(&home, &["runs", "list", "--order-by", "bogus"]);
    assert!(error.starts_with("invalid order_by clause 'bogus'"), "{error}");
}
