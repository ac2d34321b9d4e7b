//! Who may use a scheduler started with `--token-file`: every gRPC call and HTTP request
//! (the REST API, the web UI and its endpoints) must carry the token, as
//! `Authorization: Bearer <token>` (what the CLI, workers and the official MLflow client with
//! `MLFLOW_TRACKING_TOKEN` send), or come from a browser signed in at `/login`, whose cookie
//! holds a value derived from the token rather than the token itself. Tokens are compared by
//! their digests, in constant time. A refused request is logged with its peer address and
//! path, never with what it presented, and reaches no handler.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use drover_proto::ApiError;
use sha2::{Digest, Sha256};

/// The cookie a signed-in browser holds.
const SESSION_COOKIE: &str = "drover_session";
/// Shortest token accepted: guessing one must be hopeless.
const MIN_TOKEN_CHARS: usize = 16;
/// Largest sign-in form read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The address a request came from, put in its extensions by the connection that read it.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// A scheduler's token, kept only as digests.
pub struct Token {
    digest: [u8; 32],
    /// What a signed-in browser's cookie holds, and its digest.
    session: String,
    session_digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "the token in {path} is too short: use at least {MIN_TOKEN_CHARS} characters, e.g. `openssl rand -hex 32 > {path}`"
    )]
    TooShort { path: String },
    #[error(
        "the token in {path} has characters an HTTP header cannot carry: use printable ASCII without spaces"
    )]
    Unprintable { path: String },
}

impl Token {
    /// Reads a token from a file: its content, without surrounding whitespace.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenError::Read { path: shown.clone(), source })?;
        Token::new(text.trim()).map_err(|error| match error {
            TokenError::TooShort { .. } => TokenError::TooShort { path: shown },
            _ => TokenError::Unprintable { path: shown },
        })
    }

    pub fn new(token: &str) -> Result<Token, TokenError> {
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(TokenError::TooShort { path: String::new() });
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(TokenError::Unprintable { path: String::new() });
        }
        let session = hex::encode(Sha256::digest(format!("drover ui session\n{token}")));
        Ok(Token {
            digest: Sha256::digest(token).into(),
            session_digest: Sha256::digest(&session).into(),
            session,
        })
    }

    fn is(&self, presented: &str) -> bool {
        same(&self.digest, &Sha256::digest(presented).into())
    }

    fn is_session(&self, presented: &str) -> bool {
        same(&self.session_digest, &Sha256::digest(presented).into())
    }

    /// Whether the request carries the token or a signed-in browser's cookie.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if bearer.is_some_and(|token| self.is(token)) {
            return true;
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == SESSION_COOKIE && self.is_session(value))
    }
}

/// Equal digests, compared without stopping at the first difference.
fn same(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter().zip(right).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

/// What the token guards.
#[derive(Clone, Debug)]
pub struct Access {
    pub token: Arc<Token>,
    /// `/metrics` is served without the token, for a Prometheus that cannot send one.
    pub open_metrics: bool,
}

/// Middleware: serves a request only if it carries the token. The sign-in page and the
/// UI's static files (the project's own, holding no data) are open, and `/metrics` when
/// asked.
pub async fn require(State(access): State<Access>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = path == "/login"
        || path.starts_with("/static/")
        || (access.open_metrics && path == "/metrics");
    if open || access.token.admits(request.headers()) {
        return next.run(request).await;
    }
    let peer =
        request.extensions().get::<Peer>().map_or("unknown".to_string(), |peer| peer.0.to_string());
    let presented = request.headers().contains_key(header::AUTHORIZATION);
    tracing::warn!(
        %peer,
        path,
        presented,
        "refused a request without this scheduler's token"
    );
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    let message = if presented {
        "the token presented is not this scheduler's"
    } else {
        "this scheduler requires a token: set DROVER_TOKEN or pass --token-file (MLflow clients: MLFLOW_TRACKING_TOKEN)"
    };
    if grpc {
        return tonic::Status::unauthenticated(message).into_http::<Body>().into_response();
    }
    let wants_page = request.method() == Method::GET
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    if wants_page {
        let next = request.uri().path_and_query().map_or("/", |path| path.as_str());
        return sign_in_page(StatusCode::UNAUTHORIZED, next, None);
    }
    let mut response = ApiError::Unauthenticated(message.to_string()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// `GET /login` (the form) and `POST /login` (checks the token, sets the cookie).
pub fn router(token: Arc<Token>) -> Router {
    Router::new().route("/login", get(login_form).post(login)).with_state(token)
}

async fn login_form(request: Request) -> Response {
    let next = field(request.uri().query().unwrap_or(""), "next");
    sign_in_page(StatusCode::OK, next.as_deref().unwrap_or("/"), None)
}

/// A field of a query string or a URL-encoded form, decoded.
fn field(form: &str, name: &str) -> Option<String> {
    let decode = |text: &str| {
        let text = text.replace('+', " ");
        percent_encoding::percent_decode_str(&text).decode_utf8_lossy().into_owned()
    };
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| decode(key) == name)
        .map(|(_, value)| decode(value))
}

async fn login(State(token): State<Arc<Token>>, request: Request) -> Response {
    let body = match axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES).await {
        Ok(body) => body,
        Err(_) => return ApiError::InvalidArgument("the form is too large".into()).into_response(),
    };
    let form = String::from_utf8_lossy(&body);
    let next = field(&form, "next").unwrap_or_else(|| "/".to_string());
    let next = next.as_str();
    let presented = field(&form, "token").unwrap_or_default();
    if !token.is(presented.trim()) {
        tracing::warn!("refused a sign-in with a wrong token");
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            next,
            Some("That is not this scheduler's token."),
        );
    }
    let cookie = format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", token.session);
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    if let Ok(location) = HeaderValue::from_str(local_path(next)) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// A path on this scheduler to return to, or `/`: never another site (`//host`, `/\host`).
fn local_path(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if local { next } else { "/" }
}

fn sign_in_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let error =
        error.map(|error| format!("<p class=\"inline-error\">{error}</p>")).unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · drover</title>
<link rel="icon" href="/static/icon.svg">
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main class="sign-in">
<h1>drover</h1>
<p>This scheduler asks for its token.</p>
{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button type="submit">Sign in</button>
</form>
<p class="muted">It is the content of the file given to <code>drover scheduler --token-file</code>.</p>
</main>
</body>
</html>
"#,
        next = escape(local_path(next)),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Text safe inside an HTML attribute or element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_token_or_its_session_is_admitted() {
        let token = Token::new("0123456789abcdef-secret").unwrap();
        assert!(token.admits(&headers(header::AUTHORIZATION, "Bearer 0123456789abcdef-secret")));
        assert!(token.admits(&headers(header::AUTHORIZATION, "bearer 0123456789abcdef-secret")));
        for wrong in ["Bearer 0123456789abcdef-secreT", "Bearer ", "Basic 0123456789abcdef-secret"]
        {
            assert!(!token.admits(&headers(header::AUTHORIZATION, wrong)), "{wrong}");
        }
        assert!(!token.admits(&HeaderMap::new()));
        let cookie = format!("theme=dark; {SESSION_COOKIE}={}", token.session);
        assert!(token.admits(&headers(header::COOKIE, &cookie)));
        // The cookie holds a value derived from the token, not the token.
        let raw = format!("{SESSION_COOKIE}=0123456789abcdef-secret");
        assert!(!token.admits(&headers(header::COOKIE, &raw)));
    }

    #[test]
    fn short_or_unprintable_tokens_are_refused() {
        assert!(matches!(Token::new("short"), Err(TokenError::TooShort { .. })));
        assert!(matches!(Token::new("with a space in it!!"), Err(TokenError::Unprintable { .. })));
    }

    #[test]
    fn sign_in_returns_only_to_local_paths() {
        assert_eq!(local_path("/runs?e=1"), "/runs?e=1");
        for elsewhere in ["//evil.example/", "https://evil.example", "/\\evil.example", "runs"] {
            assert_eq!(local_path(elsewhere), "/", "{elsewhere}");
        }
        assert_eq!(escape("\"><script>"), "&quot;&gt;&lt;script&gt;");
    }
}
