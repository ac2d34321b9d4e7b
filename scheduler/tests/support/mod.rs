//! Helpers for the scheduler's integration tests: a real scheduler on 127.0.0.1:0 over a
//! temporary data directory, reached through the real gRPC client and over plain HTTP for
//! MLflow's REST API.

use std::path::{Path, PathBuf};

use drover_proto::Client;
use drover_proto::domain::{
    CreateExperiment, CreateRun, ExperimentId, ExperimentName, Run, RunStatus,
};
use drover_scheduler::{SchedulerOptions, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestScheduler {
    pub client: Client,
    /// `host:port` of the scheduler's one address.
    pub address: String,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestScheduler {
    pub async fn start(data_dir: &Path) -> TestScheduler {
        TestScheduler::start_with(data_dir, SchedulerOptions::default()).await
    }

    pub async fn start_with(data_dir: &Path, options: SchedulerOptions) -> TestScheduler {
        let store = Store::open(data_dir).expect("open store");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(drover_scheduler::run(listener, store, options, async {
            let _ = stopped.await;
        }));
        let client = Client::connect(&address).await.expect("connect");
        let address = address.to_string();
        TestScheduler {
            client,
            address,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Shuts the scheduler down gracefully and waits until the store is closed.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }

    pub async fn restart(mut self) -> TestScheduler {
        self.shutdown().await;
        TestScheduler::start(&self.data_dir).await
    }

    pub async fn experiment(&self, name: &str) -> ExperimentId {
        let request = CreateExperiment {
            name: ExperimentName::parse(name).expect("valid name"),
            artifact_location: None,
            tags: Vec::new(),
        };
        self.client.create_experiment(request).await.expect("create experiment").id
    }

    /// POSTs `body` to MLflow's REST API at `/api/2.0/mlflow/<path>`; the status and the
    /// JSON answer.
    pub async fn rest(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<axum::body::Bytes>>();
        let request =
            axum::http::Request::post(format!("http://{}/api/2.0/mlflow/{path}", self.address))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(axum::body::Bytes::from(body.to_string())))
                .expect("request");
        let response = client.request(request).await.expect("REST call");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.expect("REST answer").to_bytes();
        (status, serde_json::from_slice(&bytes).expect("a JSON answer"))
    }

    pub async fn run(&self, experiment_id: ExperimentId) -> Run {
        self.client.create_run(new_run(experiment_id)).await.expect("create run")
    }
}

pub fn new_run(experiment_id: ExperimentId) -> CreateRun {
    CreateRun {
        experiment_id,
        run_name: None,
        user_id: "tester".to_string(),
        start_time_ms: None,
        tags: Vec::new(),
        status: RunStatus::Running,
    }
}
