//! Lineage end to end through the CLI: what every run pins (data digests, environment),
//! `drover runs diff` between runs, and `drover runs rerun`, on the embedded default.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{describe, docker_ready, drover, fails, ok, project, run, run_id_from, tag};

/// Runs `args` and returns the new run's id and everything it printed.
fn submit(home: &Path, args: &[&str]) -> (String, String) {
    let outcome = run(drover(home).args(args));
    assert!(outcome.success, "drover {args:?} failed:\n{}", outcome.stderr);
    let printed = format!("{}{}", outcome.stdout, outcome.stderr);
    (run_id_from(&outcome.stderr), printed)
}

fn diff_json(home: &Path, a: &str, b: &str) -> Value {
    serde_json::from_str(&ok(home, &["runs", "diff", a, b, "-o", "json"])).unwrap()
}

const TRAIN: &str = "echo \"::metric score=$(cat $2/x.csv | wc -c)\"\n\
                     echo start\necho one\necho two\necho three\necho four\necho alpha $1\n";

#[test]
fn diff_names_the_edited_file_its_hunk_and_the_changed_data() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let mlproject = "name: lineage\nentry_points:\n  main:\n    parameters:\n      alpha: {type: float, default: 0.5}\n      data: {type: path, default: data}\n    command: \"sh train.sh {alpha} {data}\"\n";
    let project =
        project(&dir.path().join("p"), mlproject, &[("train.sh", TRAIN), ("data/x.csv", "1,2\n")]);
    let path = project.to_str().unwrap();
    // Given from anywhere, a path inside the project is recorded relative to it.
    let data_arg = format!("data={}", project.join("data").display());
    let (a, printed) = submit(&home, &["run", path, "-P", &data_arg]);
    assert!(printed.contains("data 'data': 1 file, 4 bytes, sha256:"), "{printed}");
    let first = describe(&home, None, &a);
    let digest = tag(&first, "drover.data.data.digest").unwrap();
    // sha256sum of the directory's one file is not the directory's digest: it is a manifest's.
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    assert_eq!(tag(&first, "drover.data.data.source").as_deref(), Some("data"));

    // One edited line: the diff is exactly that file and its hunk.
    std::fs::write(project.join("train.sh"), TRAIN.replace("echo two", "echo TWO")).unwrap();
    let (b, _) = submit(&home, &["run", path, "-P", &data_arg]);
    let diff = diff_json(&home, &a, &b);
    assert_eq!(diff["matches"], false);
    assert_eq!(diff["code"]["added"], serde_json::json!([]));
    assert_eq!(diff["code"]["removed"], serde_json::json!([]));
    let changed = diff["code"]["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{diff}");
    assert_eq!(changed[0]["path"], "train.sh");
    assert_eq!(
        (changed[0]["insertions"].as_u64(), changed[0]["deletions"].as_u64()),
        (Some(1), Some(1))
    );
    let patch = changed[0]["patch"].as_str().unwrap();
    assert!(patch.starts_with("--- a/train.sh\n+++ b/train.sh\n@@ -1,7 +1,7 @@\n"), "{patch}");
    assert!(patch.contains("-echo two\n+echo TWO\n"), "{patch}");
    for section in ["parameters", "data", "image", "command", "environment"] {
        assert_eq!(diff[section], serde_json::json!([]), "{section}: {diff}");
    }
    let text = ok(&home, &["runs", "diff", &a, &b]);
    assert!(text.contains("changed  train.sh  (+1 -1)") && text.contains("+echo TWO"), "{text}");
    let stat = ok(&home, &["runs", "diff", &a, &b, "--stat"]);
    assert!(stat.contains("changed  train.sh") && !stat.contains("@@"), "{stat}");

    // Changed data and a changed parameter: the digest moves, and the diff says so.
    std::fs::write(project.join("data/x.csv"), "1,2,3\n").unwrap();
    let (c, _) = submit(&home, &["run", path, "-P", &data_arg, "-P", "alpha=0.7"]);
    let diff = diff_json(&home, &b, &c);
    let data = diff["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{diff}");
    assert_eq!(data[0]["key"], "data digest");
    assert_eq!(data[0]["a"].as_str(), Some(digest.as_str()));
    assert_ne!(data[0]["b"], data[0]["a"]);
    assert_eq!(diff["parameters"][0]["key"], "alpha");
    assert_eq!(
        (diff["parameters"][0]["a"].as_str(), diff["parameters"][0]["b"].as_str()),
        (Some("0.5"), Some("0.7"))
    );
    let metric = &diff["metrics"][0];
    assert_eq!(
        (
            metric["key"].as_str(),
            metric["a"].as_f64(),
            metric["b"].as_f64(),
            metric["delta"].as_f64()
        ),
        (Some("score"), Some(4.0), Some(6.0), Some(2.0))
    );

    // A rerun is the same run again: the runs match.
    let (again, _) = submit(&home, &["runs", "rerun", &c]);
    let rerun = describe(&home, None, &again);
    assert_eq!(tag(&rerun, "drover.rerun_of").as_deref(), Some(c.as_str()));
    let diff = diff_json(&home, &c, &again);
    assert_eq!(diff["matches"], true, "{diff}");
    assert!(ok(&home, &["runs", "diff", &c, &again]).contains("The runs match"));

    // A rerun with a parameter changed, and one with a bad value, refused before queueing.
    let (changed, _) = submit(&home, &["runs", "rerun", &c, "-P", "alpha=0.9"]);
    assert_eq!(diff_json(&home, &c, &changed)["parameters"][0]["b"], "0.9");
    // A changed path inside the project is digested from the snapshot: here, one file of it.
    let (one_file, _) = submit(&home, &["runs", "rerun", &c, "-P", "data=data/x.csv"]);
    let one_file = describe(&home, None, &one_file);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"1,2,3\n"))
    };
    assert_eq!(tag(&one_file, "drover.data.data.digest"), Some(format!("sha256:{sha}")));
    assert_eq!(tag(&one_file, "drover.data.data.source").as_deref(), Some("data/x.csv"));
    let given: Value =
        serde_json::from_str(&tag(&one_file, "drover.params.given").unwrap()).unwrap();
    assert_eq!(
        (given["data"].as_str(), given["alpha"].as_str()),
        (Some("data/x.csv"), Some("0.7"))
    );
    // Values too long to record as typed in one tag are still run, and recorded as params.
    let (long, _) = submit(
        &home,
        &[
            "run",
            path,
            "-P",
            &format!("note={}", "n".repeat(5000)),
            "-P",
            &format!("more={}", "m".repeat(5000)),
        ],
    );
    let long = describe(&home, None, &long);
    assert_eq!(tag(&long, "drover.params.given"), None);
    assert_eq!(long["info"]["status"], "FINISHED");
    let runs_before = ok(&home, &["runs", "list", "-o", "json"]);
    let error = fails(&home, &["runs", "rerun", &c, "-P", "alpha=fast"]);
    assert!(error.contains("parameter 'alpha' expects a float, got 'fast'"), "{error}");
    assert_eq!(ok(&home, &["runs", "list", "-o", "json"]), runs_before);
    assert!(fails(&home, &["runs", "diff", &a, "0123"]).contains("invalid run id '0123'"));

    // The MLflow API shows the digest as the run's dataset input.
    let inputs = describe_inputs(&home, &c);
    assert!(
        inputs.contains("\"name\":\"data\"") && inputs.contains(data[0]["b"].as_str().unwrap()),
        "{inputs}"
    );
}

/// The run's dataset inputs as `drover ui`'s REST API answers them.
fn describe_inputs(home: &Path, run_id: &str) -> String {
    let mut ui = drover(home)
        .args(["ui", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = ui.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let address = line.split("http://").nth(1).unwrap().trim().trim_end_matches('/').to_string();
    let (status, body) = drover_testkit::http::call(
        &address,
        "GET",
        &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"),
        &[],
        "",
    );
    let _ = ui.kill();
    let _ = ui.wait();
    assert_eq!(status, 200, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    run["run"]["inputs"]["dataset_inputs"].to_string()
}

#[test]
fn data_outside_the_project_is_digested_once_and_a_strict_rerun_refuses_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    // 1 GiB in 1,024 files of 1 MiB (sparse: quick to make, read in full all the same).
    let data = dir.path().join("dataset");
    std::fs::create_dir_all(&data).unwrap();
    for index in 0..1024 {
        let file = std::fs::File::create(data.join(format!("part-{index:04}"))).unwrap();
        file.set_len(1 << 20).unwrap();
    }
    std::fs::write(data.join("part-0000"), "a changed first part").unwrap();
    std::fs::File::options()
        .write(true)
        .open(data.join("part-0000"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    // The digest cache keeps only files that have not changed for a moment.
    std::thread::sleep(drover_project::digest::SETTLE + Duration::from_millis(200));
    let mlproject = "name: data\nentry_points:\n  main:\n    parameters:\n      data: path\n    command: \"ls {data} | wc -l\"\n";
    let project = project(&dir.path().join("p"), mlproject, &[]);
    let (path, data_arg) = (project.to_str().unwrap(), format!("data={}", data.display()));
    let (first, printed) = submit(&home, &["run", path, "-P", &data_arg]);
    assert!(printed.contains("data 'data': 1024 files, 1073741824 bytes, sha256:"), "{printed}");
    assert!(printed.contains("read 1073741824 bytes"), "{printed}");
    let (second, printed) = submit(&home, &["run", path, "-P", &data_arg]);
    assert!(printed.contains("read 0 bytes"), "the unchanged GiB was read again:\n{printed}");
    let digest = tag(&describe(&home, None, &first), "drover.data.data.digest").unwrap();
    assert_eq!(
        tag(&describe(&home, None, &second), "drover.data.data.digest"),
        Some(digest.clone())
    );
    assert!(diff_json(&home, &first, &second)["matches"] == true);

    // One part changes: a strict rerun refuses, and nothing is queued; a plain one says so,
    // runs, and records the new digest, which the diff shows.
    std::fs::write(data.join("part-0007"), "new bytes").unwrap();
    let runs_before = ok(&home, &["runs", "list", "-o", "json"]);
    let outcome = run(drover(&home).args(["runs", "rerun", &first, "--strict"]));
    assert!(!outcome.success);
    assert!(
        outcome.stderr.contains("data parameter 'data'")
            && outcome.stderr.contains("a strict rerun does not run"),
        "{}",
        outcome.stderr
    );
    assert_eq!(ok(&home, &["runs", "list", "-o", "json"]), runs_before);
    let (third, printed) = submit(&home, &["runs", "rerun", &first]);
    assert!(printed.contains("differs from the run this reruns"), "{printed}");
    assert!(printed.contains("read 9 bytes"), "only the changed part is read: {printed}");
    let diff = diff_json(&home, &first, &third);
    assert_eq!(diff["data"][0]["key"], "data digest", "{diff}");
    assert_eq!(diff["data"][0]["a"].as_str(), Some(digest.as_str()));
}

#[test]
fn a_docker_rerun_reproduces_its_result_and_secret_values_never_reach_the_store() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let secret = "s3cret-value-that-must-not-be-stored-7f1c";
    // An image of this test's own, so that it can point at another image later.
    let image = format!("drover-lineage-test:{}", std::process::id());
    support::docker(&["tag", "drover/busybox:1", &image]);
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker").args(["rmi", &self.0]).output();
        }
    }
    let _untag = Untag(image.clone());
    let mlproject = r#"
name: deterministic
docker_env:
  image: IMAGE
  environment: ["MY_API_TOKEN", ["PLAIN_SETTING", "visible"], "COPIED_PLAIN", ["DB_PASSWORD", "in-the-mlproject"]]
entry_points:
  main:
    parameters:
      seed: {type: int, default: 3}
    command: "echo ::metric loss=$(( $(printf %s \"$MY_API_TOKEN\" | wc -c) * 100 + {seed} )); echo plain=$PLAIN_SETTING/$COPIED_PLAIN pw=$DB_PASSWORD"
"#
    .replace("IMAGE", &image);
    let project = project(&dir.path().join("p"), &mlproject, &[]);
    let outcome = run(drover(&home)
        .env("MY_API_TOKEN", secret)
        .env("COPIED_PLAIN", "copied")
        .args(["run", project.to_str().unwrap()]));
    assert!(outcome.success, "{}", outcome.stderr);
    // A secret written in the MLproject reaches the run from the snapshot, not the spec.
    assert!(
        outcome.stdout.contains("plain=visible/copied pw=in-the-mlproject"),
        "{}",
        outcome.stdout
    );
    let original = run_id_from(&outcome.stderr);
    let described = describe(&home, None, &original);
    let loss = (secret.len() * 100 + 3) as f64;
    assert_eq!(described["data"]["latest_metrics"][0]["value"].as_f64(), Some(loss));
    assert_eq!(
        tag(&described, "drover.env.MY_API_TOKEN").as_deref(),
        Some("(not recorded: the name looks secret)")
    );
    assert_eq!(tag(&described, "drover.env.PLAIN_SETTING").as_deref(), Some("visible"));
    assert_eq!(
        tag(&described, "drover.env.DB_PASSWORD").as_deref(),
        Some("(not recorded: the name looks secret)")
    );
    assert_eq!(tag(&described, "drover.env.COPIED_PLAIN").as_deref(), Some("copied"));
    assert!(tag(&described, "drover.docker.image_id").is_some_and(|id| id.starts_with("sha256:")));
    assert!(tag(&described, "drover.version").is_some());

    // The rerun, in Docker, reproduces the same final metric, and the two runs match.
    let outcome = run(drover(&home)
        .env("MY_API_TOKEN", secret)
        .env("COPIED_PLAIN", "copied")
        .args(["runs", "rerun", &original, "--strict"]));
    assert!(outcome.success, "{}", outcome.stderr);
    let rerun = run_id_from(&outcome.stderr);
    let again = describe(&home, None, &rerun);
    assert_eq!(again["data"]["latest_metrics"][0]["value"].as_f64(), Some(loss));
    let diff = diff_json(&home, &original, &rerun);
    assert_eq!(diff["matches"], true, "{diff}");
    assert_eq!(diff["metrics"][0]["delta"].as_f64(), Some(0.0));

    // The secret's value is nowhere in the data directory.
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "-a", secret])
        .arg(&home)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "the secret is stored in: {}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // Nor can it be given on the command line.
    let error = fails(&home, &["run", project.to_str().unwrap(), "-A", "env=OTHER_PASSWORD=x"]);
    assert!(error.contains("never carries or stores the value"), "{error}");

    // The image's name now points at another image: a strict rerun refuses before anything is
    // queued; a plain one says so, runs, and the diff shows the new image id.
    support::docker(&["tag", "drover/python:3", &image]);
    let runs_before = ok(&home, &["runs", "list", "-o", "json"]);
    let outcome = run(drover(&home)
        .env("MY_API_TOKEN", secret)
        .args(["runs", "rerun", &original, "--strict"]));
    assert!(!outcome.success, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(&format!("image '{image}' is now sha256:")),
        "{}",
        outcome.stderr
    );
    assert_eq!(ok(&home, &["runs", "list", "-o", "json"]), runs_before);
    let outcome = run(drover(&home)
        .env("MY_API_TOKEN", secret)
        .env("COPIED_PLAIN", "copied")
        .args(["runs", "rerun", &original]));
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("the run this reruns had sha256:"), "{}", outcome.stderr);
    let changed = run_id_from(&outcome.stderr);
    let diff = diff_json(&home, &original, &changed);
    assert_eq!(diff["image"][0]["key"], "image id", "{diff}");
    assert_eq!(diff["matches"], false);
}

#[test]
fn a_dirty_tree_keeps_its_diff_against_the_commit_beside_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let mlproject = "name: dirty\nentry_points:\n  main:\n    command: \"sh train.sh\"\n";
    // A tracked file the snapshot leaves out: its local changes stay out of the kept diff.
    let project = project(
        &dir.path().join("p"),
        mlproject,
        &[
            ("train.sh", TRAIN),
            ("secret.yaml", "password: one\n"),
            (".droverignore", "secret.yaml\n"),
        ],
    );
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(&project)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "first"]);
    let path = project.to_str().unwrap();
    let (clean, _) = submit(&home, &["run", path]);
    let error = fails(&home, &["runs", "describe", &clean, "--git-diff"]);
    assert!(error.contains("has no uncommitted changes"), "{error}");

    std::fs::write(project.join("train.sh"), TRAIN.replace("echo three", "echo 3")).unwrap();
    std::fs::write(project.join("notes.txt"), "scratch\n").unwrap();
    std::fs::write(project.join("secret.yaml"), "password: two\n").unwrap();
    let (dirty, _) = submit(&home, &["run", path]);
    let described = describe(&home, None, &dirty);
    assert_eq!(tag(&described, "drover.source.git.dirty").as_deref(), Some("true"));
    assert_eq!(
        tag(&described, "drover.source.git.diff").as_deref(),
        Some("+1 -1 in 1 file, 1 untracked")
    );
    let diff = ok(&home, &["runs", "describe", &dirty, "--git-diff"]);
    assert!(diff.starts_with("# untracked files, in the snapshot but not in the commit:\n#   notes.txt\ndiff --git a/train.sh b/train.sh\n"), "{diff}");
    assert!(diff.contains("-echo three\n+echo 3\n"), "{diff}");
    assert!(!diff.contains("secret.yaml") && !diff.contains("password"), "{diff}");
    // The diff applies to the commit and gives back the tree the run was made from.
    let check = std::process::Command::new("git")
        .arg("-C")
        .arg(&project)
        .args(["apply", "--check", "-R", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), diff.as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(check.success(), "the kept diff does not reverse-apply to the tree it came from");
    let text = ok(&home, &["runs", "describe", &dirty]);
    assert!(text.contains("Uncommitted  +1 -1 in 1 file, 1 untracked"), "{text}");
}
