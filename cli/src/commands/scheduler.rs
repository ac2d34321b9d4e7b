//! `drover scheduler`: serve the store over gRPC until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use drover_scheduler::Store;
use tokio::net::TcpListener;

use crate::{GlobalOptions, drover_home};

#[derive(Args, Debug)]
pub struct Options {
    /// Address to serve on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Where the store lives (default: DROVER_HOME, else ./.drover).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Serve beyond loopback without authentication. Only on a network you trust.
    #[arg(long)]
    insecure: bool,
}

pub async fn run(global: &GlobalOptions, options: Options) -> anyhow::Result<()> {
    if global.scheduler.is_some() {
        bail!("`drover scheduler` serves a store itself; drop --scheduler (and DROVER_SCHEDULER)");
    }
    if !options.listen.ip().is_loopback() && !options.insecure {
        bail!(
            "listening on {} would expose the scheduler beyond this machine, and this build has no client authentication yet; listen on 127.0.0.1, or pass --insecure on a network you trust",
            options.listen
        );
    }
    let data_dir = options.data_dir.unwrap_or_else(drover_home);
    let store = Store::open(&data_dir)?;
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    drover_scheduler::run(listener, store, shutdown_signal()).await?;
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        tracing::error!("cannot install signal handlers; stop the scheduler with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("received SIGINT"),
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
    }
}
