//! Finds the scheduler a command talks to: the one named by `--scheduler`, the one already
//! serving the local store, or an embedded one started in this process over the local store.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drover_proto::{ApiError, Client};
use drover_scheduler::{Holder, OpenError, SchedulerOptions, Store, read_holder};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{GlobalOptions, drover_home};

/// How long to wait for another short-lived drover process to release the local store.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// A connection to a scheduler, and the embedded one this process runs, if any.
pub struct Backend {
    pub client: Client,
    embedded: Option<Embedded>,
}

struct Embedded {
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Backend {
    pub async fn connect(global: &GlobalOptions) -> anyhow::Result<Backend> {
        if let Some(address) = &global.scheduler {
            let client = Client::connect(address).await.map_err(|error| match error {
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
                && let Ok(client) = Client::connect(&address).await
            {
                return Ok(Backend { client, embedded: None });
            }
            match Store::open(&home) {
                Ok(store) => return Backend::embedded(store).await,
                // Another drover process holds the store: a short-lived command that will
                // release it soon, or a scheduler still starting or stopping.
                Err(OpenError::Locked { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Serves `store` on a loopback port inside this process, for this process only.
    async fn embedded(store: Store) -> anyhow::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot open a loopback port for the embedded scheduler")?;
        let address = listener.local_addr()?.to_string();
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(drover_scheduler::server::serve(
            listener,
            store,
            SchedulerOptions::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let client = Client::connect(&address).await?;
        Ok(Backend { client, embedded: Some(Embedded { stop, server }) })
    }

    /// Stops the embedded scheduler, if any, after flushing the store.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.client);
        if let Some(embedded) = self.embedded {
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
