//! Tracking: experiments, runs, params, tags and metrics.

use crate::domain::{
    CreateExperiment, CreateRun, Experiment, ExperimentName, ExperimentRef, LifecycleStage,
    ListRuns, Metric, MetricHistoryQuery, Param, RenameExperiment, Run, RunData, RunId, RunInfo,
    RunStatus, Tag, UpdateRun, ViewType,
};
use crate::error::ApiError;
use crate::pb;

pub(super) fn non_empty(text: String) -> Option<String> {
    if text.is_empty() { None } else { Some(text) }
}

fn non_zero(count: u32) -> Option<u32> {
    if count == 0 { None } else { Some(count) }
}

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

impl From<LifecycleStage> for pb::LifecycleStage {
    fn from(stage: LifecycleStage) -> Self {
        match stage {
            LifecycleStage::Active => pb::LifecycleStage::Active,
            LifecycleStage::Deleted => pb::LifecycleStage::Deleted,
        }
    }
}

fn lifecycle_stage_from_wire(value: i32) -> Result<LifecycleStage, ApiError> {
    match pb::LifecycleStage::try_from(value) {
        Ok(pb::LifecycleStage::Active) => Ok(LifecycleStage::Active),
        Ok(pb::LifecycleStage::Deleted) => Ok(LifecycleStage::Deleted),
        _ => Err(ApiError::InvalidArgument(format!("invalid lifecycle stage {value}"))),
    }
}

impl From<ViewType> for pb::ViewType {
    fn from(view: ViewType) -> Self {
        match view {
            ViewType::ActiveOnly => pb::ViewType::ActiveOnly,
            ViewType::DeletedOnly => pb::ViewType::DeletedOnly,
            ViewType::All => pb::ViewType::All,
        }
    }
}

fn view_type_from_wire(value: i32) -> Result<ViewType, ApiError> {
    match pb::ViewType::try_from(value) {
        Ok(pb::ViewType::Unspecified | pb::ViewType::ActiveOnly) => Ok(ViewType::ActiveOnly),
        Ok(pb::ViewType::DeletedOnly) => Ok(ViewType::DeletedOnly),
        Ok(pb::ViewType::All) => Ok(ViewType::All),
        Err(_) => Err(ApiError::InvalidArgument(format!("invalid view type {value}"))),
    }
}

impl From<RunStatus> for pb::RunStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Running => pb::RunStatus::Running,
            RunStatus::Scheduled => pb::RunStatus::Scheduled,
            RunStatus::Finished => pb::RunStatus::Finished,
            RunStatus::Failed => pb::RunStatus::Failed,
            RunStatus::Killed => pb::RunStatus::Killed,
        }
    }
}

/// `None` for UNSPECIFIED.
pub(super) fn run_status_from_wire(value: i32) -> Result<Option<RunStatus>, ApiError> {
    match pb::RunStatus::try_from(value) {
        Ok(pb::RunStatus::Unspecified) => Ok(None),
        Ok(pb::RunStatus::Running) => Ok(Some(RunStatus::Running)),
        Ok(pb::RunStatus::Scheduled) => Ok(Some(RunStatus::Scheduled)),
        Ok(pb::RunStatus::Finished) => Ok(Some(RunStatus::Finished)),
        Ok(pb::RunStatus::Failed) => Ok(Some(RunStatus::Failed)),
        Ok(pb::RunStatus::Killed) => Ok(Some(RunStatus::Killed)),
        Err(_) => Err(ApiError::InvalidArgument(format!("invalid run status {value}"))),
    }
}

fn wire_status(status: Option<RunStatus>) -> i32 {
    status.map_or(pb::RunStatus::Unspecified, pb::RunStatus::from) as i32
}

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

impl From<Tag> for pb::Tag {
    fn from(tag: Tag) -> Self {
        pb::Tag { key: tag.key, value: tag.value }
    }
}

impl From<pb::Tag> for Tag {
    fn from(tag: pb::Tag) -> Self {
        Tag { key: tag.key, value: tag.value }
    }
}

impl From<Param> for pb::Param {
    fn from(param: Param) -> Self {
        pb::Param { key: param.key, value: param.value }
    }
}

impl From<pb::Param> for Param {
    fn from(param: pb::Param) -> Self {
        Param { key: param.key, value: param.value }
    }
}

impl From<Metric> for pb::Metric {
    fn from(metric: Metric) -> Self {
        pb::Metric {
            key: metric.key,
            value: metric.value,
            timestamp_ms: metric.timestamp_ms,
            step: metric.step,
        }
    }
}

impl From<pb::Metric> for Metric {
    fn from(metric: pb::Metric) -> Self {
        Metric {
            key: metric.key,
            value: metric.value,
            timestamp_ms: metric.timestamp_ms,
            step: metric.step,
        }
    }
}

impl From<ExperimentRef> for pb::ExperimentRef {
    fn from(reference: ExperimentRef) -> Self {
        let by = match reference {
            ExperimentRef::Id(id) => pb::experiment_ref::By::Id(id.to_string()),
            ExperimentRef::Name(name) => pb::experiment_ref::By::Name(name),
        };
        pb::ExperimentRef { by: Some(by) }
    }
}

impl TryFrom<pb::ExperimentRef> for ExperimentRef {
    type Error = ApiError;

    fn try_from(reference: pb::ExperimentRef) -> Result<Self, ApiError> {
        match reference.by {
            Some(pb::experiment_ref::By::Id(id)) => Ok(ExperimentRef::Id(id.parse()?)),
            Some(pb::experiment_ref::By::Name(name)) => Ok(ExperimentRef::Name(name)),
            None => {
                Err(ApiError::InvalidArgument("an experiment id or name is required".to_string()))
            }
        }
    }
}

impl From<Experiment> for pb::Experiment {
    fn from(experiment: Experiment) -> Self {
        pb::Experiment {
            experiment_id: experiment.id.to_string(),
            name: experiment.name,
            artifact_location: experiment.artifact_location,
            lifecycle_stage: pb::LifecycleStage::from(experiment.lifecycle_stage) as i32,
            creation_time_ms: experiment.creation_time_ms,
            last_update_time_ms: experiment.last_update_time_ms,
            tags: experiment.tags.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::Experiment> for Experiment {
    type Error = ApiError;

    fn try_from(experiment: pb::Experiment) -> Result<Self, ApiError> {
        Ok(Experiment {
            id: experiment.experiment_id.parse()?,
            name: experiment.name,
            artifact_location: experiment.artifact_location,
            lifecycle_stage: lifecycle_stage_from_wire(experiment.lifecycle_stage)?,
            creation_time_ms: experiment.creation_time_ms,
            last_update_time_ms: experiment.last_update_time_ms,
            tags: experiment.tags.into_iter().map(Into::into).collect(),
        })
    }
}

impl From<RunInfo> for pb::RunInfo {
    fn from(info: RunInfo) -> Self {
        pb::RunInfo {
            run_id: info.run_id.to_string(),
            experiment_id: info.experiment_id.to_string(),
            run_name: info.run_name,
            user_id: info.user_id,
            status: pb::RunStatus::from(info.status) as i32,
            start_time_ms: info.start_time_ms,
            end_time_ms: info.end_time_ms,
            lifecycle_stage: pb::LifecycleStage::from(info.lifecycle_stage) as i32,
            artifact_uri: info.artifact_uri,
        }
    }
}

impl TryFrom<pb::RunInfo> for RunInfo {
    type Error = ApiError;

    fn try_from(info: pb::RunInfo) -> Result<Self, ApiError> {
        Ok(RunInfo {
            run_id: info.run_id.parse()?,
            experiment_id: info.experiment_id.parse()?,
            run_name: info.run_name,
            user_id: info.user_id,
            status: run_status_from_wire(info.status)?
                .ok_or_else(|| ApiError::InvalidArgument("run status is missing".to_string()))?,
            start_time_ms: info.start_time_ms,
            end_time_ms: info.end_time_ms,
            lifecycle_stage: lifecycle_stage_from_wire(info.lifecycle_stage)?,
            artifact_uri: info.artifact_uri,
        })
    }
}

impl From<RunData> for pb::RunData {
    fn from(data: RunData) -> Self {
        pb::RunData {
            params: data.params.into_iter().map(Into::into).collect(),
            tags: data.tags.into_iter().map(Into::into).collect(),
            latest_metrics: data.latest_metrics.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::RunData> for RunData {
    fn from(data: pb::RunData) -> Self {
        RunData {
            params: data.params.into_iter().map(Into::into).collect(),
            tags: data.tags.into_iter().map(Into::into).collect(),
            latest_metrics: data.latest_metrics.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Run> for pb::Run {
    fn from(run: Run) -> Self {
        pb::Run { info: Some(run.info.into()), data: Some(run.data.into()) }
    }
}

impl TryFrom<pb::Run> for Run {
    type Error = ApiError;

    fn try_from(run: pb::Run) -> Result<Self, ApiError> {
        let info = run
            .info
            .ok_or_else(|| ApiError::Internal("run without info on the wire".to_string()))?;
        Ok(Run { info: info.try_into()?, data: run.data.unwrap_or_default().into() })
    }
}

// ---------------------------------------------------------------------------
// Requests: domain -> wire for the client, wire -> domain (validated) for the server
// ---------------------------------------------------------------------------

impl From<CreateExperiment> for pb::CreateExperimentRequest {
    fn from(request: CreateExperiment) -> Self {
        pb::CreateExperimentRequest {
            name: request.name.as_str().to_string(),
            artifact_location: request.artifact_location.unwrap_or_default(),
            tags: request.tags.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::CreateExperimentRequest> for CreateExperiment {
    type Error = ApiError;

    fn try_from(request: pb::CreateExperimentRequest) -> Result<Self, ApiError> {
        Ok(CreateExperiment {
            name: ExperimentName::parse(&request.name)?,
            artifact_location: non_empty(request.artifact_location),
            tags: request.tags.into_iter().map(Into::into).collect(),
        })
    }
}

impl From<RenameExperiment> for pb::RenameExperimentRequest {
    fn from(request: RenameExperiment) -> Self {
        pb::RenameExperimentRequest {
            experiment: Some(request.experiment.into()),
            new_name: request.new_name.as_str().to_string(),
        }
    }
}

impl TryFrom<pb::RenameExperimentRequest> for RenameExperiment {
    type Error = ApiError;

    fn try_from(request: pb::RenameExperimentRequest) -> Result<Self, ApiError> {
        let experiment = request.experiment.ok_or_else(|| {
            ApiError::InvalidArgument("an experiment id or name is required".to_string())
        })?;
        Ok(RenameExperiment {
            experiment: experiment.try_into()?,
            new_name: ExperimentName::parse(&request.new_name)?,
        })
    }
}

pub(crate) fn view_type_to_wire(view: ViewType) -> i32 {
    pb::ViewType::from(view) as i32
}

pub(crate) fn view_type_from_request(value: i32) -> Result<ViewType, ApiError> {
    view_type_from_wire(value)
}

impl From<CreateRun> for pb::CreateRunRequest {
    fn from(request: CreateRun) -> Self {
        pb::CreateRunRequest {
            experiment_id: request.experiment_id.to_string(),
            run_name: request.run_name.unwrap_or_default(),
            user_id: request.user_id,
            start_time_ms: request.start_time_ms,
            tags: request.tags.into_iter().map(Into::into).collect(),
            status: pb::RunStatus::from(request.status) as i32,
        }
    }
}

impl TryFrom<pb::CreateRunRequest> for CreateRun {
    type Error = ApiError;

    fn try_from(request: pb::CreateRunRequest) -> Result<Self, ApiError> {
        Ok(CreateRun {
            experiment_id: request.experiment_id.parse()?,
            run_name: non_empty(request.run_name),
            user_id: request.user_id,
            start_time_ms: request.start_time_ms,
            tags: request.tags.into_iter().map(Into::into).collect(),
            status: run_status_from_wire(request.status)?.unwrap_or(RunStatus::Running),
        })
    }
}

impl From<UpdateRun> for pb::UpdateRunRequest {
    fn from(request: UpdateRun) -> Self {
        pb::UpdateRunRequest {
            run_id: request.run_id.to_string(),
            status: wire_status(request.status),
            end_time_ms: request.end_time_ms,
            run_name: request.run_name,
        }
    }
}

impl TryFrom<pb::UpdateRunRequest> for UpdateRun {
    type Error = ApiError;

    fn try_from(request: pb::UpdateRunRequest) -> Result<Self, ApiError> {
        Ok(UpdateRun {
            run_id: request.run_id.parse()?,
            status: run_status_from_wire(request.status)?,
            end_time_ms: request.end_time_ms,
            run_name: request.run_name,
        })
    }
}

impl From<ListRuns> for pb::ListRunsRequest {
    fn from(request: ListRuns) -> Self {
        pb::ListRunsRequest {
            experiment_ids: request.experiment_ids.iter().map(ToString::to_string).collect(),
            view_type: view_type_to_wire(request.view_type),
            // Out of the wire's range: the largest it carries, which the scheduler refuses.
            max_results: request.max_results.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            page_token: request.page_token.unwrap_or_default(),
            filter: request.filter.unwrap_or_default(),
            order_by: request.order_by,
        }
    }
}

impl TryFrom<pb::ListRunsRequest> for ListRuns {
    type Error = ApiError;

    fn try_from(request: pb::ListRunsRequest) -> Result<Self, ApiError> {
        Ok(ListRuns {
            experiment_ids: request
                .experiment_ids
                .iter()
                .map(|id| id.parse())
                .collect::<Result<_, _>>()?,
            view_type: view_type_from_wire(request.view_type)?,
            max_results: non_zero(request.max_results).map(i64::from),
            page_token: non_empty(request.page_token),
            filter: non_empty(request.filter),
            order_by: request.order_by,
        })
    }
}

impl From<MetricHistoryQuery> for pb::GetMetricHistoryRequest {
    fn from(query: MetricHistoryQuery) -> Self {
        pb::GetMetricHistoryRequest {
            run_id: query.run_id.to_string(),
            metric_key: query.key,
            start_step: query.start_step,
            end_step: query.end_step,
            max_results: query.max_results.unwrap_or(0),
            page_token: query.page_token.unwrap_or_default(),
            attempt: query.attempt,
        }
    }
}

impl TryFrom<pb::GetMetricHistoryRequest> for MetricHistoryQuery {
    type Error = ApiError;

    fn try_from(request: pb::GetMetricHistoryRequest) -> Result<Self, ApiError> {
        Ok(MetricHistoryQuery {
            run_id: request.run_id.parse()?,
            key: request.metric_key,
            start_step: request.start_step,
            end_step: request.end_step,
            max_results: non_zero(request.max_results),
            page_token: non_empty(request.page_token),
            attempt: request.attempt,
        })
    }
}

pub(crate) fn parse_run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse()
}
