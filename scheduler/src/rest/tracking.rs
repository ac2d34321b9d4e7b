//! MLflow's tracking endpoints: experiments, runs, params, tags, metrics and search. Each
//! handler reads MLflow's request shape, calls the service, and writes MLflow's answer.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use drover_proto::ApiError;
use drover_proto::domain::{
    CreateExperiment, CreateRun, ExperimentName, ExperimentRef, ListRuns, Metric,
    MetricHistoryQuery, Param, RenameExperiment, RunId, RunStatus, Tag, UpdateRun,
};
use drover_proto::service::Tracking;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::json::{
    self, MetricJson, MetricOut, OneOrMany, RunRef, TagJson, experiment_id, lenient_i64,
    parse_status, parse_view_type, required,
};
use super::{MlflowRequest, RestResult};
use crate::service::{BulkHistoryQuery, Scheduler, SearchExperiments};

fn ok() -> RestResult {
    Ok(Json(json!({})))
}

/// `{"<items>": [...], "next_page_token": ...}`, the token only when there is more.
fn page_json(items_key: &str, items: Vec<Value>, next_page_token: Option<String>) -> Value {
    let mut response = json!({ items_key: items });
    if let Some(token) = next_page_token {
        response["next_page_token"] = token.into();
    }
    response
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
    let experiment = scheduler.create_experiment(request).await?;
    Ok(Json(json!({ "experiment_id": experiment.id.to_string() })))
}

#[derive(Deserialize)]
pub struct ExperimentIdBody {
    experiment_id: Option<String>,
}

impl ExperimentIdBody {
    fn experiment(self) -> Result<ExperimentRef, ApiError> {
        Ok(ExperimentRef::Id(experiment_id(self.experiment_id)?))
    }
}

pub async fn get_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let experiment = request.parse::<ExperimentIdBody>()?.experiment()?;
    let experiment = scheduler.get_experiment(experiment).await?;
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
    let experiment = scheduler.get_experiment(ExperimentRef::Name(name)).await?;
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
    let request = SearchExperiments {
        view: parse_view_type(body.view_type.as_ref())?,
        filter: body.filter,
        order_by: body.order_by.into_vec(),
        max_results: body.max_results,
        page_token: body.page_token,
    };
    let page = scheduler.search_experiments(request).await?;
    let experiments = page.items.iter().map(json::experiment).collect();
    Ok(Json(page_json("experiments", experiments, page.next_page_token)))
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
    scheduler.rename_experiment(RenameExperiment { experiment, new_name }).await?;
    ok()
}

pub async fn delete_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let experiment = request.parse::<ExperimentIdBody>()?.experiment()?;
    scheduler.delete_experiment(experiment).await?;
    ok()
}

pub async fn restore_experiment(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let experiment = request.parse::<ExperimentIdBody>()?.experiment()?;
    scheduler.restore_experiment(experiment).await?;
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
    let tag = Tag::new(required(body.key, "key")?, required(body.value, "value")?);
    scheduler.set_experiment_tag(id, tag).await?;
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
    let request = CreateRun {
        experiment_id: experiment_id(body.experiment_id)?,
        run_name: body.run_name.filter(|name| !name.is_empty()),
        user_id: body.user_id.unwrap_or_default(),
        start_time_ms: body.start_time,
        tags: body.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?,
        status: RunStatus::Running,
    };
    let run = scheduler.create_run(request).await?;
    Ok(Json(json!({ "run": json::run(&run, Vec::new()) })))
}

pub async fn get_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let run_id = request.parse::<RunRef>()?.resolve()?;
    let run = scheduler.get_run(run_id).await?;
    let inputs = scheduler.run_inputs(&run)?;
    let mut run = json::run(&run, inputs);
    run["outputs"] = super::models::outputs_json(&scheduler.models().run_outputs(run_id)?);
    Ok(Json(json!({ "run": run })))
}

#[derive(Deserialize)]
pub struct UpdateRunBody {
    #[serde(flatten)]
    run: RunRef,
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

pub async fn update_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: UpdateRunBody = request.parse()?;
    let request = UpdateRun {
        run_id: body.run.resolve()?,
        status: body.status.as_deref().map(parse_status).transpose()?,
        end_time_ms: body.end_time,
        run_name: body.run_name.filter(|name| !name.is_empty()),
    };
    let info = scheduler.update_run(request).await?;
    Ok(Json(json!({ "run_info": json::run_info(&info) })))
}

pub async fn delete_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let run_id = request.parse::<RunRef>()?.resolve()?;
    scheduler.delete_run(run_id).await?;
    ok()
}

pub async fn restore_run(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let run_id = request.parse::<RunRef>()?.resolve()?;
    scheduler.restore_run(run_id).await?;
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

/// The same search as gRPC's `ListRuns` (and `drover runs list`), with each run's dataset
/// inputs as MLflow returns them.
pub async fn search_runs(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: SearchRunsBody = request.parse()?;
    let request = ListRuns {
        experiment_ids: body.experiment_ids.parse_each()?,
        view_type: parse_view_type(body.run_view_type.as_ref())?,
        max_results: body.max_results,
        page_token: body.page_token,
        filter: body.filter,
        order_by: body.order_by.into_vec(),
    };
    let page = scheduler.list_runs(request).await?;
    // A page may hold 50,000 runs: reading their inputs and writing their JSON is heavy work.
    let service = scheduler.clone();
    scheduler
        .run_heavy(move || {
            let mut runs = Vec::with_capacity(page.items.len());
            for run in &page.items {
                runs.push(json::run(run, service.run_inputs(run)?));
            }
            Ok(Json(page_json("runs", runs, page.next_page_token)))
        })
        .await
}

#[derive(Deserialize)]
pub struct LogMetricBody {
    #[serde(flatten)]
    run: RunRef,
    #[serde(flatten)]
    metric: MetricJson,
}

impl LogMetricBody {
    pub fn into_point(self) -> Result<(RunId, Metric), ApiError> {
        Ok((self.run.resolve()?, self.metric.into_metric()?))
    }
}

pub async fn log_metric(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body = request.parse::<LogMetricBody>()?;
    if body.metric.is_linked() {
        let run_id = body.run.resolve()?;
        let linked = vec![body.metric.into_linked()?];
        scheduler.log_linked_batch(run_id, linked, Vec::new(), Vec::new()).await?;
        return ok();
    }
    let (run_id, metric) = body.into_point()?;
    scheduler.log_metrics(run_id, vec![metric]).await?;
    ok()
}

#[derive(Deserialize)]
pub struct KeyValueBody {
    #[serde(flatten)]
    run: RunRef,
    key: Option<String>,
    value: Option<String>,
}

pub async fn log_parameter(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: KeyValueBody = request.parse()?;
    let param = Param { key: required(body.key, "key")?, value: required(body.value, "value")? };
    scheduler.log_params(body.run.resolve()?, vec![param]).await?;
    ok()
}

pub async fn set_tag(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: KeyValueBody = request.parse()?;
    let tag = Tag::new(required(body.key, "key")?, required(body.value, "value")?);
    scheduler.set_tags(body.run.resolve()?, vec![tag]).await?;
    ok()
}

pub async fn delete_tag(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: KeyValueBody = request.parse()?;
    scheduler.delete_tag(body.run.resolve()?, required(body.key, "key")?).await?;
    ok()
}

#[derive(Deserialize)]
pub struct LogBatchBody {
    #[serde(flatten)]
    run: RunRef,
    #[serde(default)]
    metrics: Vec<MetricJson>,
    #[serde(default)]
    params: Vec<TagJson>,
    #[serde(default)]
    tags: Vec<TagJson>,
}

/// A batch as the service takes it: the run, then its metrics, params and tags.
pub type Batch = (RunId, Vec<Metric>, Vec<Param>, Vec<Tag>);

impl LogBatchBody {
    pub fn into_batch(self) -> Result<Batch, ApiError> {
        let run_id = self.run.resolve()?;
        let metrics =
            self.metrics.into_iter().map(MetricJson::into_metric).collect::<Result<_, _>>()?;
        let params = self.params.into_iter().map(TagJson::into_param).collect::<Result<_, _>>()?;
        let tags = self.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?;
        Ok((run_id, metrics, params, tags))
    }
}

pub async fn log_batch(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body = request.parse::<LogBatchBody>()?;
    if body.metrics.iter().any(MetricJson::is_linked) {
        let run_id = body.run.resolve()?;
        let metrics =
            body.metrics.into_iter().map(MetricJson::into_linked).collect::<Result<_, _>>()?;
        let params = body.params.into_iter().map(TagJson::into_param).collect::<Result<_, _>>()?;
        let tags = body.tags.into_iter().map(TagJson::into_tag).collect::<Result<_, _>>()?;
        scheduler.log_linked_batch(run_id, metrics, params, tags).await?;
        return ok();
    }
    let (run_id, metrics, params, tags) = body.into_batch()?;
    scheduler.log_batch(run_id, metrics, params, tags).await?;
    ok()
}

#[derive(Deserialize)]
pub struct LogInputsBody {
    #[serde(flatten)]
    run: RunRef,
    #[serde(default)]
    datasets: Vec<Value>,
}

pub async fn log_inputs(State(scheduler): State<Scheduler>, request: MlflowRequest) -> RestResult {
    let body: LogInputsBody = request.parse()?;
    scheduler.log_inputs(body.run.resolve()?, body.datasets).await?;
    ok()
}

// ---------------------------------------------------------------------------
// Metric history
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct HistoryBody {
    #[serde(flatten)]
    run: RunRef,
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
) -> Result<Response, ApiError> {
    let body: HistoryBody = request.parse()?;
    let query = MetricHistoryQuery {
        run_id: body.run.resolve()?,
        key: required(body.metric_key, "metric_key")?,
        start_step: None,
        end_step: None,
        max_results: Some(
            body.max_results.map_or(u32::MAX, |n| n.clamp(1, i64::from(u32::MAX)) as u32),
        ),
        page_token: body.page_token.filter(|token| !token.is_empty()),
        attempt: None,
    };
    let page = scheduler.metric_history(query).await?;
    // Serialized straight from the points, off the async threads: histories run to millions
    // of points.
    #[derive(Serialize)]
    struct History<'a> {
        metrics: Vec<MetricOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_page_token: Option<String>,
    }
    let body = scheduler
        .run_heavy(move || {
            let history = History {
                metrics: page.items.iter().map(MetricOut::new).collect(),
                next_page_token: page.next_page_token.clone(),
            };
            serde_json::to_vec(&history).map_err(|error| ApiError::Internal(error.to_string()))
        })
        .await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
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

/// Each run's history of one metric, sampled as MLflow's charts ask.
pub async fn get_history_bulk_interval(
    State(scheduler): State<Scheduler>,
    request: MlflowRequest,
) -> RestResult {
    let body: BulkIntervalBody = request.parse()?;
    let query = BulkHistoryQuery {
        run_ids: body.run_ids.parse_each::<RunId>()?,
        key: required(body.metric_key, "metric_key")?,
        start_step: body.start_step,
        end_step: body.end_step,
        max_results: body.max_results,
    };
    let points = scheduler.sampled_histories(query).await?;
    let metrics: Vec<MetricOut> = points
        .iter()
        .map(|(run_id, metric)| MetricOut {
            run_id: Some(run_id.to_string()),
            ..MetricOut::new(metric)
        })
        .collect();
    Ok(Json(json!({ "metrics": metrics })))
}
