//! The tracking API the scheduler serves over gRPC, answered by the store.

use std::future::Future;

use drover_proto::ApiError;
use drover_proto::domain::{
    CreateExperiment, CreateRun, Experiment, ExperimentRef, ListRuns, Metric, MetricHistoryQuery,
    Page, Param, RenameExperiment, Run, RunId, RunInfo, Tag, UpdateRun, ViewType,
};
use drover_proto::service::Tracking;

use crate::store::Store;

type ApiResult<T> = Result<T, ApiError>;

impl Tracking for Store {
    fn create_experiment(
        &self,
        request: CreateExperiment,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send {
        Store::create_experiment(self, request)
    }

    async fn get_experiment(&self, experiment: ExperimentRef) -> ApiResult<Experiment> {
        self.experiment(&experiment)
    }

    async fn list_experiments(&self, view: ViewType) -> ApiResult<Vec<Experiment>> {
        self.experiments(view)
    }

    fn rename_experiment(
        &self,
        request: RenameExperiment,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send {
        Store::rename_experiment(self, request)
    }

    fn delete_experiment(
        &self,
        experiment: ExperimentRef,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send {
        Store::delete_experiment(self, experiment)
    }

    fn restore_experiment(
        &self,
        experiment: ExperimentRef,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send {
        Store::restore_experiment(self, experiment)
    }

    fn create_run(&self, request: CreateRun) -> impl Future<Output = ApiResult<Run>> + Send {
        Store::create_run(self, request)
    }

    async fn get_run(&self, run_id: RunId) -> ApiResult<Run> {
        self.run(run_id)
    }

    fn update_run(&self, request: UpdateRun) -> impl Future<Output = ApiResult<RunInfo>> + Send {
        Store::update_run(self, request)
    }

    fn delete_run(&self, run_id: RunId) -> impl Future<Output = ApiResult<RunInfo>> + Send {
        Store::delete_run(self, run_id)
    }

    fn restore_run(&self, run_id: RunId) -> impl Future<Output = ApiResult<RunInfo>> + Send {
        Store::restore_run(self, run_id)
    }

    async fn list_runs(&self, request: ListRuns) -> ApiResult<Page<Run>> {
        Store::list_runs(self, request)
    }

    fn log_params(
        &self,
        run_id: RunId,
        params: Vec<Param>,
    ) -> impl Future<Output = ApiResult<()>> + Send {
        Store::log_params(self, run_id, params)
    }

    fn set_tags(
        &self,
        run_id: RunId,
        tags: Vec<Tag>,
    ) -> impl Future<Output = ApiResult<()>> + Send {
        Store::set_tags(self, run_id, tags)
    }

    async fn delete_tag(&self, run_id: RunId, key: String) -> ApiResult<()> {
        Store::delete_tag(self, run_id, &key).await
    }

    fn log_metrics(
        &self,
        run_id: RunId,
        metrics: Vec<Metric>,
    ) -> impl Future<Output = ApiResult<usize>> + Send {
        Store::log_metrics(self, run_id, metrics)
    }

    async fn metric_history(&self, query: MetricHistoryQuery) -> ApiResult<Page<Metric>> {
        Store::metric_history(self, query)
    }
}
