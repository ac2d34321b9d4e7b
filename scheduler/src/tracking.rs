//! The tracking API the scheduler serves over gRPC, answered by the store.

use drover_proto::ApiError;
use drover_proto::domain::{
    CreateExperiment, CreateRun, Experiment, ExperimentRef, ListRuns, Metric, MetricHistoryQuery,
    Page, Param, RenameExperiment, Run, RunId, RunInfo, Tag, UpdateRun, ViewType,
};
use drover_proto::service::Tracking;

use crate::scheduler::Scheduler;
use crate::search::{Filter, OrderBy};

const DEFAULT_RUNS_PAGE: usize = 1000;
const MAX_RUNS_PAGE: usize = 50_000;

type ApiResult<T> = Result<T, ApiError>;

impl Tracking for Scheduler {
    async fn create_experiment(&self, request: CreateExperiment) -> ApiResult<Experiment> {
        self.store.create_experiment(request).await
    }

    async fn get_experiment(&self, experiment: ExperimentRef) -> ApiResult<Experiment> {
        self.store.experiment(&experiment)
    }

    async fn list_experiments(&self, view: ViewType) -> ApiResult<Vec<Experiment>> {
        self.store.experiments(view)
    }

    async fn rename_experiment(&self, request: RenameExperiment) -> ApiResult<Experiment> {
        self.store.rename_experiment(request).await
    }

    async fn delete_experiment(&self, experiment: ExperimentRef) -> ApiResult<Experiment> {
        self.store.delete_experiment(experiment).await
    }

    async fn restore_experiment(&self, experiment: ExperimentRef) -> ApiResult<Experiment> {
        self.store.restore_experiment(experiment).await
    }

    async fn create_run(&self, request: CreateRun) -> ApiResult<Run> {
        self.store.create_run(request).await
    }

    async fn get_run(&self, run_id: RunId) -> ApiResult<Run> {
        self.store.run(run_id)
    }

    async fn update_run(&self, request: UpdateRun) -> ApiResult<RunInfo> {
        self.store.update_run(request).await
    }

    async fn delete_run(&self, run_id: RunId) -> ApiResult<RunInfo> {
        self.store.delete_run(run_id).await
    }

    async fn restore_run(&self, run_id: RunId) -> ApiResult<RunInfo> {
        self.store.restore_run(run_id).await
    }

    async fn list_runs(&self, request: ListRuns) -> ApiResult<Page<Run>> {
        for id in &request.experiment_ids {
            self.store.experiment(&ExperimentRef::Id(*id))?;
        }
        let filter = Filter::parse(request.filter.as_deref().unwrap_or(""))?;
        let order_by = OrderBy::parse(&request.order_by)?;
        let offset = match &request.page_token {
            Some(token) => token
                .parse::<usize>()
                .map_err(|_| ApiError::InvalidArgument(format!("invalid page token '{token}'")))?,
            None => 0,
        };
        let limit =
            request.max_results.map_or(DEFAULT_RUNS_PAGE, |n| (n as usize).min(MAX_RUNS_PAGE));
        let mut runs = self.store.runs_of(&request.experiment_ids, request.view_type)?;
        runs.retain(|run| filter.matches(run));
        order_by.sort(&mut runs);
        let end = offset.saturating_add(limit).min(runs.len());
        let next_page_token = (end < runs.len()).then(|| end.to_string());
        let items = runs.iter().skip(offset).take(limit).map(|run| Run::clone(run)).collect();
        Ok(Page { items, next_page_token })
    }

    async fn log_params(&self, run_id: RunId, params: Vec<Param>) -> ApiResult<()> {
        self.store.log_params(run_id, params).await
    }

    async fn set_tags(&self, run_id: RunId, tags: Vec<Tag>) -> ApiResult<()> {
        self.store.set_tags(run_id, tags).await
    }

    async fn delete_tag(&self, run_id: RunId, key: String) -> ApiResult<()> {
        self.store.delete_tag(run_id, &key).await
    }

    async fn log_metrics(&self, run_id: RunId, metrics: Vec<Metric>) -> ApiResult<usize> {
        self.store.log_metrics(run_id, metrics).await
    }

    async fn metric_history(&self, query: MetricHistoryQuery) -> ApiResult<Page<Metric>> {
        self.store.metric_history(query)
    }
}
