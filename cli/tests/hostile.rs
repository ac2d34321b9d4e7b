//! A hostile client against a real `drover scheduler` process: every request that once
//! crashed, stalled or fooled the scheduler, replayed. Each gets its refusal or a bounded
//! answer; meanwhile a probe keeps searching experiments and must keep answering quickly;
//! the scheduler's peak resident memory stays under 1 GB; and the store is intact after.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{SchedulerProcess, WorkerProcess, drover, project, run};

/// What an HTTP call answered.
struct Answer {
    status: u16,
    body: Value,
}

/// One HTTP/1.1 request on its own connection; `headers` are sent as given (a `Host` among
/// them replaces the default).
fn call(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let (status, payload) = drover_testkit::http::call(address, method, path, headers, body);
    Answer { status, body: serde_json::from_str(&payload).unwrap_or(Value::String(payload)) }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn post(address: &str, endpoint: &str, body: Value) -> Answer {
    call(address, "POST", &format!("/api/2.0/mlflow/{endpoint}"), &[JSON], &body.to_string())
}

/// The scheduler's peak resident memory so far, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Searches experiments over and over until told to stop; the slowest answer.
fn probe(address: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answer = post(&address, "experiments/search", json!({ "max_results": 10 }));
            assert_eq!(answer.status, 200, "{}", answer.body);
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        slowest
    })
}

fn assert_refused(answer: &Answer, status: u16, words: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let message = answer.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "expected '{words}' in: {message}");
}

#[test]
fn hostile_client() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler =
        SchedulerProcess::spawn_with(&dir.path().join("store"), &["--artifact-limit", "4k"]);
    let address = scheduler.address.trim_start_matches("http://").to_string();
    let pid = scheduler.child.id();

    // A store to attack: an experiment of 1,000 runs, each named with 2,000 characters.
    let experiment = post(&address, "experiments/create", json!({ "name": "target" }));
    let experiment_id = experiment.body["experiment_id"].as_str().unwrap().to_string();
    let long_name = "n".repeat(2_000);
    let mut run_ids = Vec::new();
    for index in 0..1_000 {
        let created = post(
            &address,
            "runs/create",
            json!({ "experiment_id": experiment_id, "run_name": format!("{long_name}{index}") }),
        );
        assert_eq!(created.status, 200, "{}", created.body);
        run_ids.push(created.body["run"]["info"]["run_id"].as_str().unwrap().to_string());
    }
    let longest = post(
        &address,
        "runs/create",
        json!({ "experiment_id": experiment_id, "run_name": "a".repeat(8_000) }),
    );
    assert_eq!(longest.status, 200, "{}", longest.body);

    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(address.clone(), stop.clone());

    // 1. Order-by clauses by the tens of thousands: refused before any work.
    let search = |order_by: Value| {
        post(
            &address,
            "runs/search",
            json!({ "experiment_ids": [experiment_id], "order_by": order_by, "max_results": 1 }),
        )
    };
    let many = vec!["attributes.run_name"; 40_000];
    assert_refused(&search(json!(many)), 400, "at most 10");
    let nowhere: Vec<String> = (0..40_000).map(|i| format!("params.`k{i}`")).collect();
    assert_refused(&search(json!(nowhere)), 400, "at most 10");
    // The most a search may sort by, over every long name, answers.
    let sorted = search(json!(vec!["attributes.run_name DESC"; 10]));
    assert_eq!(sorted.status, 200, "{}", sorted.body);

    // 3. LIKE patterns that made matching quadratic, two at once.
    let pattern = format!("attributes.run_name LIKE '%{}b'", "a".repeat(50_000));
    let middle = format!("attributes.run_name LIKE '%{}b%'", "a".repeat(5_000));
    let slow: Vec<_> = [pattern, middle]
        .into_iter()
        .map(|filter| {
            let (address, experiment_id) = (address.clone(), experiment_id.clone());
            std::thread::spawn(move || {
                let body = json!({ "experiment_ids": [experiment_id], "filter": filter });
                post(&address, "runs/search", body)
            })
        })
        .collect();
    for answer in slow {
        let answer = answer.join().unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        let runs = answer.body["runs"].as_array().cloned().unwrap_or_default();
        assert!(runs.is_empty(), "nothing matches: {}", answer.body);
    }
    let huge_filter = format!("attributes.run_name LIKE '{}'", "a".repeat(70_000));
    assert_refused(
        &post(&address, "runs/search", json!({ "filter": huge_filter })),
        400,
        "at most 65536 bytes",
    );

    // 2. Other sites' pages, and rebound names.
    let create = r#"{"name": "planted"}"#;
    let from_page = call(
        &address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &[("Content-Type", "text/plain"), ("Origin", "http://evil.example")],
        create,
    );
    assert_eq!(from_page.status, 403, "{}", from_page.body);
    let plain = call(
        &address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &[("Content-Type", "text/plain")],
        create,
    );
    assert_refused(&plain, 400, "Content-Type: application/json");
    let form = call(
        &address,
        "POST",
        &format!("/api/2.0/mlflow/runs/delete?run_id={}", run_ids[0]),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "",
    );
    assert_refused(&form, 400, "Content-Type: application/json");
    let rebound = call(
        &address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &[JSON, ("Host", "attacker.example")],
        create,
    );
    assert_refused(&rebound, 403, "does not serve the host 'attacker.example'");
    let json_from_page = call(
        &address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &[JSON, ("Origin", "http://evil.example")],
        create,
    );
    assert_eq!(json_from_page.status, 403, "{}", json_from_page.body);
    // What keeps working: the scheduler's own origin, and clients that send no Origin.
    let own_origin = format!("http://{address}");
    let ours = call(
        &address,
        "POST",
        "/api/2.0/mlflow/experiments/search",
        &[JSON, ("Origin", &own_origin)],
        "{}",
    );
    assert_eq!(ours.status, 200, "{}", ours.body);

    // 4. Values past their limits.
    let too_long = "x".repeat(100_000);
    assert_refused(
        &post(
            &address,
            "runs/create",
            json!({ "experiment_id": experiment_id, "run_name": too_long }),
        ),
        400,
        "the limit is 8000",
    );
    assert_refused(
        &post(
            &address,
            "runs/create",
            json!({ "experiment_id": experiment_id, "user_id": too_long }),
        ),
        400,
        "the limit is 8000",
    );
    for tags in [
        json!([{ "key": "", "value": "v" }]),
        json!([{ "key": "a\nb", "value": "v" }]),
        json!([{ "key": "../../x", "value": "v" }]),
        json!([{ "key": "k".repeat(251), "value": "v" }]),
        json!([{ "key": "k", "value": "v".repeat(8_001) }]),
        json!([{ "key": "k", "value": "1" }, { "key": "k", "value": "2" }]),
    ] {
        let answer =
            post(&address, "experiments/create", json!({ "name": "tagged", "tags": tags }));
        assert_eq!(answer.status, 400, "{tags}: {}", answer.body);
    }

    // 6. Integers past i64, and 8. names that would steer a terminal.
    for step in ["9223372036854775808", "1e19", "1e300"] {
        let body = format!(
            r#"{{"run_id": "{}", "key": "m", "value": 1, "timestamp": 1, "step": {step}}}"#,
            run_ids[1]
        );
        let answer = call(&address, "POST", "/api/2.0/mlflow/runs/log-metric", &[JSON], &body);
        assert_refused(&answer, 400, "out of range");
    }
    for name in ["evil\u{1b}[2J", "line\rover", "nul\0", "flip\u{202e}"] {
        let answer = post(&address, "experiments/create", json!({ "name": name }));
        assert_refused(&answer, 400, "control character");
    }

    // 9. Crafted page tokens, long and non-UTF-8 artifact names, oversize and partial uploads.
    assert_refused(
        &post(
            &address,
            "runs/search",
            json!({ "page_token": "b2Zmc2V0OjE4NDQ2NzQ0MDczNzA5NTUxNjE1" }),
        ),
        400,
        "invalid page token",
    );
    let artifacts = "/api/2.0/mlflow-artifacts/artifacts";
    let long = call(&address, "PUT", &format!("{artifacts}/0/{}", "n".repeat(256)), &[], "x");
    assert_refused(&long, 400, "longer than the 255");
    let not_utf8 = call(&address, "GET", &format!("{artifacts}/0/%ff%fe"), &[], "");
    assert_eq!(not_utf8.status, 400, "{}", not_utf8.body);
    assert!(not_utf8.body["error_code"].is_string(), "MLflow's JSON error: {}", not_utf8.body);
    let oversize =
        call(&address, "PUT", &format!("{artifacts}/0/big.bin"), &[], &"x".repeat(5_000));
    assert_refused(&oversize, 400, "--artifact-limit");
    let listing = call(&address, "GET", &format!("{artifacts}?path=0"), &[], "");
    assert_eq!(listing.status, 200, "{}", listing.body);
    assert_eq!(listing.body["files"], json!([]), "a refused upload leaves nothing behind");
    let ok = call(&address, "PUT", &format!("{artifacts}/0/small.txt"), &[], "hello");
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Half an upload in flight is invisible to listings.
    let mut half = TcpStream::connect(&address).unwrap();
    write!(
        half,
        "PUT {artifacts}/0/half.bin HTTP/1.1\r\nHost: {address}\r\nContent-Length: 1000\r\n\r\n{}",
        "y".repeat(500)
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let listing = call(&address, "GET", &format!("{artifacts}?path=0"), &[], "");
    let names: Vec<&str> = listing.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small.txt"], "{}", listing.body);
    drop(half);

    stop.store(true, Ordering::Relaxed);
    let slowest = prober.join().unwrap();
    assert!(slowest < Duration::from_millis(100), "the probe waited {slowest:?}");
    let peak = peak_memory(pid);
    assert!(peak < 1 << 30, "the scheduler's resident memory peaked at {peak} bytes");

    // The store is intact: every run is there, none was deleted, nothing was planted.
    let page = post(
        &address,
        "runs/search",
        json!({ "experiment_ids": [experiment_id], "max_results": 2000 }),
    );
    assert_eq!(page.body["runs"].as_array().unwrap().len(), 1_001);
    let experiments = post(&address, "experiments/search", json!({}));
    let names: Vec<&str> = experiments.body["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"target") && names.contains(&"Default"), "{names:?}");
}

/// The fifth reproduction: a run drover executes keeps its lifecycle. No status write
/// finishes it while it waits, and deleting it cancels it, so it never runs.
#[test]
fn the_api_cannot_corrupt_a_run_drover_executes() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = SchedulerProcess::spawn(&dir.path().join("store"));
    let address = scheduler.address.trim_start_matches("http://").to_string();
    let home = dir.path().join(".drover");
    let project = project(
        &dir.path().join("project"),
        "name: marker\nentry_points:\n  main:\n    command: \"echo ran > ran.txt; sleep 30\"\n",
        &[],
    );
    // No worker yet: both runs wait in the queue.
    let submit = || {
        let outcome = run(drover(&home)
            .args(["--scheduler", &scheduler.address, "run", "--detach"])
            .arg(&project));
        assert!(outcome.success, "{}", outcome.stderr);
        outcome.stdout.trim().to_string()
    };
    let (finished_early, deleted) = (submit(), submit());

    let answer = post(
        &address,
        "runs/update",
        json!({ "run_id": finished_early, "status": "FINISHED", "end_time": 1 }),
    );
    assert_refused(&answer, 400, "queued to run on a worker");
    let answer = post(&address, "runs/delete", json!({ "run_id": deleted }));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post(&address, "runs/update", json!({ "run_id": finished_early, "end_time": 1 }));
    assert_refused(&answer, 400, "before the run's start_time");

    // A worker arrives: the deleted run stays cancelled, the other runs, and a KILLED written
    // through the API cancels it.
    let worker =
        WorkerProcess::spawn(&scheduler.address, &dir.path().join("work"), "hostile-worker", 2);
    let get = |run_id: &str| {
        call(&address, "GET", &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"), &[], "").body
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&finished_early)["run"]["info"]["status"] != "RUNNING" {
        assert!(Instant::now() < deadline, "the run did not start: {}", get(&finished_early));
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed =
        post(&address, "runs/update", json!({ "run_id": finished_early, "status": "KILLED" }));
    assert_eq!(killed.status, 200, "{}", killed.body);
    while get(&finished_early)["run"]["info"]["status"] != "KILLED" {
        assert!(
            Instant::now() < deadline,
            "the cancel did not end the run: {}",
            get(&finished_early)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ended = get(&finished_early);
    let info = &ended["run"]["info"];
    assert!(info["end_time"].as_i64().unwrap() >= info["start_time"].as_i64().unwrap(), "{ended}");

    let gone = get(&deleted);
    assert_eq!(gone["run"]["info"]["status"], "KILLED", "{gone}");
    assert_eq!(gone["run"]["info"]["lifecycle_stage"], "deleted", "{gone}");
    let tags = gone["run"]["data"]["tags"].as_array().cloned().unwrap_or_default();
    assert!(
        !tags.iter().any(|tag| tag["key"] == "drover.attempt"),
        "a deleted run was placed on a worker: {gone}"
    );
    drop(worker);
}
