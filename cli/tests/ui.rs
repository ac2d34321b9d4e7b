//! The web UI in a real headless Chromium against a real scheduler and two workers: the runs
//! table filtered, sorted and three runs compared; a running run's log and metric arriving
//! live; a sweep's parallel coordinates; the cluster's two workers; a hostile run name shown
//! as text. Screenshots of every page land in `target/tmp/ui-screenshots/`. Beside it, the
//! drover JSON endpoints at the HTTP level: bad input gets 400 with its message, unknown ids
//! 404.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_testkit::browser::Browser;
use serde_json::{Value, json};
use support::{SchedulerProcess, WorkerProcess, drover, project, run};

const WAIT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 call with an optional JSON body; the status and the JSON answer.
fn call(address: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let json = [("Content-Type", "application/json")];
    let headers: &[(&str, &str)] = if body.is_some() { &json } else { &[] };
    let text = body.map(Value::to_string).unwrap_or_default();
    let (status, payload) = drover_testkit::http::call(address, method, path, headers, &text);
    (status, serde_json::from_str(&payload).unwrap_or(Value::String(payload)))
}

fn mlflow(address: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(address, "POST", &format!("/api/2.0/mlflow/{path}"), Some(&body));
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

/// Runs logged through MLflow's API, as a training script would: two kinds, different alphas,
/// a loss curve each.
fn logged_runs(address: &str, experiment: &str, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let created = mlflow(
                address,
                "runs/create",
                json!({ "experiment_id": experiment, "run_name": name, "start_time": 1_700_000_000_000i64 + index as i64 * 1000 }),
            );
            let run_id = created["run"]["info"]["run_id"].as_str().unwrap().to_string();
            let metrics: Vec<Value> = (0..50)
                .map(|step| json!({ "key": "loss", "value": 1.0 / (1.0 + step as f64 * (index + 1) as f64), "timestamp": 1_700_000_000_000i64 + step, "step": step }))
                .collect();
            let kind = if index % 2 == 0 { "even" } else { "odd" };
            mlflow(
                address,
                "runs/log-batch",
                json!({ "run_id": run_id, "metrics": metrics, "params": [
                    { "key": "alpha", "value": format!("0.{index}") },
                    { "key": "kind", "value": kind },
                    { "key": "layers", "value": "3" },
                ], "tags": [{ "key": "note", "value": name }] }),
            );
            mlflow(address, "runs/update", json!({ "run_id": run_id, "status": "FINISHED", "end_time": 1_700_000_100_000i64 }));
            run_id
        })
        .collect()
}

const SLOW_PROJECT: &str = "name: slow\nentry_points:\n  main:\n    parameters:\n      steps: {type: int, default: 40}\n    command: \"sh slow.sh {steps}\"\n";
const SLOW_SCRIPT: &str = "i=1\nwhile [ $i -le $1 ]; do\n  echo \"working on step $i\"\n  echo \"::metric loss=$(( 100 - i )) step=$i\"\n  sleep 0.5\n  i=$(( i + 1 ))\ndone\n";

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_ui_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let scheduler = SchedulerProcess::spawn(&dir.path().join("store"));
    let address = scheduler.address.trim_start_matches("http://").to_string();
    let base = format!("http://{address}");
    let _first = WorkerProcess::spawn(&address, &dir.path().join("w1"), "ui-worker-1", 2);
    let _second = WorkerProcess::spawn(&address, &dir.path().join("w2"), "ui-worker-2", 2);
    let shots = screenshots();
    let browser = Browser::start(1400, 1000).unwrap_or_else(|error| panic!("{error}"));
    let shot = |name: &str| browser.screenshot(&shots.join(format!("{name}.png"))).unwrap();

    let experiment =
        mlflow(&address, "experiments/create", json!({ "name": "ui-test" }))["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
    let hostile = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";
    let names = ["first", "second", "third", "fourth", "fifth", hostile];
    let ids = logged_runs(&address, &experiment, &names);

    // The empty state of a fresh experiment shows the command to run first.
    let empty =
        mlflow(&address, "experiments/create", json!({ "name": "ui-empty" }))["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
    browser.goto(&format!("{base}/runs?e={empty}")).unwrap();
    browser
        .wait_for(
            "the empty state",
            "return document.querySelector('.empty pre')?.textContent",
            WAIT,
        )
        .unwrap();
    shot("runs-empty");

    // Experiments: the new one is listed with its runs counted.
    browser.goto(&format!("{base}/")).unwrap();
    let listed = browser
        .wait_for("the experiment list", "return [...document.querySelectorAll('table.grid tbody tr')].map(r => r.textContent).find(t => t.includes('ui-test'))", WAIT)
        .unwrap();
    assert!(listed.as_str().unwrap().contains('6'), "{listed}");
    shot("experiments");

    // The runs table: filter, sort, select three runs, compare.
    browser.goto(&format!("{base}/runs?e={experiment}&cols=params.alpha,metrics.loss")).unwrap();
    browser
        .wait_for(
            "six rows",
            "return document.querySelectorAll('table.runs tbody tr[data-run]').length === 6",
            WAIT,
        )
        .unwrap();
    // The hostile name is text: no element was made from it, no handler ran.
    let hostile_cell = browser
        .eval(&format!("return document.querySelector('a[href=\"/runs/{}\"]').textContent", ids[5]))
        .unwrap();
    assert_eq!(hostile_cell, json!(hostile));
    assert_eq!(browser.eval("return window.__xss === undefined && !document.querySelector('table img, table script')").unwrap(), json!(true));
    shot("runs");

    browser.type_into("input.filter", "params.kind = 'nope\u{E007}").unwrap();
    let message = browser
        .wait_for(
            "the filter's error",
            "return document.querySelector('.inline-error').textContent",
            WAIT,
        )
        .unwrap();
    assert!(
        message.as_str().unwrap().to_lowercase().contains("quote")
            || message.as_str().unwrap().contains("'"),
        "{message}"
    );
    shot("runs-bad-filter");

    browser.type_into("input.filter", "params.kind = 'even'\u{E007}").unwrap();
    browser.wait_for("three even runs", "return document.querySelectorAll('table.runs tbody tr[data-run]').length === 3 && !document.querySelector('.inline-error').textContent", WAIT).unwrap();
    assert!(
        browser.eval("return location.search").unwrap().as_str().unwrap().contains("q=params.kind")
    );
    // Sort by alpha, ascending: click its header twice (descending first).
    browser.click("th:nth-child(9) button.sort").unwrap();
    browser.wait_for("descending alpha", "return document.querySelector('th[aria-sort=descending]')?.textContent.includes('alpha')", WAIT).unwrap();
    let alphas = browser.eval("return [...document.querySelectorAll('table.runs tbody tr[data-run]')].map(r => r.children[8].textContent)").unwrap();
    assert_eq!(alphas, json!(["0.4", "0.2", "0.0"]));
    for row in 1..=3 {
        browser
            .click(&format!("table.runs tbody tr[data-run]:nth-child({row}) input[type=checkbox]"))
            .unwrap();
    }
    browser.wait_for("an enabled Compare", "return !document.querySelector('a.button[href^=\"/compare\"]').classList.contains('disabled')", WAIT).unwrap();
    browser.click("a.button[href^='/compare']").unwrap();
    browser
        .wait_for(
            "the compare page",
            "return location.pathname === '/compare' && document.querySelector('table.compare')",
            WAIT,
        )
        .unwrap();
    let differing = browser.eval("return [...document.querySelectorAll('table.compare tbody tr')].filter(r => r.querySelector('td.differs')).map(r => r.firstChild.textContent)").unwrap();
    assert_eq!(differing, json!(["alpha"]), "only alpha differs among the even runs");
    let series = browser.wait_for("three series on the loss chart", "const c = document.querySelector('canvas.chart'); return c && c.dataset.series === '3' && Number(c.dataset.drawn) > 0 && c.dataset.series", WAIT).unwrap();
    assert_eq!(series, json!("3"));
    shot("compare");
    browser.click("input[type=checkbox]").unwrap();
    browser
        .wait_for(
            "only the differences",
            "return document.querySelectorAll('table.compare tbody tr th').length === 2",
            WAIT,
        )
        .unwrap();

    // A running run: its log and its metric arrive without a reload.
    let slow = project(&dir.path().join("slow"), SLOW_PROJECT, &[("slow.sh", SLOW_SCRIPT)]);
    let outcome =
        run(drover(&home).args(["--scheduler", &address, "run"]).arg(&slow).args(["--detach"]));
    assert!(outcome.success, "{}", outcome.stderr);
    let live = outcome.stdout.trim().to_string();
    browser.goto(&format!("{base}/runs/{live}")).unwrap();
    browser.eval("window.__page = 'kept'; return 1").unwrap();
    let first = browser
        .wait_for("a first log line", "const t = document.querySelector('pre.log').textContent; return t.includes('working on step') && t.length", WAIT)
        .unwrap();
    browser.wait_for("a first chart", "const c = document.querySelector('canvas.chart'); return c && Number(c.dataset.drawn) > 0 && Number(c.dataset.drawn)", WAIT).unwrap();
    let points = browser
        .eval("return Number(document.querySelector('canvas.chart').dataset.drawn)")
        .unwrap();
    browser
        .wait_for(
            "more log",
            &format!("return document.querySelector('pre.log').textContent.length > {first}"),
            WAIT,
        )
        .unwrap();
    browser
        .wait_for(
            "a new metric point",
            &format!(
                "return Number(document.querySelector('canvas.chart').dataset.drawn) > {points}"
            ),
            WAIT,
        )
        .unwrap();
    assert_eq!(
        browser.eval("return window.__page").unwrap(),
        json!("kept"),
        "the page never reloaded"
    );
    assert!(
        browser
            .eval("return document.querySelector('.status').textContent")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("running")
    );
    shot("run-live");
    browser.click("button.danger").unwrap_or_else(|error| panic!("cancel: {error}"));
    browser
        .wait_for(
            "the cancelled run",
            "return document.querySelector('.status').textContent.includes('killed')",
            WAIT,
        )
        .unwrap();
    let attempt = browser
        .wait_for("the attempt, ended", "const row = document.querySelector('table.attempts tbody tr'); return row && row.textContent.includes('KILLED') && row.textContent", WAIT)
        .unwrap();
    assert!(attempt.to_string().contains("ui-worker-"), "{attempt}");

    // A sweep: its parallel-coordinates plot has a line per trial.
    let outcome = run(drover(&home).args(["--scheduler", &address, "sweep"]).arg(&slow).args([
        "-P",
        "steps=1,2,3,4",
        "--method",
        "grid",
        "--parallel",
        "4",
        "--metric",
        "loss",
        "--detach",
    ]));
    assert!(outcome.success, "{}", outcome.stderr);
    let sweep = outcome.stdout.trim().to_string();
    browser.goto(&format!("{base}/sweeps/{sweep}")).unwrap();
    browser.wait_for("four trials in the plot", "const c = document.querySelector('canvas.parallel'); return c && Number(c.dataset.lines) >= 4", Duration::from_secs(60)).unwrap();
    browser
        .wait_for(
            "the finished sweep",
            "return document.querySelector('.status').textContent.includes('finished')",
            Duration::from_secs(60),
        )
        .unwrap();
    shot("sweep");
    browser.goto(&format!("{base}/sweeps")).unwrap();
    browser
        .wait_for(
            "the sweep list",
            &format!("return document.querySelector('a[href=\"/sweeps/{sweep}\"]')"),
            WAIT,
        )
        .unwrap();
    shot("sweeps");

    // The cluster: both workers, connected.
    browser.goto(&format!("{base}/cluster")).unwrap();
    let workers = browser
        .wait_for("two workers", "const rows = [...document.querySelectorAll('table.grid tbody tr')].map(r => r.textContent); return rows.filter(t => t.includes('connected') && t.includes('ui-worker')).length === 2 && rows", WAIT)
        .unwrap();
    assert!(
        workers.to_string().contains("ui-worker-1") && workers.to_string().contains("ui-worker-2")
    );
    browser
        .wait_for("no lost attempt", "return document.querySelector('main').textContent.includes('No attempt has lost its worker')", WAIT)
        .unwrap();
    browser.click("table.grid tbody tr button").unwrap();
    browser
        .wait_for("a draining worker", "return [...document.querySelectorAll('table.grid tbody tr')].some(r => r.textContent.includes('draining') && r.textContent.includes('Undrain'))", WAIT)
        .unwrap();
    shot("cluster");
    browser.click("table.grid tbody tr button").unwrap();
    browser
        .wait_for("no draining worker", "return ![...document.querySelectorAll('table.grid tbody tr')].some(r => r.textContent.includes('draining'))", WAIT)
        .unwrap();

    // An artifact, previewed as text (markup in it stays text).
    let note = "<b>not bold</b> and a second line\nline two";
    let path =
        format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/{}/artifacts/notes.txt", ids[0]);
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(stream, "PUT {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{note}", note.len()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    browser.goto(&format!("{base}/runs/{}", ids[0])).unwrap();
    browser
        .wait_for(
            "the artifact list",
            "return document.querySelector('.artifact-list button.link')",
            WAIT,
        )
        .unwrap();
    browser.click(".artifact-list button.link").unwrap();
    let shown = browser
        .wait_for(
            "the preview",
            "return document.querySelector('pre.preview-text')?.textContent",
            WAIT,
        )
        .unwrap();
    assert_eq!(shown, json!(note));
    assert_eq!(
        browser.eval("return document.querySelector('.artifact-preview b')").unwrap(),
        Value::Null
    );
    shot("run-artifact");

    // The run page of the hostile name, in the dark theme.
    browser.goto(&format!("{base}/runs/{}", ids[5])).unwrap();
    browser
        .wait_for("the run's title", "return document.querySelector('h1')?.textContent", WAIT)
        .unwrap();
    assert_eq!(
        browser.eval("return document.querySelector('h1').textContent").unwrap(),
        json!(hostile)
    );
    browser.click("#theme").unwrap();
    assert_eq!(browser.eval("return window.__xss === undefined").unwrap(), json!(true));
    shot("run-dark");
}

/// The models pages: registered models with their aliases, then one model's versions, each
/// linked to the run that produced it with that run's snapshot and image.
#[test]
fn the_models_pages_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = SchedulerProcess::spawn(&dir.path().join("store"));
    let address = scheduler.address.trim_start_matches("http://").to_string();
    let base = format!("http://{address}");
    let shots = screenshots();
    let browser = Browser::start(1400, 900).unwrap_or_else(|error| panic!("{error}"));

    let experiment =
        mlflow(&address, "experiments/create", json!({ "name": "models-ui" }))["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
    let runs = logged_runs(&address, &experiment, &["train-a", "train-b"]);
    let name = "wine quality é";
    let hostile = "<img src=x onerror=\"window.__xss=1\">";
    mlflow(
        &address,
        "registered-models/create",
        json!({ "name": name, "description": hostile, "tags": [{ "key": "team", "value": "vision" }] }),
    );
    mlflow(&address, "registered-models/create", json!({ "name": "other-model" }));
    for (index, run_id) in runs.iter().enumerate() {
        mlflow(
            &address,
            "runs/set-tag",
            json!({ "run_id": run_id, "key": drover_proto::tags::IMAGE, "value": format!("trainer:{index}") }),
        );
        let model = mlflow(
            &address,
            "logged-models",
            json!({ "experiment_id": experiment, "name": "model", "source_run_id": run_id }),
        );
        let model_id = model["model"]["info"]["model_id"].as_str().unwrap();
        mlflow(
            &address,
            "model-versions/create",
            json!({ "name": name, "source": format!("models:/{model_id}"), "model_id": model_id }),
        );
    }
    mlflow(
        &address,
        "registered-models/alias",
        json!({ "name": name, "alias": "champion", "version": "2" }),
    );

    browser.goto(&format!("{base}/models")).unwrap();
    let listed = browser
        .wait_for("the models", "const rows = [...document.querySelectorAll('table.models tbody tr')].map(r => r.textContent); return rows.length === 2 && rows", WAIT)
        .unwrap();
    let row =
        listed.as_array().unwrap().iter().find(|r| r.as_str().unwrap().contains(name)).unwrap();
    assert!(
        row.as_str().unwrap().contains("v2") && row.as_str().unwrap().contains("@champion → v2"),
        "{row}"
    );
    assert!(row.as_str().unwrap().contains(hostile), "the description is shown as text: {row}");
    browser.screenshot(&shots.join("models.png")).unwrap();

    // The filter keeps its state in the URL.
    browser.goto(&format!("{base}/models?q=other")).unwrap();
    browser
        .wait_for("one model", "const rows = [...document.querySelectorAll('table.models tbody tr')]; return rows.length === 1 && rows[0].textContent.includes('other-model')", WAIT)
        .unwrap();

    browser.goto(&format!("{base}/models")).unwrap();
    browser.wait_for("the link", "return document.querySelector('table.models a')", WAIT).unwrap();
    let open = format!(
        "[...document.querySelectorAll('table.models a')].find(a => a.textContent === {}).click(); return true",
        json!(name)
    );
    browser.eval(&open).unwrap();
    let versions = browser
        .wait_for("two versions", "const rows = [...document.querySelectorAll('table.versions tbody tr')].map(r => r.textContent); return rows.length === 2 && rows", WAIT)
        .unwrap();
    let versions: Vec<&str> =
        versions.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(versions[0].starts_with("v2") && versions[0].contains("@champion"), "{versions:?}");
    assert!(
        versions[0].contains("train-b") && versions[0].contains("image trainer:1"),
        "{versions:?}"
    );
    assert!(versions[1].contains("train-a") && versions[1].contains("finished"), "{versions:?}");
    assert_eq!(
        browser.eval("return document.querySelector('h1').textContent").unwrap(),
        json!(name)
    );
    assert_eq!(browser.eval("return window.__xss === undefined").unwrap(), json!(true));
    browser.screenshot(&shots.join("model.png")).unwrap();

    // A version links to its run.
    browser.click("table.versions tbody tr:first-child a").unwrap();
    browser
        .wait_for(
            "the run page",
            &format!("return window.location.pathname === '/runs/{}'", runs[1]),
            WAIT,
        )
        .unwrap();
}

/// Two runs of one project, one line and one parameter apart: the compare page links to what
/// differs, and the diff page shows the one changed file's hunk, the parameter and the
/// metric's delta, as `drover runs diff` does.
#[test]
fn the_diff_page_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let mlproject = "name: diffed\nentry_points:\n  main:\n    parameters:\n      alpha: {type: float, default: 0.5}\n      data: {type: path, default: data.csv}\n    command: \"sh train.sh {alpha}\"\n";
    let script = "echo start\necho \"::metric loss=3\"\necho alpha $1\necho done\n";
    let project =
        project(&dir.path().join("p"), mlproject, &[("train.sh", script), ("data.csv", "1,2\n")]);
    // A git work tree: the first run from its commit, the second with an uncommitted edit.
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"],
    ] {
        let status =
            std::process::Command::new("git").arg("-C").arg(&project).args(args).status().unwrap();
        assert!(status.success(), "git {args:?}");
    }
    let submit = |args: &[&str]| {
        let outcome = run(drover(&home).arg("run").arg(&project).args(args));
        assert!(outcome.success, "{}", outcome.stderr);
        support::run_id_from(&outcome.stderr)
    };
    let a = submit(&[]);
    std::fs::write(project.join("train.sh"), script.replace("loss=3", "loss=2.5")).unwrap();
    let b = submit(&["-P", "alpha=0.7"]);
    let ui = UiProcess::spawn(&home, &[]);
    let base = format!("http://{}", ui.address);
    let shots = screenshots();
    let browser = Browser::start(1400, 1000).unwrap_or_else(|error| panic!("{error}"));

    browser.goto(&format!("{base}/compare?runs={a},{b}")).unwrap();
    browser
        .wait_for("the diff link", "return document.querySelector('.diff-links a')", WAIT)
        .unwrap();
    browser.click(".diff-links a").unwrap();
    browser.wait_for("the patch", "return document.querySelector('pre.patch')", WAIT).unwrap();
    assert_eq!(
        browser.eval("return location.pathname + location.search").unwrap(),
        json!(format!("/diff?a={a}&b={b}"))
    );
    let patch = browser.eval("return document.querySelector('pre.patch').textContent").unwrap();
    let patch = patch.as_str().unwrap();
    assert!(patch.starts_with("--- a/train.sh\n+++ b/train.sh\n@@"), "{patch}");
    assert!(patch.contains("-echo \"::metric loss=3\"\n+echo \"::metric loss=2.5\"\n"), "{patch}");
    let lines = |selector: &str| {
        browser.eval(&format!("return document.querySelectorAll('{selector}').length")).unwrap()
    };
    assert_eq!((lines("pre.patch .diff-add"), lines("pre.patch .diff-del")), (json!(1), json!(1)));
    let text = browser.eval("return document.getElementById('page').innerText").unwrap();
    let text = text.as_str().unwrap();
    assert!(text.contains("The runs differ"), "{text}");
    assert!(text.contains("alpha\t0.5\t0.7"), "{text}");
    assert!(text.contains(&format!("drover runs diff {a} {b}")), "{text}");
    assert!(text.contains("loss\t3\t2.5\t-0.5") || text.contains("loss\t3\t2.5\t−0.5"), "{text}");
    browser.screenshot(&shots.join("diff.png")).unwrap();

    // A run against itself matches.
    browser.goto(&format!("{base}/diff?a={a}&b={a}")).unwrap();
    browser
        .wait_for("the verdict", "return document.querySelector('.verdict.match')", WAIT)
        .unwrap();

    // The second run's page: its data digest, and its uncommitted edit, which opens to the
    // diff kept with its snapshot.
    browser.goto(&format!("{base}/runs/{b}")).unwrap();
    browser.wait_for("the data card", "return document.querySelector('table.data')", WAIT).unwrap();
    let data = browser.eval("return document.querySelector('table.data tbody').innerText").unwrap();
    assert!(data.as_str().unwrap().starts_with("data\tdata.csv\tsha256:"), "{data}");
    let summary = browser
        .eval("return document.querySelector('details.uncommitted summary').textContent")
        .unwrap();
    assert_eq!(summary, json!("+1 -1 in 1 file"));
    browser.click("details.uncommitted summary").unwrap();
    browser
        .wait_for(
            "the uncommitted diff",
            "return document.querySelector('details.uncommitted pre.patch')",
            WAIT,
        )
        .unwrap();
    let patch = browser
        .eval("return document.querySelector('details.uncommitted pre.patch').textContent")
        .unwrap();
    assert!(patch.as_str().unwrap().contains("+echo \"::metric loss=2.5\""), "{patch}");
    browser.screenshot(&shots.join("run-lineage.png")).unwrap();
}

/// A scheduler that requires its token: a page asks to sign in, a wrong token is refused,
/// the right one returns to the page asked for, which then works as usual.
#[test]
fn the_ui_asks_for_the_token_of_a_scheduler_that_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let token = "drover-test-token-for-the-browser";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let scheduler = SchedulerProcess::spawn_with(
        &dir.path().join("store"),
        &["--token-file", token_file.to_str().unwrap()],
    );
    let base = scheduler.address.clone();
    let shots = screenshots();
    let browser = Browser::start(1400, 1000).unwrap_or_else(|error| panic!("{error}"));
    browser.goto(&format!("{base}/cluster")).unwrap();
    browser
        .wait_for(
            "the sign-in form",
            "return document.querySelector('form[action=\"/login\"] input[type=password]')",
            WAIT,
        )
        .unwrap();
    browser.screenshot(&shots.join("sign-in.png")).unwrap();
    browser.type_into("input[name=token]", "drover-test-not-the-token").unwrap();
    browser.click("button[type=submit]").unwrap();
    browser.wait_for("the refusal", "return document.querySelector('.inline-error')?.textContent.includes('not this scheduler')", WAIT).unwrap();
    browser.type_into("input[name=token]", token).unwrap();
    browser.click("button[type=submit]").unwrap();
    browser
        .wait_for("the cluster page, signed in", "return location.pathname === '/cluster' && document.querySelector('h1')?.textContent === 'Cluster' && document.querySelector('main').textContent.includes('No workers')", WAIT)
        .unwrap();
    assert_eq!(
        browser.eval("return document.cookie").unwrap(),
        json!(""),
        "the session cookie is HttpOnly"
    );
}

#[test]
fn drover_endpoints_refuse_bad_input_and_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = SchedulerProcess::spawn(&dir.path().join("store"));
    let address = scheduler.address.trim_start_matches("http://").to_string();
    let experiment =
        mlflow(&address, "experiments/create", json!({ "name": "http" }))["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
    let run_id = logged_runs(&address, &experiment, &["one"]).remove(0);
    let missing = "0123456789abcdef0123456789abcdef";

    let (status, body) = call(
        &address,
        "GET",
        &format!("/api/drover/runs?experiment_ids={experiment}&filter=metrics.loss%20%3C%20%27x"),
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(body["message"].as_str().unwrap().len() > 10, "{body}");
    for (path, expected) in [
        (format!("/api/drover/runs/{missing}"), 404),
        (format!("/api/drover/runs/{missing}/log"), 404),
        ("/api/drover/runs/not-a-run".to_string(), 400),
        (format!("/api/drover/sweeps/{missing}"), 404),
        ("/api/drover/runs?experiment_ids=424242".to_string(), 404),
        ("/api/drover/runs?max_results=0".to_string(), 400),
        ("/api/drover/runs?offset=-1".to_string(), 400),
        ("/api/drover/runs?view=sideways".to_string(), 400),
        ("/api/drover/runs?order_by=bogus.key".to_string(), 400),
        (format!("/api/drover/chart?run_ids={run_id}"), 400),
        (format!("/api/drover/chart?run_ids={run_id}&key=loss&width=0"), 400),
        (format!("/api/drover/chart?run_ids={run_id}&key=loss&from=5&to=1"), 400),
        (format!("/api/drover/chart?run_ids={run_id}&key=loss&x=sideways"), 400),
        (format!("/api/drover/chart?run_ids={missing}&key=loss"), 404),
        // A run a client logged has one history, not attempts.
        (format!("/api/drover/chart?run_ids={run_id}&key=loss&attempt=1"), 400),
        (format!("/api/drover/chart?run_ids={run_id}&key=loss&attempt=one"), 400),
        ("/api/drover/experiments?view=sideways".to_string(), 400),
    ] {
        let (status, body) = call(&address, "GET", &path, None);
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    // A state change needs JSON, so no other site's form can send it.
    let (status, body) = call(&address, "POST", &format!("/api/drover/runs/{run_id}/cancel"), None);
    assert_eq!(status, 400, "{body}");
    let drain = json!({ "drain": true });
    let (status, body) = call(&address, "POST", "/api/drover/workers/nope/drain", Some(&drain));
    assert_eq!(status, 404, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no worker 'nope'"), "{body}");

    // What works: the table, a run, a chart reduced to the width asked for, the log.
    let (status, table) = call(
        &address,
        "GET",
        &format!("/api/drover/runs?experiment_ids={experiment}&order_by=metrics.loss%20DESC"),
        None,
    );
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["total"], 1);
    assert_eq!(table["columns"]["params"], json!(["alpha", "kind", "layers"]));
    assert_eq!(table["experiments"][&experiment], "http");
    let (status, chart) = call(
        &address,
        "GET",
        &format!("/api/drover/chart?run_ids={run_id}&key=loss&width=10"),
        None,
    );
    assert_eq!(status, 200, "{chart}");
    let buckets = chart["series"][0]["buckets"].as_array().unwrap();
    assert_eq!(chart["series"][0]["points"], 50);
    assert!(buckets.len() <= 10, "{chart}");
    assert_eq!(buckets.iter().map(|b| b[6].as_u64().unwrap()).sum::<u64>(), 50);
    let (status, zoomed) = call(
        &address,
        "GET",
        &format!("/api/drover/chart?run_ids={run_id}&key=loss&width=100&from=10&to=19"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(zoomed["series"][0]["points"], 10, "a zoom returns its range at full resolution");
    let (status, detail) = call(&address, "GET", &format!("/api/drover/runs/{run_id}"), None);
    assert_eq!(status, 200);
    assert_eq!(detail["run"]["info"]["run_name"], "one");
    assert!(detail["execution"].is_null(), "a client's run has no execution record");
    let (status, cluster) = call(&address, "GET", "/api/drover/cluster", None);
    assert_eq!(status, 200);
    assert_eq!(cluster["workers"], json!([]));

    // An artifact is only ever a download, never a page of this origin.
    let artifact =
        format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/page.html");
    let html = "<script>window.__xss=1</script>";
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(stream, "PUT {artifact} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}", html.len()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(stream, "GET {artifact} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut download = String::new();
    stream.read_to_string(&mut download).unwrap();
    let head = download.split("\r\n\r\n").next().unwrap().to_lowercase();
    for header in [
        "content-type: application/octet-stream",
        "content-disposition: attachment",
        "content-security-policy: sandbox",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(header), "{header} missing from {head}");
    }

    // The pages are served with a policy that runs only the UI's own scripts.
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(stream, "GET /runs HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.to_lowercase().contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(page.contains("/static/app.js"));
}

/// `drover ui` as a child process; the address it printed.
struct UiProcess {
    child: std::process::Child,
    address: String,
}

impl UiProcess {
    fn spawn(home: &Path, extra: &[&str]) -> UiProcess {
        use std::io::BufRead;
        let mut child = drover(home)
            .args(extra)
            .args(["ui", "--port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let start = line.find("http://").unwrap_or_else(|| panic!("no address in {line:?}"))
            + "http://".len();
        let address = line[start..].split_whitespace().next().unwrap().to_string();
        assert!(line.starts_with("drover ui at http://127.0.0.1:"), "{line}");
        UiProcess { child, address }
    }
}

impl Drop for UiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn drover_ui_serves_the_local_store_and_fronts_a_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");

    // Over the local store: it serves the store, and `drover run` in another shell goes
    // through it and runs on its worker.
    let mut ui = UiProcess::spawn(&home, &[]);
    let (status, experiments) = call(&ui.address, "GET", "/api/drover/experiments", None);
    assert_eq!(status, 200, "{experiments}");
    assert_eq!(experiments["experiments"][0]["name"], "Default");
    let slow = project(&dir.path().join("slow"), SLOW_PROJECT, &[("slow.sh", SLOW_SCRIPT)]);
    let outcome = run(drover(&home).arg("run").arg(&slow).args(["-P", "steps=2"]));
    assert!(outcome.success, "{}", outcome.stderr);
    let (_, table) = call(&ui.address, "GET", "/api/drover/runs?experiment_ids=0", None);
    assert_eq!(table["total"], 1, "{table}");
    assert_eq!(table["runs"][0]["info"]["status"], "FINISHED");
    support::send_signal(&ui.child, libc::SIGINT);
    let stopped = ui.child.wait().unwrap();
    assert!(stopped.success(), "{stopped:?}");

    // In front of a scheduler: every call passes through, after this address's own checks.
    let scheduler = SchedulerProcess::spawn(&dir.path().join("store"));
    let upstream = scheduler.address.trim_start_matches("http://").to_string();
    let front = UiProcess::spawn(&home, &["--scheduler", &upstream]);
    let created = mlflow(&front.address, "experiments/create", json!({ "name": "through-the-ui" }));
    assert!(created["experiment_id"].is_string(), "{created}");
    let (_, direct) = call(
        &upstream,
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=through-the-ui",
        None,
    );
    assert_eq!(direct["experiment"]["name"], "through-the-ui");
    let (status, page) = call(&front.address, "GET", "/runs", None);
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/static/app.js"));
    let mut stream = TcpStream::connect(&front.address).unwrap();
    let body = r#"{"name":"from-another-site"}"#;
    write!(stream, "POST /ajax-api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", front.address, body.len()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let (_, missing) = call(
        &upstream,
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=from-another-site",
        None,
    );
    assert_eq!(missing["error_code"], "RESOURCE_DOES_NOT_EXIST", "{missing}");
}

#[test]
fn drover_ui_refuses_what_it_cannot_serve_safely() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let message = support::fails(&home, &["ui", "--host", "0.0.0.0"]);
    assert!(message.contains("--insecure"), "{message}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let message = support::fails(&home, &["ui", "--port", &port]);
    assert!(message.contains("cannot listen") && message.contains("--port"), "{message}");
}
