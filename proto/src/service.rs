//! The server side of the wire contract: the scheduler implements [`Tracking`] and
//! [`Execution`] on domain types, and [`grpc_routes`] wraps them in the generated tonic
//! services, converting at the edge.

use std::future::Future;
use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use drover_project::snapshot::SnapshotDigest;

use crate::convert::{parse_digest, parse_run_id, view_type_from_request};
use crate::domain::{
    CreateExperiment, CreateRun, Experiment, ExperimentId, ExperimentRef, ListRuns, Metric,
    MetricHistoryQuery, Page, Param, RenameExperiment, Run, RunId, RunInfo, Tag, UpdateRun,
    ViewType,
};
use crate::error::ApiError;
use crate::execution::{
    AttemptView, BoxStream, ClusterStatus, FollowRun, RunEvent, RunSpec, SchedulerMessage,
    SnapshotChunk, SubmitRun, UploadedSnapshot, WorkerMessage, WorkerStatus,
};
use crate::models::{LoggedModelView, ModelId, ModelVersion, RegisteredModelView, VersionRef};
use crate::pb;
use crate::sweep::{CreateSweep, Sweep};

type ApiResult<T> = Result<T, ApiError>;

/// Experiments, runs and their data, as the scheduler serves them.
pub trait Tracking: Send + Sync + 'static {
    fn create_experiment(
        &self,
        request: CreateExperiment,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send;
    fn get_experiment(
        &self,
        experiment: ExperimentRef,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send;
    fn list_experiments(
        &self,
        view: ViewType,
    ) -> impl Future<Output = ApiResult<Vec<Experiment>>> + Send;
    fn rename_experiment(
        &self,
        request: RenameExperiment,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send;
    fn delete_experiment(
        &self,
        experiment: ExperimentRef,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send;
    fn restore_experiment(
        &self,
        experiment: ExperimentRef,
    ) -> impl Future<Output = ApiResult<Experiment>> + Send;

    fn create_run(&self, request: CreateRun) -> impl Future<Output = ApiResult<Run>> + Send;
    fn get_run(&self, run_id: RunId) -> impl Future<Output = ApiResult<Run>> + Send;
    fn update_run(&self, request: UpdateRun) -> impl Future<Output = ApiResult<RunInfo>> + Send;
    fn delete_run(&self, run_id: RunId) -> impl Future<Output = ApiResult<RunInfo>> + Send;
    fn restore_run(&self, run_id: RunId) -> impl Future<Output = ApiResult<RunInfo>> + Send;
    fn list_runs(&self, request: ListRuns) -> impl Future<Output = ApiResult<Page<Run>>> + Send;
    fn log_params(
        &self,
        run_id: RunId,
        params: Vec<Param>,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn set_tags(&self, run_id: RunId, tags: Vec<Tag>)
    -> impl Future<Output = ApiResult<()>> + Send;
    fn delete_tag(&self, run_id: RunId, key: String) -> impl Future<Output = ApiResult<()>> + Send;
    fn log_metrics(
        &self,
        run_id: RunId,
        metrics: Vec<Metric>,
    ) -> impl Future<Output = ApiResult<usize>> + Send;
    fn metric_history(
        &self,
        query: MetricHistoryQuery,
    ) -> impl Future<Output = ApiResult<Page<Metric>>> + Send;
}

/// Submitting, following and cancelling runs; snapshots; the workers' stream.
pub trait Execution: Send + Sync + 'static {
    fn submit_run(&self, request: SubmitRun) -> impl Future<Output = ApiResult<Run>> + Send;
    fn cancel_run(&self, run_id: RunId) -> impl Future<Output = ApiResult<RunInfo>> + Send;
    fn follow_run(
        &self,
        request: FollowRun,
    ) -> impl Future<Output = ApiResult<BoxStream<ApiResult<RunEvent>>>> + Send;
    fn cluster_status(&self) -> impl Future<Output = ApiResult<ClusterStatus>> + Send;
    /// Stops (`drain`) or resumes placing runs on a worker.
    fn drain_worker(
        &self,
        worker_id: String,
        drain: bool,
    ) -> impl Future<Output = ApiResult<WorkerStatus>> + Send;
    /// Every attempt at a run drover executed, oldest first.
    fn list_attempts(
        &self,
        run_id: RunId,
    ) -> impl Future<Output = ApiResult<Vec<AttemptView>>> + Send;
    /// What a run drover executed was submitted with.
    fn run_spec(&self, run_id: RunId) -> impl Future<Output = ApiResult<RunSpec>> + Send;

    /// Whether the snapshot is stored, and the largest snapshot accepted.
    fn has_snapshot(
        &self,
        digest: SnapshotDigest,
    ) -> impl Future<Output = ApiResult<(bool, u64)>> + Send;
    fn upload_snapshot(
        &self,
        chunks: BoxStream<ApiResult<SnapshotChunk>>,
    ) -> impl Future<Output = ApiResult<UploadedSnapshot>> + Send;
    fn download_snapshot(
        &self,
        digest: SnapshotDigest,
    ) -> impl Future<Output = ApiResult<BoxStream<ApiResult<Vec<u8>>>>> + Send;
    /// Keeps a dirty work tree's diff against `commit` with the snapshot it makes.
    fn put_source_diff(
        &self,
        digest: SnapshotDigest,
        commit: String,
        diff: Vec<u8>,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// The uncommitted changes a run's snapshot was made with, as a diff against its commit.
    fn source_diff(&self, run_id: RunId) -> impl Future<Output = ApiResult<Vec<u8>>> + Send;

    /// A worker's long-lived stream: its messages in, the scheduler's out.
    fn connect_worker(
        &self,
        incoming: BoxStream<ApiResult<WorkerMessage>>,
    ) -> impl Future<Output = ApiResult<BoxStream<ApiResult<SchedulerMessage>>>> + Send;
}

/// Parameter sweeps the scheduler drives.
pub trait Sweeps: Send + Sync + 'static {
    fn create_sweep(&self, request: CreateSweep) -> impl Future<Output = ApiResult<Sweep>> + Send;
    fn get_sweep(&self, sweep_id: RunId) -> impl Future<Output = ApiResult<Sweep>> + Send;
    fn list_sweeps(
        &self,
        experiment: Option<ExperimentId>,
    ) -> impl Future<Output = ApiResult<Vec<Sweep>>> + Send;
    fn cancel_sweep(&self, sweep_id: RunId) -> impl Future<Output = ApiResult<Sweep>> + Send;
}

/// Logged models and the model registry.
pub trait Models: Send + Sync + 'static {
    fn search_registered_models(
        &self,
        filter: String,
        max_results: Option<i64>,
        page_token: Option<String>,
    ) -> impl Future<Output = ApiResult<Page<RegisteredModelView>>> + Send;
    fn get_registered_model(
        &self,
        name: String,
    ) -> impl Future<Output = ApiResult<RegisteredModelView>> + Send;
    fn get_model_version(
        &self,
        name: String,
        version: VersionRef,
    ) -> impl Future<Output = ApiResult<ModelVersion>> + Send;
    fn list_model_versions(
        &self,
        name: String,
    ) -> impl Future<Output = ApiResult<Vec<ModelVersion>>> + Send;
    fn set_alias(
        &self,
        name: String,
        alias: String,
        version: u64,
    ) -> impl Future<Output = ApiResult<RegisteredModelView>> + Send;
    fn delete_alias(
        &self,
        name: String,
        alias: String,
    ) -> impl Future<Output = ApiResult<RegisteredModelView>> + Send;
    fn delete_registered_model(&self, name: String) -> impl Future<Output = ApiResult<()>> + Send;
    fn delete_model_version(
        &self,
        name: String,
        version: VersionRef,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn get_logged_model(
        &self,
        model_id: ModelId,
    ) -> impl Future<Output = ApiResult<LoggedModelView>> + Send;
}

/// Largest gRPC message accepted: a snapshot chunk or log chunk with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The gRPC services over `api`, ready to be served beside other routes.
pub fn grpc_routes<T: Tracking + Execution + Sweeps + Models>(
    api: Arc<T>,
) -> tonic::service::Routes {
    tonic::service::Routes::new(pb::experiments_server::ExperimentsServer::new(ExperimentsAdapter(
        api.clone(),
    )))
    .add_service(pb::runs_server::RunsServer::new(RunsAdapter(api.clone())))
    .add_service(
        pb::snapshots_server::SnapshotsServer::new(SnapshotsAdapter(api.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add_service(pb::execution_server::ExecutionServer::new(ExecutionAdapter(api.clone())))
    .add_service(pb::sweeps_server::SweepsServer::new(SweepsAdapter(api.clone())))
    .add_service(pb::models_server::ModelsServer::new(ModelsAdapter(api.clone())))
    .add_service(
        pb::workers_server::WorkersServer::new(WorkersAdapter(api))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

struct ExperimentsAdapter<T>(Arc<T>);
struct RunsAdapter<T>(Arc<T>);
struct SnapshotsAdapter<T>(Arc<T>);
struct ExecutionAdapter<T>(Arc<T>);
struct WorkersAdapter<T>(Arc<T>);
struct SweepsAdapter<T>(Arc<T>);
struct ModelsAdapter<T>(Arc<T>);

fn version_ref(request: pb::ModelVersionRequest) -> Result<(String, VersionRef), ApiError> {
    use pb::model_version_request::Which;
    let version = match request.which {
        Some(Which::Version(number)) if number > 0 => VersionRef::Number(number),
        Some(Which::Alias(alias)) if !alias.is_empty() => VersionRef::Alias(alias),
        _ => {
            return Err(ApiError::InvalidArgument(
                "name a version by its number (from 1) or by an alias".to_string(),
            ));
        }
    };
    Ok((request.name, version))
}

#[tonic::async_trait]
impl<T: Models> pb::models_server::Models for ModelsAdapter<T> {
    async fn search_registered_models(
        &self,
        request: Request<pb::SearchRegisteredModelsRequest>,
    ) -> Result<Response<pb::SearchRegisteredModelsResponse>, Status> {
        let request = request.into_inner();
        let token = Some(request.page_token).filter(|token| !token.is_empty());
        let page =
            self.0.search_registered_models(request.filter, request.max_results, token).await?;
        Ok(Response::new(pb::SearchRegisteredModelsResponse {
            models: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_registered_model(
        &self,
        request: Request<pb::RegisteredModelRequest>,
    ) -> Result<Response<pb::RegisteredModel>, Status> {
        reply(self.0.get_registered_model(request.into_inner().name).await)
    }

    async fn get_model_version(
        &self,
        request: Request<pb::ModelVersionRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        let (name, version) = version_ref(request.into_inner())?;
        reply(self.0.get_model_version(name, version).await)
    }

    async fn list_model_versions(
        &self,
        request: Request<pb::RegisteredModelRequest>,
    ) -> Result<Response<pb::ListModelVersionsResponse>, Status> {
        let versions = self.0.list_model_versions(request.into_inner().name).await?;
        Ok(Response::new(pb::ListModelVersionsResponse {
            versions: versions.into_iter().map(Into::into).collect(),
        }))
    }

    async fn set_alias(
        &self,
        request: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::RegisteredModel>, Status> {
        let request = request.into_inner();
        reply(self.0.set_alias(request.name, request.alias, request.version).await)
    }

    async fn delete_alias(
        &self,
        request: Request<pb::AliasRequest>,
    ) -> Result<Response<pb::RegisteredModel>, Status> {
        let request = request.into_inner();
        reply(self.0.delete_alias(request.name, request.alias).await)
    }

    async fn delete_registered_model(
        &self,
        request: Request<pb::RegisteredModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        self.0.delete_registered_model(request.into_inner().name).await?;
        Ok(Response::new(pb::DeleteModelResponse {}))
    }

    async fn delete_model_version(
        &self,
        request: Request<pb::ModelVersionRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let (name, version) = version_ref(request.into_inner())?;
        self.0.delete_model_version(name, version).await?;
        Ok(Response::new(pb::DeleteModelResponse {}))
    }

    async fn get_logged_model(
        &self,
        request: Request<pb::LoggedModelRequest>,
    ) -> Result<Response<pb::LoggedModel>, Status> {
        let model_id: ModelId = request.into_inner().model_id.parse()?;
        reply(self.0.get_logged_model(model_id).await)
    }
}

#[tonic::async_trait]
impl<T: Sweeps> pb::sweeps_server::Sweeps for SweepsAdapter<T> {
    async fn create_sweep(
        &self,
        request: Request<pb::CreateSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let request = CreateSweep::try_from(request.into_inner())?;
        reply(self.0.create_sweep(request).await)
    }

    async fn get_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let sweep_id = parse_run_id(&request.into_inner().sweep_id)?;
        reply(self.0.get_sweep(sweep_id).await)
    }

    async fn list_sweeps(
        &self,
        request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let request = request.into_inner();
        let experiment = match request.experiment_id.as_str() {
            "" => None,
            text => Some(text.parse()?),
        };
        let sweeps = self.0.list_sweeps(experiment).await?;
        Ok(Response::new(pb::ListSweepsResponse {
            sweeps: sweeps.into_iter().map(Into::into).collect(),
        }))
    }

    async fn cancel_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let sweep_id = parse_run_id(&request.into_inner().sweep_id)?;
        reply(self.0.cancel_sweep(sweep_id).await)
    }
}

type WireStream<T> = BoxStream<Result<T, Status>>;

/// Converts an incoming wire stream to domain items.
fn incoming<W, D>(stream: Streaming<W>) -> BoxStream<ApiResult<D>>
where
    W: Send + 'static,
    D: TryFrom<W, Error = ApiError> + Send + 'static,
{
    Box::pin(stream.map(|item| item.map_err(ApiError::from).and_then(D::try_from)))
}

/// Converts an outgoing domain stream to wire items.
fn outgoing<D, W>(stream: BoxStream<ApiResult<D>>) -> WireStream<W>
where
    D: Send + 'static,
    W: From<D> + Send + 'static,
{
    Box::pin(stream.map(|item| item.map(W::from).map_err(Status::from)))
}

fn reply<T, U: From<T>>(result: ApiResult<T>) -> Result<Response<U>, Status> {
    result.map(|value| Response::new(U::from(value))).map_err(Status::from)
}

#[tonic::async_trait]
impl<T: Tracking> pb::experiments_server::Experiments for ExperimentsAdapter<T> {
    async fn create_experiment(
        &self,
        request: Request<pb::CreateExperimentRequest>,
    ) -> Result<Response<pb::Experiment>, Status> {
        let request = CreateExperiment::try_from(request.into_inner())?;
        reply(self.0.create_experiment(request).await)
    }

    async fn get_experiment(
        &self,
        request: Request<pb::ExperimentRef>,
    ) -> Result<Response<pb::Experiment>, Status> {
        let experiment = ExperimentRef::try_from(request.into_inner())?;
        reply(self.0.get_experiment(experiment).await)
    }

    async fn list_experiments(
        &self,
        request: Request<pb::ListExperimentsRequest>,
    ) -> Result<Response<pb::ListExperimentsResponse>, Status> {
        let view = view_type_from_request(request.into_inner().view_type)?;
        let experiments = self.0.list_experiments(view).await?;
        Ok(Response::new(pb::ListExperimentsResponse {
            experiments: experiments.into_iter().map(Into::into).collect(),
        }))
    }

    async fn rename_experiment(
        &self,
        request: Request<pb::RenameExperimentRequest>,
    ) -> Result<Response<pb::Experiment>, Status> {
        let request = RenameExperiment::try_from(request.into_inner())?;
        reply(self.0.rename_experiment(request).await)
    }

    async fn delete_experiment(
        &self,
        request: Request<pb::ExperimentRef>,
    ) -> Result<Response<pb::Experiment>, Status> {
        let experiment = ExperimentRef::try_from(request.into_inner())?;
        reply(self.0.delete_experiment(experiment).await)
    }

    async fn restore_experiment(
        &self,
        request: Request<pb::ExperimentRef>,
    ) -> Result<Response<pb::Experiment>, Status> {
        let experiment = ExperimentRef::try_from(request.into_inner())?;
        reply(self.0.restore_experiment(experiment).await)
    }
}

#[tonic::async_trait]
impl<T: Tracking> pb::runs_server::Runs for RunsAdapter<T> {
    async fn create_run(
        &self,
        request: Request<pb::CreateRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = CreateRun::try_from(request.into_inner())?;
        reply(self.0.create_run(request).await)
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let run_id = parse_run_id(&request.into_inner().run_id)?;
        reply(self.0.get_run(run_id).await)
    }

    async fn update_run(
        &self,
        request: Request<pb::UpdateRunRequest>,
    ) -> Result<Response<pb::RunInfo>, Status> {
        let request = UpdateRun::try_from(request.into_inner())?;
        reply(self.0.update_run(request).await)
    }

    async fn delete_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunInfo>, Status> {
        let run_id = parse_run_id(&request.into_inner().run_id)?;
        reply(self.0.delete_run(run_id).await)
    }

    async fn restore_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunInfo>, Status> {
        let run_id = parse_run_id(&request.into_inner().run_id)?;
        reply(self.0.restore_run(run_id).await)
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let request = ListRuns::try_from(request.into_inner())?;
        let page = self.0.list_runs(request).await?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn log_params(
        &self,
        request: Request<pb::LogParamsRequest>,
    ) -> Result<Response<pb::LogParamsResponse>, Status> {
        let request = request.into_inner();
        let run_id = parse_run_id(&request.run_id)?;
        let params = request.params.into_iter().map(Into::into).collect();
        self.0.log_params(run_id, params).await?;
        Ok(Response::new(pb::LogParamsResponse {}))
    }

    async fn set_tags(
        &self,
        request: Request<pb::SetTagsRequest>,
    ) -> Result<Response<pb::SetTagsResponse>, Status> {
        let request = request.into_inner();
        let run_id = parse_run_id(&request.run_id)?;
        let tags = request.tags.into_iter().map(Into::into).collect();
        self.0.set_tags(run_id, tags).await?;
        Ok(Response::new(pb::SetTagsResponse {}))
    }

    async fn delete_tag(
        &self,
        request: Request<pb::DeleteTagRequest>,
    ) -> Result<Response<pb::DeleteTagResponse>, Status> {
        let request = request.into_inner();
        let run_id = parse_run_id(&request.run_id)?;
        self.0.delete_tag(run_id, request.key).await?;
        Ok(Response::new(pb::DeleteTagResponse {}))
    }

    async fn log_metrics(
        &self,
        request: Request<pb::LogMetricsRequest>,
    ) -> Result<Response<pb::LogMetricsResponse>, Status> {
        let request = request.into_inner();
        let run_id = parse_run_id(&request.run_id)?;
        let metrics = request.metrics.into_iter().map(Into::into).collect();
        let accepted = self.0.log_metrics(run_id, metrics).await?;
        Ok(Response::new(pb::LogMetricsResponse {
            accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
        }))
    }

    async fn get_metric_history(
        &self,
        request: Request<pb::GetMetricHistoryRequest>,
    ) -> Result<Response<pb::GetMetricHistoryResponse>, Status> {
        let query = MetricHistoryQuery::try_from(request.into_inner())?;
        let page = self.0.metric_history(query).await?;
        Ok(Response::new(pb::GetMetricHistoryResponse {
            metrics: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl<T: Execution> pb::snapshots_server::Snapshots for SnapshotsAdapter<T> {
    async fn has_snapshot(
        &self,
        request: Request<pb::HasSnapshotRequest>,
    ) -> Result<Response<pb::HasSnapshotResponse>, Status> {
        let digest = parse_digest(&request.into_inner().digest)?;
        let (present, limit_bytes) = self.0.has_snapshot(digest).await?;
        Ok(Response::new(pb::HasSnapshotResponse { present, limit_bytes }))
    }

    async fn upload_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        let uploaded = self.0.upload_snapshot(incoming(request.into_inner())).await?;
        Ok(Response::new(pb::UploadSnapshotResponse {
            digest: uploaded.digest.to_string(),
            size_bytes: uploaded.size,
            stored: uploaded.stored,
        }))
    }

    type DownloadSnapshotStream = WireStream<pb::SnapshotChunk>;

    async fn download_snapshot(
        &self,
        request: Request<pb::DownloadSnapshotRequest>,
    ) -> Result<Response<Self::DownloadSnapshotStream>, Status> {
        let digest = parse_digest(&request.into_inner().digest)?;
        let chunks = self.0.download_snapshot(digest).await?;
        let chunks = chunks.map(|chunk| {
            chunk
                .map(|data| pb::SnapshotChunk { digest: String::new(), size_bytes: 0, data })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn put_source_diff(
        &self,
        request: Request<pb::SourceDiff>,
    ) -> Result<Response<pb::PutSourceDiffResponse>, Status> {
        let request = request.into_inner();
        let digest = parse_digest(&request.snapshot_digest)?;
        self.0.put_source_diff(digest, request.commit, request.diff).await?;
        Ok(Response::new(pb::PutSourceDiffResponse {}))
    }

    async fn get_source_diff(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::SourceDiff>, Status> {
        let run_id = parse_run_id(&request.into_inner().run_id)?;
        let diff = self.0.source_diff(run_id).await?;
        Ok(Response::new(pb::SourceDiff { diff, ..Default::default() }))
    }
}

#[tonic::async_trait]
impl<T: Execution> pb::execution_server::Execution for ExecutionAdapter<T> {
    async fn submit_run(
        &self,
        request: Request<pb::SubmitRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let request = SubmitRun::try_from(request.into_inner())?;
        reply(self.0.submit_run(request).await)
    }

    async fn cancel_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunInfo>, Status> {
        let run_id = parse_run_id(&request.into_inner().run_id)?;
        reply(self.0.cancel_run(run_id).await)
    }

    type FollowRunStream = WireStream<pb::RunEvent>;

    async fn follow_run(
        &self,
        request: Request<pb::FollowRunRequest>,
    ) -> Result<Response<Self::FollowRunStream>, Status> {
        let request = request.into_inner();
        let follow = FollowRun {
            run_id: parse_run_id(&request.run_id)?,
            follow: request.follow,
            after_cursor: request.after_cursor,
        };
        let events = self.0.follow_run(follow).await?;
        Ok(Response::new(outgoing(events)))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        reply(self.0.cluster_status().await)
    }

    async fn drain_worker(
        &self,
        request: Request<pb::DrainWorkerRequest>,
    ) -> Result<Response<pb::WorkerStatus>, Status> {
        let request = request.into_inner();
        reply(self.0.drain_worker(request.worker_id, request.drain).await)
    }

    async fn list_attempts(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::ListAttemptsResponse>, Status> {
        let run_id = parse_run_id(&request.into_inner().run_id)?;
        reply(self.0.list_attempts(run_id).await)
    }

    async fn get_run_spec(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunSpec>, Status> {
        let run_id = parse_run_id(&request.into_inner().run_id)?;
        reply(self.0.run_spec(run_id).await)
    }
}

#[tonic::async_trait]
impl<T: Execution> pb::workers_server::Workers for WorkersAdapter<T> {
    type AttachStream = WireStream<pb::SchedulerMessage>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let replies = self.0.connect_worker(incoming(request.into_inner())).await?;
        Ok(Response::new(outgoing(replies)))
    }
}
