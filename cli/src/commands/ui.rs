//! `drover ui`: the web UI on a local address. Over the local store it serves the store
//! itself, with a worker beside it, so `drover run` in another shell runs and shows up live;
//! when a scheduler already holds the store, or `--scheduler` names one, it passes every call
//! to that scheduler.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use clap::Args;
use drover_scheduler::{Holder, OpenError, Store, read_holder};
use tokio::net::TcpListener;

use super::scheduler::shutdown_signal;
use crate::backend::{Backend, Embedding};
use crate::{GlobalOptions, drover_home};

#[derive(Args, Debug)]
pub struct Options {
    /// Address to serve the UI on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to serve the UI on.
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Serve beyond loopback without authentication. Only on a network you trust.
    #[arg(long)]
    insecure: bool,
}

pub async fn run(global: &GlobalOptions, options: Options) -> anyhow::Result<()> {
    let address = SocketAddr::new(options.host, options.port);
    if !options.host.is_loopback() && !options.insecure {
        bail!(
            "serving the UI on {address} would expose the store beyond this machine to anyone who reaches it; use --host 127.0.0.1, or pass --insecure on a network you trust"
        );
    }
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (pick another with --port)"))?;
    let shown = listener.local_addr()?;
    let upstream = match &global.scheduler {
        Some(scheduler) => Some(scheduler.clone()),
        None => read_holder(&drover_home()).and_then(|Holder { address, .. }| address),
    };
    if let Some(upstream) = upstream {
        println!("drover ui at http://{shown} (for the scheduler at {upstream})");
        let token = global.token()?;
        let ca = global.ca.as_deref();
        drover_scheduler::server::serve_proxy(listener, &upstream, token.as_deref(), ca, shutdown)
            .await?;
        return Ok(());
    }
    let store = match Store::open(&drover_home()) {
        Ok(store) => store,
        Err(OpenError::Locked { .. }) => bail!(
            "another drover process holds the local store and serves no address; try again when it ends, or start `drover scheduler` and point the UI at it with --scheduler"
        ),
        Err(error) => return Err(error.into()),
    };
    let backend = Backend::serve(listener, store, Embedding::WithWorker).await?;
    println!("drover ui at http://{shown}");
    shutdown.await;
    backend.close().await
}
