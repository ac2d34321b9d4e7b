//! `drover scheduler`: serve the store over gRPC until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use std::sync::Arc;
use std::time::Duration;

use drover_scheduler::auth::Token;
use drover_scheduler::{LeaseOptions, SchedulerOptions, Store};
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
    /// Serve over TLS with this certificate chain (PEM); clients then use https:// and, for a
    /// private CA, --ca.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve /metrics without the token, for a Prometheus that cannot send one (the metrics
    /// name no run, user or parameter).
    #[arg(long)]
    open_metrics: bool,
    /// Serve beyond loopback without a token (--token-file). Only on a network you trust.
    #[arg(long)]
    insecure: bool,
    /// How long a worker may stay silent before its runs are requeued or failed.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_timeout: Duration,
    /// Largest project snapshot accepted, e.g. 1g or 500m.
    #[arg(long, value_name = "SIZE", default_value = "1g", value_parser = parse_size)]
    snapshot_limit: u64,
    /// Host names HTTP clients may reach this scheduler by, besides loopback and the listen
    /// address (comma-separated; `*.example.com` for a domain, `*` for any). Listening on
    /// every address (0.0.0.0) without this list accepts any host.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Largest artifact file accepted through the artifact proxy, e.g. 16g.
    #[arg(long, value_name = "SIZE", default_value = "16g", value_parser = parse_size)]
    artifact_limit: u64,
}

fn parse_size(text: &str) -> Result<u64, String> {
    drover_project::docker::parse_bytes(text)
        .ok_or_else(|| format!("'{text}' is not a size such as 1g or 500m"))
}

impl Options {
    pub fn scheduler_options(&self) -> anyhow::Result<SchedulerOptions> {
        if self.lease_timeout < Duration::from_secs(1) {
            bail!("--lease-timeout must be at least 1s");
        }
        let lease = LeaseOptions {
            heartbeat_interval: (self.lease_timeout / 5).max(Duration::from_millis(200)),
            lease_timeout: self.lease_timeout,
            ..LeaseOptions::default()
        };
        Ok(SchedulerOptions {
            lease,
            snapshot_limit: self.snapshot_limit,
            artifact_limit: self.artifact_limit,
            allowed_hosts: self.allowed_hosts.clone(),
            ..SchedulerOptions::default()
        })
    }
}

pub async fn run(global: &GlobalOptions, options: Options) -> anyhow::Result<()> {
    // DROVER_SCHEDULER is for clients and workers: a shell pointed at the cluster may start
    // the scheduler itself. Only the flag, typed here, is a mistake.
    if global.scheduler.is_some() && !global.scheduler_from_env {
        bail!("`drover scheduler` serves a store itself; drop --scheduler");
    }
    let token = match &global.token_file {
        Some(path) => Some(Arc::new(Token::from_file(path)?)),
        None => None,
    };
    if !options.listen.ip().is_loopback() && token.is_none() && !options.insecure {
        bail!(
            "listening on {} would let anyone who reaches it use the scheduler; require a token with --token-file FILE, listen on 127.0.0.1, or pass --insecure on a network you trust",
            options.listen
        );
    }
    let mut scheduler_options = options.scheduler_options()?;
    scheduler_options.token = token;
    scheduler_options.open_metrics = options.open_metrics;
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        scheduler_options.tls = Some(drover_proto::tls::server_config(cert, key)?);
    }
    if !options.listen.ip().is_loopback()
        && scheduler_options.token.is_some()
        && scheduler_options.tls.is_none()
    {
        tracing::warn!(
            "serving beyond loopback without TLS: the token crosses the network in clear text; give --tls-cert and --tls-key"
        );
    }
    // Handlers first: once the address is announced, a signal must stop it gracefully.
    let shutdown = shutdown_signal()?;
    let data_dir = options.data_dir.clone().unwrap_or_else(drover_home);
    let store = Store::open(&data_dir)?;
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    drover_scheduler::run(listener, store, scheduler_options, shutdown).await?;
    Ok(())
}

/// Installs SIGINT and SIGTERM handlers now, and returns what completes on the first of
/// them. Call it before the process tells anyone it is up, so that no early signal kills it
/// ungracefully.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    })
}
