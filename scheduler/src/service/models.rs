//! Models as every face serves them: logged models and the registry. Single records are the
//! store's (`Scheduler::models`); searches, pages and a run's model-linked metrics are here.

use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, Metric, Page, Param, RunId, Tag};
use drover_proto::models::{
    LoggedModel, LoggedModelView, ModelId, ModelMetric, ModelVersion, RegisteredModelView,
    VersionRef,
};
use drover_proto::service::Models;

use super::Scheduler;
use super::paging::{self, PageLimits};
use crate::Store;
use crate::search::{
    DatasetRef, LoggedModelOrder, LoggedModelSearch, ModelVersionSearch, RegisteredModelSearch,
};

/// MLflow's page sizes: registered models 100 (at most 1,000), versions up to 200,000,
/// logged models 50 (drover caps them at 10,000 a page).
pub const REGISTERED_MODELS: PageLimits = PageLimits { default: 100, max: 1_000 };
pub const MODEL_VERSIONS: PageLimits = PageLimits { default: 10_000, max: 200_000 };
pub const LOGGED_MODELS: PageLimits = PageLimits { default: 50, max: 10_000 };

/// Longest dataset name or digest a linked metric may carry.
const MAX_DATASET_FIELD_LEN: usize = 500;

/// A search request: filter, orderings, page size and token.
pub struct ModelQuery {
    pub filter: String,
    pub order_by: Vec<String>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
}

/// A logged model search request.
pub struct LoggedModelQuery {
    pub experiment_ids: Vec<ExperimentId>,
    pub filter: String,
    pub datasets: Vec<DatasetRef>,
    pub order_by: Vec<LoggedModelOrder>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
}

/// A metric point as a run logs it, with the model and dataset it is linked to, if any.
pub struct LinkedMetric {
    pub metric: Metric,
    pub model_id: Option<ModelId>,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

impl Scheduler {
    /// The store's model records: logged models, registered models and versions.
    pub fn models(&self) -> &Store {
        &self.store
    }

    /// Registered models matching a query, each with its newest version per stage.
    pub async fn find_registered_models(
        &self,
        query: ModelQuery,
    ) -> Result<Page<RegisteredModelView>, ApiError> {
        let search = RegisteredModelSearch::parse(&query.filter, &query.order_by)?;
        let limit = REGISTERED_MODELS.check(query.max_results)?;
        let offset = paging::offset(query.page_token.as_deref())?;
        let store = self.store.clone();
        let models = self
            .run_heavy(move || {
                let mut models = store.registered_models()?;
                models.retain(|model| search.matches(model));
                search.sort(&mut models);
                Ok::<_, ApiError>(models)
            })
            .await?;
        let page = paging::page(&models, offset, limit, Clone::clone);
        let mut items = Vec::with_capacity(page.items.len());
        for model in page.items {
            // A model deleted since the scan is left out rather than failing the page.
            match self.store.latest_versions(&model.name, &[]) {
                Ok(latest_versions) => items.push(RegisteredModelView { model, latest_versions }),
                Err(ApiError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Page { items, next_page_token: page.next_page_token })
    }

    pub async fn search_model_versions(
        &self,
        query: ModelQuery,
    ) -> Result<Page<ModelVersion>, ApiError> {
        let search = ModelVersionSearch::parse(&query.filter, &query.order_by)?;
        let limit = MODEL_VERSIONS.check(query.max_results)?;
        let offset = paging::offset(query.page_token.as_deref())?;
        let store = self.store.clone();
        let versions = self
            .run_heavy(move || {
                let mut versions = match search.exact_name() {
                    Some(name) if drover_proto::models::validate_model_name(name).is_ok() => {
                        store.model_versions(Some(name))?
                    }
                    _ => store.model_versions(None)?,
                };
                versions.retain(|version| search.matches(version));
                search.sort(&mut versions);
                Ok::<_, ApiError>(versions)
            })
            .await?;
        Ok(paging::page(&versions, offset, limit, Clone::clone))
    }

    pub async fn search_logged_models(
        &self,
        query: LoggedModelQuery,
    ) -> Result<Page<(LoggedModel, Vec<ModelMetric>)>, ApiError> {
        if query.experiment_ids.is_empty() {
            return Err(ApiError::InvalidArgument(
                "experiment_ids is required: name the experiments to search".to_string(),
            ));
        }
        let search = LoggedModelSearch::parse(&query.filter, query.datasets, query.order_by)?;
        let limit = LOGGED_MODELS.check(query.max_results)?;
        let offset = paging::offset(query.page_token.as_deref())?;
        let store = self.store.clone();
        // Metrics are read for every model only when the search looks at them; otherwise only
        // for the page's models.
        let reads_metrics = search.reads_metrics();
        let reader = store.clone();
        let models = self
            .run_heavy(move || {
                let mut models = Vec::new();
                for model in reader.logged_models(&query.experiment_ids)? {
                    let metrics = if reads_metrics {
                        reader.logged_model_metrics(&model.model_id)?
                    } else {
                        Vec::new()
                    };
                    if search.matches(&model, &metrics) {
                        models.push((model, metrics));
                    }
                }
                search.sort(&mut models);
                Ok::<_, ApiError>(models)
            })
            .await?;
        let mut page = paging::page(&models, offset, limit, Clone::clone);
        if !reads_metrics {
            for (model, metrics) in &mut page.items {
                *metrics = store.logged_model_metrics(&model.model_id)?;
            }
        }
        Ok(page)
    }

    /// Logs a batch whose metrics may be linked to logged models: a model that does not
    /// exist refuses the whole batch before anything is written.
    pub async fn log_linked_batch(
        &self,
        run_id: RunId,
        metrics: Vec<LinkedMetric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<(), ApiError> {
        self.store
            .check_models_of_run(run_id, metrics.iter().filter_map(|m| m.model_id.as_ref()))?;
        for linked in &metrics {
            for (what, value) in
                [("dataset name", &linked.dataset_name), ("dataset digest", &linked.dataset_digest)]
            {
                if let Some(value) = value {
                    drover_proto::validate::name(what, value, MAX_DATASET_FIELD_LEN)?;
                }
            }
        }
        let links: Vec<(ModelId, ModelMetric)> = metrics
            .iter()
            .filter_map(|linked| {
                let id = linked.model_id.clone()?;
                Some((
                    id,
                    ModelMetric {
                        key: linked.metric.key.clone(),
                        value: linked.metric.value,
                        timestamp_ms: linked.metric.timestamp_ms,
                        step: linked.metric.step,
                        run_id,
                        dataset_name: linked.dataset_name.clone(),
                        dataset_digest: linked.dataset_digest.clone(),
                    },
                ))
            })
            .collect();
        let metrics = metrics.into_iter().map(|linked| linked.metric).collect();
        self.log_batch(run_id, metrics, params, tags).await?;
        self.store.log_model_metrics(links).await
    }
}

impl Scheduler {
    fn version(&self, name: &str, version: &VersionRef) -> Result<ModelVersion, ApiError> {
        match version {
            VersionRef::Number(number) => self.store.model_version(name, *number),
            VersionRef::Alias(alias) => self.store.version_by_alias(name, alias),
        }
    }

    fn registered_model_view(&self, name: &str) -> Result<RegisteredModelView, ApiError> {
        Ok(RegisteredModelView {
            model: self.store.registered_model(name)?,
            latest_versions: self.store.latest_versions(name, &[])?,
        })
    }
}

impl Models for Scheduler {
    async fn search_registered_models(
        &self,
        filter: String,
        max_results: Option<i64>,
        page_token: Option<String>,
    ) -> Result<Page<RegisteredModelView>, ApiError> {
        let query = ModelQuery { filter, order_by: Vec::new(), max_results, page_token };
        self.find_registered_models(query).await
    }

    async fn get_registered_model(&self, name: String) -> Result<RegisteredModelView, ApiError> {
        self.registered_model_view(&name)
    }

    async fn get_model_version(
        &self,
        name: String,
        version: VersionRef,
    ) -> Result<ModelVersion, ApiError> {
        self.version(&name, &version)
    }

    async fn list_model_versions(&self, name: String) -> Result<Vec<ModelVersion>, ApiError> {
        self.store.registered_model(&name)?;
        let mut versions = self.store.model_versions(Some(&name))?;
        versions.reverse();
        Ok(versions)
    }

    async fn set_alias(
        &self,
        name: String,
        alias: String,
        version: u64,
    ) -> Result<RegisteredModelView, ApiError> {
        self.store.set_alias(&name, &alias, version).await?;
        self.registered_model_view(&name)
    }

    async fn delete_alias(
        &self,
        name: String,
        alias: String,
    ) -> Result<RegisteredModelView, ApiError> {
        let model = self.store.registered_model(&name)?;
        if !model.aliases.contains_key(&alias) {
            return Err(ApiError::NotFound(format!(
                "registered model {name} has no alias '{}'",
                alias.escape_default()
            )));
        }
        self.store.delete_alias(&name, &alias).await?;
        self.registered_model_view(&name)
    }

    async fn delete_registered_model(&self, name: String) -> Result<(), ApiError> {
        self.store.delete_registered_model(&name).await
    }

    async fn delete_model_version(
        &self,
        name: String,
        version: VersionRef,
    ) -> Result<(), ApiError> {
        let version = self.version(&name, &version)?;
        self.store.delete_model_version(&name, version.version).await
    }

    async fn get_logged_model(&self, model_id: ModelId) -> Result<LoggedModelView, ApiError> {
        let model = self.store.logged_model(&model_id, true)?;
        let metrics = self.store.logged_model_metrics(&model_id)?;
        Ok(LoggedModelView { model, metrics })
    }
}
