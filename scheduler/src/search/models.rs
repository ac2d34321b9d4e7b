//! MLflow's searches over models: registered models (by name and tags), model versions (by
//! name, run, source, number and tags) and logged models (by attributes, params, tags and
//! linked metrics), each with clauses joined by AND and MLflow's orderings.
//!
//! A tag clause with `!=` or `NOT IN` also matches an entity without the tag: the official
//! client adds ``tag.`mlflow.prompt.is_prompt` != 'true'`` to every registered model search
//! and means "everything that is not a prompt".

use std::cmp::Ordering;

use drover_proto::ApiError;
use drover_proto::domain::Tag;
use drover_proto::models::{LoggedModel, ModelMetric, ModelVersion, RegisteredModel};

use super::clause::{Comparison, TextCondition};
use super::parser::{
    check_clause_count, check_filter_size, check_order_by_size, split_clauses, tokenize_clause,
};

fn invalid(why: String) -> ApiError {
    ApiError::InvalidArgument(format!("invalid filter: {why}"))
}

/// Whether a tag comparison holds; see the module's note on a missing tag.
fn tag_matches(tags: &[Tag], key: &str, comparison: &Comparison) -> bool {
    match tags.iter().find(|tag| tag.key == key) {
        Some(tag) => comparison.matches_text(&tag.value),
        None => matches!(
            comparison,
            Comparison::Text(TextCondition::NotEqual(_) | TextCondition::NotIn(_))
        ),
    }
}

/// Reads clauses into fields with `field`, which names the entity's fields and says which
/// are numeric.
fn parse_fields<F>(
    text: &str,
    field: impl Fn(Option<&str>, &str) -> Result<(F, bool), ApiError>,
) -> Result<Vec<(F, Comparison)>, ApiError> {
    check_filter_size(text)?;
    let split = split_clauses(text)?;
    check_clause_count(split.len())?;
    let mut clauses = Vec::new();
    for clause in split {
        let (entity, key, comparison) = tokenize_clause(&clause)?;
        let entity = entity.map(|entity| entity.to_ascii_lowercase());
        let entity = match entity.as_deref() {
            Some("attribute" | "attributes" | "attr") => None,
            Some("tag" | "tags") => Some("tags"),
            Some("param" | "params") => Some("params"),
            Some("metric" | "metrics") => Some("metrics"),
            Some(other) => return Err(invalid(format!("unknown entity '{other}' in '{clause}'"))),
            None => None,
        };
        let (field, numeric) = field(entity, &key)?;
        if numeric != comparison.is_numeric() {
            let expected = if numeric { "a number" } else { "a quoted string" };
            return Err(invalid(format!("expected {expected} in '{clause}'")));
        }
        clauses.push((field, comparison));
    }
    Ok(clauses)
}

/// One `order_by` clause: a field and ASC (the default) or DESC.
fn order_clause(clause: &str) -> Result<(String, bool), ApiError> {
    let mut words = clause.split_whitespace();
    let field = words.next().unwrap_or("").to_string();
    let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(other) => {
            return Err(ApiError::InvalidArgument(format!(
                "invalid order_by clause '{clause}': '{other}' is not ASC or DESC"
            )));
        }
    };
    if field.is_empty() || words.next().is_some() {
        return Err(ApiError::InvalidArgument(format!("invalid order_by clause '{clause}'")));
    }
    Ok((field, descending))
}

/// Reads `order_by` clauses over the fields `fields` names (each name with the field it
/// orders by), refusing a field named twice; `hint` lists them in the error.
fn parse_order(
    order_by: &[String],
    fields: &[(&str, &'static str)],
    hint: &str,
) -> Result<Vec<(&'static str, bool)>, ApiError> {
    check_order_by_size(order_by)?;
    let mut order = Vec::new();
    for clause in order_by {
        let (name, descending) = order_clause(clause)?;
        let field = fields.iter().find(|(known, _)| *known == name).map(|(_, field)| *field);
        let field = field.ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "invalid order_by clause '{clause}': order by {hint}"
            ))
        })?;
        if order.iter().any(|(earlier, _)| *earlier == field) {
            return Err(ApiError::InvalidArgument(format!("order_by names '{field}' twice")));
        }
        order.push((field, descending));
    }
    Ok(order)
}

fn directed(order: Ordering, descending: bool) -> Ordering {
    if descending { order.reverse() } else { order }
}

enum ModelField {
    Name,
    Tag(String),
}

/// A registered model search.
pub struct RegisteredModelSearch {
    clauses: Vec<(ModelField, Comparison)>,
    order: Vec<(&'static str, bool)>,
}

impl RegisteredModelSearch {
    pub fn parse(filter: &str, order_by: &[String]) -> Result<RegisteredModelSearch, ApiError> {
        let clauses = parse_fields(filter, |entity, key| match (entity, key) {
            (None, "name") => Ok((ModelField::Name, false)),
            (Some("tags"), key) => Ok((ModelField::Tag(key.to_string()), false)),
            (_, other) => Err(invalid(format!(
                "registered models are searched by name and tags, not '{other}'"
            ))),
        })?;
        let order = parse_order(
            order_by,
            &[
                ("name", "name"),
                ("timestamp", "last_updated_timestamp"),
                ("last_updated_timestamp", "last_updated_timestamp"),
                ("creation_timestamp", "creation_timestamp"),
            ],
            "name, creation_timestamp or last_updated_timestamp",
        )?;
        Ok(RegisteredModelSearch { clauses, order })
    }

    pub fn matches(&self, model: &RegisteredModel) -> bool {
        self.clauses.iter().all(|(field, comparison)| match field {
            ModelField::Name => comparison.matches_text(&model.name),
            ModelField::Tag(key) => tag_matches(&model.tags, key, comparison),
        })
    }

    /// Orders as asked, then by name.
    pub fn sort(&self, models: &mut [RegisteredModel]) {
        models.sort_by(|a, b| {
            self.order
                .iter()
                .map(|(field, descending)| {
                    let order = match *field {
                        "name" => a.name.cmp(&b.name),
                        "creation_timestamp" => a.creation_time_ms.cmp(&b.creation_time_ms),
                        _ => a.last_updated_time_ms.cmp(&b.last_updated_time_ms),
                    };
                    directed(order, *descending)
                })
                .find(|order| order.is_ne())
                .unwrap_or_else(|| a.name.cmp(&b.name))
        });
    }
}

enum VersionField {
    Name,
    RunId,
    Source,
    Number,
    Tag(String),
}

/// A model version search.
pub struct ModelVersionSearch {
    clauses: Vec<(VersionField, Comparison)>,
    order: Vec<(&'static str, bool)>,
}

impl ModelVersionSearch {
    pub fn parse(filter: &str, order_by: &[String]) -> Result<ModelVersionSearch, ApiError> {
        let clauses = parse_fields(filter, |entity, key| match (entity, key) {
            (None, "name") => Ok((VersionField::Name, false)),
            (None, "run_id") => Ok((VersionField::RunId, false)),
            (None, "source_path") => Ok((VersionField::Source, false)),
            (None, "version_number") => Ok((VersionField::Number, true)),
            (Some("tags"), key) => Ok((VersionField::Tag(key.to_string()), false)),
            (_, other) => Err(invalid(format!(
                "model versions are searched by name, run_id, source_path, version_number and tags, not '{other}'"
            ))),
        })?;
        let mut order = parse_order(
            order_by,
            &[
                ("name", "name"),
                ("version_number", "version_number"),
                ("creation_timestamp", "creation_timestamp"),
                ("timestamp", "last_updated_timestamp"),
                ("last_updated_timestamp", "last_updated_timestamp"),
            ],
            "name, version_number, creation_timestamp or last_updated_timestamp",
        )?;
        if order.is_empty() {
            order.push(("last_updated_timestamp", true));
        }
        Ok(ModelVersionSearch { clauses, order })
    }

    /// The model name an exact `name = '...'` clause pins, to read only that model's versions.
    pub fn exact_name(&self) -> Option<&str> {
        self.clauses.iter().find_map(|(field, comparison)| match (field, comparison) {
            (VersionField::Name, Comparison::Text(TextCondition::Equal(name))) => {
                Some(name.as_str())
            }
            _ => None,
        })
    }

    pub fn matches(&self, version: &ModelVersion) -> bool {
        self.clauses.iter().all(|(field, comparison)| match field {
            VersionField::Name => comparison.matches_text(&version.name),
            VersionField::RunId => comparison
                .matches_text(&version.run_id.map(|run| run.to_string()).unwrap_or_default()),
            VersionField::Source => comparison.matches_text(&version.source),
            VersionField::Number => comparison.matches_number(version.version as f64),
            VersionField::Tag(key) => tag_matches(&version.tags, key, comparison),
        })
    }

    /// Orders as asked, then by name, then newest version first.
    pub fn sort(&self, versions: &mut [ModelVersion]) {
        versions.sort_by(|a, b| {
            self.order
                .iter()
                .map(|(field, descending)| {
                    let order = match *field {
                        "name" => a.name.cmp(&b.name),
                        "version_number" => a.version.cmp(&b.version),
                        "creation_timestamp" => a.creation_time_ms.cmp(&b.creation_time_ms),
                        _ => a.last_updated_time_ms.cmp(&b.last_updated_time_ms),
                    };
                    directed(order, *descending)
                })
                .find(|order| order.is_ne())
                .unwrap_or_else(|| a.name.cmp(&b.name).then(b.version.cmp(&a.version)))
        });
    }
}

/// A dataset a logged model search limits metrics to: a name, and a digest if given.
#[derive(Clone, Debug, Default)]
pub struct DatasetRef {
    pub name: String,
    pub digest: Option<String>,
}

impl DatasetRef {
    fn holds(&self, metric: &ModelMetric) -> bool {
        metric.dataset_name.as_deref() == Some(self.name.as_str())
            && self
                .digest
                .as_ref()
                .is_none_or(|digest| metric.dataset_digest.as_ref() == Some(digest))
    }
}

/// One ordering of a logged model search.
#[derive(Clone, Debug, Default)]
pub struct LoggedModelOrder {
    pub field: String,
    pub ascending: bool,
    pub dataset: Option<DatasetRef>,
}

enum LoggedField {
    Text(&'static str),
    Time(&'static str),
    Param(String),
    Tag(String),
    Metric(String),
}

/// A logged model's attribute by its (possibly aliased) name in a filter or ordering.
fn logged_attribute(name: &str) -> Option<LoggedField> {
    Some(match name {
        "name" => LoggedField::Text("name"),
        "model_id" => LoggedField::Text("model_id"),
        "model_type" => LoggedField::Text("model_type"),
        "source_run_id" => LoggedField::Text("source_run_id"),
        "experiment_id" => LoggedField::Text("experiment_id"),
        "status" => LoggedField::Text("status"),
        "status_message" => LoggedField::Text("status_message"),
        "artifact_location" | "artifact_uri" => LoggedField::Text("artifact_uri"),
        "creation_timestamp_ms" | "creation_timestamp" | "creation_time" => {
            LoggedField::Time("creation")
        }
        "last_updated_timestamp_ms" | "last_updated_timestamp" => LoggedField::Time("updated"),
        _ => return None,
    })
}

fn logged_text(model: &LoggedModel, field: &str) -> String {
    match field {
        "name" => model.name.clone(),
        "model_id" => model.model_id.to_string(),
        "model_type" => model.model_type.clone(),
        "source_run_id" => model.source_run_id.map(|run| run.to_string()).unwrap_or_default(),
        "experiment_id" => model.experiment_id.to_string(),
        "status" => model.status.as_str().to_string(),
        "status_message" => model.status_message.clone().unwrap_or_default(),
        _ => model.artifact_uri.clone(),
    }
}

fn logged_time(model: &LoggedModel, field: &str) -> i64 {
    if field == "creation" { model.creation_time_ms } else { model.last_updated_time_ms }
}

/// The latest value of `key` among `metrics` (by timestamp, then step) within `dataset`.
fn latest_metric(metrics: &[ModelMetric], key: &str, dataset: Option<&DatasetRef>) -> Option<f64> {
    metrics
        .iter()
        .filter(|metric| metric.key == key && dataset.is_none_or(|dataset| dataset.holds(metric)))
        .max_by_key(|metric| (metric.timestamp_ms, metric.step))
        .map(|metric| metric.value)
}

/// A logged model search: its filter, its datasets and its orderings.
pub struct LoggedModelSearch {
    clauses: Vec<(LoggedField, Comparison)>,
    datasets: Vec<DatasetRef>,
    order: Vec<(LoggedField, bool, Option<DatasetRef>)>,
}

impl LoggedModelSearch {
    pub fn parse(
        filter: &str,
        datasets: Vec<DatasetRef>,
        order_by: Vec<LoggedModelOrder>,
    ) -> Result<LoggedModelSearch, ApiError> {
        let clauses = parse_fields(filter, |entity, key| match entity {
            None => match logged_attribute(key) {
                Some(field @ LoggedField::Time(_)) => Ok((field, true)),
                Some(field) => Ok((field, false)),
                None => Err(invalid(format!("logged models have no attribute '{key}'"))),
            },
            Some("params") => Ok((LoggedField::Param(key.to_string()), false)),
            Some("tags") => Ok((LoggedField::Tag(key.to_string()), false)),
            _ => Ok((LoggedField::Metric(key.to_string()), true)),
        })?;
        let mut order = Vec::new();
        for clause in order_by {
            let field = match clause.field.strip_prefix("metrics.") {
                Some(key) if !key.is_empty() => LoggedField::Metric(key.to_string()),
                _ => logged_attribute(&clause.field).ok_or_else(|| {
                    ApiError::InvalidArgument(format!(
                        "invalid order by field name: {}",
                        clause.field.escape_default()
                    ))
                })?,
            };
            order.push((field, clause.ascending, clause.dataset));
        }
        Ok(LoggedModelSearch { clauses, datasets, order })
    }

    /// Whether matching or ordering looks at the models' linked metrics.
    pub fn reads_metrics(&self) -> bool {
        !self.datasets.is_empty()
            || self.clauses.iter().any(|(field, _)| matches!(field, LoggedField::Metric(_)))
            || self.order.iter().any(|(field, _, _)| matches!(field, LoggedField::Metric(_)))
    }

    /// Whether the model matches, given its linked metrics.
    pub fn matches(&self, model: &LoggedModel, metrics: &[ModelMetric]) -> bool {
        let in_datasets = |metric: &ModelMetric| {
            self.datasets.is_empty() || self.datasets.iter().any(|dataset| dataset.holds(metric))
        };
        if !self.datasets.is_empty() && !metrics.iter().any(in_datasets) {
            return false;
        }
        self.clauses.iter().all(|(field, comparison)| match field {
            LoggedField::Text(name) => comparison.matches_text(&logged_text(model, name)),
            LoggedField::Time(name) => comparison.matches_number(logged_time(model, name) as f64),
            LoggedField::Param(key) => model
                .params
                .iter()
                .find(|param| &param.key == key)
                .is_some_and(|param| comparison.matches_text(&param.value)),
            LoggedField::Tag(key) => tag_matches(&model.tags, key, comparison),
            LoggedField::Metric(key) => metrics.iter().any(|metric| {
                &metric.key == key && in_datasets(metric) && comparison.matches_number(metric.value)
            }),
        })
    }

    /// Orders as asked (a missing metric last), then newest first, then by id.
    pub fn sort(&self, models: &mut [(LoggedModel, Vec<ModelMetric>)]) {
        models.sort_by(|(a, a_metrics), (b, b_metrics)| {
            self.order
                .iter()
                .map(|(field, ascending, dataset)| {
                    match field {
                        LoggedField::Metric(key) => {
                            let a = latest_metric(a_metrics, key, dataset.as_ref());
                            let b = latest_metric(b_metrics, key, dataset.as_ref());
                            match (a, b) {
                                (Some(a), Some(b)) => directed(a.total_cmp(&b), !ascending),
                                (Some(_), None) => Ordering::Less,
                                (None, Some(_)) => Ordering::Greater,
                                (None, None) => Ordering::Equal,
                            }
                        }
                        LoggedField::Time(name) => {
                            directed(logged_time(a, name).cmp(&logged_time(b, name)), !ascending)
                        }
                        LoggedField::Text(name) => {
                            directed(logged_text(a, name).cmp(&logged_text(b, name)), !ascending)
                        }
                        // Orderings name attributes and metrics only.
                        LoggedField::Param(_) | LoggedField::Tag(_) => Ordering::Equal,
                    }
                })
                .find(|order| order.is_ne())
                .unwrap_or_else(|| {
                    b.creation_time_ms.cmp(&a.creation_time_ms).then(a.model_id.cmp(&b.model_id))
                })
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn model(name: &str, tags: &[(&str, &str)], updated: i64) -> RegisteredModel {
        RegisteredModel {
            name: name.to_string(),
            creation_time_ms: 0,
            last_updated_time_ms: updated,
            description: String::new(),
            tags: tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
            aliases: BTreeMap::new(),
            next_version: 1,
        }
    }

    fn names(search: &RegisteredModelSearch, models: &[RegisteredModel]) -> Vec<String> {
        let mut kept: Vec<RegisteredModel> =
            models.iter().filter(|m| search.matches(m)).cloned().collect();
        search.sort(&mut kept);
        kept.into_iter().map(|m| m.name).collect()
    }

    #[test]
    fn registered_model_filters_and_orders() {
        let models = [
            model("wine-b", &[("team", "a")], 3),
            model("wine-a", &[("team", "b")], 1),
            model("prompt", &[("mlflow.prompt.is_prompt", "true")], 2),
        ];
        let parse = |filter: &str, order: &[&str]| {
            let order: Vec<String> = order.iter().map(|o| o.to_string()).collect();
            RegisteredModelSearch::parse(filter, &order).expect(filter)
        };
        // What the official client sends: models without the tag are not prompts.
        let client = parse("tag.`mlflow.prompt.is_prompt` != 'true'", &[]);
        assert_eq!(names(&client, &models), ["wine-a", "wine-b"]);
        let like = parse("name LIKE 'wine%' AND tags.team = 'a'", &[]);
        assert_eq!(names(&like, &models), ["wine-b"]);
        let newest = parse("", &["last_updated_timestamp DESC"]);
        assert_eq!(names(&newest, &models), ["wine-b", "prompt", "wine-a"]);
        for (filter, order) in [
            ("description = 'x'", &[][..]),
            ("name = 'a' OR name = 'b'", &[]),
            ("name > 3", &[]),
            ("", &["bogus"]),
            ("", &["name", "name DESC"]),
            ("", &["name SIDEWAYS"]),
        ] {
            let order: Vec<String> = order.iter().map(|o: &&str| o.to_string()).collect();
            assert!(RegisteredModelSearch::parse(filter, &order).is_err(), "{filter} {order:?}");
        }
    }

    #[test]
    fn version_searches_read_numbers_and_pin_a_name() {
        let search =
            ModelVersionSearch::parse("name = 'wine' AND version_number >= 2", &[]).expect("valid");
        assert_eq!(search.exact_name(), Some("wine"));
        assert!(ModelVersionSearch::parse("version_number = '2'", &[]).is_err());
        assert!(ModelVersionSearch::parse("run_id > 3", &[]).is_err());
    }

    #[test]
    fn logged_model_fields_and_orderings_are_checked() {
        assert!(
            LoggedModelSearch::parse("metrics.acc > 0.5 AND params.C = '1'", vec![], vec![])
                .is_ok()
        );
        assert!(
            LoggedModelSearch::parse("creation_time > 5 AND name = 'm'", vec![], vec![]).is_ok()
        );
        assert!(LoggedModelSearch::parse("bogus = 'x'", vec![], vec![]).is_err());
        assert!(LoggedModelSearch::parse("metrics.acc = 'high'", vec![], vec![]).is_err());
        let order =
            |field: &str| LoggedModelOrder { field: field.into(), ascending: true, dataset: None };
        assert!(LoggedModelSearch::parse("", vec![], vec![order("metrics.acc")]).is_ok());
        assert!(LoggedModelSearch::parse("", vec![], vec![order("bogus")]).is_err());
    }
}
