//! Models logged from inside a Docker run, through its worker's tracking proxy: the run may
//! log and register its own model, and nothing about another run's models.

#![allow(clippy::unwrap_used)]

mod support;

use drover_proto::domain::{CreateRun, DEFAULT_EXPERIMENT_ID, Param, RunStatus, Tag};
use drover_proto::models::{CreateLoggedModel, CreateModelVersion, ModelMetric};
use drover_proto::tags;
use support::{describe, docker_ready, drover, fails, ok, project, run, run_id_from};

/// Logs a model (its files, a metric linked to it) and registers it with the client the image
/// holds (mlflow-skinny: no numpy, so no flavour), then tries what the proxy must refuse.
const LOG_AND_REGISTER: &str = r#"
import os
import tempfile

import mlflow
from mlflow.tracking import MlflowClient

client = MlflowClient()
run_id = os.environ["MLFLOW_RUN_ID"]
experiment_id = client.get_run(run_id).info.experiment_id
model = client.create_logged_model(experiment_id, name="adder", source_run_id=run_id)
with tempfile.TemporaryDirectory() as files:
    with open(os.path.join(files, "weights.txt"), "w") as out:
        out.write("5\n")
    client.log_model_artifacts(model.model_id, files)
client.finalize_logged_model(model.model_id, "READY")
mlflow.log_metric("score", 0.75, model_id=model.model_id)
version = mlflow.register_model(f"models:/{model.model_id}", "container-model")
print("logged model:", model.model_id, "version", version.version)
with tempfile.TemporaryDirectory() as back:
    path = mlflow.artifacts.download_artifacts(f"models:/{model.model_id}", dst_path=back)
    print("weights:", open(os.path.join(path, "weights.txt")).read().strip())
for name, attempt in [
    ("set_alias", lambda: client.set_registered_model_alias("container-model", "prod", "1")),
    ("other_model", lambda: client.get_logged_model("m-" + "0" * 32)),
    ("other_run_model", lambda: client.create_logged_model(experiment_id, source_run_id="0" * 32)),
    ("delete_version", lambda: client.delete_model_version("container-model", "1")),
]:
    try:
        attempt()
        print(f"scope {name}: allowed")
    except Exception as error:
        print(f"scope {name}: refused ({getattr(error, 'error_code', type(error).__name__)})")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_run_logs_and_registers_its_own_model_through_the_proxy() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let project = project(
        &dir.path().join("model-in-container"),
        "docker_env: {image: drover/python-mlflow:3}\nentry_points: {main: {command: 'python log.py'}}\n",
        &[("log.py", LOG_AND_REGISTER)],
    );
    let outcome = run(drover(&home).arg("run").arg(&project));
    assert!(outcome.success, "{}\n{}", outcome.stdout, outcome.stderr);
    assert!(outcome.stdout.contains("weights: 5"), "{}", outcome.stdout);
    for name in ["set_alias", "other_model", "other_run_model", "delete_version"] {
        assert!(
            outcome.stdout.contains(&format!("scope {name}: refused (PERMISSION_DENIED)")),
            "{}",
            outcome.stdout
        );
    }
    let run_id = run_id_from(&outcome.stderr);
    let model_id = outcome
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("logged model: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    assert_eq!(describe(&home, None, &run_id)["info"]["status"], "FINISHED");

    // The registered version leads back to the run and its logged model, whose files and
    // linked metric are in the store.
    let store = drover_scheduler::Store::open(&home).unwrap();
    let version = store.model_version("container-model", 1).unwrap();
    assert_eq!(version.run_id.map(|id| id.to_string()), Some(run_id.clone()));
    assert_eq!(version.model_id.as_ref().map(ToString::to_string), Some(model_id.clone()));
    let model = store.logged_model(&model_id.parse().unwrap(), false).unwrap();
    assert_eq!(model.source_run_id.map(|id| id.to_string()), Some(run_id));
    let files = model.artifact_uri.strip_prefix("mlflow-artifacts:/").unwrap();
    assert!(home.join("artifacts").join(files).join("weights.txt").is_file());
    let metrics = store.logged_model_metrics(&model.model_id).unwrap();
    assert_eq!(metrics.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), ["score"]);
    assert!(store.registered_model("container-model").unwrap().aliases.is_empty());
    store.close();
}

fn version_from(name: &str, source: String) -> CreateModelVersion {
    CreateModelVersion {
        name: name.into(),
        source,
        run_id: None,
        model_id: None,
        tags: Vec::new(),
        run_link: String::new(),
        description: String::new(),
    }
}

/// A store holding a run that logged a model, registered twice as `wine`.
async fn registry_with_lineage(home: &std::path::Path) -> (String, String) {
    let store = drover_scheduler::Store::open(home).unwrap();
    let run = store
        .create_run(CreateRun {
            experiment_id: DEFAULT_EXPERIMENT_ID,
            run_name: Some("train-wine".into()),
            user_id: "ada".into(),
            start_time_ms: None,
            tags: Vec::new(),
            status: RunStatus::Running,
        })
        .await
        .unwrap();
    let run_id = run.info.run_id;
    let params = vec![Param { key: "alpha".into(), value: "0.5".into() }];
    let lineage_tags = vec![
        Tag::new(tags::SNAPSHOT, "sha256:5eed"),
        Tag::new(tags::GIT_COMMIT, "0123abcd"),
        Tag::new(tags::IMAGE, "drover/python:3"),
    ];
    store.log_batch(run_id, Vec::new(), params, lineage_tags).await.unwrap();
    let model = store
        .create_logged_model(CreateLoggedModel {
            experiment_id: DEFAULT_EXPERIMENT_ID,
            name: Some("model".into()),
            model_type: "regressor".into(),
            source_run_id: Some(run_id),
            params: Vec::new(),
            tags: Vec::new(),
        })
        .await
        .unwrap();
    let metric = ModelMetric {
        key: "rmse".into(),
        value: 0.625,
        timestamp_ms: 1_764_000_000_000,
        step: 3,
        run_id,
        dataset_name: Some("wine-quality".into()),
        dataset_digest: Some("d1g35t".into()),
    };
    store.log_model_metrics(vec![(model.model_id.clone(), metric)]).await.unwrap();
    store.create_registered_model("wine", Vec::new(), "red wine quality".into()).await.unwrap();
    let source = format!("models:/{}", model.model_id);
    store.create_model_version(version_from("wine", source)).await.unwrap();
    let source = format!("runs:/{run_id}/model");
    store.create_model_version(version_from("wine", source)).await.unwrap();
    store.close();
    (run_id.to_string(), model.model_id.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn models_list_describe_alias_and_delete_with_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(".drover");
    let (run_id, model_id) = registry_with_lineage(&home).await;

    let listed = ok(&home, &["models", "list"]);
    assert!(
        listed.lines().any(|line| line.starts_with("wine ") && line.contains(" 2 ")),
        "{listed}"
    );

    let aliased = ok(&home, &["models", "alias", "wine", "champion", "1"]);
    assert!(aliased.contains("now points at version 1"), "{aliased}");
    let described = ok(&home, &["models", "describe", "wine@champion"]);
    for expected in [
        "wine version 1",
        "champion",
        &model_id,
        &run_id,
        "train-wine",
        "sha256:5eed",
        "0123abcd",
        "drover/python:3",
        "alpha",
        "wine-quality",
        "d1g35t",
        "rmse",
        "0.625",
    ] {
        assert!(described.contains(expected), "no '{expected}' in:\n{described}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&home, &["models", "describe", "wine/2", "-o", "json"])).unwrap();
    assert_eq!(json["version"]["version"], 2);
    assert_eq!(json["run"]["info"]["run_id"], run_id.as_str());
    let model: serde_json::Value =
        serde_json::from_str(&ok(&home, &["models", "describe", "wine", "-o", "json"])).unwrap();
    assert_eq!(model["versions"].as_array().unwrap().len(), 2);
    assert_eq!(model["aliases"]["champion"], 1);

    // Bad input is refused with the reason, and changes nothing.
    assert!(fails(&home, &["models", "alias", "wine", "latest", "2"]).contains("reserved"));
    assert!(fails(&home, &["models", "alias", "wine", "prod", "9"]).contains("not found"));
    assert!(fails(&home, &["models", "describe", "wine/0"]).contains("version number"));
    assert!(fails(&home, &["models", "describe", "a/b/1"]).contains("'/' is not allowed"));
    assert!(fails(&home, &["models", "describe", "nope"]).contains("not found"));

    // Deleting the aliased version takes the alias with it; its number is not reused.
    ok(&home, &["models", "delete", "wine/1"]);
    assert!(
        fails(&home, &["models", "describe", "wine@champion"]).contains("alias champion not found")
    );
    ok(&home, &["models", "alias", "wine", "prod", "2"]);
    ok(&home, &["models", "delete", "wine@prod"]);
    let model: serde_json::Value =
        serde_json::from_str(&ok(&home, &["models", "describe", "wine", "-o", "json"])).unwrap();
    assert_eq!(model["aliases"], serde_json::json!({}));
    assert_eq!(model["next_version"], 3);
    ok(&home, &["models", "delete", "wine"]);
    assert!(!ok(&home, &["models", "list"]).contains("wine"));
}
