//! The scheduler's tracking API over real gRPC: experiments, runs, params, tags, metrics,
//! restarts and concurrent writers.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;

use drover_proto::ApiError;
use drover_proto::domain::{
    CreateExperiment, DEFAULT_EXPERIMENT_ID, ExperimentId, ExperimentName, ExperimentRef,
    LifecycleStage, ListRuns, Metric, MetricHistoryQuery, Param, RenameExperiment, RunId,
    RunStatus, Tag, UpdateRun, ViewType,
};
use drover_scheduler::{OpenError, Store};
use support::{TestScheduler, new_run};

fn metric(key: &str, value: f64, timestamp_ms: i64, step: i64) -> Metric {
    Metric { key: key.to_string(), value, timestamp_ms, step }
}

fn param(key: &str, value: &str) -> Param {
    Param { key: key.to_string(), value: value.to_string() }
}

fn history(run_id: RunId, key: &str) -> MetricHistoryQuery {
    MetricHistoryQuery {
        run_id,
        key: key.to_string(),
        start_step: None,
        end_step: None,
        max_results: None,
        page_token: None,
        attempt: None,
    }
}

#[tokio::test]
async fn default_experiment_exists_from_the_first_open() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let default =
        scheduler.client.get_experiment(ExperimentRef::Id(DEFAULT_EXPERIMENT_ID)).await.unwrap();
    assert_eq!(default.name, "Default");
    assert_eq!(default.lifecycle_stage, LifecycleStage::Active);
    let by_name =
        scheduler.client.get_experiment(ExperimentRef::Name("Default".into())).await.unwrap();
    assert_eq!(by_name, default);
    let error = scheduler
        .client
        .delete_experiment(ExperimentRef::Id(DEFAULT_EXPERIMENT_ID))
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::FailedPrecondition(_)), "{error:?}");
    scheduler.stop().await;
}

#[tokio::test]
async fn experiments_create_rename_delete_restore() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;

    let first = scheduler.experiment("model-training").await;
    assert_eq!(first, ExperimentId(1));
    let second = scheduler.experiment("other").await;
    assert_eq!(second, ExperimentId(2));

    let duplicate = CreateExperiment {
        name: ExperimentName::parse("model-training").unwrap(),
        artifact_location: None,
        tags: Vec::new(),
    };
    let error = client.create_experiment(duplicate.clone()).await.unwrap_err();
    assert_eq!(
        error,
        ApiError::AlreadyExists("experiment 'model-training' already exists (ID 1)".into())
    );

    // Renaming onto a taken name is refused and changes nothing.
    let error = client
        .rename_experiment(RenameExperiment {
            experiment: ExperimentRef::Id(first),
            new_name: ExperimentName::parse("other").unwrap(),
        })
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::AlreadyExists(_)), "{error:?}");
    assert_eq!(
        client.get_experiment(ExperimentRef::Id(first)).await.unwrap().name,
        "model-training"
    );

    let renamed = client
        .rename_experiment(RenameExperiment {
            experiment: ExperimentRef::Name("model-training".into()),
            new_name: ExperimentName::parse("training-v2").unwrap(),
        })
        .await
        .unwrap();
    assert_eq!((renamed.id, renamed.name.as_str()), (first, "training-v2"));
    let error =
        client.get_experiment(ExperimentRef::Name("model-training".into())).await.unwrap_err();
    assert!(matches!(error, ApiError::NotFound(_)), "{error:?}");

    let deleted = client.delete_experiment(ExperimentRef::Id(first)).await.unwrap();
    assert_eq!(deleted.lifecycle_stage, LifecycleStage::Deleted);
    let active: Vec<_> = client
        .list_experiments(ViewType::ActiveOnly)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(active, vec![DEFAULT_EXPERIMENT_ID, second]);
    let deleted_only: Vec<_> = client
        .list_experiments(ViewType::DeletedOnly)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(deleted_only, vec![first]);
    assert_eq!(client.list_experiments(ViewType::All).await.unwrap().len(), 3);

    // A deleted experiment keeps its name, takes no runs and cannot be renamed.
    let error = client
        .create_experiment(CreateExperiment {
            name: ExperimentName::parse("training-v2").unwrap(),
            ..duplicate
        })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("deleted state"), "{error}");
    let error = client.create_run(new_run(first)).await.unwrap_err();
    assert!(matches!(error, ApiError::FailedPrecondition(_)), "{error:?}");
    let error = client.delete_experiment(ExperimentRef::Id(first)).await.unwrap_err();
    assert!(error.to_string().contains("already deleted"), "{error}");

    let restored =
        client.restore_experiment(ExperimentRef::Name("training-v2".into())).await.unwrap();
    assert_eq!(restored.lifecycle_stage, LifecycleStage::Active);
    scheduler.stop().await;
}

#[tokio::test]
async fn bad_experiment_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;
    assert!(ExperimentName::parse("").is_err());
    assert!(ExperimentName::parse("   ").is_err());
    assert!(ExperimentName::parse(&"n".repeat(501)).is_err());
    let error = client.get_experiment(ExperimentRef::Id(ExperimentId(77))).await.unwrap_err();
    assert_eq!(error, ApiError::NotFound("no experiment with ID 77".into()));
    let error = client.get_experiment(ExperimentRef::Name("missing".into())).await.unwrap_err();
    assert_eq!(error, ApiError::NotFound("no experiment named 'missing'".into()));
    let error = client.create_run(new_run(ExperimentId(77))).await.unwrap_err();
    assert!(matches!(error, ApiError::NotFound(_)), "{error:?}");
    assert_eq!(client.list_experiments(ViewType::All).await.unwrap().len(), 1);
    scheduler.stop().await;
}

#[tokio::test]
async fn runs_lifecycle_and_listing() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;
    let experiment = scheduler.experiment("lifecycle").await;

    let run = scheduler.run(experiment).await;
    assert_eq!(run.info.run_id.to_string().len(), 32);
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.end_time_ms, None);
    assert_eq!(
        run.info.artifact_uri,
        format!("mlflow-artifacts:/{experiment}/{}/artifacts", run.info.run_id)
    );
    assert!(
        run.data.tags.iter().any(|t| t.key == "mlflow.runName" && t.value == run.info.run_name)
    );

    let finished = client
        .update_run(UpdateRun {
            run_id: run.info.run_id,
            status: Some(RunStatus::Finished),
            end_time_ms: None,
            run_name: None,
        })
        .await
        .unwrap();
    assert_eq!(finished.status, RunStatus::Finished);
    assert!(finished.end_time_ms.unwrap() >= finished.start_time_ms);
    assert_eq!(client.get_run(run.info.run_id).await.unwrap().info, finished);

    let mut created = vec![run.info.run_id];
    for start in 0..5 {
        let mut request = new_run(experiment);
        request.start_time_ms = Some(1_000 + start);
        request.status = RunStatus::Scheduled;
        created.push(client.create_run(request).await.unwrap().info.run_id);
    }
    let other_experiment = scheduler.experiment("elsewhere").await;
    scheduler.run(other_experiment).await;

    // Pages of two, newest first, cover the experiment's runs exactly once.
    let mut seen = Vec::new();
    let mut page_token = None;
    loop {
        let page = client
            .list_runs(ListRuns {
                experiment_ids: vec![experiment],
                view_type: ViewType::ActiveOnly,
                max_results: Some(2),
                page_token,
                ..ListRuns::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|run| run.info));
        page_token = page.next_page_token;
        if page_token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.windows(2).all(|pair| pair[0].start_time_ms >= pair[1].start_time_ms));
    assert_eq!(
        seen.iter().map(|info| info.run_id).collect::<HashSet<_>>(),
        created.iter().copied().collect()
    );
    let all = client.list_runs(ListRuns::default()).await.unwrap();
    assert_eq!(all.items.len(), 7);

    client.delete_run(created[1]).await.unwrap();
    let active = client
        .list_runs(ListRuns { experiment_ids: vec![experiment], ..ListRuns::default() })
        .await
        .unwrap();
    assert_eq!(active.items.len(), 5);
    let deleted = client
        .list_runs(ListRuns {
            experiment_ids: vec![experiment],
            view_type: ViewType::DeletedOnly,
            ..ListRuns::default()
        })
        .await
        .unwrap();
    assert_eq!(deleted.items.iter().map(|r| r.info.run_id).collect::<Vec<_>>(), vec![created[1]]);
    let error = client.log_params(created[1], vec![param("a", "1")]).await.unwrap_err();
    assert!(matches!(error, ApiError::FailedPrecondition(_)), "{error:?}");
    client.restore_run(created[1]).await.unwrap();
    client.log_params(created[1], vec![param("a", "1")]).await.unwrap();

    let unknown: RunId = "00000000000000000000000000000000".parse().unwrap();
    let error = client.get_run(unknown).await.unwrap_err();
    assert_eq!(error, ApiError::NotFound(format!("no run with ID {unknown}")));
    let error = client
        .list_runs(ListRuns { page_token: Some("not-a-token".into()), ..ListRuns::default() })
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::InvalidArgument(_)), "{error:?}");
    scheduler.stop().await;
}

#[tokio::test]
async fn params_are_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;
    let run_id = scheduler.run(DEFAULT_EXPERIMENT_ID).await.info.run_id;

    client.log_params(run_id, vec![param("alpha", "0.5"), param("l1_ratio", "0.1")]).await.unwrap();
    client.log_params(run_id, vec![param("alpha", "0.5")]).await.unwrap();
    let error = client
        .log_params(run_id, vec![param("beta", "1"), param("alpha", "0.7")])
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::InvalidArgument(_)), "{error:?}");
    assert!(
        error.to_string().contains("'alpha'") && error.to_string().contains("'0.5'"),
        "{error}"
    );
    // A refused batch writes nothing, not even its valid params.
    let error = client
        .log_params(run_id, vec![param("gamma", "1"), param("gamma", "2")])
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::InvalidArgument(_)), "{error:?}");
    let error = client
        .log_params(run_id, vec![param("delta", "1"), param("../escape", "2")])
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::InvalidArgument(_)), "{error:?}");
    let error =
        client.log_params(run_id, vec![param("long", &"v".repeat(6001))]).await.unwrap_err();
    assert!(matches!(error, ApiError::InvalidArgument(_)), "{error:?}");

    let params = client.get_run(run_id).await.unwrap().data.params;
    assert_eq!(params, vec![param("alpha", "0.5"), param("l1_ratio", "0.1")]);
    scheduler.stop().await;
}

#[tokio::test]
async fn tags_overwrite_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;
    let run_id = scheduler.run(DEFAULT_EXPERIMENT_ID).await.info.run_id;

    client
        .set_tags(run_id, vec![Tag::new("team", "vision"), Tag::new("note", "first")])
        .await
        .unwrap();
    client.set_tags(run_id, vec![Tag::new("note", "second")]).await.unwrap();
    client.delete_tag(run_id, "team").await.unwrap();
    let error = client.delete_tag(run_id, "team").await.unwrap_err();
    assert!(matches!(error, ApiError::NotFound(_)), "{error:?}");
    let error = client.set_tags(run_id, vec![Tag::new("bad;key", "x")]).await.unwrap_err();
    assert!(matches!(error, ApiError::InvalidArgument(_)), "{error:?}");

    client.set_tags(run_id, vec![Tag::new("mlflow.runName", "renamed")]).await.unwrap();
    let run = client.get_run(run_id).await.unwrap();
    assert_eq!(run.info.run_name, "renamed");
    let tags: Vec<_> = run.data.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())).collect();
    assert_eq!(
        tags,
        vec![("mlflow.runName", "renamed"), ("mlflow.user", "tester"), ("note", "second")]
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn metric_history_is_ordered_and_latest_is_highest_step() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;
    let run_id = scheduler.run(DEFAULT_EXPERIMENT_ID).await.info.run_id;

    // Out of order, across batches, with NaN and infinities, and a repeated step.
    client
        .log_metrics(run_id, vec![metric("loss", 0.5, 300, 3), metric("loss", 0.9, 100, 1)])
        .await
        .unwrap();
    client
        .log_metrics(
            run_id,
            vec![
                metric("loss", f64::NAN, 200, 2),
                metric("loss", 0.4, 400, 3),
                metric("acc", f64::INFINITY, 50, 0),
            ],
        )
        .await
        .unwrap();
    client
        .log_metrics(
            run_id,
            vec![metric("loss", 0.8, 999, 2), metric("acc", f64::NEG_INFINITY, 60, -1)],
        )
        .await
        .unwrap();

    let points = client.metric_history(history(run_id, "loss")).await.unwrap();
    let got: Vec<(i64, i64)> = points.items.iter().map(|m| (m.step, m.timestamp_ms)).collect();
    assert_eq!(got, vec![(1, 100), (2, 200), (2, 999), (3, 300), (3, 400)]);
    assert!(points.items[1].value.is_nan());
    assert_eq!(points.next_page_token, None);

    let latest = client.get_run(run_id).await.unwrap().data.latest_metrics;
    let loss = latest.iter().find(|m| m.key == "loss").unwrap();
    assert_eq!((loss.value, loss.step, loss.timestamp_ms), (0.4, 3, 400));
    let acc = latest.iter().find(|m| m.key == "acc").unwrap();
    assert_eq!((acc.value, acc.step), (f64::INFINITY, 0));

    // Step ranges and pages.
    let mut query = history(run_id, "loss");
    query.start_step = Some(2);
    query.end_step = Some(2);
    let middle = client.metric_history(query).await.unwrap();
    assert_eq!(middle.items.iter().map(|m| m.timestamp_ms).collect::<Vec<_>>(), vec![200, 999]);

    let mut collected = Vec::new();
    let mut page_token = None;
    loop {
        let mut query = history(run_id, "loss");
        query.max_results = Some(2);
        query.page_token = page_token;
        let page = client.metric_history(query).await.unwrap();
        collected.extend(page.items.iter().map(|m| (m.step, m.timestamp_ms)));
        page_token = page.next_page_token;
        if page_token.is_none() {
            break;
        }
    }
    assert_eq!(collected, got);

    // A key that shares a prefix is a different metric.
    client.log_metrics(run_id, vec![metric("loss2", 1.0, 1, 1)]).await.unwrap();
    assert_eq!(client.metric_history(history(run_id, "loss")).await.unwrap().items.len(), 5);
    assert!(client.metric_history(history(run_id, "unknown")).await.unwrap().items.is_empty());

    // A refused batch stores none of its points.
    let error = client
        .log_metrics(run_id, vec![metric("ok", 1.0, 1, 1), metric("/abs", 1.0, 1, 1)])
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::InvalidArgument(_)), "{error:?}");
    assert!(client.metric_history(history(run_id, "ok")).await.unwrap().items.is_empty());
    scheduler.stop().await;
}

#[tokio::test]
async fn a_restart_on_the_same_directory_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let experiment = scheduler.experiment("durable").await;
    let run = scheduler.run(experiment).await;
    let run_id = run.info.run_id;
    scheduler.client.log_params(run_id, vec![param("alpha", "0.5")]).await.unwrap();
    scheduler.client.set_tags(run_id, vec![Tag::new("team", "nlp")]).await.unwrap();
    scheduler
        .client
        .log_metrics(run_id, (0..100).map(|i| metric("loss", 1.0 / (i + 1) as f64, i, i)).collect())
        .await
        .unwrap();
    let before = scheduler.client.get_run(run_id).await.unwrap();

    let scheduler = scheduler.restart().await;
    let after = scheduler.client.get_run(run_id).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(
        scheduler.client.metric_history(history(run_id, "loss")).await.unwrap().items.len(),
        100
    );
    assert_eq!(
        scheduler.client.get_experiment(ExperimentRef::Name("durable".into())).await.unwrap().id,
        experiment
    );
    // Ids keep counting after a restart.
    assert_eq!(scheduler.experiment("next").await, ExperimentId(2));
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let run_id = scheduler.run(DEFAULT_EXPERIMENT_ID).await.info.run_id;

    let writers = 32;
    let batches = 20;
    let per_batch = 25;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let client = scheduler.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .log_params(run_id, vec![param(&format!("writer{writer}"), &writer.to_string())])
                .await
                .unwrap();
            for batch in 0..batches {
                let points = (0..per_batch)
                    .map(|i| {
                        metric(
                            "shared",
                            writer as f64,
                            batch,
                            (writer * batches + batch) * per_batch + i,
                        )
                    })
                    .collect();
                client.log_metrics(run_id, points).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let scheduler = scheduler.restart().await;
    let run = scheduler.client.get_run(run_id).await.unwrap();
    assert_eq!(run.data.params.len(), writers as usize);
    let points = scheduler.client.metric_history(history(run_id, "shared")).await.unwrap().items;
    let steps: Vec<i64> = points.iter().map(|m| m.step).collect();
    assert_eq!(steps, (0..writers * batches * per_batch).collect::<Vec<_>>());
    let latest = &run.data.latest_metrics[0];
    assert_eq!(latest.step, writers * batches * per_batch - 1);
    scheduler.stop().await;
}

#[tokio::test]
async fn a_second_open_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let error = Store::open(dir.path()).err().unwrap();
    assert!(matches!(error, OpenError::Locked { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    assert!(message.contains("--scheduler"), "{message}");
    drop(store);
    Store::open(dir.path()).unwrap();
}

#[test]
fn a_file_or_a_newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let error = Store::open(&file).err().unwrap();
    assert_eq!(
        error.to_string(),
        format!("the data directory {} is a file, not a directory", file.display())
    );

    let store_dir = dir.path().join("store");
    drop(Store::open(&store_dir).unwrap());
    {
        let db = drover_scheduler::store::open_database(&store_dir).unwrap();
        db.insert(b"m/schema", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let error = Store::open(&store_dir).err().unwrap();
    assert!(matches!(error, OpenError::NewerSchema { found: 99, .. }), "{error:?}");
    assert!(error.to_string().contains("newer drover"), "{error}");
}

#[test]
fn a_store_missing_its_value_log_is_refused_not_emptied() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    std::fs::remove_file(dir.path().join("values.log")).unwrap();
    let error = Store::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("values.log is missing"), "{error}");
    assert!(!dir.path().join("values.log").exists());
}

#[tokio::test]
async fn searches_see_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;
    let run_id = scheduler.run(DEFAULT_EXPERIMENT_ID).await.info.run_id;
    let search =
        |filter: &str| ListRuns { filter: Some(filter.to_string()), ..ListRuns::default() };
    // The first search reads the run; every write after it must show in the next one.
    assert!(client.list_runs(search("metrics.loss < 1")).await.unwrap().items.is_empty());
    client.log_metrics(run_id, vec![metric("loss", 0.5, 1, 1)]).await.unwrap();
    assert_eq!(client.list_runs(search("metrics.loss < 1")).await.unwrap().items.len(), 1);
    client.log_params(run_id, vec![param("alpha", "0.1")]).await.unwrap();
    assert_eq!(client.list_runs(search("params.alpha = '0.1'")).await.unwrap().items.len(), 1);
    client.set_tags(run_id, vec![Tag::new("team", "a")]).await.unwrap();
    assert_eq!(client.list_runs(search("tags.team = 'a'")).await.unwrap().items.len(), 1);
    client.delete_tag(run_id, "team").await.unwrap();
    assert!(client.list_runs(search("tags.team = 'a'")).await.unwrap().items.is_empty());
    client
        .update_run(UpdateRun {
            run_id,
            status: Some(RunStatus::Finished),
            end_time_ms: None,
            run_name: None,
        })
        .await
        .unwrap();
    assert_eq!(
        client.list_runs(search("attributes.status = 'FINISHED'")).await.unwrap().items.len(),
        1
    );
    client.delete_run(run_id).await.unwrap();
    assert!(
        client.list_runs(search("attributes.status = 'FINISHED'")).await.unwrap().items.is_empty()
    );
    scheduler.stop().await;
}

/// gRPC's `ListRuns` (and so `drover runs list`) and MLflow's `runs/search` are one search:
/// paging through the same runs over both faces gives the same runs in the same order, and
/// both refuse what either refuses, with the same words.
#[tokio::test]
async fn both_faces_page_through_the_same_runs_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let client = &scheduler.client;
    let experiment = scheduler.experiment("faces").await;
    for index in 0..250_i64 {
        let mut request = new_run(experiment);
        // Start times, metric values and params repeat, so ties must break the same way.
        request.start_time_ms = Some(1_000 + index % 50);
        let run = client.create_run(request).await.unwrap();
        let run_id = run.info.run_id;
        if index % 7 != 0 {
            let point = metric("loss", (index % 13) as f64 / 4.0, 5, 0);
            client.log_metrics(run_id, vec![point]).await.unwrap();
        }
        client.log_params(run_id, vec![param("lr", &format!("0.{}", index % 5))]).await.unwrap();
    }
    let other = scheduler.experiment("elsewhere").await;
    scheduler.run(other).await;

    let searches: [(&str, Vec<&str>); 3] = [
        ("", vec![]),
        ("", vec!["metrics.loss DESC", "params.lr"]),
        ("params.lr != '0.3' and metrics.loss >= 0.5", vec!["attributes.start_time ASC"]),
    ];
    for (filter, order_by) in searches {
        let mut over_grpc = Vec::new();
        let mut page_token = None;
        loop {
            let page = client
                .list_runs(ListRuns {
                    experiment_ids: vec![experiment],
                    max_results: Some(40),
                    page_token,
                    filter: Some(filter.to_string()),
                    order_by: order_by.iter().map(|clause| clause.to_string()).collect(),
                    ..ListRuns::default()
                })
                .await
                .unwrap();
            over_grpc.extend(page.items.iter().map(|run| run.info.run_id.to_string()));
            page_token = page.next_page_token;
            if page_token.is_none() {
                break;
            }
        }
        let mut over_rest = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut body = serde_json::json!({
                "experiment_ids": [experiment.to_string()],
                "max_results": 40,
                "filter": filter,
                "order_by": order_by,
            });
            if let Some(token) = &page_token {
                body["page_token"] = token.clone().into();
            }
            let (status, answer) = scheduler.rest("runs/search", body).await;
            assert_eq!(status, 200, "{answer}");
            let runs = answer["runs"].as_array().cloned().unwrap_or_default();
            over_rest
                .extend(runs.iter().map(|run| run["info"]["run_id"].as_str().unwrap().to_string()));
            page_token = answer["next_page_token"].as_str().map(str::to_string);
            if page_token.is_none() {
                break;
            }
        }
        assert!(!over_grpc.is_empty(), "{filter:?} should match runs");
        assert_eq!(over_grpc.len(), over_grpc.iter().collect::<HashSet<_>>().len());
        assert_eq!(over_grpc, over_rest, "filter {filter:?}, order_by {order_by:?}");
    }

    // A token from one face continues the same search on the other.
    let first = client
        .list_runs(ListRuns {
            experiment_ids: vec![experiment],
            max_results: Some(100),
            ..ListRuns::default()
        })
        .await
        .unwrap();
    let token = first.next_page_token.unwrap();
    let (_, answer) = scheduler
        .rest("runs/search", serde_json::json!({ "experiment_ids": [experiment.to_string()], "max_results": 100, "page_token": token }))
        .await;
    let second = client
        .list_runs(ListRuns {
            experiment_ids: vec![experiment],
            max_results: Some(100),
            page_token: Some(token),
            ..ListRuns::default()
        })
        .await
        .unwrap();
    let over_rest: Vec<&str> = answer["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["info"]["run_id"].as_str().unwrap())
        .collect();
    let over_grpc: Vec<String> =
        second.items.iter().map(|run| run.info.run_id.to_string()).collect();
    assert_eq!(over_grpc, over_rest);

    // The same refusals, in the same words.
    let missing = ExperimentId(9_999);
    let refusals: [(ListRuns, serde_json::Value); 4] = [
        (
            ListRuns { max_results: Some(50_001), ..ListRuns::default() },
            serde_json::json!({ "max_results": 50_001 }),
        ),
        (
            ListRuns { page_token: Some("250".into()), ..ListRuns::default() },
            serde_json::json!({ "page_token": "250" }),
        ),
        (
            ListRuns { experiment_ids: vec![missing], ..ListRuns::default() },
            serde_json::json!({ "experiment_ids": [missing.to_string()] }),
        ),
        (
            ListRuns { filter: Some("metrics.loss <> 1".into()), ..ListRuns::default() },
            serde_json::json!({ "filter": "metrics.loss <> 1" }),
        ),
    ];
    for (request, body) in refusals {
        let error = client.list_runs(request).await.unwrap_err();
        let (status, answer) = scheduler.rest("runs/search", body.clone()).await;
        assert_ne!(status, 200, "{body} should be refused");
        assert_eq!(answer["message"], error.to_string(), "{body}");
        assert_eq!(answer["error_code"], error.mlflow_error_code(), "{body}");
    }
    scheduler.stop().await;
}

/// Every REST endpoint that names a run takes `run_uuid` as older MLflow clients send it.
#[tokio::test]
async fn every_rest_endpoint_naming_a_run_takes_run_uuid_too() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = TestScheduler::start(dir.path()).await;
    let run_id = scheduler.run(scheduler.experiment("uuids").await).await.info.run_id;
    let uuid = run_id.to_string();
    let calls = [
        ("runs/set-tag", serde_json::json!({ "run_uuid": uuid, "key": "k", "value": "v" })),
        ("runs/delete-tag", serde_json::json!({ "run_uuid": uuid, "key": "k" })),
        ("runs/log-parameter", serde_json::json!({ "run_uuid": uuid, "key": "p", "value": "1" })),
        (
            "runs/log-metric",
            serde_json::json!({ "run_uuid": uuid, "key": "m", "value": 1.5, "timestamp": 7 }),
        ),
        (
            "runs/log-batch",
            serde_json::json!({ "run_uuid": uuid, "metrics": [{ "key": "b", "value": 2, "timestamp": 8 }] }),
        ),
        (
            "runs/log-inputs",
            serde_json::json!({ "run_uuid": uuid, "datasets": [{ "dataset": {
                "name": "wine", "digest": "d1", "source_type": "local", "source": "/data" } }] }),
        ),
        ("runs/update", serde_json::json!({ "run_uuid": uuid, "status": "FINISHED" })),
    ];
    for (path, body) in calls {
        let (status, answer) = scheduler.rest(path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let run = scheduler.client.get_run(run_id).await.unwrap();
    assert!(!run.data.tags.iter().any(|tag| tag.key == "k"), "the tag was deleted by run_uuid");
    assert_eq!(run.data.params, vec![param("p", "1")]);
    let mut logged: Vec<&str> = run.data.latest_metrics.iter().map(|m| m.key.as_str()).collect();
    logged.sort();
    assert_eq!(logged, ["b", "m"]);
    assert_eq!(run.info.status, RunStatus::Finished);
    let (status, answer) =
        scheduler.rest("runs/delete-tag", serde_json::json!({ "key": "k" })).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["message"], "missing value for required parameter 'run_id'");
    scheduler.stop().await;
}

#[tokio::test]
async fn a_drained_worker_stays_drained_when_the_store_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.set_worker_drained("w1", true).await.unwrap();
        store.set_worker_drained("w2", true).await.unwrap();
        store.set_worker_drained("w2", false).await.unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.drained_workers().unwrap(), HashSet::from(["w1".to_string()]));
}
