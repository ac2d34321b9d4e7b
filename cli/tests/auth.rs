//! A scheduler started with `--token-file`, as a cluster admin runs it: the CLI, workers, the
//! REST API and the web UI all need the token; a wrong or missing one is refused, logged with
//! the peer, and changes nothing; runs log through the worker's proxies and never see the
//! token; and the token appears in no log, run, tag or stored byte.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_scheduler::{Holder, read_holder};
use support::{DROVER, drover, project, run, send_signal, tracking_script};

/// A scheduler (or worker) whose log goes to a file, killed on drop.
struct Logged {
    child: Child,
    log: PathBuf,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_logged(args: &[&str], log: PathBuf) -> Logged {
    let child = Command::new(DROVER)
        .args(args)
        .env("DROVER_LOG", "debug")
        .env_remove("DROVER_SCHEDULER")
        .env_remove("DROVER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Logged { child, log }
}

/// A scheduler on loopback requiring the token in `token_file`; its address.
fn scheduler(dir: &Path, token_file: &Path) -> (Logged, String) {
    let data_dir = dir.join("store");
    let process = spawn_logged(
        &[
            "scheduler",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        dir.join("scheduler.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(Holder { pid, address: Some(address) }) = read_holder(&data_dir)
            && pid == process.child.id()
        {
            return (process, address);
        }
        assert!(Instant::now() < deadline, "the scheduler did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    drover_testkit::http::call(address.trim_start_matches("http://"), method, path, headers, body)
}

/// The raw response head and body, for headers the plain client leaves out.
fn raw(address: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A log without its terminal colour codes.
fn strip_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn token() -> String {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut bytes)
        .unwrap();
    format!("drover-test-{}", hex::encode(bytes))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_scheduler_with_a_token_serves_only_those_who_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = token();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{secret}\n")).unwrap();
    let (scheduler, address) = scheduler(dir.path(), &token_file);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli = |token: Option<&str>| {
        let mut command = drover(&home);
        command.args(["--scheduler", &address]);
        match token {
            Some(token) => command.env("DROVER_TOKEN", token),
            None => command.env_remove("DROVER_TOKEN"),
        };
        command
    };

    // The CLI: refused without the token and with a wrong one, saying which; nothing changes.
    let missing = run(cli(None).args(["experiments", "create", "--experiment-name", "refused-1"]));
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("requires a token") && missing.stderr.contains("DROVER_TOKEN"),
        "{}",
        missing.stderr
    );
    let wrong = run(cli(Some("drover-test-not-the-token")).args([
        "experiments",
        "create",
        "--experiment-name",
        "refused-2",
    ]));
    assert!(!wrong.success);
    assert!(wrong.stderr.contains("not this scheduler's"), "{}", wrong.stderr);
    let created =
        run(cli(Some(&secret)).args(["experiments", "create", "--experiment-name", "with-token"]));
    assert!(created.success, "{}", created.stderr);
    let listed =
        run(cli(None).args(["--token-file", token_file.to_str().unwrap(), "experiments", "list"]));
    assert!(listed.success, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("with-token") && !listed.stdout.contains("refused"),
        "{}",
        listed.stdout
    );

    // The REST API: 401 with MLflow's error shape, then 200 with the bearer token.
    let search = "/api/2.0/mlflow/experiments/search?max_results=10";
    let (status, body) = http(&address, "GET", search, &[], "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UNAUTHENTICATED"), "{body}");
    let bearer = format!("Bearer {secret}");
    let (status, body) = http(&address, "GET", search, &[("Authorization", &bearer)], "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("with-token"));
    let (status, _) = http(
        &address,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer drover-test-wrong-wrong"),
        ],
        r#"{"name": "refused-3"}"#,
    );
    assert_eq!(status, 401);

    // The web UI: a page asks to sign in; its stylesheet is open; the sign-in sets a cookie
    // that is not the token, and the cookie opens the pages and their endpoints.
    let (status, page) = http(&address, "GET", "/runs?e=0", &[("Accept", "text/html")], "");
    assert_eq!(status, 401);
    assert!(
        page.contains("<form method=\"post\" action=\"/login\">")
            && page.contains("value=\"/runs?e=0\""),
        "{page}"
    );
    assert_eq!(http(&address, "GET", "/static/style.css", &[], "").0, 200);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, page) =
        http(&address, "POST", "/login", &form, "token=drover-test-wrong-wrong&next=%2Fruns");
    assert_eq!(status, 401);
    assert!(page.contains("not this scheduler"), "{page}");
    let host = address.trim_start_matches("http://");
    let body = format!("token={secret}&next=%2Fruns%3Fe%3D0");
    let answer = raw(
        &address,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    assert!(answer.contains("location: /runs?e=0"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .and_then(|cookie| cookie.split(';').next())
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("drover_session=") && !cookie.contains(&secret), "{cookie}");
    assert!(answer.to_lowercase().contains("httponly; samesite=strict"), "{answer}");
    let (status, page) =
        http(&address, "GET", "/runs?e=0", &[("Accept", "text/html"), ("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    assert!(page.contains("/static/app.js"));
    assert_eq!(http(&address, "GET", "/api/drover/experiments", &[("Cookie", &cookie)], "").0, 200);
    assert_eq!(http(&address, "GET", "/metrics", &[], "").0, 401, "metrics need the token");
    assert_eq!(http(&address, "GET", "/metrics", &[("Authorization", &bearer)], "").0, 200);
    let forged = format!("drover_session={secret}");
    assert_eq!(http(&address, "GET", "/api/drover/experiments", &[("Cookie", &forged)], "").0, 401);

    // A worker with the token runs a local project whose script logs through the worker's
    // loopback proxy, which adds the token; the run never sees it.
    let work = dir.path().join("work");
    let worker = spawn_logged(
        &[
            "--scheduler",
            &address,
            "--token-file",
            token_file.to_str().unwrap(),
            "worker",
            "--worker-id",
            "auth-worker",
            "--work-dir",
            work.to_str().unwrap(),
        ],
        dir.path().join("worker.log"),
    );
    let logs = project(
        &dir.path().join("logs"),
        "entry_points: {main: {command: 'python3 track.py'}}\n",
        &[("track.py", &tracking_script("through_proxy"))],
    );
    let submitted = run(cli(Some(&secret)).arg("run").arg(&logs));
    assert!(submitted.success, "{}\n{}", submitted.stdout, submitted.stderr);
    let printed = format!("{}{}", submitted.stdout, submitted.stderr);
    assert!(printed.contains("succeeded"), "{printed}");
    assert!(!printed.contains(&secret), "the run saw the token");
    let run_id =
        printed.split("ID='").nth(1).and_then(|rest| rest.split('\'').next()).unwrap().to_string();
    let described = run(cli(Some(&secret)).args(["runs", "describe", &run_id, "-o", "json"]));
    assert!(described.stdout.contains("through_proxy"), "{}", described.stdout);
    let log = run(cli(Some(&secret)).args(["runs", "logs", &run_id]));
    assert!(log.stdout.contains("environment:"), "{}", log.stdout);
    assert!(!log.stdout.contains(&secret), "the run saw the token");

    // The token is nowhere: not in the store, the runs' directories, or either log (which
    // do name the refused peers).
    drop(worker);
    send_signal(&scheduler.child, libc::SIGTERM);
    let scheduler_log = strip_colours(&std::fs::read_to_string(&scheduler.log).unwrap());
    assert!(
        scheduler_log.contains("refused a request without this scheduler's token"),
        "{scheduler_log}"
    );
    assert!(scheduler_log.contains("peer=127.0.0.1:"), "{scheduler_log}");
    drop(scheduler);
    let leaks: Vec<PathBuf> = files_containing(dir.path(), &secret)
        .into_iter()
        .filter(|path| path != &token_file)
        .collect();
    assert!(leaks.is_empty(), "the token leaked into {leaks:?}");
}

#[test]
fn beyond_loopback_a_scheduler_needs_a_token_or_insecure_and_may_open_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let refused = run(Command::new(DROVER)
        .args(["scheduler", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data_dir)
        .env_remove("DROVER_SCHEDULER"));
    assert!(!refused.success);
    assert!(refused.stderr.contains("--token-file"), "{}", refused.stderr);

    let short = dir.path().join("short");
    std::fs::write(&short, "tiny\n").unwrap();
    let refused = run(Command::new(DROVER)
        .args(["scheduler", "--listen", "0.0.0.0:0", "--token-file"])
        .arg(&short)
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("DROVER_SCHEDULER"));
    assert!(!refused.success);
    assert!(refused.stderr.contains("too short"), "{}", refused.stderr);

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token()).unwrap();
    let scheduler = spawn_logged(
        &[
            "scheduler",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        dir.path().join("scheduler.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_holder(&data_dir).and_then(|holder| holder.address).is_none() {
        assert!(Instant::now() < deadline, "a scheduler with a token should start beyond loopback");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(scheduler);

    // --open-metrics leaves /metrics, and only it, open.
    let data_dir = dir.path().join("open-store");
    let open = spawn_logged(
        &[
            "scheduler",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
            "--open-metrics",
        ],
        dir.path().join("open.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let address = loop {
        if let Some(Holder { address: Some(address), .. }) = read_holder(&data_dir) {
            break address;
        }
        assert!(Instant::now() < deadline, "the scheduler did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(http(&address, "GET", "/metrics", &[], "").0, 200);
    assert_eq!(http(&address, "GET", "/api/drover/experiments", &[], "").0, 401);
    drop(open);
}
