//! `drover ui` in front of a scheduler it does not hold: a local address that passes every
//! HTTP call (the pages, their JSON, artifact downloads) to that scheduler. Host and Origin
//! are checked here against this address, as the scheduler checks its own; the call then
//! names the scheduler's host, carries no Origin, and carries the token the CLI was given
//! (for a scheduler that requires one), so the scheduler sees a plain client.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use drover_proto::ApiError;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpListener;

use super::{DRAIN_TIMEOUT, connections};
use crate::guard::{self, HostPolicy};
use crate::service::ConnectionOptions;

#[derive(Clone)]
struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    authority: HeaderValue,
    /// `Bearer <token>` for a scheduler that requires one.
    authorization: Option<HeaderValue>,
}

/// Serves `listener` by forwarding to the scheduler at `upstream` (`host:port` or
/// `http://host:port`) until
/// `shutdown` completes.
pub async fn serve_proxy(
    listener: TcpListener,
    upstream: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let authorization = token
        .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
        .transpose()
        .map_err(|_| std::io::Error::other("the token has characters a header cannot carry"))?;
    let base = upstream.trim_end_matches('/');
    let base = if base.contains("://") { base.to_string() } else { format!("http://{base}") };
    let uri: Uri = base.parse().map_err(|_| {
        std::io::Error::other(format!("'{upstream}' is not an http://host:port address"))
    })?;
    let authority = uri
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
        .ok_or_else(|| std::io::Error::other(format!("'{upstream}' names no host")))?;
    let client = drover_proto::tls::http_client(ca).map_err(std::io::Error::other)?;
    let local: SocketAddr = listener.local_addr()?;
    let hosts = HostPolicy::new(local, &[]);
    let router = Router::new()
        .fallback(forward)
        .with_state(Upstream { client, base, authority, authorization })
        .layer(axum::middleware::from_fn_with_state(hosts, guard::check));
    connections::serve(
        listener,
        router,
        ConnectionOptions::default(),
        None,
        shutdown,
        DRAIN_TIMEOUT,
    )
    .await;
    Ok(())
}

async fn forward(State(upstream): State<Upstream>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let Ok(uri) = format!("{}{path}", upstream.base).parse::<Uri>() else {
        return ApiError::InvalidArgument(format!("cannot forward {path}")).into_response();
    };
    parts.uri = uri;
    parts.headers.insert(header::HOST, upstream.authority.clone());
    // Checked above against this address; the scheduler would not know it.
    parts.headers.remove(header::ORIGIN);
    if let Some(authorization) = &upstream.authorization {
        parts.headers.insert(header::AUTHORIZATION, authorization.clone());
    }
    parts.version = axum::http::Version::HTTP_11;
    match upstream.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Body::new).into_response(),
        Err(error) => ApiError::Unavailable(format!(
            "the scheduler at {} did not answer: {error}",
            upstream.base
        ))
        .into_response(),
    }
}
