//! Experiments, runs and their data: the `Tracking` service both faces call, and the few
//! operations only MLflow's REST API asks for (experiment search, batches, dataset inputs,
//! sampled histories, artifact listings), kept here so their rules live beside the rest.

use drover_proto::ApiError;
use drover_proto::domain::{
    CreateExperiment, CreateRun, Experiment, ExperimentId, ExperimentRef, ListRuns, Metric,
    MetricHistoryQuery, Page, Param, RenameExperiment, Run, RunId, RunInfo, RunStatus, Tag,
    UpdateRun, ViewType,
};
use drover_proto::service::Tracking;
use drover_proto::tags;
use serde_json::{Value, json};

use super::paging::{self, EXPERIMENTS, PageLimits, RUNS};
use super::{BulkHistoryQuery, Scheduler, SearchExperiments};
use crate::artifacts::FileInfo;
use crate::search::{ExperimentFilter, Filter, OrderBy};
use crate::store::Placement;

type ApiResult<T> = Result<T, ApiError>;

/// Items one `log_batch` may carry, as MLflow's limits.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_ITEMS: usize = 1000;
/// Runs one sampled-history request may name, and points it returns per run, at most.
const MAX_BULK_RUNS: usize = 100;
const BULK_POINTS: PageLimits = PageLimits { default: 2500, max: 2500 };

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

    /// Runs a client created follow MLflow's rules. A run drover executes follows its process:
    /// while it waits in the queue its status is drover's to set (KILLED cancels it), and
    /// once it runs, its script may mark it RUNNING, FINISHED or FAILED (as MLflow's client
    /// does around `start_run`) until the worker reports how the process really ended.
    async fn update_run(&self, request: UpdateRun) -> ApiResult<RunInfo> {
        let placement = self.store.execution(request.run_id)?.map(|record| record.placement);
        let (Some(placement), Some(status)) = (placement, request.status) else {
            return self.store.update_run(request).await;
        };
        let run_id = request.run_id;
        match (placement, status) {
            (Placement::Done, _) => self.store.update_run(request).await,
            (_, RunStatus::Killed) => self.dispatch.cancel(run_id).await,
            (
                Placement::Running { .. },
                RunStatus::Running | RunStatus::Finished | RunStatus::Failed,
            ) => self.store.update_run(request).await,
            (Placement::Running { .. }, _) => Err(ApiError::FailedPrecondition(format!(
                "run {run_id} is running on a worker; its status follows its process (cancel it with `drover runs cancel {run_id}`)"
            ))),
            (Placement::Queued | Placement::Assigned { .. }, _) => {
                Err(ApiError::FailedPrecondition(format!(
                    "run {run_id} is queued to run on a worker; its status follows its process, so it cannot be set to {status} (cancel it with `drover runs cancel {run_id}`)"
                )))
            }
        }
    }

    /// A run drover still executes is cancelled before it is deleted, so nothing runs, or
    /// writes, for a deleted run.
    async fn delete_run(&self, run_id: RunId) -> ApiResult<RunInfo> {
        let executing = self
            .store
            .execution(run_id)?
            .is_some_and(|record| record.placement != Placement::Done && !record.cancel_requested);
        if executing {
            match self.dispatch.cancel(run_id).await {
                // It ended meanwhile: nothing is left to stop.
                Ok(_) | Err(ApiError::FailedPrecondition(_)) => {}
                Err(error) => return Err(error),
            }
        }
        self.store.delete_run(run_id).await
    }

    async fn restore_run(&self, run_id: RunId) -> ApiResult<RunInfo> {
        self.store.restore_run(run_id).await
    }

    /// Runs of the named experiments (every active one when none is named), filtered,
    /// ordered (newest first by default) and paged. Every named experiment must exist.
    async fn list_runs(&self, request: ListRuns) -> ApiResult<Page<Run>> {
        let filter = Filter::parse(request.filter.as_deref().unwrap_or(""))?;
        let order_by = OrderBy::parse(&request.order_by)?;
        let limit = RUNS.check(request.max_results)?;
        let offset = paging::offset(request.page_token.as_deref())?;
        for id in &request.experiment_ids {
            self.store.experiment(&ExperimentRef::Id(*id))?;
        }
        let store = self.store.clone();
        self.run_heavy(move || {
            let mut runs = store.runs_of(&request.experiment_ids, request.view_type)?;
            runs.retain(|run| filter.matches(run));
            order_by.sort(&mut runs);
            Ok(paging::page(&runs, offset, limit, |run| Run::clone(run)))
        })
        .await
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
        let store = self.store.clone();
        self.run_heavy(move || store.metric_history(query)).await
    }
}

impl Scheduler {
    /// Experiments the view includes that match the filter, ordered and paged.
    pub async fn search_experiments(
        &self,
        request: SearchExperiments,
    ) -> ApiResult<Page<Experiment>> {
        let filter = ExperimentFilter::parse(request.filter.as_deref().unwrap_or(""))?;
        let limit = EXPERIMENTS.check(request.max_results)?;
        let offset = paging::offset(request.page_token.as_deref())?;
        // Stores hold tens or hundreds of experiments, not thousands: this stays on the async
        // threads, and so answers even while heavy searches hold the blocking pool.
        let mut experiments = self.store.experiments(request.view)?;
        experiments.retain(|experiment| filter.matches(experiment));
        filter.sort(&mut experiments, &request.order_by)?;
        Ok(paging::page(&experiments, offset, limit, Experiment::clone))
    }

    pub async fn set_experiment_tag(&self, experiment_id: ExperimentId, tag: Tag) -> ApiResult<()> {
        self.store.set_experiment_tag(experiment_id, tag).await
    }

    /// Metrics, params and tags in one all-or-nothing write, within MLflow's limits.
    pub async fn log_batch(
        &self,
        run_id: RunId,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> ApiResult<()> {
        let counts = [
            ("metrics", metrics.len(), MAX_BATCH_METRICS),
            ("params", params.len(), MAX_BATCH_PARAMS),
            ("tags", tags.len(), MAX_BATCH_TAGS),
            ("items", metrics.len() + params.len() + tags.len(), MAX_BATCH_ITEMS),
        ];
        for (what, count, limit) in counts {
            if count > limit {
                return Err(ApiError::InvalidArgument(format!(
                    "a batch may carry at most {limit} {what}; this one has {count}"
                )));
            }
        }
        self.store.log_batch(run_id, metrics, params, tags).await
    }

    /// Records datasets a run used, in MLflow's `DatasetInput` shape; each needs its
    /// dataset's name, digest, source type and source.
    pub async fn log_inputs(&self, run_id: RunId, datasets: Vec<Value>) -> ApiResult<()> {
        for input in &datasets {
            let dataset = &input["dataset"];
            for field in ["name", "digest", "source_type", "source"] {
                if !dataset[field].is_string() {
                    return Err(ApiError::InvalidArgument(format!(
                        "each dataset input needs dataset.{field}"
                    )));
                }
            }
        }
        self.store.log_inputs(run_id, datasets).await
    }

    /// The datasets a run used: those logged, then the data its parameters named, as drover
    /// recorded it (`drover.data.<parameter>.*` tags), in MLflow's `DatasetInput` shape.
    pub fn run_inputs(&self, run: &Run) -> ApiResult<Vec<Value>> {
        let mut inputs = self.store.inputs(run.info.run_id)?;
        for data in &run.data.tags {
            let Some((parameter, "source")) = tags::parse_data_tag(&data.key) else { continue };
            let digest = run.tag(&tags::data_digest(parameter));
            let source_type = if data.value.contains("://") { "uri" } else { "local" };
            inputs.push(json!({
                "tags": [{ "key": "mlflow.data.context", "value": format!("parameter {parameter}") }],
                "dataset": {
                    "name": parameter,
                    // A source drover did not read is named by its source alone.
                    "digest": digest.unwrap_or(""),
                    "source_type": source_type,
                    "source": json!({ "uri": data.value }).to_string(),
                },
            }));
        }
        Ok(inputs)
    }

    /// A run's artifact URI, and its artifacts under `path` (relative to the run's root).
    pub async fn run_artifacts(
        &self,
        run_id: RunId,
        path: &str,
    ) -> ApiResult<(String, Vec<FileInfo>)> {
        let info = self.store.run(run_id)?.info;
        let files = self.artifacts.list_run(&info.artifact_uri, path).await?;
        Ok((info.artifact_uri, files))
    }

    /// Up to `max_results` points of each run's history of one metric, spread evenly over
    /// its steps and always including the first and the last, as charts sample long
    /// histories. Points come run by run, in the order the runs were named.
    pub async fn sampled_histories(
        &self,
        query: BulkHistoryQuery,
    ) -> ApiResult<Vec<(RunId, Metric)>> {
        if query.run_ids.is_empty() || query.run_ids.len() > MAX_BULK_RUNS {
            return Err(ApiError::InvalidArgument(format!(
                "run_ids must name 1 to {MAX_BULK_RUNS} runs"
            )));
        }
        let limit = BULK_POINTS.check(query.max_results)?;
        if let (Some(start), Some(end)) = (query.start_step, query.end_step)
            && start > end
        {
            return Err(ApiError::InvalidArgument(format!(
                "start_step {start} is after end_step {end}"
            )));
        }
        let store = self.store.clone();
        self.run_heavy(move || {
            let mut points = Vec::new();
            for run_id in query.run_ids {
                let history = store
                    .metric_history(MetricHistoryQuery {
                        run_id,
                        key: query.key.clone(),
                        start_step: query.start_step,
                        end_step: query.end_step,
                        max_results: Some(u32::MAX),
                        page_token: None,
                        attempt: None,
                    })?
                    .items;
                let chosen = sample_evenly(history.len(), limit);
                points.extend(chosen.into_iter().map(|index| (run_id, history[index].clone())));
            }
            Ok(points)
        })
        .await
    }
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
    fn sampling_keeps_ends_and_bounds() {
        assert_eq!(sample_evenly(3, 10), vec![0, 1, 2]);
        let chosen = sample_evenly(1000, 5);
        assert_eq!(chosen, vec![0, 249, 499, 749, 999]);
    }
}
