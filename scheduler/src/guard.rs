//! Who may talk to the scheduler over HTTP: every request must name, in its `Host` header, a
//! host the scheduler serves (so a web page whose domain was rebound to this machine's
//! address is refused), and a browser's `Origin`, when sent, must be such a host too (so no
//! other site's page can make the user's browser change the store). Programs that are not
//! browsers (the official client, the CLI, workers, curl) name the address they dialled and
//! send no Origin, so they pass.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_proto::ApiError;

/// The hosts a scheduler answers to.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    /// Any host at all: the scheduler listens on every address and was given no list.
    any: bool,
    /// The address it listens on, when that is one address.
    listen: Option<IpAddr>,
    /// Names from `--allowed-hosts`: exact, or `*.domain` for any name under a domain.
    allowed: Vec<String>,
}

impl HostPolicy {
    /// Loopback names always; the listen address; and `allowed_hosts` (`*` allows any host).
    /// A scheduler listening on every address with no list accepts any host, since it cannot
    /// know the names it is reached by.
    pub fn new(listen: SocketAddr, allowed_hosts: &[String]) -> HostPolicy {
        let unspecified = listen.ip().is_unspecified();
        let allowed: Vec<String> =
            allowed_hosts.iter().map(|host| host.trim().to_ascii_lowercase()).collect();
        HostPolicy {
            any: allowed.iter().any(|host| host == "*") || (unspecified && allowed.is_empty()),
            listen: (!unspecified).then(|| listen.ip()),
            allowed,
        }
    }

    /// Whether `authority` (`host`, `host:port` or `[v6]:port`) names a host served here.
    fn allows(&self, authority: &str) -> bool {
        if self.any {
            return true;
        }
        let host = host_of(authority).to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return ip.is_loopback() || Some(ip) == self.listen;
        }
        self.allowed.iter().any(|allowed| match allowed.strip_prefix("*.") {
            Some(domain) => host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.')),
            None => *allowed == host,
        })
    }

    /// Why a request may not be served, if it may not.
    fn refusal(&self, headers: &HeaderMap, authority: Option<&str>) -> Option<String> {
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or(authority)
            .unwrap_or("");
        if !self.allows(host) {
            return Some(format!(
                "this scheduler does not serve the host '{}'; if that is its name, start it with --allowed-hosts {}",
                host.escape_default(),
                host_of(host).escape_default()
            ));
        }
        let origin = headers.get(header::ORIGIN)?;
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .map(|rest| rest.split('/').next().unwrap_or(rest));
        match authority {
            Some(authority) if self.allows(authority) => None,
            _ => Some(format!(
                "requests from pages of '{}' are not served; only this scheduler's own pages may call it",
                origin.escape_default()
            )),
        }
    }
}

/// The host part of an authority: `example.com:80` gives `example.com`, `[::1]:7070` gives
/// `::1`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Middleware: serves a request only if the policy allows where it comes from. gRPC callers
/// get gRPC's PERMISSION_DENIED, everyone else MLflow's JSON error.
pub async fn check(State(policy): State<HostPolicy>, request: Request, next: Next) -> Response {
    let authority = request.uri().authority().map(|authority| authority.as_str().to_string());
    let Some(reason) = policy.refusal(request.headers(), authority.as_deref()) else {
        return next.run(request).await;
    };
    tracing::warn!(reason, "refused a request");
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return tonic::Status::permission_denied(reason)
            .into_http::<axum::body::Body>()
            .into_response();
    }
    ApiError::PermissionDenied(reason).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn a_loopback_scheduler_answers_only_to_loopback_names() {
        let policy = HostPolicy::new("127.0.0.1:7070".parse().unwrap(), &[]);
        for host in ["127.0.0.1:7070", "localhost:7070", "LOCALHOST", "[::1]:7070", "127.0.0.2"] {
            assert_eq!(policy.refusal(&headers(host, None), None), None, "{host}");
        }
        for host in ["attacker.example", "attacker.example:7070", "10.0.0.5:7070", ""] {
            assert!(policy.refusal(&headers(host, None), None).is_some(), "{host}");
        }
    }

    #[test]
    fn browsers_from_other_sites_are_refused() {
        let policy = HostPolicy::new("127.0.0.1:7070".parse().unwrap(), &[]);
        let ours = headers("127.0.0.1:7070", Some("http://127.0.0.1:7070"));
        assert_eq!(policy.refusal(&ours, None), None);
        for origin in ["http://evil.example", "null", "https://evil.example:7070", "file://"] {
            let theirs = headers("127.0.0.1:7070", Some(origin));
            assert!(policy.refusal(&theirs, None).is_some(), "{origin}");
        }
    }

    #[test]
    fn listed_hosts_and_every_address_listeners() {
        let listed = HostPolicy::new(
            "0.0.0.0:7070".parse().unwrap(),
            &["scheduler.internal".into(), "*.cluster.example".into()],
        );
        for host in ["scheduler.internal:7070", "a.cluster.example", "localhost"] {
            assert_eq!(listed.refusal(&headers(host, None), None), None, "{host}");
        }
        for host in ["cluster.example", "evilcluster.example", "other.internal"] {
            assert!(listed.refusal(&headers(host, None), None).is_some(), "{host}");
        }
        let open = HostPolicy::new("0.0.0.0:7070".parse().unwrap(), &[]);
        assert_eq!(open.refusal(&headers("anything.example", None), None), None);
        let one = HostPolicy::new("10.0.0.5:7070".parse().unwrap(), &[]);
        assert_eq!(one.refusal(&headers("10.0.0.5:7070", None), None), None);
        assert!(one.refusal(&headers("10.0.0.6:7070", None), None).is_some());
    }
}
