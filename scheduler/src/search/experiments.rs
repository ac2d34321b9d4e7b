//! MLflow's experiment search: filters on the name and tags (and creation and update times),
//! clauses joined by AND, and ordering by name, id or time.

use std::cmp::Ordering;

use drover_proto::ApiError;
use drover_proto::domain::Experiment;

use super::clause::Comparison;
use super::parser::{
    check_clause_count, check_filter_size, check_order_by_size, split_clauses, tokenize_clause,
};

#[derive(Debug)]
enum Field {
    Name,
    CreationTime,
    LastUpdateTime,
    Tag(String),
}

#[derive(Debug)]
struct Clause {
    field: Field,
    comparison: Comparison,
}

/// A parsed experiment filter; empty matches everything.
#[derive(Debug, Default)]
pub struct ExperimentFilter {
    clauses: Vec<Clause>,
}

impl ExperimentFilter {
    pub fn parse(text: &str) -> Result<ExperimentFilter, ApiError> {
        check_filter_size(text)?;
        let split = split_clauses(text)?;
        check_clause_count(split.len())?;
        let mut clauses = Vec::new();
        for clause in split {
            let (entity, key, comparison) = tokenize_clause(&clause)?;
            let field = match (
                entity.as_deref().map(str::to_ascii_lowercase).as_deref(),
                key.as_str(),
            ) {
                (None | Some("attribute" | "attributes" | "attr"), "name") => Field::Name,
                (None | Some("attribute" | "attributes" | "attr"), "creation_time") => {
                    Field::CreationTime
                }
                (None | Some("attribute" | "attributes" | "attr"), "last_update_time") => {
                    Field::LastUpdateTime
                }
                (Some("tag" | "tags"), key) => Field::Tag(key.to_string()),
                (_, other) => {
                    return Err(ApiError::InvalidArgument(format!(
                        "invalid filter: experiments are searched by name, creation_time, last_update_time and tags, not '{other}'"
                    )));
                }
            };
            let numeric = matches!(field, Field::CreationTime | Field::LastUpdateTime);
            if numeric != comparison.is_numeric() {
                let expected = if numeric { "a number" } else { "a quoted string" };
                return Err(ApiError::InvalidArgument(format!(
                    "invalid filter near '{clause}': expected {expected}"
                )));
            }
            clauses.push(Clause { field, comparison });
        }
        Ok(ExperimentFilter { clauses })
    }

    pub fn matches(&self, experiment: &Experiment) -> bool {
        self.clauses.iter().all(|clause| match &clause.field {
            Field::Name => clause.comparison.matches_text(&experiment.name),
            Field::CreationTime => {
                clause.comparison.matches_number(experiment.creation_time_ms as f64)
            }
            Field::LastUpdateTime => {
                clause.comparison.matches_number(experiment.last_update_time_ms as f64)
            }
            Field::Tag(key) => experiment
                .tags
                .iter()
                .find(|tag| &tag.key == key)
                .is_some_and(|tag| clause.comparison.matches_text(&tag.value)),
        })
    }

    /// Orders by `order_by` clauses (`name`, `experiment_id`, `creation_time`,
    /// `last_update_time`, each ASC or DESC); by default newest first.
    pub fn sort(
        &self,
        experiments: &mut [Experiment],
        order_by: &[String],
    ) -> Result<(), ApiError> {
        check_order_by_size(order_by)?;
        let mut keys: Vec<(String, bool)> = Vec::new();
        for clause in order_by {
            let mut words = clause.split_whitespace();
            let field = words.next().unwrap_or("");
            let field = field
                .strip_prefix("attributes.")
                .or_else(|| field.strip_prefix("attribute."))
                .unwrap_or(field);
            let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
                None | Some("ASC") => false,
                Some("DESC") => true,
                Some(other) => {
                    return Err(ApiError::InvalidArgument(format!(
                        "invalid order_by clause '{clause}': '{other}' is not ASC or DESC"
                    )));
                }
            };
            if !matches!(field, "name" | "experiment_id" | "creation_time" | "last_update_time")
                || words.next().is_some()
            {
                return Err(ApiError::InvalidArgument(format!(
                    "invalid order_by clause '{clause}': order by name, experiment_id, creation_time or last_update_time"
                )));
            }
            if !keys.iter().any(|(earlier, _)| earlier == field) {
                keys.push((field.to_string(), descending));
            }
        }
        let compare = |a: &Experiment, b: &Experiment, field: &str| match field {
            "name" => a.name.cmp(&b.name),
            "experiment_id" => a.id.cmp(&b.id),
            "creation_time" => a.creation_time_ms.cmp(&b.creation_time_ms),
            _ => a.last_update_time_ms.cmp(&b.last_update_time_ms),
        };
        experiments.sort_by(|a, b| {
            keys.iter()
                .map(|(field, descending)| {
                    let order = compare(a, b, field);
                    if *descending { order.reverse() } else { order }
                })
                .find(|order| *order != Ordering::Equal)
                .unwrap_or_else(|| {
                    b.creation_time_ms.cmp(&a.creation_time_ms).then(b.id.cmp(&a.id))
                })
        });
        Ok(())
    }
}
