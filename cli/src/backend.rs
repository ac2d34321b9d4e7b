//! Finds the scheduler a command talks to: the one named by `--scheduler`, the one already
//! serving the local store, or an embedded one started in this process over the local store
//! (with a worker beside it when the command runs projects).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drover_proto::{ApiError, Client};
use drover_scheduler::{Holder, OpenError, SchedulerOptions, Store, read_holder};
use drover_worker::WorkerOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{GlobalOptions, drover_home};

/// How long to wait for another short-lived drover process to release the local store.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What an embedded scheduler needs beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedding {
    /// Only the store's API, for this command.
    StoreOnly,
    /// A worker too, and the address announced so other commands can follow along.
    WithWorker,
}

/// A connection to a scheduler, and the embedded one this process runs, if any.
pub struct Backend {
    pub client: Client,
    embedded: Option<Embedded>,
}

struct Embedded {
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    worker: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Backend {
    pub async fn connect(global: &GlobalOptions) -> anyhow::Result<Backend> {
        Backend::connect_with(global, Embedding::StoreOnly).await
    }

    pub async fn connect_with(
        global: &GlobalOptions,
        embedding: Embedding,
    ) -> anyhow::Result<Backend> {
        let token = global.token()?;
        if let Some(address) = &global.scheduler {
            let ca = global.ca.as_deref();
            let client = Client::connect_with(address, token.as_deref(), ca).await.map_err(|error| match error {
                ApiError::Unavailable(message) => anyhow::anyhow!(
                    "{message}; check the address, or drop --scheduler (and DROVER_SCHEDULER) to use the embedded default store"
                ),
                other => other.into(),
            })?;
            return Ok(Backend { client, embedded: None });
        }
        let home = drover_home();
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            if let Some(Holder { address: Some(address), .. }) = read_holder(&home)
                && let Ok(client) =
                    Client::connect_with(&address, token.as_deref(), global.ca.as_deref()).await
            {
                return Ok(Backend { client, embedded: None });
            }
            match Store::open(&home) {
                Ok(store) => return Backend::embedded(store, embedding).await,
                // Another drover process holds the store: a short-lived command that will
                // release it soon, or a scheduler still starting or stopping.
                Err(OpenError::Locked { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Whether the scheduler lives in this process (and ends with it).
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Serves `store` on a loopback port inside this process.
    async fn embedded(store: Store, embedding: Embedding) -> anyhow::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot open a loopback port for the embedded scheduler")?;
        Backend::serve(listener, store, embedding).await
    }

    /// Serves `store` on `listener` inside this process: the scheduler (its gRPC, REST and
    /// web UI), and a worker when the embedding asks for one.
    pub async fn serve(
        listener: TcpListener,
        store: Store,
        embedding: Embedding,
    ) -> anyhow::Result<Backend> {
        let address = listener.local_addr()?.to_string();
        let work_dir = store.dir().join("worker");
        let (stop, stopped) = oneshot::channel();
        let stopped = async {
            let _ = stopped.await;
        };
        let options = SchedulerOptions::default();
        let server = match embedding {
            Embedding::StoreOnly => {
                tokio::spawn(drover_scheduler::server::serve(listener, store, options, stopped))
            }
            Embedding::WithWorker => {
                tokio::spawn(drover_scheduler::run(listener, store, options, stopped))
            }
        };
        let client = Client::connect(&address).await?;
        let worker = match embedding {
            Embedding::StoreOnly => None,
            Embedding::WithWorker => {
                // The worker's id (made once, kept in the store's worker directory) labels its
                // containers; it must differ between stores sharing a Docker engine.
                let mut options = WorkerOptions::new(address, work_dir);
                options.slots = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                let (stop_worker, worker_stopped) = oneshot::channel::<()>();
                let worker = tokio::spawn(async move {
                    let stopped = async {
                        let _ = worker_stopped.await;
                    };
                    if let Err(error) = drover_worker::run(options, stopped).await {
                        tracing::error!(%error, "the embedded worker failed");
                    }
                });
                Some((stop_worker, worker))
            }
        };
        Ok(Backend { client, embedded: Some(Embedded { stop, server, worker }) })
    }

    /// Stops the embedded worker and scheduler, if any, after flushing the store.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.client);
        if let Some(embedded) = self.embedded {
            if let Some((stop_worker, worker)) = embedded.worker {
                let _ = stop_worker.send(());
                let _ = worker.await;
            }
            let _ = embedded.stop.send(());
            match embedded.server.await {
                Ok(result) => result.context("the embedded scheduler failed")?,
                Err(error) => bail!("the embedded scheduler failed: {error}"),
            }
        }
        Ok(())
    }
}

/// Runs `work` against the scheduler for `global`, then closes the connection (and stops
/// the embedded scheduler, if one was started) whether or not the work succeeded.
pub async fn with_client<T>(
    global: &GlobalOptions,
    work: impl AsyncFnOnce(&Client) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let backend = Backend::connect(global).await?;
    let result = work(&backend.client).await;
    backend.close().await?;
    result
}
