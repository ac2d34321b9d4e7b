//! The scheduler's network front: gRPC (and, on the same listener, HTTP routes) over the
//! store, with graceful shutdown.

mod connections;
mod proxy;

pub use proxy::serve_proxy;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::service::grpc_routes;
use tokio::net::TcpListener;

use crate::auth;
use crate::guard::{self, HostPolicy};
use crate::rest;
use crate::service::{Scheduler, SchedulerOptions};
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::ui;

/// How long in-flight calls may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the scheduler's own tasks (streams, the sweep driver, the dispatcher) may take to
/// stop once the calls have drained.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the scheduler API for `store` on `listener`, and tells other drover processes on
/// this machine to use it (through the data directory's lock file), until `shutdown`.
pub async fn run(
    listener: TcpListener,
    store: Store,
    options: SchedulerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    store.announce(&format!("{scheme}://{}", listener.local_addr()?))?;
    serve(listener, store, options, shutdown).await
}

/// Middleware: records how long each call took, by its route (the path pattern, so that
/// IDs in paths do not multiply the series), method and status.
async fn timed(
    axum::extract::State(telemetry): axum::extract::State<Arc<Telemetry>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |matched| matched.as_str())
        .to_string();
    let method = request.method().clone();
    let response = next.run(request).await;
    telemetry.request(&route, method.as_str(), response.status().as_u16(), started.elapsed());
    response
}

/// Serves the scheduler API for `store` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight calls finish (up to a timeout), and flushes the store.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    options: SchedulerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let address = format!("{scheme}://{}", listener.local_addr()?);
    let (scheduler, stop) =
        Scheduler::start(store.clone(), &options).map_err(std::io::Error::other)?;
    let hosts = HostPolicy::new(listener.local_addr()?, &options.allowed_hosts);
    let telemetry = scheduler.telemetry().clone();
    let mut router = grpc_routes(Arc::new(scheduler.clone()))
        .into_axum_router()
        .merge(rest::router(scheduler))
        .merge(ui::router())
        .fallback(rest::not_found);
    // Layers run outermost last-added first: the host check, then the token.
    if let Some(token) = &options.token {
        let access = auth::Access { token: token.clone(), open_metrics: options.open_metrics };
        router = router
            .merge(auth::router(token.clone()))
            .layer(axum::middleware::from_fn_with_state(access, auth::require));
    }
    let router = router
        .layer(axum::middleware::from_fn_with_state(hosts, guard::check))
        .layer(axum::middleware::from_fn_with_state(telemetry, timed));
    tracing::info!(%address, data_dir = %store.dir().display(), "scheduler listening");

    let shutdown = async {
        shutdown.await;
        tracing::info!("shutting down: no new calls, draining in-flight ones");
        // Long-lived streams (workers, followers) end as soon as shutdown begins, so that
        // draining can finish.
        stop.stop();
    };
    let tls = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    connections::serve(listener, router, options.connections, tls, shutdown, DRAIN_TIMEOUT).await;
    stop.finish(STOP_TIMEOUT).await;
    store.close_and_release(DRAIN_TIMEOUT).await;
    tracing::info!("store flushed; scheduler stopped");
    Ok(())
}
