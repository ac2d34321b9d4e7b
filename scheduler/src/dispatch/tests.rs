//! The dispatcher in process, over a real store: the order runs are placed in when
//! priorities and resources meet.

use std::sync::Arc;
use std::time::Duration;

use drover_project::snapshot::SnapshotDigest;
use drover_proto::domain::{DEFAULT_EXPERIMENT_ID, RunId};
use drover_proto::execution::{
    Assignment, EnvManager, RunPhase, RunSpec, RunUpdate, SchedulerMessage, SubmitRun,
    WorkerRegistration,
};
use drover_proto::tags;
use tokio::sync::{mpsc, watch};

use super::{DispatchHandle, Dispatcher, LeaseOptions};
use crate::store::Store;
use crate::telemetry::Telemetry;

fn spec(priority: i32, gpus: Option<&str>) -> RunSpec {
    let snapshot =
        format!("sha256:{}", "ab".repeat(32)).parse::<SnapshotDigest>().expect("a digest");
    RunSpec {
        env_manager: EnvManager::Docker,
        image: Some("busybox".into()),
        docker: drover_project::docker::DockerOptions {
            gpus: gpus.map(str::to_string),
            cpus: Some(1.0),
            ..Default::default()
        },
        priority,
        ..RunSpec::local("p", snapshot, 1)
    }
}

struct Cluster {
    handle: DispatchHandle,
    store: Store,
    from_scheduler: mpsc::UnboundedReceiver<SchedulerMessage>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A dispatcher with one worker of 2 slots, 8 CPUs and GPUs 0 and 1.
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("the store opens");
        let (dispatcher, handle) = Dispatcher::recover(
            store.clone(),
            LeaseOptions::default(),
            Arc::new(watch::channel(0).0),
            Arc::new(Telemetry::new()),
        )
        .expect("the dispatcher recovers");
        tokio::spawn(dispatcher.run(std::future::pending()));
        let (outbox, from_scheduler) = mpsc::unbounded_channel();
        let registration = WorkerRegistration {
            worker_id: "w".into(),
            hostname: "w".into(),
            slots: 2,
            cpus: 8,
            memory_bytes: 16 << 30,
            docker_available: true,
            running: Vec::new(),
            labels: Vec::new(),
            gpus: vec!["0".into(), "1".into()],
        };
        handle.attach(registration, outbox).await.expect("the worker attaches");
        Cluster { handle, store, from_scheduler, _dir: dir }
    }

    async fn submit(&self, name: &str, priority: i32, gpus: Option<&str>) -> RunId {
        let request = SubmitRun {
            experiment_id: DEFAULT_EXPERIMENT_ID,
            run_name: Some(name.to_string()),
            user_id: "test".into(),
            tags: Vec::new(),
            spec: spec(priority, gpus),
        };
        self.handle.submit_run(request).await.expect("submitted").info.run_id
    }

    /// The next assignment the worker gets, as (run name, GPU ids).
    async fn next_assignment(&mut self) -> (String, Vec<String>) {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.from_scheduler.recv())
                .await
                .expect("an assignment within 10 s")
                .expect("the stream is open");
            if let SchedulerMessage::Assign(assignment) = message {
                let Assignment { attempt, gpu_ids, .. } = *assignment;
                let run = self.store.run(attempt.run_id).expect("the run is stored");
                return (run.info.run_name, gpu_ids);
            }
        }
    }

    /// Reports a run's current attempt finished, freeing what it held.
    async fn finish(&self, run_id: RunId) {
        let attempt = self.store.execution(run_id).unwrap().unwrap().current_attempt();
        let update = RunUpdate {
            attempt,
            phase: RunPhase::Finished,
            exit_code: Some(0),
            message: String::new(),
            tags: Vec::new(),
        };
        self.handle.update("w".into(), update).await.expect("the report applies");
    }

    fn waiting(&self, run_id: RunId) -> Option<String> {
        let run = self.store.run(run_id).expect("the run is stored");
        run.data.tags.into_iter().find(|tag| tag.key == tags::WAITING).map(|tag| tag.value)
    }
}

fn named(name: &str, gpus: &[&str]) -> (String, Vec<String>) {
    (name.to_string(), gpus.iter().map(|id| id.to_string()).collect())
}

#[tokio::test]
async fn highest_priority_first_fifo_within_a_priority_and_smaller_runs_pass_a_waiting_one() {
    let mut cluster = Cluster::start().await;
    let f1 = cluster.submit("f1", 0, Some("1")).await;
    assert_eq!(cluster.next_assignment().await, named("f1", &["0"]));
    let f2 = cluster.submit("f2", 0, None).await;
    assert_eq!(cluster.next_assignment().await, named("f2", &[]));

    // The worker is full; these queue, in this order.
    let a = cluster.submit("a", 0, None).await;
    let b = cluster.submit("b", 5, None).await;
    let _c = cluster.submit("c", 0, None).await;
    let g = cluster.submit("g", 9, Some("2")).await;
    let d = cluster.submit("d", 5, None).await;

    // A slot frees while f1 holds GPU 0: g comes first but cannot have 2 GPUs, so it waits and
    // says why, and the next in line goes ahead.
    cluster.finish(f2).await;
    assert_eq!(cluster.next_assignment().await, named("b", &[]));
    assert_eq!(cluster.waiting(g).as_deref(), Some("no worker with 2 free GPUs"));
    cluster.finish(b).await;
    assert_eq!(cluster.next_assignment().await, named("d", &[]));

    // Once f1 lets GPU 0 go, g takes both devices before the lower priorities.
    cluster.finish(f1).await;
    assert_eq!(cluster.next_assignment().await, named("g", &["0", "1"]));
    assert_eq!(cluster.waiting(g), None, "the waiting reason goes once the run is placed");
    cluster.finish(d).await;
    assert_eq!(cluster.next_assignment().await, named("a", &[]));
    cluster.finish(a).await;
    assert_eq!(cluster.next_assignment().await, named("c", &[]));
}

#[tokio::test]
async fn a_request_no_worker_could_ever_hold_is_refused_at_submission_and_changes_nothing() {
    let cluster = Cluster::start().await;
    let request = SubmitRun {
        experiment_id: DEFAULT_EXPERIMENT_ID,
        run_name: Some("huge".into()),
        user_id: "test".into(),
        tags: Vec::new(),
        spec: spec(0, Some("64")),
    };
    let error = cluster.handle.submit_run(request).await.expect_err("refused");
    assert!(error.to_string().contains("64 GPUs"), "{error}");
    let runs = cluster.store.pending_executions().expect("readable");
    assert!(runs.is_empty(), "nothing was queued: {runs:?}");
}
