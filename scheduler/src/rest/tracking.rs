//! MLflow's tracking endpoints: experiments, runs, params, tags, metrics and search.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use drover_proto::ApiError;
use drover_proto::domain::{
    CreateExperiment, CreateRun, ExperimentId, ExperimentName, ExperimentRef, Metric,
    MetricHistoryQuery, Param, RenameExperiment, RunId, Tag, UpdateRun,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::json::{
    self, MetricJson, MetricOut, TagJson, lenient_i64, parse_status, parse_view_type, required,
};
use super::{MlflowRequest, RestError, RestResult};
use crate::scheduler::Scheduler;
use crate::search::ExperimentFilter;
use crate::search::{Filter, OrderBy};

/// Items one `log-batch` request may carry, as MLflow's limits.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_ITEMS: usize = 1000;
/// Results per page of a search.
const MAX_SEARCH_RESULTS: usize = 50_000;
const DEFAULT_SEARCH_RESULTS: usize = 1000;
const MAX_BULK_RUNS: usize = 100;
const MAX_BULK_RESULTS: usize = 2500;

fn ok() -> RestResult {
    Ok(Json(json!({})))
}

fn run_id(text: Option<String>, name: &str) -> Result<RunId, ApiError> {
    required(text, name)?.parse()
}

fn experiment_id(text: Option<String>) -> Result<ExperimentId, ApiError> {
    let text = required(text, "experiment_id")?;
    text.parse().map_err(|_| ApiError::InvalidArgument(format!("invalid experiment id '{text}'")))
}

/// One string or many: MLflow accepts repeated query parameters and JSON arrays alike.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

/// Page tokens are opaque to clients: base64 of the offset into the ordered results.
fn page_offset(token: Option<&str>) -> Result<usize, ApiError> {
    let Some(token) = token.filter(|token| !token.is_empty()) else { return Ok(0) };
    let invalid = || ApiError::InvalidArgument(format!("invalid page token '{token}'"));
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix("offset:").and_then(|n| n.parse().ok()).ok_or_else(invalid)
}

fn page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn max_results(requested: Option<i64>, default: usize, max: usize) -> Result<usize, ApiError> {
    match requested {
        None => Ok(default),
        Some(n) if n < 1 || n as usize > max => Err(ApiError::InvalidArgument(format!(
            "max_results must be between 1 and {max}, got {n}"
        ))),
        Some(n) => Ok(n as usize),
    }
}

// ---------------------------------------------------------------------------
// Experiments
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct CreateExperimentBody {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<TagJson>,
}

pub async fn create_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: CreateExperimentBody = request.parse()?;
    let request = CreateExperiment {
        name: ExperimentName::parse(&required(body.name, "name")?)?,
        artifact_location: body.artifact_location.filter(|location| !location.is_empty()),
        tags: body.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?,
    };
    let experiment = scheduler.store.create_experiment(request).await?;
    Ok(Json(json!({ "experiment_id": experiment.id.to_string() })))
}

#[derive(Deserialize)]
pub struct ExperimentIdBody {
    experiment_id: Option<String>,
}

pub async fn get_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: ExperimentIdBody = request.parse()?;
    let experiment =
        scheduler.store.experiment(&ExperimentRef::Id(experiment_id(body.experiment_id)?))?;
    Ok(Json(json!({ "experiment": json::experiment(&experiment) })))
}

#[derive(Deserialize)]
pub struct ExperimentNameBody {
    experiment_name: Option<String>,
}

pub async fn get_experiment_by_name(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: ExperimentNameBody = request.parse()?;
    let name = required(body.experiment_name, "experiment_name")?;
    let experiment = scheduler.store.experiment(&ExperimentRef::Name(name))?;
    Ok(Json(json!({ "experiment": json::experiment(&experiment) })))
}

#[derive(Deserialize)]
pub struct SearchExperimentsBody {
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    order_by: OneOrMany,
    view_type: Option<Value>,
}

pub async fn search_experiments(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: SearchExperimentsBody = request.parse()?;
    let view = parse_view_type(body.view_type.as_ref())?;
    let filter = ExperimentFilter::parse(body.filter.as_deref().unwrap_or(""))?;
    let order_by = body.order_by.into_vec();
    let limit = max_results(body.max_results, DEFAULT_SEARCH_RESULTS, MAX_SEARCH_RESULTS)?;
    let offset = page_offset(body.page_token.as_deref())?;
    let mut experiments: Vec<_> = scheduler
        .store
        .experiments(view)?
        .into_iter()
        .filter(|experiment| filter.matches(experiment))
        .collect();
    filter.sort(&mut experiments, &order_by)?;
    let next = (offset + limit < experiments.len()).then(|| page_token(offset + limit));
    let page: Vec<Value> =
        experiments.iter().skip(offset).take(limit).map(json::experiment).collect();
    let mut response = json!({ "experiments": page });
    if let Some(token) = next {
        response["next_page_token"] = token.into();
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
pub struct UpdateExperimentBody {
    experiment_id: Option<String>,
    new_name: Option<String>,
}

pub async fn update_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: UpdateExperimentBody = request.parse()?;
    let experiment = ExperimentRef::Id(experiment_id(body.experiment_id)?);
    let new_name = ExperimentName::parse(&required(body.new_name, "new_name")?)?;
    scheduler.store.rename_experiment(RenameExperiment { experiment, new_name }).await?;
    ok()
}

pub async fn delete_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: ExperimentIdBody = request.parse()?;
    scheduler
        .store
        .delete_experiment(ExperimentRef::Id(experiment_id(body.experiment_id)?))
        .await?;
    ok()
}

pub async fn restore_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: ExperimentIdBody = request.parse()?;
    scheduler
        .store
        .restore_experiment(ExperimentRef::Id(experiment_id(body.experiment_id)?))
        .await?;
    ok()
}

#[derive(Deserialize)]
pub struct ExperimentTagBody {
    experiment_id: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn set_experiment_tag(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: ExperimentTagBody = request.parse()?;
    let id = experiment_id(body.experiment_id)?;
    let tag = Tag { key: required(body.key, "key")?, value: required(body.value, "value")? };
    scheduler.store.set_experiment_tag(id, tag).await?;
    ok()
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct CreateRunBody {
    experiment_id: Option<String>,
    user_id: Option<String>,
    run_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<TagJson>,
}

pub async fn create_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: CreateRunBody = request.parse()?;
    let tags: Vec<Tag> = body.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?;
    let user_id = body
        .user_id
        .or_else(|| tags.iter().find(|t| t.key == "mlflow.user").map(|t| t.value.clone()))
        .unwrap_or_default();
    let request = CreateRun {
        experiment_id: experiment_id(body.experiment_id)?,
        run_name: body.run_name.filter(|name| !name.is_empty()),
        user_id,
        start_time_ms: body.start_time,
        tags,
        status: drover_proto::domain::RunStatus::Running,
    };
    let run = scheduler.store.create_run(request).await?;
    Ok(Json(json!({ "run": json::run(&run, Vec::new()) })))
}

#[derive(Deserialize)]
pub struct RunIdBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

impl RunIdBody {
    fn run_id(self) -> Result<RunId, ApiError> {
        run_id(self.run_id.or(self.run_uuid), "run_id")
    }
}

pub async fn get_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let run_id = request.parse::<RunIdBody>()?.run_id()?;
    let run = scheduler.store.run(run_id)?;
    let inputs = scheduler.store.inputs(run_id)?;
    Ok(Json(json!({ "run": json::run(&run, inputs) })))
}

#[derive(Deserialize)]
pub struct UpdateRunBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

pub async fn update_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: UpdateRunBody = request.parse()?;
    let request = UpdateRun {
        run_id: run_id(body.run_id.or(body.run_uuid), "run_id")?,
        status: body.status.as_deref().map(parse_status).transpose()?,
        end_time_ms: body.end_time,
        run_name: body.run_name.filter(|name| !name.is_empty()),
    };
    let info = scheduler.store.update_run(request).await?;
    Ok(Json(json!({ "run_info": json::run_info(&info) })))
}

pub async fn delete_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let run_id = request.parse::<RunIdBody>()?.run_id()?;
    scheduler.store.delete_run(run_id).await?;
    ok()
}

pub async fn restore_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let run_id = request.parse::<RunIdBody>()?.run_id()?;
    scheduler.store.restore_run(run_id).await?;
    ok()
}

#[derive(Deserialize)]
pub struct SearchRunsBody {
    #[serde(default)]
    experiment_ids: OneOrMany,
    filter: Option<String>,
    run_view_type: Option<Value>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: OneOrMany,
    page_token: Option<String>,
}

pub async fn search_runs(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: SearchRunsBody = request.parse()?;
    let view = parse_view_type(body.run_view_type.as_ref())?;
    let filter = Filter::parse(body.filter.as_deref().unwrap_or(""))?;
    let order_by = OrderBy::parse(&body.order_by.into_vec())?;
    let limit = max_results(body.max_results, DEFAULT_SEARCH_RESULTS, MAX_SEARCH_RESULTS)?;
    let offset = page_offset(body.page_token.as_deref())?;
    let experiment_ids = body
        .experiment_ids
        .into_vec()
        .iter()
        .map(|id| {
            id.parse()
                .map_err(|_| ApiError::InvalidArgument(format!("invalid experiment id '{id}'")))
        })
        .collect::<Result<Vec<ExperimentId>, _>>()?;
    let mut runs = scheduler.store.runs_of(&experiment_ids, view)?;
    runs.retain(|run| filter.matches(run));
    order_by.sort(&mut runs);
    let next = (offset + limit < runs.len()).then(|| page_token(offset + limit));
    let mut page = Vec::new();
    for run in runs.iter().skip(offset).take(limit) {
        page.push(json::run(run, scheduler.store.inputs(run.info.run_id)?));
    }
    let mut response = json!({ "runs": page });
    if let Some(token) = next {
        response["next_page_token"] = token.into();
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
pub struct LogMetricBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(flatten)]
    metric: MetricJson,
}

pub async fn log_metric(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: LogMetricBody = request.parse()?;
    let run_id = run_id(body.run_id.or(body.run_uuid), "run_id")?;
    scheduler.store.log_metrics(run_id, vec![body.metric.into_metric()?]).await?;
    ok()
}

#[derive(Deserialize)]
pub struct KeyValueBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn log_parameter(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: KeyValueBody = request.parse()?;
    let run_id = run_id(body.run_id.or(body.run_uuid), "run_id")?;
    let param = Param { key: required(body.key, "key")?, value: required(body.value, "value")? };
    scheduler.store.log_params(run_id, vec![param]).await?;
    ok()
}

pub async fn set_tag(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: KeyValueBody = request.parse()?;
    let run_id = run_id(body.run_id.or(body.run_uuid), "run_id")?;
    let tag = Tag { key: required(body.key, "key")?, value: required(body.value, "value")? };
    scheduler.store.set_tags(run_id, vec![tag]).await?;
    ok()
}

pub async fn delete_tag(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: KeyValueBody = request.parse()?;
    let run_id = run_id(body.run_id, "run_id")?;
    scheduler.store.delete_tag(run_id, &required(body.key, "key")?).await?;
    ok()
}

#[derive(Deserialize)]
pub struct LogBatchBody {
    run_id: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricJson>,
    #[serde(default)]
    params: Vec<TagJson>,
    #[serde(default)]
    tags: Vec<TagJson>,
}

pub async fn log_batch(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: LogBatchBody = request.parse()?;
    let run_id = run_id(body.run_id, "run_id")?;
    let (metrics, params, tags) = (body.metrics.len(), body.params.len(), body.tags.len());
    let too_many = |what: &str, count: usize, limit: usize| {
        ApiError::InvalidArgument(format!(
            "a batch may carry at most {limit} {what}; this one has {count}"
        ))
    };
    if metrics > MAX_BATCH_METRICS {
        return Err(too_many("metrics", metrics, MAX_BATCH_METRICS).into());
    }
    if params > MAX_BATCH_PARAMS {
        return Err(too_many("params", params, MAX_BATCH_PARAMS).into());
    }
    if tags > MAX_BATCH_TAGS {
        return Err(too_many("tags", tags, MAX_BATCH_TAGS).into());
    }
    if metrics + params + tags > MAX_BATCH_ITEMS {
        return Err(too_many("items", metrics + params + tags, MAX_BATCH_ITEMS).into());
    }
    let metrics: Vec<Metric> =
        body.metrics.into_iter().map(MetricJson::into_metric).collect::<Result<_, _>>()?;
    let params: Vec<Param> =
        body.params.into_iter().map(TagJson::into_param).collect::<Result<_, _>>()?;
    let tags: Vec<Tag> = body.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?;
    scheduler.store.log_batch(run_id, metrics, params, tags).await?;
    ok()
}

#[derive(Deserialize)]
pub struct LogInputsBody {
    run_id: Option<String>,
    #[serde(default)]
    datasets: Vec<Value>,
}

pub async fn log_inputs(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: LogInputsBody = request.parse()?;
    let run_id = run_id(body.run_id, "run_id")?;
    for input in &body.datasets {
        let dataset = &input["dataset"];
        for field in ["name", "digest", "source_type", "source"] {
            if !dataset[field].is_string() {
                return Err(ApiError::InvalidArgument(format!(
                    "each dataset input needs dataset.{field}"
                ))
                .into());
            }
        }
    }
    scheduler.store.log_inputs(run_id, body.datasets).await?;
    ok()
}

/// MLflow 3's logged models are not stored by drover (creating one is not served), so a
/// search finds none. Clients ask before listing a run's artifacts, to tell model
/// directories from plain ones.
pub async fn search_logged_models(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        experiment_ids: OneOrMany,
    }
    let body: Body = request.parse()?;
    for id in body.experiment_ids.into_vec() {
        let id: ExperimentId = id
            .parse()
            .map_err(|_| ApiError::InvalidArgument(format!("invalid experiment id '{id}'")))?;
        scheduler.store.experiment(&ExperimentRef::Id(id))?;
    }
    Ok(Json(json!({ "models": [] })))
}

// ---------------------------------------------------------------------------
// Metric history
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct HistoryBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: Option<String>,
    page_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
}

/// Without `max_results` the whole history comes back, as MLflow's server answers; the
/// official client asks for pages of 25,000.
pub async fn get_metric_history(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> Result<Response, RestError> {
    let body: HistoryBody = request.parse()?;
    let query = MetricHistoryQuery {
        run_id: run_id(body.run_id.or(body.run_uuid), "run_id")?,
        key: required(body.metric_key, "metric_key")?,
        start_step: None,
        end_step: None,
        max_results: Some(
            body.max_results.map_or(u32::MAX, |n| n.clamp(1, i64::from(u32::MAX)) as u32),
        ),
        page_token: body.page_token.filter(|token| !token.is_empty()),
    };
    let page = scheduler.store.metric_history(query)?;
    // Serialized straight from the points: histories run to millions of them.
    #[derive(Serialize)]
    struct History<'a> {
        metrics: Vec<MetricOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_page_token: Option<String>,
    }
    let history = History {
        metrics: page.items.iter().map(MetricOut::new).collect(),
        next_page_token: page.next_page_token,
    };
    Ok(Json(history).into_response())
}

#[derive(Deserialize)]
pub struct BulkIntervalBody {
    #[serde(default)]
    run_ids: OneOrMany,
    metric_key: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    start_step: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    end_step: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
}

/// Up to `max_results` points per run, spread evenly over the steps and always including the
/// first and the last, as MLflow's charts sample long histories.
pub async fn get_history_bulk_interval(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: BulkIntervalBody = request.parse()?;
    let run_ids = body.run_ids.into_vec();
    if run_ids.is_empty() || run_ids.len() > MAX_BULK_RUNS {
        return Err(ApiError::InvalidArgument(format!(
            "run_ids must name 1 to {MAX_BULK_RUNS} runs"
        ))
        .into());
    }
    let key = required(body.metric_key, "metric_key")?;
    let limit = max_results(body.max_results, MAX_BULK_RESULTS, MAX_BULK_RESULTS)?;
    if let (Some(start), Some(end)) = (body.start_step, body.end_step)
        && start > end
    {
        return Err(ApiError::InvalidArgument(format!(
            "start_step {start} is after end_step {end}"
        ))
        .into());
    }
    let mut points = Vec::new();
    for text in run_ids {
        let run_id: RunId = text.parse()?;
        let history = scheduler
            .store
            .metric_history(MetricHistoryQuery {
                run_id,
                key: key.clone(),
                start_step: body.start_step,
                end_step: body.end_step,
                max_results: Some(u32::MAX),
                page_token: None,
            })?
            .items;
        let chosen = sample_evenly(history.len(), limit);
        points.extend(chosen.into_iter().map(|index| (run_id, history[index].clone())));
    }
    let metrics: Vec<MetricOut> = points
        .iter()
        .map(|(run_id, metric)| MetricOut {
            run_id: Some(run_id.to_string()),
            ..MetricOut::new(metric)
        })
        .collect();
    Ok(Json(json!({ "metrics": metrics })))
}

/// Indices of at most `limit` of `count` items, evenly spread, first and last included.
fn sample_evenly(count: usize, limit: usize) -> Vec<usize> {
    if count <= limit {
        return (0..count).collect();
    }
    if limit == 1 {
        return vec![count - 1];
    }
    let mut chosen: Vec<usize> = (0..limit).map(|i| i * (count - 1) / (limit - 1)).collect();
    chosen.dedup();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        assert_eq!(page_offset(Some(&page_token(250))).unwrap(), 250);
        assert_eq!(page_offset(None).unwrap(), 0);
        assert!(page_offset(Some("garbage!")).is_err());
    }

    #[test]
    fn sampling_keeps_ends_and_bounds() {
        assert_eq!(sample_evenly(3, 10), vec![0, 1, 2]);
        let chosen = sample_evenly(1000, 5);
        assert_eq!(chosen, vec![0, 249, 499, 749, 999]);
    }
}
