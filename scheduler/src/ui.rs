//! The web UI: the project's own HTML, CSS and JS, embedded in the binary and served at `/`
//! by every scheduler (and by `drover ui`). Every page path answers with the same shell; the
//! scripts route on the path and read drover's JSON endpoints. The pages may only run the
//! scripts served here (a strict Content-Security-Policy), and may not be framed.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Scripts, styles and images only from here; nothing inline, no frames, no plugins.
const POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded files, by the name they are served under (`/static/<name>`).
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css", include_str!("../ui/style.css")),
    ("icon.svg", "image/svg+xml", include_str!("../ui/icon.svg")),
    ("app.js", "text/javascript", include_str!("../ui/app.js")),
    ("api.js", "text/javascript", include_str!("../ui/api.js")),
    ("dom.js", "text/javascript", include_str!("../ui/dom.js")),
    ("url.js", "text/javascript", include_str!("../ui/url.js")),
    ("live.js", "text/javascript", include_str!("../ui/live.js")),
    ("chart.js", "text/javascript", include_str!("../ui/chart.js")),
    ("metrics.js", "text/javascript", include_str!("../ui/metrics.js")),
    ("artifacts.js", "text/javascript", include_str!("../ui/artifacts.js")),
    ("plots.js", "text/javascript", include_str!("../ui/plots.js")),
    ("patch.js", "text/javascript", include_str!("../ui/patch.js")),
    ("pages/experiments.js", "text/javascript", include_str!("../ui/pages/experiments.js")),
    ("pages/runs.js", "text/javascript", include_str!("../ui/pages/runs.js")),
    ("pages/run.js", "text/javascript", include_str!("../ui/pages/run.js")),
    ("pages/compare.js", "text/javascript", include_str!("../ui/pages/compare.js")),
    ("pages/diff.js", "text/javascript", include_str!("../ui/pages/diff.js")),
    ("pages/sweeps.js", "text/javascript", include_str!("../ui/pages/sweeps.js")),
    ("pages/sweep.js", "text/javascript", include_str!("../ui/pages/sweep.js")),
    ("pages/cluster.js", "text/javascript", include_str!("../ui/pages/cluster.js")),
    ("pages/models.js", "text/javascript", include_str!("../ui/pages/models.js")),
    ("pages/model.js", "text/javascript", include_str!("../ui/pages/model.js")),
];

const SHELL: &str = include_str!("../ui/index.html");

/// The page paths, each answered with the shell.
const PAGES: &[&str] = &[
    "/",
    "/runs",
    "/runs/{run_id}",
    "/compare",
    "/diff",
    "/sweeps",
    "/sweeps/{sweep_id}",
    "/models",
    "/models/{name}",
    "/cluster",
];

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/static/{*name}", get(asset));
    for page in PAGES {
        router = router.route(page, get(shell));
    }
    router
}

fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // The files change only with the binary; revalidating is cheap on loopback.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn shell() -> Response {
    secured(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], SHELL).into_response())
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => {
            secured(([(header::CONTENT_TYPE, *content_type)], *body).into_response())
        }
        None => (StatusCode::NOT_FOUND, format!("no such file: /static/{name}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every module a script imports is served, so no page fails on a missing file.
    #[test]
    fn every_imported_module_is_embedded() {
        for (name, _, body) in ASSETS.iter().filter(|(name, _, _)| name.ends_with(".js")) {
            let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
            for line in body.lines() {
                let Some(start) = line
                    .find("from '")
                    .map(|i| i + 6)
                    .or_else(|| line.find("import('").map(|i| i + 8))
                else {
                    continue;
                };
                let Some(end) = line[start..].find('\'') else { continue };
                let target = &line[start..start + end];
                let mut parts: Vec<&str> =
                    if dir.is_empty() { vec![] } else { dir.split('/').collect() };
                for part in target.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        other => parts.push(other),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    ASSETS.iter().any(|(asset, _, _)| *asset == resolved),
                    "{name} imports {target}, which is not embedded"
                );
            }
        }
    }
}
