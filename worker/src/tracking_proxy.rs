//! The tracking endpoint Docker runs use: an HTTP proxy on the worker, reachable from
//! containers at `host.docker.internal`, that forwards MLflow REST calls to the scheduler.
//!
//! Each run gets its own address, `http://host.docker.internal:PORT/run/<token>`, and the
//! proxy answers only calls about that run (its run ID, its experiment, its artifacts), so a
//! container never holds anything that reaches the rest of the cluster. What it refuses, it
//! refuses as the scheduler's REST API would, through `ApiError`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, RunId};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The largest tracking call body inspected; MLflow's own limit.
const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Scope {
    run_id: RunId,
    experiment_id: ExperimentId,
}

/// Grants and revokes runs' access; cheap to clone.
#[derive(Clone)]
pub struct TrackingProxy {
    /// How containers name the worker's host.
    host: String,
    port: u16,
    scopes: Arc<Mutex<HashMap<String, Scope>>>,
}

/// The proxy's server task, owned by whoever stops it. Dropping it stops the server too,
/// without waiting for it.
pub struct ProxyServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A run's access to the proxy, revoked when dropped.
pub struct Grant {
    proxy: TrackingProxy,
    token: String,
    pub uri: String,
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.proxy.scopes().remove(&self.token);
    }
}

#[derive(Clone)]
struct ProxyState {
    scheduler: Uri,
    /// `Bearer <token>` for a scheduler that requires one: added here, so runs never see it.
    authorization: Option<HeaderValue>,
    client: Upstream,
    scopes: Arc<Mutex<HashMap<String, Scope>>>,
}

impl ProxyState {
    /// Turns a verdict into an answer: a call about a logged model passes only if the model
    /// is the run's own, which the scheduler is asked. True when the answer must be cut down
    /// to the run's own models.
    async fn settle(
        &self,
        verdict: Result<Verdict, ApiError>,
        scope: Scope,
    ) -> Result<bool, ApiError> {
        let model_id = match verdict? {
            Verdict::Allowed => return Ok(false),
            Verdict::OwnModelsOnly => return Ok(true),
            Verdict::IfRunsModel(model_id) => model_id,
        };
        let denied = || {
            ApiError::PermissionDenied(format!(
                "logged model '{}' is outside run {}, the only run this address serves",
                model_id.escape_default(),
                scope.run_id
            ))
        };
        if model_id.is_empty() || !model_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(denied());
        }
        let target = format!(
            "{}/api/2.0/mlflow/logged-models/{model_id}?allow_deleted=true",
            self.scheduler.to_string().trim_end_matches('/')
        );
        let mut request = axum::http::Request::get(target);
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let request =
            request.body(Body::empty()).map_err(|error| ApiError::Internal(error.to_string()))?;
        let response = self.client.request(request).await.map_err(|error| {
            ApiError::Unavailable(format!("the scheduler did not answer: {error}"))
        })?;
        if !response.status().is_success() {
            return Err(denied());
        }
        let body = response.into_body().collect().await.map_err(|error| {
            ApiError::Unavailable(format!("the scheduler did not answer: {error}"))
        })?;
        let model: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
        let source = model["model"]["info"]["source_run_id"].as_str().unwrap_or("");
        if source.eq_ignore_ascii_case(&scope.run_id.to_string()) {
            Ok(false)
        } else {
            Err(denied())
        }
    }
}

impl TrackingProxy {
    /// Serves the proxy on `address` (the Docker bridge's gateway), forwarding to
    /// `scheduler` (`http://host:port`); containers reach `address` as `host`. Returns the
    /// handle runs are granted access through, and the server, to stop when the worker stops.
    pub async fn start(
        address: IpAddr,
        host: &str,
        scheduler: &str,
        token: Option<&str>,
        ca: Option<&Path>,
    ) -> std::io::Result<(TrackingProxy, ProxyServer)> {
        let scheduler: Uri = scheduler.parse().map_err(std::io::Error::other)?;
        let authorization = token
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(address, 0)).await?;
        let port = listener.local_addr()?.port();
        // Without TCP_NODELAY, Nagle's algorithm and the peer's delayed ACK can hold back the
        // last segment of a small answer by some 40 ms; runs make many small calls.
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY on a tracking connection");
            }
        });
        let scopes = Arc::new(Mutex::new(HashMap::new()));
        let state = ProxyState {
            scheduler,
            authorization,
            client: upstream_client(ca)?,
            scopes: scopes.clone(),
        };
        let router = axum::Router::new().fallback(forward).with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "the tracking proxy stopped");
            }
        });
        tracing::info!(%address, port, "tracking proxy for containers listening");
        let proxy = TrackingProxy { host: host.to_string(), port, scopes };
        Ok((proxy, ProxyServer { stop, task }))
    }

    fn scopes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Scope>> {
        self.scopes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A tracking URI that reaches this run, and only it, from inside its container.
    pub fn grant(&self, run_id: RunId, experiment_id: ExperimentId) -> Grant {
        let token = hex::encode(rand::random::<[u8; 16]>());
        self.scopes().insert(token.clone(), Scope { run_id, experiment_id });
        let uri = format!("http://{}:{}/run/{token}", self.host, self.port);
        Grant { proxy: self.clone(), token, uri }
    }
}

impl ProxyServer {
    /// Stops taking connections, closes idle ones and waits, for at most `timeout`, for the
    /// others to finish their calls. axum serves each connection in a task of its own; one
    /// still busy at the timeout is left detached, told to close once its call is answered.
    /// That is safe: the worker stops its runs first, so no run waits for that answer, and
    /// such a task holds nothing but its call to the scheduler.
    pub async fn stop(mut self, timeout: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(timeout, &mut self.task).await.is_err() {
            tracing::warn!("the tracking proxy's open calls did not finish in time; leaving them");
            self.task.abort();
            let _ = self.task.await;
        }
    }
}

/// The client calls are forwarded with. It spawns a task per connection to the scheduler,
/// which ends with its connection; idle connections close when the client's pool goes, with
/// the server's router, once the server stops.
/// An `https://` scheduler is verified against `ca`, else the public web roots.
fn upstream_client(ca: Option<&Path>) -> std::io::Result<Upstream> {
    drover_proto::tls::http_client(ca).map_err(std::io::Error::other)
}

type Upstream = HttpClient<HttpsConnector<HttpConnector>, Body>;

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/run/") else {
        return ApiError::NotFound("unknown tracking address".to_string()).into_response();
    };
    let (token, api_path) = rest.split_once('/').unwrap_or((rest, ""));
    let scope =
        state.scopes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(token).copied();
    let Some(scope) = scope else {
        let message = "this tracking address is not valid (the run ended?)";
        return ApiError::PermissionDenied(message.to_string()).into_response();
    };
    let api_path = format!("/{api_path}");
    let query = request.uri().query().map(str::to_string);
    let (parts, body) = request.into_parts();
    let is_artifact_transfer = api_path.starts_with("/api/2.0/mlflow-artifacts/artifacts/");
    // Tracking calls are small: read them to check which run they name. Artifact transfers
    // are checked by their path and streamed.
    let mut own_models_only = false;
    let body = if is_artifact_transfer {
        body
    } else {
        match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => {
                let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let verdict = allowed(&api_path, query.as_deref(), &json, scope);
                match state.settle(verdict, scope).await {
                    Ok(filter) => own_models_only = filter,
                    Err(refused) => return refused.into_response(),
                }
                Body::from(bytes)
            }
            Err(_) => {
                let message = "the request body is too large";
                return ApiError::InvalidArgument(message.to_string()).into_response();
            }
        }
    };
    if is_artifact_transfer {
        let verdict = allowed(&api_path, query.as_deref(), &Value::Null, scope);
        if let Err(refused) = state.settle(verdict, scope).await {
            return refused.into_response();
        }
    }
    let target = format!(
        "{}{}{}",
        state.scheduler.to_string().trim_end_matches('/'),
        api_path,
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let mut upstream = axum::http::Request::builder().method(parts.method).uri(target);
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ACCEPT] {
        if let Some(value) = parts.headers.get(&name) {
            upstream = upstream.header(name, value.clone());
        }
    }
    if let Some(authorization) = &state.authorization {
        upstream = upstream.header(header::AUTHORIZATION, authorization.clone());
    }
    let upstream = match upstream.body(body) {
        Ok(request) => request,
        Err(error) => return ApiError::InvalidArgument(error.to_string()).into_response(),
    };
    match state.client.request(upstream).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            let body = if own_models_only && parts.status.is_success() {
                match body.collect().await {
                    Ok(collected) => {
                        parts.headers.remove(header::CONTENT_LENGTH);
                        Body::from(own_models(&collected.to_bytes(), scope.run_id))
                    }
                    Err(error) => {
                        let message = format!("the scheduler did not answer: {error}");
                        return ApiError::Unavailable(message).into_response();
                    }
                }
            } else {
                Body::new(body.map_err(axum::Error::new))
            };
            let mut response = Response::from_parts(parts, body);
            response.headers_mut().insert("x-drover-proxy", HeaderValue::from_static("1"));
            response
        }
        Err(error) => {
            ApiError::Unavailable(format!("the scheduler did not answer: {error}")).into_response()
        }
    }
}

/// A logged-model search answer cut down to the models `run` logged: a run sees its own
/// models' params and metrics, never its neighbours'.
fn own_models(answer: &[u8], run: RunId) -> Vec<u8> {
    let mut answer: Value =
        serde_json::from_slice(answer).unwrap_or_else(|_| serde_json::json!({}));
    let run = run.to_string();
    if let Some(models) = answer.get_mut("models").and_then(Value::as_array_mut) {
        models.retain(|model| {
            model["info"]["source_run_id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(&run))
        });
    }
    answer.to_string().into_bytes()
}

/// A call the proxy may forward: at once, or once the scheduler says the logged model it is
/// about was logged by the run.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    IfRunsModel(String),
    /// Forwarded, and the answer's logged models cut down to the run's own.
    OwnModelsOnly,
}

/// Whether a call stays within the run's scope; the refusal when it does not. A run may log
/// models (and their files, params, tags and metrics), list its experiment's models, and
/// register its own models; nothing about another run's models passes.
fn allowed(
    path: &str,
    query: Option<&str>,
    body: &Value,
    scope: Scope,
) -> Result<Verdict, ApiError> {
    let run = scope.run_id.to_string();
    let experiment = scope.experiment_id.to_string();
    let denied = |what: &str| {
        ApiError::PermissionDenied(format!(
            "{what} is outside run {run}, the only run this address serves"
        ))
    };
    let params = query_pairs(query.unwrap_or(""));
    let field = |name: &str| -> Vec<String> {
        let mut values: Vec<String> =
            params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect();
        match &body[name] {
            Value::String(value) => values.push(value.clone()),
            Value::Array(items) => {
                values.extend(items.iter().filter_map(|v| v.as_str().map(str::to_string)))
            }
            _ => {}
        }
        values
    };
    // A field the check rests on must be given once: a value in the query and another in the
    // body would leave the check reading one and the scheduler the other.
    let single = |name: &str| -> Option<String> {
        let mut values = field(name);
        if values.len() == 1 { values.pop() } else { None }
    };
    let names_only_this_run = |names: &[&str]| {
        let ids: Vec<String> = names.iter().flat_map(|name| field(name)).collect();
        !ids.is_empty() && ids.iter().all(|id| id.eq_ignore_ascii_case(&run))
    };
    let names_only_this_experiment = || {
        let ids = field("experiment_id").into_iter().chain(field("experiment_ids"));
        let ids: Vec<String> = ids.collect();
        ids.iter().all(|id| *id == experiment)
    };
    if let Some(artifact) = path.strip_prefix("/api/2.0/mlflow-artifacts/artifacts") {
        let artifact = artifact.trim_start_matches('/');
        let artifact = if artifact.is_empty() {
            single("path").unwrap_or_default()
        } else {
            artifact.to_string()
        };
        let prefix = format!("{experiment}/{run}/");
        if artifact.starts_with(&prefix) || artifact == prefix.trim_end_matches('/') {
            return Ok(Verdict::Allowed);
        }
        let models = format!("{experiment}/models/");
        if let Some(model) = artifact.strip_prefix(&models) {
            let model_id = model.split('/').next().unwrap_or_default();
            return Ok(Verdict::IfRunsModel(model_id.to_string()));
        }
        return Err(denied("this artifact path"));
    }
    let Some(endpoint) = path
        .strip_prefix("/api/2.0/mlflow/")
        .or_else(|| path.strip_prefix("/ajax-api/2.0/mlflow/"))
    else {
        return Err(denied("this endpoint"));
    };
    if let Some(model) = endpoint.strip_prefix("logged-models/")
        && model != "search"
    {
        let model_id = model.split('/').next().unwrap_or_default();
        return Ok(Verdict::IfRunsModel(model_id.to_string()));
    }
    let verdict = match endpoint {
        "logged-models" => {
            let sources = field("source_run_id");
            let ours =
                !sources.is_empty() && sources.iter().all(|id| id.eq_ignore_ascii_case(&run));
            if ours && !field("experiment_id").is_empty() && names_only_this_experiment() {
                Ok(())
            } else {
                Err(denied("a model not logged by this run"))
            }
        }
        "registered-models/create" => Ok(()),
        "model-versions/create" => {
            let source = single("source").unwrap_or_default();
            let named: Vec<String> = field("model_id");
            let runs_are_ours = field("run_id").iter().all(|id| id.eq_ignore_ascii_case(&run));
            let own_files = format!("mlflow-artifacts:/{experiment}/{run}/artifacts");
            let model_files = format!("mlflow-artifacts:/{experiment}/models/");
            let model_id = source
                .strip_prefix("models:/")
                .or_else(|| source.strip_prefix(&model_files))
                .and_then(|rest| rest.split('/').next());
            if let Some(model_id) = model_id
                && runs_are_ours
                && named.iter().all(|id| id == model_id)
            {
                return Ok(Verdict::IfRunsModel(model_id.to_string()));
            }
            let from_this_run = source.strip_prefix("runs:/").is_some_and(|rest| {
                rest.split('/').next().is_some_and(|id| id.eq_ignore_ascii_case(&run))
            }) || source == own_files
                || source.starts_with(&format!("{own_files}/"));
            if from_this_run && named.is_empty() && runs_are_ours {
                Ok(())
            } else {
                Err(denied("a version whose source is not this run's"))
            }
        }
        "runs/get"
        | "runs/update"
        | "runs/log-metric"
        | "runs/log-parameter"
        | "runs/set-tag"
        | "runs/delete-tag"
        | "runs/log-batch"
        | "runs/log-inputs"
        | "runs/outputs"
        | "metrics/get-history"
        | "artifacts/list" => {
            if names_only_this_run(&["run_id", "run_uuid"]) {
                Ok(())
            } else {
                Err(denied("that run"))
            }
        }
        "metrics/get-history-bulk-interval" => {
            if names_only_this_run(&["run_ids"]) {
                Ok(())
            } else {
                Err(denied("that run"))
            }
        }
        "experiments/get" => {
            if names_only_this_experiment() {
                Ok(())
            } else {
                Err(denied("that experiment"))
            }
        }
        // The answer keeps only the run's own models (see `own_models_only`).
        "logged-models/search" => {
            return if names_only_this_experiment() {
                Ok(Verdict::OwnModelsOnly)
            } else {
                Err(denied("that experiment"))
            };
        }
        _ => Err(denied(&format!("'{endpoint}'"))),
    };
    verdict.map(|()| Verdict::Allowed)
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_encoding::percent_decode_str(&text.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(key), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope { run_id: RunId([0xab; 16]), experiment_id: ExperimentId(7) }
    }

    /// A scheduler address nothing listens on.
    fn unreachable_scheduler() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    async fn status_and_error_code(response: Response) -> (u16, String) {
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        (status, body["error_code"].as_str().unwrap_or_default().to_string())
    }

    fn call(uri: &str, body: impl Into<Body>) -> Request {
        axum::http::Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap()
    }

    #[tokio::test]
    async fn refusals_answer_with_mlflows_status_and_error_code() {
        let state = ProxyState {
            scheduler: unreachable_scheduler().parse().unwrap(),
            authorization: None,
            client: upstream_client(None).unwrap(),
            scopes: Arc::new(Mutex::new(HashMap::from([("token".to_string(), scope())]))),
        };
        let answer = |request| {
            let state = state.clone();
            async move { status_and_error_code(forward(State(state), request).await).await }
        };
        let run = RunId([0xab; 16]).to_string();
        let other = RunId([0xcd; 16]).to_string();
        let log_metric = |run: &str| serde_json::json!({"run_id": run, "key": "k"}).to_string();

        let refusals = [
            (call("/api/2.0/mlflow/runs/get", ""), 404, "RESOURCE_DOES_NOT_EXIST"),
            (
                call("/run/unknown/api/2.0/mlflow/runs/log-metric", log_metric(&run)),
                403,
                "PERMISSION_DENIED",
            ),
            (
                call("/run/token/api/2.0/mlflow/runs/log-metric", log_metric(&other)),
                403,
                "PERMISSION_DENIED",
            ),
            (
                call("/run/token/api/2.0/mlflow/runs/log-metric", vec![b' '; MAX_BODY_BYTES + 1]),
                400,
                "INVALID_PARAMETER_VALUE",
            ),
            (
                call("/run/token/api/2.0/mlflow/runs/log-metric", log_metric(&run)),
                503,
                "TEMPORARILY_UNAVAILABLE",
            ),
        ];
        for (request, status, error_code) in refusals {
            let path = request.uri().path().to_string();
            assert_eq!(answer(request).await, (status, error_code.to_string()), "{path}");
        }
    }

    #[tokio::test]
    async fn the_proxy_serves_a_grant_until_it_is_dropped_and_stops_when_told() {
        let scheduler = unreachable_scheduler();
        let (proxy, server) =
            TrackingProxy::start("127.0.0.1".parse().unwrap(), "127.0.0.1", &scheduler, None, None)
                .await
                .unwrap();
        let grant = proxy.grant(RunId([0xab; 16]), ExperimentId(7));
        let uri = format!("{}/api/2.0/mlflow/experiments/get?experiment_id=7", grant.uri);
        let get = |uri: &str| axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let client = upstream_client(None).unwrap();

        // Within the run's scope the call is forwarded, and the scheduler does not answer.
        let response = client.request(get(&uri)).await.unwrap();
        assert_eq!(response.status().as_u16(), 503);
        drop(grant);
        let response = client.request(get(&uri)).await.unwrap();
        assert_eq!(response.status().as_u16(), 403);

        // The client keeps its connection open; stopping closes it rather than waiting it out.
        let stopping = server.stop(Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(5), stopping).await.unwrap();
        assert!(upstream_client(None).unwrap().request(get(&uri)).await.is_err());
        drop(client);
    }

    #[test]
    fn calls_about_the_run_pass_and_others_do_not() {
        let run = RunId([0xab; 16]).to_string();
        let other = RunId([0xcd; 16]).to_string();
        let ok = |path: &str, query: &str, body: Value| {
            allowed(path, Some(query), &body, scope()).is_ok()
        };
        assert!(ok(
            "/api/2.0/mlflow/runs/log-metric",
            "",
            serde_json::json!({"run_id": run, "key": "k"})
        ));
        assert!(ok(
            "/api/2.0/mlflow/runs/get",
            &format!("run_id={run}&run_uuid={run}"),
            Value::Null
        ));
        assert!(!ok("/api/2.0/mlflow/runs/log-metric", "", serde_json::json!({"run_id": other})));
        assert!(!ok(
            "/api/2.0/mlflow/runs/get",
            &format!("run_id={run}&run_uuid={other}"),
            Value::Null
        ));
        assert!(!ok("/api/2.0/mlflow/runs/create", "", serde_json::json!({"experiment_id": "7"})));
        assert!(!ok(
            "/api/2.0/mlflow/runs/search",
            "",
            serde_json::json!({"experiment_ids": ["7"]})
        ));
        assert!(!ok(
            "/api/2.0/mlflow/experiments/delete",
            "",
            serde_json::json!({"experiment_id": "7"})
        ));
        assert!(ok("/api/2.0/mlflow/experiments/get", "experiment_id=7", Value::Null));
        assert!(!ok("/api/2.0/mlflow/experiments/get", "experiment_id=8", Value::Null));
        assert!(ok(
            &format!("/api/2.0/mlflow-artifacts/artifacts/7/{run}/artifacts/model.pkl"),
            "",
            Value::Null
        ));
        assert!(!ok(
            &format!("/api/2.0/mlflow-artifacts/artifacts/7/{other}/artifacts/x"),
            "",
            Value::Null
        ));
        assert!(ok(
            "/api/2.0/mlflow-artifacts/artifacts",
            &format!("path=7%2F{run}%2Fartifacts"),
            Value::Null
        ));
        assert!(!ok("/api/2.0/mlflow-artifacts/artifacts", "path=7", Value::Null));
    }

    #[test]
    fn a_run_may_log_and_register_its_own_models_only() {
        let run = RunId([0xab; 16]).to_string();
        let other = RunId([0xcd; 16]).to_string();
        let model = "m-0123456789abcdef0123456789abcdef";
        let verdict = |path: &str, body: Value| allowed(path, None, &body, scope()).ok();
        let own = Some(Verdict::IfRunsModel(model.to_string()));
        let create =
            |source: &str| serde_json::json!({"experiment_id": "7", "source_run_id": source});
        assert_eq!(verdict("/api/2.0/mlflow/logged-models", create(&run)), Some(Verdict::Allowed));
        assert_eq!(verdict("/api/2.0/mlflow/logged-models", create(&other)), None);
        let elsewhere = serde_json::json!({"experiment_id": "8", "source_run_id": run});
        assert_eq!(verdict("/api/2.0/mlflow/logged-models", elsewhere), None);
        assert_eq!(verdict("/api/2.0/mlflow/logged-models", serde_json::json!({})), None);
        for path in [
            format!("/api/2.0/mlflow/logged-models/{model}"),
            format!("/api/2.0/mlflow/logged-models/{model}/tags"),
            format!("/api/2.0/mlflow/logged-models/{model}/params"),
            format!("/api/2.0/mlflow-artifacts/artifacts/7/models/{model}/artifacts/MLmodel"),
        ] {
            assert_eq!(verdict(&path, Value::Null), own, "{path}");
        }
        let other_experiment = format!("/api/2.0/mlflow-artifacts/artifacts/8/models/{model}/x");
        assert_eq!(verdict(&other_experiment, Value::Null), None);
        let register = |body: Value| verdict("/api/2.0/mlflow/model-versions/create", body);
        let source = format!("models:/{model}");
        assert_eq!(register(serde_json::json!({"name": "M", "source": source})), own);
        let mismatched = serde_json::json!({"name": "M", "source": source, "model_id": "m-1"});
        assert_eq!(register(mismatched), None);
        let from_run = serde_json::json!({"name": "M", "source": format!("runs:/{run}/model")});
        assert_eq!(register(from_run), Some(Verdict::Allowed));
        let from_other = serde_json::json!({"name": "M", "source": format!("runs:/{other}/model")});
        assert_eq!(register(from_other), None);
        assert_eq!(register(serde_json::json!({"name": "M", "source": "s3://b/m"})), None);
        let alias = serde_json::json!({"name": "M", "alias": "prod", "version": "1"});
        assert_eq!(verdict("/api/2.0/mlflow/registered-models/alias", alias), None);
        let delete = serde_json::json!({"name": "M", "version": "1"});
        assert_eq!(verdict("/api/2.0/mlflow/model-versions/delete", delete), None);
        let outputs = serde_json::json!({"run_id": run, "models": [{"model_id": model}]});
        assert_eq!(verdict("/api/2.0/mlflow/runs/outputs", outputs), Some(Verdict::Allowed));
        let files = serde_json::json!({"name": "M", "source": format!("mlflow-artifacts:/7/{run}/artifacts/model")});
        assert_eq!(register(files), Some(Verdict::Allowed));
        let theirs = serde_json::json!({"name": "M", "source": format!("mlflow-artifacts:/7/{other}/artifacts/model")});
        assert_eq!(register(theirs), None);
        let forged = serde_json::json!({"name": "M", "source": source, "run_id": other});
        assert_eq!(register(forged), None, "a version must not claim another run");
        // A second value in the query is refused, not read past.
        let smuggled = serde_json::json!({"name": "M", "source": "models:/m-1"});
        let query = format!("source=models:/{model}");
        let path = "/api/2.0/mlflow/model-versions/create";
        assert!(allowed(path, Some(&query), &smuggled, scope()).is_err());
        let twice = format!("path=7/{run}/artifacts&path=");
        assert!(
            allowed("/api/2.0/mlflow-artifacts/artifacts", Some(&twice), &Value::Null, scope())
                .is_err()
        );
        let search = serde_json::json!({"experiment_ids": ["7"]});
        assert_eq!(
            verdict("/api/2.0/mlflow/logged-models/search", search),
            Some(Verdict::OwnModelsOnly)
        );
        let answer = serde_json::json!({"models": [
            {"info": {"model_id": "m-a", "source_run_id": run}},
            {"info": {"model_id": "m-b", "source_run_id": other}},
            {"info": {"model_id": "m-c"}},
        ], "next_page_token": "t"});
        let kept: Value =
            serde_json::from_slice(&own_models(answer.to_string().as_bytes(), RunId([0xab; 16])))
                .unwrap();
        assert_eq!(kept["models"].as_array().unwrap().len(), 1);
        assert_eq!(kept["models"][0]["info"]["model_id"], "m-a");
        assert_eq!(kept["next_page_token"], "t");
    }
}
