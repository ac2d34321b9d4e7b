//! A cheap-to-clone client of the scheduler that speaks domain types.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use drover_project::snapshot::SnapshotDigest;
use tokio_stream::{Stream, StreamExt};

use crate::convert::{parse_digest, view_type_to_wire};
use crate::domain::{
    CreateExperiment, CreateRun, Experiment, ExperimentId, ExperimentRef, ListRuns, Metric,
    MetricHistoryQuery, Page, Param, RenameExperiment, Run, RunId, RunInfo, Tag, UpdateRun,
    ViewType,
};
use crate::error::ApiError;
use crate::execution::{
    AttemptView, BoxStream, ClusterStatus, FollowRun, RunEvent, RunSpec, SchedulerMessage,
    SubmitRun, UploadedSnapshot, WorkerMessage, WorkerStatus,
};
use crate::models::{LoggedModelView, ModelId, ModelVersion, RegisteredModelView, VersionRef};
use crate::pb;
use crate::service::MAX_MESSAGE_BYTES;
use crate::sweep::{CreateSweep, Sweep};

type ApiResult<T> = Result<T, ApiError>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a client PINGs the scheduler over a quiet connection, and how long it waits
/// for the answer before it takes the connection for dead.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns `host:port`, `http://host:port` or `https://host:port` into the URI the channel
/// dials (`http://` when no scheme is given).
pub fn normalize_address(address: &str) -> ApiResult<String> {
    let address = address.trim();
    let invalid = |why: &str| {
        ApiError::InvalidArgument(format!("invalid scheduler address '{address}': {why}"))
    };
    if address.is_empty() {
        return Err(invalid("it is empty"));
    }
    let uri = if let Some(rest) = address.strip_prefix("http://") {
        format!("http://{}", rest.trim_end_matches('/'))
    } else if let Some(rest) = address.strip_prefix("https://") {
        format!("https://{}", rest.trim_end_matches('/'))
    } else if address.contains("://") {
        return Err(invalid("expected host:port, http://host:port or https://host:port"));
    } else {
        format!("http://{}", address.trim_end_matches('/'))
    };
    let authority = uri.split_once("://").map_or("", |(_, authority)| authority);
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => return Err(invalid("expected host:port or http://host:port")),
    }
    uri.parse::<tonic::transport::Uri>().map_err(|error| invalid(&error.to_string()))?;
    Ok(uri)
}

/// Puts the scheduler's token, when there is one, on every call.
#[derive(Clone)]
pub struct Authorization(Option<MetadataValue<Ascii>>);

impl Interceptor for Authorization {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Transport = InterceptedService<Channel, Authorization>;

/// A connection to a scheduler. Clones share the underlying HTTP/2 connection.
#[derive(Clone)]
pub struct Client {
    address: String,
    experiments: pb::experiments_client::ExperimentsClient<Transport>,
    runs: pb::runs_client::RunsClient<Transport>,
    snapshots: pb::snapshots_client::SnapshotsClient<Transport>,
    execution: pb::execution_client::ExecutionClient<Transport>,
    workers: pb::workers_client::WorkersClient<Transport>,
    sweeps: pb::sweeps_client::SweepsClient<Transport>,
    models: pb::models_client::ModelsClient<Transport>,
}

impl Client {
    /// Connects to the scheduler at `address` (`host:port` or `http://host:port`), failing
    /// with [`ApiError::Unavailable`] when nothing answers there.
    pub async fn connect(address: &str) -> ApiResult<Client> {
        Client::connect_with_token(address, None).await
    }

    /// Connects, sending `token` (a scheduler's `--token-file`) with every call.
    pub async fn connect_with_token(address: &str, token: Option<&str>) -> ApiResult<Client> {
        Client::connect_with(address, token, None).await
    }

    /// Connects, sending `token` with every call, and verifying an `https://` scheduler
    /// against the CA in `ca` (PEM), else the public web roots.
    pub async fn connect_with(
        address: &str,
        token: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> ApiResult<Client> {
        let authorization = Authorization(
            token
                .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
                .transpose()
                .map_err(|_| {
                    ApiError::InvalidArgument(
                        "the token has characters a header cannot carry".to_string(),
                    )
                })?,
        );
        let uri = normalize_address(address)?;
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|error| {
                ApiError::InvalidArgument(format!("invalid scheduler address '{address}': {error}"))
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // A connection whose peer vanished (a cut network, a host gone) sends no error;
            // PINGs find it, so a worker's stream ends and reconnects instead of waiting for
            // TCP to give up, which takes many minutes.
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let endpoint = if uri.starts_with("https://") {
            let tls = match ca {
                Some(ca) => {
                    let pem = std::fs::read(ca).map_err(|error| {
                        ApiError::InvalidArgument(format!(
                            "cannot read the CA {}: {error}",
                            ca.display()
                        ))
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint.tls_config(tls).map_err(|error| {
                ApiError::InvalidArgument(format!("cannot set up TLS for {uri}: {error}"))
            })?
        } else {
            endpoint
        };
        let channel = endpoint.connect().await.map_err(|error| {
            // The innermost cause says what happened ("Connection refused"); the outer
            // layers only say where.
            let mut cause: &dyn std::error::Error = &error;
            while let Some(source) = cause.source() {
                cause = source;
            }
            ApiError::Unavailable(format!("no scheduler answers at {uri} ({cause})"))
        })?;
        let auth = || authorization.clone();
        Ok(Client {
            address: uri,
            experiments: pb::experiments_client::ExperimentsClient::with_interceptor(
                channel.clone(),
                auth(),
            ),
            runs: pb::runs_client::RunsClient::with_interceptor(channel.clone(), auth())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            snapshots: pb::snapshots_client::SnapshotsClient::with_interceptor(
                channel.clone(),
                auth(),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
            execution: pb::execution_client::ExecutionClient::with_interceptor(
                channel.clone(),
                auth(),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
            sweeps: pb::sweeps_client::SweepsClient::with_interceptor(channel.clone(), auth()),
            models: pb::models_client::ModelsClient::with_interceptor(channel.clone(), auth()),
            workers: pb::workers_client::WorkersClient::with_interceptor(channel, auth())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// The normalized address this client dials.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn create_experiment(&self, request: CreateExperiment) -> ApiResult<Experiment> {
        let reply = self
            .experiments
            .clone()
            .create_experiment(pb::CreateExperimentRequest::from(request))
            .await?;
        reply.into_inner().try_into()
    }

    pub async fn get_experiment(&self, experiment: ExperimentRef) -> ApiResult<Experiment> {
        let reply =
            self.experiments.clone().get_experiment(pb::ExperimentRef::from(experiment)).await?;
        reply.into_inner().try_into()
    }

    pub async fn list_experiments(&self, view: ViewType) -> ApiResult<Vec<Experiment>> {
        let request = pb::ListExperimentsRequest { view_type: view_type_to_wire(view) };
        let reply = self.experiments.clone().list_experiments(request).await?;
        reply.into_inner().experiments.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn rename_experiment(&self, request: RenameExperiment) -> ApiResult<Experiment> {
        let reply = self
            .experiments
            .clone()
            .rename_experiment(pb::RenameExperimentRequest::from(request))
            .await?;
        reply.into_inner().try_into()
    }

    pub async fn delete_experiment(&self, experiment: ExperimentRef) -> ApiResult<Experiment> {
        let reply =
            self.experiments.clone().delete_experiment(pb::ExperimentRef::from(experiment)).await?;
        reply.into_inner().try_into()
    }

    pub async fn restore_experiment(&self, experiment: ExperimentRef) -> ApiResult<Experiment> {
        let reply = self
            .experiments
            .clone()
            .restore_experiment(pb::ExperimentRef::from(experiment))
            .await?;
        reply.into_inner().try_into()
    }

    pub async fn create_run(&self, request: CreateRun) -> ApiResult<Run> {
        let reply = self.runs.clone().create_run(pb::CreateRunRequest::from(request)).await?;
        reply.into_inner().try_into()
    }

    pub async fn get_run(&self, run_id: RunId) -> ApiResult<Run> {
        let request = pb::GetRunRequest { run_id: run_id.to_string() };
        let reply = self.runs.clone().get_run(request).await?;
        reply.into_inner().try_into()
    }

    pub async fn update_run(&self, request: UpdateRun) -> ApiResult<RunInfo> {
        let reply = self.runs.clone().update_run(pb::UpdateRunRequest::from(request)).await?;
        reply.into_inner().try_into()
    }

    pub async fn delete_run(&self, run_id: RunId) -> ApiResult<RunInfo> {
        let request = pb::GetRunRequest { run_id: run_id.to_string() };
        let reply = self.runs.clone().delete_run(request).await?;
        reply.into_inner().try_into()
    }

    pub async fn restore_run(&self, run_id: RunId) -> ApiResult<RunInfo> {
        let request = pb::GetRunRequest { run_id: run_id.to_string() };
        let reply = self.runs.clone().restore_run(request).await?;
        reply.into_inner().try_into()
    }

    pub async fn list_runs(&self, request: ListRuns) -> ApiResult<Page<Run>> {
        let reply =
            self.runs.clone().list_runs(pb::ListRunsRequest::from(request)).await?.into_inner();
        Ok(Page {
            items: reply.runs.into_iter().map(TryInto::try_into).collect::<ApiResult<_>>()?,
            next_page_token: (!reply.next_page_token.is_empty()).then_some(reply.next_page_token),
        })
    }

    pub async fn log_params(&self, run_id: RunId, params: Vec<Param>) -> ApiResult<()> {
        let request = pb::LogParamsRequest {
            run_id: run_id.to_string(),
            params: params.into_iter().map(Into::into).collect(),
        };
        self.runs.clone().log_params(request).await?;
        Ok(())
    }

    pub async fn set_tags(&self, run_id: RunId, tags: Vec<Tag>) -> ApiResult<()> {
        let request = pb::SetTagsRequest {
            run_id: run_id.to_string(),
            tags: tags.into_iter().map(Into::into).collect(),
        };
        self.runs.clone().set_tags(request).await?;
        Ok(())
    }

    pub async fn delete_tag(&self, run_id: RunId, key: &str) -> ApiResult<()> {
        let request = pb::DeleteTagRequest { run_id: run_id.to_string(), key: key.to_string() };
        self.runs.clone().delete_tag(request).await?;
        Ok(())
    }

    /// Appends metric points; returns how many the scheduler stored.
    pub async fn log_metrics(&self, run_id: RunId, metrics: Vec<Metric>) -> ApiResult<u32> {
        let request = pb::LogMetricsRequest {
            run_id: run_id.to_string(),
            metrics: metrics.into_iter().map(Into::into).collect(),
        };
        Ok(self.runs.clone().log_metrics(request).await?.into_inner().accepted)
    }

    pub async fn metric_history(&self, query: MetricHistoryQuery) -> ApiResult<Page<Metric>> {
        let reply = self
            .runs
            .clone()
            .get_metric_history(pb::GetMetricHistoryRequest::from(query))
            .await?
            .into_inner();
        Ok(Page {
            items: reply.metrics.into_iter().map(Into::into).collect(),
            next_page_token: (!reply.next_page_token.is_empty()).then_some(reply.next_page_token),
        })
    }

    // -- Snapshots ---------------------------------------------------------------------

    /// Whether the scheduler has the snapshot, and the largest snapshot it accepts.
    pub async fn has_snapshot(&self, digest: &SnapshotDigest) -> ApiResult<(bool, u64)> {
        let request = pb::HasSnapshotRequest { digest: digest.to_string() };
        let reply = self.snapshots.clone().has_snapshot(request).await?.into_inner();
        Ok((reply.present, reply.limit_bytes))
    }

    /// Uploads a snapshot of `size` bytes given as a stream of chunks.
    pub async fn upload_snapshot(
        &self,
        digest: &SnapshotDigest,
        size: u64,
        chunks: impl Stream<Item = Vec<u8>> + Send + 'static,
    ) -> ApiResult<UploadedSnapshot> {
        let digest_text = digest.to_string();
        let mut first = true;
        let chunks = chunks.map(move |data| {
            let header = std::mem::take(&mut first);
            pb::SnapshotChunk {
                digest: if header { digest_text.clone() } else { String::new() },
                size_bytes: if header { size } else { 0 },
                data,
            }
        });
        let reply = self.snapshots.clone().upload_snapshot(chunks).await?.into_inner();
        Ok(UploadedSnapshot {
            digest: parse_digest(&reply.digest)?,
            size: reply.size_bytes,
            stored: reply.stored,
        })
    }

    /// Downloads a snapshot as a stream of chunks.
    pub async fn download_snapshot(
        &self,
        digest: &SnapshotDigest,
    ) -> ApiResult<BoxStream<ApiResult<Vec<u8>>>> {
        let request = pb::DownloadSnapshotRequest { digest: digest.to_string() };
        let stream = self.snapshots.clone().download_snapshot(request).await?.into_inner();
        Ok(Box::pin(stream.map(|chunk| chunk.map(|chunk| chunk.data).map_err(ApiError::from))))
    }

    /// Keeps a dirty work tree's diff against `commit` with the snapshot it makes.
    pub async fn put_source_diff(
        &self,
        digest: &SnapshotDigest,
        commit: &str,
        diff: Vec<u8>,
    ) -> ApiResult<()> {
        let request = pb::SourceDiff {
            snapshot_digest: digest.to_string(),
            commit: commit.to_string(),
            diff,
        };
        self.snapshots.clone().put_source_diff(request).await?;
        Ok(())
    }

    /// The uncommitted changes a run's snapshot was made with, as a diff against its commit.
    pub async fn source_diff(&self, run_id: RunId) -> ApiResult<Vec<u8>> {
        let request = pb::GetRunRequest { run_id: run_id.to_string() };
        Ok(self.snapshots.clone().get_source_diff(request).await?.into_inner().diff)
    }

    // -- Execution ---------------------------------------------------------------------

    pub async fn submit_run(&self, request: SubmitRun) -> ApiResult<Run> {
        let reply = self.execution.clone().submit_run(pb::SubmitRunRequest::from(request)).await?;
        reply.into_inner().try_into()
    }

    pub async fn cancel_run(&self, run_id: RunId) -> ApiResult<RunInfo> {
        let request = pb::GetRunRequest { run_id: run_id.to_string() };
        self.execution.clone().cancel_run(request).await?.into_inner().try_into()
    }

    /// The run's log from the cursor on, then (when following) live output and its end.
    pub async fn follow_run(
        &self,
        request: FollowRun,
    ) -> ApiResult<BoxStream<ApiResult<RunEvent>>> {
        let request = pb::FollowRunRequest {
            run_id: request.run_id.to_string(),
            follow: request.follow,
            after_cursor: request.after_cursor,
        };
        let stream = self.execution.clone().follow_run(request).await?.into_inner();
        Ok(Box::pin(stream.map(|event| event.map_err(ApiError::from).and_then(RunEvent::try_from))))
    }

    /// Stops (`drain`) or resumes placing runs on a worker; the runs it has finish.
    pub async fn drain_worker(&self, worker_id: &str, drain: bool) -> ApiResult<WorkerStatus> {
        let request = pb::DrainWorkerRequest { worker_id: worker_id.to_string(), drain };
        Ok(self.execution.clone().drain_worker(request).await?.into_inner().into())
    }

    /// Every attempt at a run drover executed, oldest first.
    pub async fn list_attempts(&self, run_id: RunId) -> ApiResult<Vec<AttemptView>> {
        let request = pb::GetRunRequest { run_id: run_id.to_string() };
        let reply = self.execution.clone().list_attempts(request).await?.into_inner();
        Ok(reply.attempts.into_iter().map(Into::into).collect())
    }

    /// What a run drover executed was submitted with.
    pub async fn run_spec(&self, run_id: RunId) -> ApiResult<RunSpec> {
        let request = pb::GetRunRequest { run_id: run_id.to_string() };
        self.execution.clone().get_run_spec(request).await?.into_inner().try_into()
    }

    pub async fn cluster_status(&self) -> ApiResult<ClusterStatus> {
        let reply = self.execution.clone().list_workers(pb::ListWorkersRequest {}).await?;
        Ok(reply.into_inner().into())
    }

    // -- Sweeps ------------------------------------------------------------------------

    pub async fn create_sweep(&self, request: CreateSweep) -> ApiResult<Sweep> {
        let reply = self.sweeps.clone().create_sweep(pb::CreateSweepRequest::from(request)).await?;
        reply.into_inner().try_into()
    }

    pub async fn get_sweep(&self, sweep_id: RunId) -> ApiResult<Sweep> {
        let request = pb::GetSweepRequest { sweep_id: sweep_id.to_string() };
        self.sweeps.clone().get_sweep(request).await?.into_inner().try_into()
    }

    pub async fn list_sweeps(&self, experiment: Option<ExperimentId>) -> ApiResult<Vec<Sweep>> {
        let request = pb::ListSweepsRequest {
            experiment_id: experiment.map(|id| id.to_string()).unwrap_or_default(),
        };
        let reply = self.sweeps.clone().list_sweeps(request).await?.into_inner();
        reply.sweeps.into_iter().map(Sweep::try_from).collect()
    }

    pub async fn cancel_sweep(&self, sweep_id: RunId) -> ApiResult<Sweep> {
        let request = pb::GetSweepRequest { sweep_id: sweep_id.to_string() };
        self.sweeps.clone().cancel_sweep(request).await?.into_inner().try_into()
    }

    pub async fn search_registered_models(
        &self,
        filter: &str,
        max_results: Option<i64>,
        page_token: Option<String>,
    ) -> ApiResult<Page<RegisteredModelView>> {
        let request = pb::SearchRegisteredModelsRequest {
            filter: filter.to_string(),
            max_results,
            page_token: page_token.unwrap_or_default(),
        };
        let reply = self.models.clone().search_registered_models(request).await?.into_inner();
        let items = reply
            .models
            .into_iter()
            .map(RegisteredModelView::try_from)
            .collect::<Result<_, _>>()?;
        let next_page_token = Some(reply.next_page_token).filter(|token| !token.is_empty());
        Ok(Page { items, next_page_token })
    }

    pub async fn get_registered_model(&self, name: &str) -> ApiResult<RegisteredModelView> {
        let request = pb::RegisteredModelRequest { name: name.to_string() };
        self.models.clone().get_registered_model(request).await?.into_inner().try_into()
    }

    pub async fn get_model_version(
        &self,
        name: &str,
        version: VersionRef,
    ) -> ApiResult<ModelVersion> {
        let request = version_request(name, version);
        self.models.clone().get_model_version(request).await?.into_inner().try_into()
    }

    pub async fn list_model_versions(&self, name: &str) -> ApiResult<Vec<ModelVersion>> {
        let request = pb::RegisteredModelRequest { name: name.to_string() };
        let reply = self.models.clone().list_model_versions(request).await?.into_inner();
        reply.versions.into_iter().map(ModelVersion::try_from).collect()
    }

    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
    ) -> ApiResult<RegisteredModelView> {
        let request =
            pb::SetAliasRequest { name: name.to_string(), alias: alias.to_string(), version };
        self.models.clone().set_alias(request).await?.into_inner().try_into()
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> ApiResult<RegisteredModelView> {
        let request = pb::AliasRequest { name: name.to_string(), alias: alias.to_string() };
        self.models.clone().delete_alias(request).await?.into_inner().try_into()
    }

    pub async fn delete_registered_model(&self, name: &str) -> ApiResult<()> {
        let request = pb::RegisteredModelRequest { name: name.to_string() };
        self.models.clone().delete_registered_model(request).await?;
        Ok(())
    }

    pub async fn delete_model_version(&self, name: &str, version: VersionRef) -> ApiResult<()> {
        self.models.clone().delete_model_version(version_request(name, version)).await?;
        Ok(())
    }

    pub async fn get_logged_model(&self, model_id: &ModelId) -> ApiResult<LoggedModelView> {
        let request = pb::LoggedModelRequest { model_id: model_id.to_string() };
        self.models.clone().get_logged_model(request).await?.into_inner().try_into()
    }

    // -- Workers -----------------------------------------------------------------------

    /// Opens a worker's stream: `outgoing` goes to the scheduler, its messages come back.
    pub async fn attach_worker(
        &self,
        outgoing: impl Stream<Item = WorkerMessage> + Send + 'static,
    ) -> ApiResult<BoxStream<ApiResult<SchedulerMessage>>> {
        let outgoing = outgoing.map(pb::WorkerMessage::from);
        let stream = self.workers.clone().attach(outgoing).await?.into_inner();
        Ok(Box::pin(
            stream.map(|message| {
                message.map_err(ApiError::from).and_then(SchedulerMessage::try_from)
            }),
        ))
    }
}

fn version_request(name: &str, version: VersionRef) -> pb::ModelVersionRequest {
    use pb::model_version_request::Which;
    let which = match version {
        VersionRef::Number(number) => Which::Version(number),
        VersionRef::Alias(alias) => Which::Alias(alias),
    };
    pb::ModelVersionRequest { name: name.to_string(), which: Some(which) }
}

#[cfg(test)]
mod tests {
    use super::normalize_address;

    #[test]
    fn addresses_accept_host_port_and_http() {
        assert_eq!(normalize_address("127.0.0.1:7070").expect("valid"), "http://127.0.0.1:7070");
        assert_eq!(normalize_address("http://sched:7070/").expect("valid"), "http://sched:7070");
        assert_eq!(normalize_address("[::1]:7070").expect("valid"), "http://[::1]:7070");
        for bad in ["", "sched", "sched:", "sched:notaport", "ftp://sched:1", ":7070"] {
            let error = normalize_address(bad).expect_err(bad);
            assert!(error.to_string().contains("invalid scheduler address"), "{error}");
        }
    }
}
