//! drover's own JSON endpoints, under `/api/drover/`, for the web UI and anyone scripting
//! against the scheduler: what MLflow's API cannot say in one call. Documented in the
//! README; each is a thin reading of a query string over the service layer.

use axum::Json;
use axum::extract::{Path, Request, State};
use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, ExperimentRef, RunId, RunStatus, ViewType};
use drover_proto::execution::LogStream;
use drover_proto::service::{Execution, Sweeps, Tracking};
use serde_json::{Value, json};

use super::json;
use super::{MlflowRequest, query_object};
use crate::service::views::{ChartAxis, ChartQuery, TableQuery};
use crate::service::{Scheduler, paging};
use crate::store::{ExecutionRecord, Placement};
use crate::sweep::{sweep_json, trial_json};

type RestResult = Result<Json<Value>, ApiError>;

/// The query string of `request` as a JSON object of strings.
fn query(request: &Request) -> Value {
    query_object(request.uri().query().unwrap_or(""))
}

/// A query field's text, if given and not empty (the last, if repeated).
fn text<'a>(query: &'a Value, field: &str) -> Option<&'a str> {
    let value = match &query[field] {
        Value::Array(items) => items.last()?,
        other => other,
    };
    value.as_str().filter(|text| !text.is_empty())
}

/// A comma-separated list field.
fn list(query: &Value, field: &str) -> Vec<String> {
    match &query[field] {
        Value::String(text) => {
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        }
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A field's values, one per repetition.
fn repeated(query: &Value, field: &str) -> Vec<String> {
    match &query[field] {
        Value::String(text) if !text.is_empty() => vec![text.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn number<T: std::str::FromStr>(query: &Value, field: &str) -> Result<Option<T>, ApiError> {
    text(query, field)
        .map(|text| {
            text.parse::<T>().map_err(|_| {
                ApiError::InvalidArgument(format!("{field} must be a number, got '{text}'"))
            })
        })
        .transpose()
}

fn view(query: &Value) -> Result<ViewType, ApiError> {
    match text(query, "view") {
        None | Some("active") => Ok(ViewType::ActiveOnly),
        Some("deleted") => Ok(ViewType::DeletedOnly),
        Some("all") => Ok(ViewType::All),
        Some(other) => Err(ApiError::InvalidArgument(format!(
            "view must be active, deleted or all, got '{other}'"
        ))),
    }
}

fn run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse()
}

/// `GET /api/drover/experiments?view=active|deleted|all`
pub async fn experiments(State(scheduler): State<Scheduler>, request: Request) -> RestResult {
    let view = view(&query(&request))?;
    let summaries = scheduler.experiment_summaries(view).await?;
    let experiments: Vec<Value> = summaries
        .iter()
        .map(|summary| {
            let mut value = json::experiment(&summary.experiment);
            let counts: serde_json::Map<String, Value> = summary
                .counts
                .iter()
                .map(|(status, count)| (status.as_str().to_string(), (*count).into()))
                .collect();
            value["run_counts"] = Value::Object(counts);
            value["deleted_runs"] = summary.deleted_runs.into();
            value["last_activity"] = summary.last_activity_ms.into();
            value
        })
        .collect();
    Ok(Json(json!({ "experiments": experiments })))
}

/// `GET /api/drover/runs?experiment_ids=1,2&filter=…&order_by=…&offset=0&max_results=100&view=active&fold=1`
pub async fn runs(State(scheduler): State<Scheduler>, request: Request) -> RestResult {
    let query = query(&request);
    let experiment_ids = list(&query, "experiment_ids")
        .iter()
        .map(|id| id.parse::<ExperimentId>())
        .collect::<Result<Vec<_>, _>>()?;
    let offset = number::<u64>(&query, "offset")?.unwrap_or(0);
    let table = scheduler
        .runs_table(TableQuery {
            experiment_ids: experiment_ids.clone(),
            view: view(&query)?,
            filter: text(&query, "filter").unwrap_or("").to_string(),
            order_by: repeated(&query, "order_by"),
            offset: paging::checked_offset(offset)?,
            limit: number(&query, "max_results")?,
            fold_children: text(&query, "fold") == Some("1"),
        })
        .await?;
    let runs: Vec<Value> = table
        .runs
        .iter()
        .map(|run| {
            let mut value = json::run(run, Vec::new());
            if let Some(count) = table.children.get(&run.info.run_id) {
                value["children"] = (*count).into();
            }
            value
        })
        .collect();
    let mut names = serde_json::Map::new();
    for id in &experiment_ids {
        let experiment = scheduler.get_experiment(ExperimentRef::Id(*id)).await?;
        names.insert(id.to_string(), experiment.name.into());
    }
    Ok(Json(json!({
        "experiments": names,
        "total": table.total,
        "offset": table.offset,
        "runs": runs,
        "columns": { "params": table.params, "metrics": table.metrics, "tags": table.tags },
    })))
}

/// `GET /api/drover/runs/{run_id}`: the run, its experiment, and how drover executed it.
pub async fn run(State(scheduler): State<Scheduler>, Path(id): Path<String>) -> RestResult {
    let detail = scheduler.run_detail(run_id(&id)?).await?;
    let inputs = scheduler.run_inputs(&detail.run)?;
    Ok(Json(json!({
        "run": json::run(&detail.run, inputs),
        "experiment": json::experiment(&detail.experiment),
        "execution": detail.execution.as_ref().map(execution),
    })))
}

/// An execution record as the UI shows it. Environment values stay out: only their names.
fn execution(record: &ExecutionRecord) -> Value {
    let (state, worker) = match &record.placement {
        Placement::Queued => ("queued", None),
        Placement::Assigned { worker_id } => ("assigned", Some(worker_id)),
        Placement::Running { worker_id } => ("running", Some(worker_id)),
        Placement::Done => ("done", None),
    };
    let spec = &record.spec;
    json!({
        "state": state,
        "worker": worker,
        "attempt": record.attempt,
        "retries_used": record.retries_used,
        "max_retries": spec.max_retries,
        "cancel_requested": record.cancel_requested,
        "submitted": record.submitted_ms,
        "exit_code": record.exit_code,
        "message": record.message,
        "project": spec.project_name,
        "entry_point": spec.entry_point,
        "parameters": spec.parameters.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "snapshot": spec.snapshot.as_str(),
        "snapshot_size": spec.snapshot_size,
        "image": spec.image,
        "env_manager": format!("{:?}", spec.env_manager).to_lowercase(),
        "environment_names": spec.environment.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "priority": spec.priority,
        "attempts": record.attempts.iter().map(|attempt| json!({
            "attempt": attempt.attempt,
            "worker": attempt.worker_id,
            "assigned": attempt.assigned_ms,
            "started": attempt.started_ms,
            "ended": attempt.ended_ms,
            "exit_code": attempt.exit_code,
            "outcome": attempt.outcome,
        })).collect::<Vec<_>>(),
    })
}

/// `POST /api/drover/runs/{run_id}/cancel`
pub async fn cancel_run(
    State(scheduler): State<Scheduler>,
    Path(id): Path<String>,
    _json: MlflowRequest,
) -> RestResult {
    let info = scheduler.cancel_run(run_id(&id)?).await?;
    Ok(Json(json!({ "run_info": json::run_info(&info) })))
}

/// `GET /api/drover/runs/{run_id}/log?cursor=0&max_bytes=65536`
pub async fn log(
    State(scheduler): State<Scheduler>,
    Path(id): Path<String>,
    request: Request,
) -> RestResult {
    let query = query(&request);
    let cursor = number::<u64>(&query, "cursor")?.unwrap_or(0);
    let max_bytes = number::<usize>(&query, "max_bytes")?.unwrap_or(1 << 16);
    let page = scheduler.log_since(run_id(&id)?, cursor, max_bytes)?;
    let chunks: Vec<Value> = page
        .chunks
        .iter()
        .map(|(stream, text)| {
            let stream = match stream {
                LogStream::Stdout => "stdout",
                LogStream::Stderr => "stderr",
                LogStream::System => "drover",
            };
            json!({ "stream": stream, "text": text })
        })
        .collect();
    Ok(Json(json!({
        "cursor": page.cursor,
        "next_cursor": page.next_cursor,
        "complete": page.complete,
        "chunks": chunks,
    })))
}

/// `GET /api/drover/runs/{run_id}/source-diff`: `{"diff": ...}`, the uncommitted changes the
/// run's snapshot was made with, as a diff against its commit.
pub async fn source_diff(State(scheduler): State<Scheduler>, Path(id): Path<String>) -> RestResult {
    let diff = scheduler.run_source_diff(run_id(&id)?).await?;
    Ok(Json(json!({ "diff": String::from_utf8_lossy(&diff) })))
}

/// `GET /api/drover/diff?a=RUN&b=RUN`: what differs between two runs, as `drover runs diff -o
/// json` prints it.
pub async fn diff(State(scheduler): State<Scheduler>, request: Request) -> RestResult {
    let query = query(&request);
    let side = |field: &str| {
        text(&query, field)
            .ok_or_else(|| ApiError::InvalidArgument(format!("{field} names a run to compare")))
            .and_then(run_id)
    };
    let diff = scheduler.diff_runs(side("a")?, side("b")?).await?;
    Ok(Json(serde_json::to_value(diff).map_err(|error| ApiError::Internal(error.to_string()))?))
}

/// `GET /api/drover/chart?run_ids=a,b&key=loss&x=step|time&width=1000&from=…&to=…&attempt=N`
pub async fn chart(State(scheduler): State<Scheduler>, request: Request) -> RestResult {
    let query = query(&request);
    let key = text(&query, "key")
        .ok_or_else(|| ApiError::InvalidArgument("key names the metric to draw".to_string()))?;
    let axis = match text(&query, "x") {
        None | Some("step") => ChartAxis::Step,
        Some("time") => ChartAxis::Time,
        Some(other) => {
            return Err(ApiError::InvalidArgument(format!(
                "x must be step or time, got '{other}'"
            )));
        }
    };
    let finite = |field: &str| -> Result<Option<f64>, ApiError> {
        match number::<f64>(&query, field)? {
            Some(value) if !value.is_finite() => {
                Err(ApiError::InvalidArgument(format!("{field} must be a finite number")))
            }
            other => Ok(other),
        }
    };
    let run_ids = list(&query, "run_ids").iter().map(|id| run_id(id)).collect::<Result<_, _>>()?;
    let series = scheduler
        .chart(ChartQuery {
            run_ids,
            key: key.to_string(),
            axis,
            width: number(&query, "width")?.unwrap_or(1000),
            from: finite("from")?,
            to: finite("to")?,
            attempt: number(&query, "attempt")?,
        })
        .await?;
    let series: Vec<Value> = series
        .iter()
        .map(|series| {
            let buckets: Vec<Value> = series
                .buckets
                .iter()
                .map(|b| {
                    json!([b.x_first, b.x_last, number_json(b.first), number_json(b.last), number_json(b.min), number_json(b.max), b.count])
                })
                .collect();
            json!({ "run_id": series.run_id.to_string(), "points": series.points, "buckets": buckets })
        })
        .collect();
    Ok(Json(json!({ "key": key, "x": text(&query, "x").unwrap_or("step"), "series": series })))
}

/// A value JSON can carry: NaN and infinities as MLflow writes them, as strings.
fn number_json(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map_or_else(|| Value::String(value.to_string()), Value::Number)
}

/// `GET /api/drover/sweeps?experiment_id=…`
pub async fn sweeps(State(scheduler): State<Scheduler>, request: Request) -> RestResult {
    let query = query(&request);
    let experiment = text(&query, "experiment_id").map(str::parse::<ExperimentId>).transpose()?;
    let sweeps = scheduler.list_sweeps(experiment).await?;
    Ok(Json(json!({ "sweeps": sweeps.iter().map(sweep_json).collect::<Vec<_>>() })))
}

/// `GET /api/drover/sweeps/{sweep_id}`
pub async fn sweep(State(scheduler): State<Scheduler>, Path(id): Path<String>) -> RestResult {
    let sweep_id = run_id(&id)?;
    let sweep = scheduler.get_sweep(sweep_id).await?;
    let trials = scheduler.sweep_trials(sweep_id)?;
    let trials: Vec<Value> = trials.iter().map(trial_json).collect();
    Ok(Json(json!({ "sweep": sweep_json(&sweep), "trials": trials })))
}

/// `POST /api/drover/sweeps/{sweep_id}/cancel`
pub async fn cancel_sweep(
    State(scheduler): State<Scheduler>,
    Path(id): Path<String>,
    _json: MlflowRequest,
) -> RestResult {
    let sweep = scheduler.cancel_sweep(run_id(&id)?).await?;
    Ok(Json(json!({ "sweep": sweep_json(&sweep) })))
}

/// `POST /api/drover/workers/{worker_id}/drain` with `{"drain": true}` (or false, to undrain).
pub async fn drain_worker(
    State(scheduler): State<Scheduler>,
    Path(worker_id): Path<String>,
    request: MlflowRequest,
) -> RestResult {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Drain {
        drain: bool,
    }
    let Drain { drain } = request.parse()?;
    let worker = scheduler.drain_worker(worker_id, drain).await?;
    Ok(Json(json!({ "worker": serde_json::to_value(worker).unwrap_or(Value::Null) })))
}

/// `GET /metrics`: the scheduler's metrics for Prometheus, in OpenMetrics text.
pub async fn metrics(
    State(scheduler): State<Scheduler>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let text = scheduler.metrics_text().await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /api/drover/cluster`: workers with the runs placed on them, the queue, and the
/// attempts lost to a worker recently.
pub async fn cluster(State(scheduler): State<Scheduler>) -> RestResult {
    let status = scheduler.cluster_status().await?;
    let pending = scheduler.pending_runs()?;
    let entry = |record: &ExecutionRecord, run: &drover_proto::domain::Run| {
        json!({
            "run_id": record.run_id.to_string(),
            "run_name": run.info.run_name,
            "experiment_id": record.experiment_id.to_string(),
            "priority": record.spec.priority,
            "submitted": record.submitted_ms,
            "status": RunStatus::as_str(run.info.status),
            "attempt": record.attempt,
            "retries_used": record.retries_used,
            "waiting": run.data.tags.iter().find(|tag| tag.key == drover_proto::tags::WAITING).map(|tag| &tag.value),
        })
    };
    let workers: Vec<Value> = status
        .workers
        .iter()
        .map(|worker| {
            let mut value = serde_json::to_value(worker).unwrap_or(Value::Null);
            value["runs"] = pending
                .iter()
                .filter(|(record, _)| record.placement.worker() == Some(worker.worker_id.as_str()))
                .map(|(record, run)| entry(record, run))
                .collect();
            value
        })
        .collect();
    let queue: Vec<Value> = pending
        .iter()
        .filter(|(record, _)| record.placement == Placement::Queued)
        .map(|(record, run)| entry(record, run))
        .collect();
    let losses: Vec<Value> = status
        .recent_losses
        .iter()
        .map(|lost| {
            json!({
                "run_id": lost.attempt.run_id.to_string(),
                "attempt": lost.attempt.attempt,
                "worker": lost.worker_id,
                "time": lost.time_ms,
                "reason": lost.reason,
                "requeued": lost.requeued,
            })
        })
        .collect();
    Ok(Json(json!({
        "workers": workers,
        "queued_runs": status.queued_runs,
        "queue": queue,
        "recent_losses": losses,
    })))
}
