//! The W&B-style `sweep.yaml`: its keys read and checked into settings the command line overrides.

use std::path::Path;

use serde_yaml::Value;

use super::domain::Domain;
use super::spec::{Goal, Method, StopRule};
use crate::ProjectError;

/// A sweep file's settings, before the command line overrides them.
#[derive(Clone, Debug, Default)]
pub(super) struct FileSettings {
    name: Option<String>,
    pub(super) method: Option<Method>,
    pub(super) metric: Option<String>,
    pub(super) goal: Option<Goal>,
    pub(super) parameters: Vec<(String, Domain)>,
    pub(super) run_cap: Option<u32>,
    pub(super) parallel: Option<u32>,
    pub(super) max_failures: Option<u32>,
    pub(super) early_stop: Option<StopRule>,
    pub(super) min_step: Option<i64>,
    pub(super) eta: Option<u32>,
    pub(super) seed: Option<u64>,
}

/// The sweep's name from its file, if it gives one (the parent run is named after it).
pub fn sweep_file_name(path: &Path) -> Result<Option<String>, ProjectError> {
    Ok(read_file(path)?.name)
}

fn file_error(path: &Path, field: &str, reason: impl Into<String>) -> ProjectError {
    ProjectError::Invalid {
        file: path.display().to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn read_file(path: &Path) -> Result<FileSettings, ProjectError> {
    let text = std::fs::read_to_string(path).map_err(|error| ProjectError::Unreadable {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    let value: Value = serde_yaml::from_str(&text)
        .map_err(|error| file_error(path, "", format!("not valid YAML: {error}")))?;
    let Value::Mapping(top) = value else {
        return Err(file_error(path, "", "expected a mapping of sweep settings"));
    };
    let mut settings = FileSettings::default();
    for (key, value) in &top {
        let key = key.as_str().unwrap_or_default();
        match key {
            "name" => settings.name = Some(text_of(path, key, value)?),
            "description" | "program" => {
                text_of(path, key, value)?;
            }
            "method" => {
                let text = text_of(path, key, value)?;
                settings.method = Some(Method::parse(&text).ok_or_else(|| {
                    file_error(
                        path,
                        key,
                        format!("unknown method '{text}' (grid, random, tpe or bayes)"),
                    )
                })?);
            }
            "metric" => {
                let Value::Mapping(metric) = value else {
                    return Err(file_error(
                        path,
                        key,
                        "expected {name: ..., goal: minimize|maximize}",
                    ));
                };
                for (field, value) in metric {
                    let field = field.as_str().unwrap_or_default();
                    match field {
                        "name" => settings.metric = Some(text_of(path, "metric.name", value)?),
                        "goal" => {
                            let text = text_of(path, "metric.goal", value)?;
                            settings.goal = Some(Goal::parse(&text).ok_or_else(|| {
                                file_error(
                                    path,
                                    "metric.goal",
                                    format!("unknown goal '{text}' (minimize or maximize)"),
                                )
                            })?);
                        }
                        other => {
                            return Err(file_error(
                                path,
                                "metric",
                                format!("unknown key '{other}' (name, goal)"),
                            ));
                        }
                    }
                }
            }
            "parameters" => {
                let Value::Mapping(parameters) = value else {
                    return Err(file_error(path, key, "expected a mapping of parameter names"));
                };
                for (name, spec) in parameters {
                    let name = name.as_str().unwrap_or_default().to_string();
                    let domain = file_domain(path, &name, spec)?;
                    settings.parameters.push((name, domain));
                }
            }
            "run_cap" => settings.run_cap = Some(count_of(path, key, value)?),
            "parallel" => settings.parallel = Some(count_of(path, key, value)?),
            "max_failures" => settings.max_failures = Some(count_of(path, key, value)?),
            "seed" => {
                settings.seed = Some(
                    value
                        .as_u64()
                        .ok_or_else(|| file_error(path, key, "expected a non-negative integer"))?,
                )
            }
            "early_terminate" => {
                let Value::Mapping(terminate) = value else {
                    return Err(file_error(
                        path,
                        key,
                        "expected {type: median|asha|hyperband, min_iter, eta}",
                    ));
                };
                for (field, value) in terminate {
                    let field = field.as_str().unwrap_or_default();
                    let field_name = format!("early_terminate.{field}");
                    match field {
                        "type" => {
                            let text = text_of(path, &field_name, value)?;
                            settings.early_stop =
                                Some(StopRule::parse(&text).ok_or_else(|| {
                                    file_error(
                                        path,
                                        &field_name,
                                        format!(
                                            "unknown type '{text}' (median, asha or hyperband)"
                                        ),
                                    )
                                })?);
                        }
                        "min_iter" => {
                            settings.min_step =
                                Some(value.as_i64().filter(|n| *n >= 1).ok_or_else(|| {
                                    file_error(
                                        path,
                                        &field_name,
                                        "expected an integer of at least 1",
                                    )
                                })?)
                        }
                        "eta" => {
                            let eta = count_of(path, &field_name, value)?;
                            settings.eta = Some(eta);
                        }
                        other => {
                            return Err(file_error(
                                path,
                                key,
                                format!("unknown key '{other}' (type, min_iter, eta)"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(file_error(
                    path,
                    other,
                    "unknown key (known: name, description, program, method, metric, parameters, run_cap, parallel, max_failures, early_terminate, seed)",
                ));
            }
        }
    }
    Ok(settings)
}

fn text_of(path: &Path, field: &str, value: &Value) -> Result<String, ProjectError> {
    scalar_text(value).ok_or_else(|| file_error(path, field, "expected a single value"))
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn count_of(path: &Path, field: &str, value: &Value) -> Result<u32, ProjectError> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| file_error(path, field, "expected a whole number of at least 1"))
}

/// A parameter in W&B's form: `{value}`, `{values: [...]}`, or a distribution with min/max.
fn file_domain(path: &Path, name: &str, spec: &Value) -> Result<Domain, ProjectError> {
    let field = format!("parameters.{name}");
    let Value::Mapping(spec) = spec else {
        return Err(file_error(
            path,
            &field,
            "expected {value}, {values} or {distribution, min, max}",
        ));
    };
    let get = |key: &str| spec.get(Value::String(key.to_string()));
    for key in spec.keys() {
        let key = key.as_str().unwrap_or_default();
        if !matches!(key, "value" | "values" | "distribution" | "min" | "max" | "q") {
            return Err(file_error(
                path,
                &field,
                format!("unknown key '{key}' (value, values, distribution, min, max, q)"),
            ));
        }
    }
    let number = |key: &str| -> Result<f64, ProjectError> {
        get(key)
            .and_then(Value::as_f64)
            .filter(|value| value.is_finite())
            .ok_or_else(|| file_error(path, &field, format!("'{key}' must be a number")))
    };
    let integer = |key: &str| -> Result<i64, ProjectError> {
        get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| file_error(path, &field, format!("'{key}' must be an integer")))
    };
    let values = || -> Result<Vec<String>, ProjectError> {
        let Some(Value::Sequence(items)) = get("values") else {
            return Err(file_error(path, &field, "'values' must be a list"));
        };
        items
            .iter()
            .map(|item| {
                scalar_text(item)
                    .ok_or_else(|| file_error(path, &field, "each value must be a single value"))
            })
            .collect()
    };
    let distribution = match get("distribution") {
        Some(value) => Some(text_of(path, &format!("{field}.distribution"), value)?),
        None => None,
    };
    let domain = match distribution.as_deref() {
        None if get("value").is_some() => {
            Domain::Fixed(text_of(path, &field, get("value").unwrap_or(&Value::Null))?)
        }
        None | Some("categorical") if get("values").is_some() => Domain::Values(values()?),
        None if get("min").is_some() && get("max").is_some() => {
            match (get("min").and_then(Value::as_i64), get("max").and_then(Value::as_i64)) {
                (Some(low), Some(high)) => Domain::Int { low, high },
                _ => Domain::Uniform { low: number("min")?, high: number("max")? },
            }
        }
        Some("uniform") => Domain::Uniform { low: number("min")?, high: number("max")? },
        Some("log_uniform_values") => {
            Domain::LogUniform { low: number("min")?, high: number("max")? }
        }
        Some("int_uniform") => Domain::Int { low: integer("min")?, high: integer("max")? },
        Some("q_uniform") => {
            Domain::QUniform { low: number("min")?, high: number("max")?, q: number("q")? }
        }
        Some(other) => {
            return Err(file_error(
                path,
                &field,
                format!(
                    "unknown distribution '{other}' (uniform, log_uniform_values, int_uniform, q_uniform, categorical)"
                ),
            ));
        }
        None => {
            return Err(file_error(
                path,
                &field,
                "give value, values, or a distribution with min and max",
            ));
        }
    };
    domain.check(name).map_err(|error| file_error(path, &field, error.to_string()))?;
    Ok(domain)
}
