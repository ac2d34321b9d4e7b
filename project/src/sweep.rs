//! Sweep definitions: what `drover sweep` takes from `-P` values, flags and a `sweep.yaml` in
//! the keys W&B users know, merged (flags win) and checked against the entry point's declared
//! parameters before anything is queued.
//!
//! ```text
//! -P k=v                   fixed
//! -P k=a,b,c               one of the listed values
//! -P k=uniform(lo,hi)      a float in [lo, hi]
//! -P k=loguniform(lo,hi)   a float in [lo, hi], uniform in log space
//! -P k=int(lo,hi)          an integer in [lo, hi]
//! -P k=qstep(lo,hi,q)      lo, lo+q, lo+2q, ... up to hi
//! ```

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::ProjectError;
use crate::mlproject::{MlProject, ParamType};
use crate::params::PathCheck;

/// Largest grid drover enumerates.
pub const MAX_GRID: u64 = 1_000_000;
pub const DEFAULT_ETA: u32 = 3;
pub const DEFAULT_MIN_STEP: i64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Grid,
    Random,
    Tpe,
}

impl Method {
    pub fn parse(text: &str) -> Option<Method> {
        match text.trim().to_ascii_lowercase().as_str() {
            "grid" => Some(Method::Grid),
            "random" => Some(Method::Random),
            "tpe" | "bayes" => Some(Method::Tpe),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Tpe => "tpe",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    Minimize,
    Maximize,
}

impl Goal {
    pub fn parse(text: &str) -> Option<Goal> {
        match text.trim().to_ascii_lowercase().as_str() {
            "min" | "minimize" => Some(Goal::Minimize),
            "max" | "maximize" => Some(Goal::Maximize),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Minimize => "min",
            Goal::Maximize => "max",
        }
    }

    /// Whether `a` is better than `b` under this goal.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Minimize => a < b,
            Goal::Maximize => a > b,
        }
    }
}

/// The metric a sweep optimizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub metric: String,
    pub goal: Goal,
}

/// Where one parameter's values come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    Fixed(String),
    Values(Vec<String>),
    Uniform { low: f64, high: f64 },
    LogUniform { low: f64, high: f64 },
    Int { low: i64, high: i64 },
    QUniform { low: f64, high: f64, q: f64 },
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Fixed(value) => write!(f, "{value}"),
            Domain::Values(values) => write!(f, "{}", values.join(",")),
            Domain::Uniform { low, high } => write!(f, "uniform({low},{high})"),
            Domain::LogUniform { low, high } => write!(f, "loguniform({low},{high})"),
            Domain::Int { low, high } => write!(f, "int({low},{high})"),
            Domain::QUniform { low, high, q } => write!(f, "qstep({low},{high},{q})"),
        }
    }
}

impl Domain {
    /// Parses a `-P` value: a distribution, a comma-separated list, or a fixed value.
    pub fn parse(name: &str, text: &str) -> Result<Domain, ProjectError> {
        let trimmed = text.trim();
        let call = ["uniform", "loguniform", "int", "qstep"].into_iter().find_map(|function| {
            let rest = trimmed.strip_prefix(function)?.trim_start();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            Some((function, inner))
        });
        let Some((function, inner)) = call else {
            if trimmed.contains(',') {
                let values: Vec<String> =
                    trimmed.split(',').map(|value| value.trim().to_string()).collect();
                if values.iter().any(String::is_empty) {
                    return Err(param_error(name, format!("the list '{text}' has an empty value")));
                }
                return Ok(Domain::Values(values));
            }
            return Ok(Domain::Fixed(text.to_string()));
        };
        let arguments: Vec<&str> = inner.split(',').map(str::trim).collect();
        let wanted = if function == "qstep" { 3 } else { 2 };
        if arguments.len() != wanted {
            return Err(param_error(
                name,
                format!("{function}(...) takes {wanted} numbers, got '{trimmed}'"),
            ));
        }
        let number = |text: &str| -> Result<f64, ProjectError> {
            text.parse::<f64>().ok().filter(|value| value.is_finite()).ok_or_else(|| {
                param_error(name, format!("'{text}' in '{trimmed}' is not a finite number"))
            })
        };
        let domain = match function {
            "uniform" => {
                Domain::Uniform { low: number(arguments[0])?, high: number(arguments[1])? }
            }
            "loguniform" => {
                Domain::LogUniform { low: number(arguments[0])?, high: number(arguments[1])? }
            }
            "int" => {
                let integer = |text: &str| {
                    text.parse::<i64>().map_err(|_| {
                        param_error(name, format!("'{text}' in '{trimmed}' is not an integer"))
                    })
                };
                Domain::Int { low: integer(arguments[0])?, high: integer(arguments[1])? }
            }
            _ => Domain::QUniform {
                low: number(arguments[0])?,
                high: number(arguments[1])?,
                q: number(arguments[2])?,
            },
        };
        domain.check(name)?;
        Ok(domain)
    }

    /// Refuses empty or inverted ranges.
    /// Refuses empty, inverted or non-finite ranges. Shared by the CLI's parsing and the
    /// scheduler's check of a sweep arriving over the wire.
    pub fn check(&self, name: &str) -> Result<(), ProjectError> {
        let finite = match self {
            Domain::Uniform { low, high } | Domain::LogUniform { low, high } => {
                low.is_finite() && high.is_finite()
            }
            Domain::QUniform { low, high, q } => {
                low.is_finite() && high.is_finite() && q.is_finite()
            }
            Domain::Fixed(_) | Domain::Values(_) | Domain::Int { .. } => true,
        };
        if !finite {
            return Err(param_error(name, format!("{self}: the bounds must be finite numbers")));
        }
        let inverted = match self {
            Domain::Fixed(_) => false,
            Domain::Values(values) => {
                if values.is_empty() {
                    return Err(param_error(name, "the list of values is empty".to_string()));
                }
                false
            }
            Domain::Uniform { low, high } => low >= high,
            Domain::LogUniform { low, high } => {
                if *low <= 0.0 {
                    return Err(param_error(
                        name,
                        format!("{self}: a log-uniform range must be above 0"),
                    ));
                }
                low >= high
            }
            Domain::Int { low, high } => low >= high,
            Domain::QUniform { low, high, q } => {
                if *q <= 0.0 {
                    return Err(param_error(name, format!("{self}: the step q must be above 0")));
                }
                low >= high
            }
        };
        if inverted {
            return Err(param_error(
                name,
                format!("{self}: the minimum must be below the maximum"),
            ));
        }
        Ok(())
    }

    /// Every value of a discrete domain, for grid search; `None` for a continuous one.
    pub fn grid_values(&self, integer: bool) -> Option<Vec<String>> {
        match self {
            Domain::Fixed(value) => Some(vec![value.clone()]),
            Domain::Values(values) => Some(values.clone()),
            Domain::Int { low, high } => {
                let count = high.checked_sub(*low)?.checked_add(1)?;
                if count as u64 > MAX_GRID {
                    return None;
                }
                Some((*low..=*high).map(|value| value.to_string()).collect())
            }
            Domain::QUniform { low, high, q } => {
                let steps = ((high - low) / q + 1e-9).floor();
                if !(0.0..MAX_GRID as f64).contains(&steps) {
                    return None;
                }
                let mut values: Vec<String> = Vec::new();
                for k in 0..=steps as u64 {
                    let value = format_number(low + k as f64 * q, integer);
                    // Rounded to integers, neighbouring steps can meet; each value once.
                    if values.last() != Some(&value) {
                        values.push(value);
                    }
                }
                Some(values)
            }
            Domain::Uniform { .. } | Domain::LogUniform { .. } => None,
        }
    }
}

/// A number as a parameter value: integers without a fraction, floats in their shortest form
/// that reads back exactly (tidied of binary noise from q-steps).
pub fn format_number(value: f64, integer: bool) -> String {
    if integer {
        return format!("{}", value.round() as i64);
    }
    let tidy: f64 = format!("{value:.12e}").parse().unwrap_or(value);
    format!("{tidy}")
}

fn param_error(name: &str, reason: String) -> ProjectError {
    ProjectError::Param(format!("sweep parameter '{name}': {reason}"))
}

/// One swept (or fixed) parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepParameter {
    pub name: String,
    pub domain: Domain,
    /// Values are whole numbers: declared `int` in the MLproject, or an `int(lo,hi)` range.
    pub integer: bool,
}

impl SweepParameter {
    /// The parameter's first value: a fixed value, a list's first, or a range's low end.
    /// Checking a run made of first values checks what every trial shares.
    pub fn first_value(&self) -> String {
        match &self.domain {
            Domain::Fixed(value) => value.clone(),
            Domain::Values(values) => values.first().cloned().unwrap_or_default(),
            Domain::Uniform { low, .. } | Domain::LogUniform { low, .. } => {
                format_number(if self.integer { low.ceil() } else { *low }, self.integer)
            }
            Domain::Int { low, .. } => low.to_string(),
            Domain::QUniform { low, .. } => format_number(*low, self.integer),
        }
    }

    /// Refuses a whole-number parameter whose range holds no whole number.
    pub fn check_integers(&self) -> Result<(), String> {
        let range = match &self.domain {
            Domain::Uniform { low, high }
            | Domain::LogUniform { low, high }
            | Domain::QUniform { low, high, .. } => (*low, *high),
            Domain::Fixed(_) | Domain::Values(_) | Domain::Int { .. } => return Ok(()),
        };
        if self.integer && range.1.floor() < range.0.ceil() {
            return Err(format!(
                "sweep parameter '{}': {} holds no integer, and the parameter is an int",
                self.name, self.domain
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopRule {
    Median,
    Asha,
}

impl StopRule {
    pub fn parse(text: &str) -> Option<StopRule> {
        match text.trim().to_ascii_lowercase().as_str() {
            "median" => Some(StopRule::Median),
            // W&B's hyperband is asynchronous successive halving with brackets; drover runs
            // one bracket of ASHA for it.
            "asha" | "hyperband" => Some(StopRule::Asha),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StopRule::Median => "median",
            StopRule::Asha => "asha",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    pub rule: StopRule,
    /// No run is stopped before this step; ASHA's first rung.
    pub min_step: i64,
    /// ASHA's reduction factor: rungs at min_step·eta^k keep the top 1/eta.
    pub eta: u32,
}

/// A checked sweep: what the scheduler drives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub method: Method,
    pub parameters: Vec<SweepParameter>,
    pub objective: Option<Objective>,
    pub max_runs: u32,
    pub parallel: u32,
    /// Failed runs tolerated; one more ends the sweep FAILED. `None`: no limit.
    pub max_failures: Option<u32>,
    pub early_stop: Option<EarlyStop>,
    pub seed: u64,
}

impl SweepSpec {
    /// The number of grid combinations, when every parameter is discrete.
    pub fn grid_size(&self) -> Option<u64> {
        self.parameters.iter().try_fold(1u64, |size, parameter| {
            let values = parameter.domain.grid_values(parameter.integer)?;
            size.checked_mul(values.len() as u64).filter(|size| *size <= MAX_GRID)
        })
    }
}

/// What the command line says; `None` where a flag was not given.
#[derive(Clone, Debug, Default)]
pub struct SweepArgs {
    /// `-P` values, as `name`, raw text.
    pub parameters: Vec<(String, String)>,
    pub method: Option<String>,
    pub max_runs: Option<u32>,
    pub parallel: Option<u32>,
    pub metric: Option<String>,
    pub goal: Option<String>,
    pub max_failures: Option<u32>,
    pub early_stop: Option<String>,
    pub min_step: Option<i64>,
    pub eta: Option<u32>,
    pub seed: Option<u64>,
}

/// A sweep file's settings, before the command line overrides them.
#[derive(Clone, Debug, Default)]
struct FileSettings {
    name: Option<String>,
    method: Option<Method>,
    metric: Option<String>,
    goal: Option<Goal>,
    parameters: Vec<(String, Domain)>,
    run_cap: Option<u32>,
    parallel: Option<u32>,
    max_failures: Option<u32>,
    early_stop: Option<StopRule>,
    min_step: Option<i64>,
    eta: Option<u32>,
    seed: Option<u64>,
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

fn read_file(path: &Path) -> Result<FileSettings, ProjectError> {
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

/// Builds the sweep from the file (if any) and the command line, and checks it against the
/// entry point: every swept parameter declared (file entry points take any), values of the
/// declared type, no required parameter left without a value, grids only over discrete
/// domains. `default_seed` is used when neither gives one.
pub fn build_sweep(
    file: Option<&Path>,
    args: &SweepArgs,
    project: &MlProject,
    entry: &str,
    paths: &PathCheck,
    default_seed: u64,
) -> Result<SweepSpec, ProjectError> {
    let file_settings = match file {
        Some(path) => read_file(path)?,
        None => FileSettings::default(),
    };
    let mut parameters: Vec<(String, Domain)> = file_settings.parameters.clone();
    for (name, text) in &args.parameters {
        let domain = Domain::parse(name, text)?;
        match parameters.iter_mut().find(|(existing, _)| existing == name) {
            Some(existing) => existing.1 = domain,
            None => parameters.push((name.clone(), domain)),
        }
    }
    let method = match &args.method {
        Some(text) => Method::parse(text).ok_or_else(|| {
            ProjectError::Param(format!("unknown --method '{text}' (grid, random, tpe or bayes)"))
        })?,
        None => file_settings.method.unwrap_or(Method::Random),
    };
    let goal =
        match &args.goal {
            Some(text) => Some(Goal::parse(text).ok_or_else(|| {
                ProjectError::Param(format!("unknown --goal '{text}' (min or max)"))
            })?),
            None => file_settings.goal,
        };
    let metric = args.metric.clone().or(file_settings.metric);
    let objective = match (metric, goal) {
        (Some(metric), goal) => {
            if metric.trim().is_empty() {
                return Err(ProjectError::Param("--metric is empty".to_string()));
            }
            Some(Objective { metric, goal: goal.unwrap_or(Goal::Minimize) })
        }
        (None, Some(_)) => {
            return Err(ProjectError::Param("--goal needs --metric NAME".to_string()));
        }
        (None, None) => None,
    };
    let rule = match &args.early_stop {
        Some(text) => Some(StopRule::parse(text).ok_or_else(|| {
            ProjectError::Param(format!("unknown --early-stop '{text}' (median or asha)"))
        })?),
        None => file_settings.early_stop,
    };
    let min_step = args.min_step.or(file_settings.min_step).unwrap_or(DEFAULT_MIN_STEP);
    let eta = args.eta.or(file_settings.eta).unwrap_or(DEFAULT_ETA);
    if min_step < 1 {
        return Err(ProjectError::Param(format!("--min-step must be at least 1, got {min_step}")));
    }
    if eta < 2 {
        return Err(ProjectError::Param(format!("--eta must be at least 2, got {eta}")));
    }
    let early_stop = rule.map(|rule| EarlyStop { rule, min_step, eta });
    if early_stop.is_some() && objective.is_none() {
        return Err(ProjectError::Param(
            "early stopping needs the metric to watch: pass --metric NAME".to_string(),
        ));
    }
    if method == Method::Tpe && objective.is_none() {
        return Err(ProjectError::Param(
            "tpe search needs the metric to optimize: pass --metric NAME --goal min|max"
                .to_string(),
        ));
    }

    let entry_point = project.entry_points.get(entry);
    let mut checked = Vec::with_capacity(parameters.len());
    for (name, domain) in parameters {
        let kind = match entry_point {
            Some(entry_point) => {
                match entry_point.parameters.iter().find(|spec| spec.name == name) {
                    Some(spec) => spec.kind,
                    None => {
                        let declared: Vec<&str> =
                            entry_point.parameters.iter().map(|spec| spec.name.as_str()).collect();
                        return Err(ProjectError::Param(format!(
                            "sweep parameter '{name}' is not declared by entry point '{entry}' (declared: {})",
                            if declared.is_empty() {
                                "none".to_string()
                            } else {
                                declared.join(", ")
                            }
                        )));
                    }
                }
            }
            // A file entry point takes every parameter as an extra argument.
            None => ParamType::String,
        };
        let numeric = !matches!(domain, Domain::Fixed(_) | Domain::Values(_));
        if numeric && !matches!(kind, ParamType::Float | ParamType::Int | ParamType::String) {
            return Err(param_error(
                &name,
                format!("{domain} draws numbers, but the parameter is declared {kind}"),
            ));
        }
        let integer = kind == ParamType::Int || matches!(domain, Domain::Int { .. });
        if let Domain::Values(values) = &domain {
            for value in values {
                check_value(&name, kind, value)?;
            }
        }
        if let Domain::Fixed(value) = &domain {
            check_value(&name, kind, value)?;
        }
        let parameter = SweepParameter { name, domain, integer };
        parameter.check_integers().map_err(ProjectError::Param)?;
        let SweepParameter { name, domain, integer } = parameter;
        if method == Method::Grid && domain.grid_values(integer).is_none() {
            return Err(param_error(
                &name,
                format!(
                    "grid search cannot enumerate {domain}; give a list of values, int(lo,hi) or qstep(lo,hi,q)"
                ),
            ));
        }
        checked.push(SweepParameter { name, domain, integer });
    }
    if checked.iter().all(|parameter| matches!(parameter.domain, Domain::Fixed(_))) {
        return Err(ProjectError::Param(
            "nothing to sweep: give at least one parameter a list or a distribution, e.g. -P lr=loguniform(1e-4,1e-1)"
                .to_string(),
        ));
    }
    // The first value of every parameter must make a valid run (catches missing required
    // parameters and path values that do not exist).
    let sample: Vec<(String, String)> =
        checked.iter().map(|parameter| (parameter.name.clone(), parameter.first_value())).collect();
    project.invocation(entry, &sample, paths)?;

    let grid_size = {
        let spec = SweepSpec {
            method,
            parameters: checked.clone(),
            objective: None,
            max_runs: 0,
            parallel: 1,
            max_failures: None,
            early_stop: None,
            seed: 0,
        };
        spec.grid_size()
    };
    let max_runs = match (args.max_runs.or(file_settings.run_cap), method) {
        (Some(0), _) => {
            return Err(ProjectError::Param("--max-runs must be at least 1".to_string()));
        }
        (Some(n), _) => n,
        (None, Method::Grid) => match grid_size {
            Some(size) => u32::try_from(size).unwrap_or(u32::MAX),
            None => {
                return Err(ProjectError::Param(format!(
                    "the grid has more than {MAX_GRID} combinations; narrow it or pass --max-runs"
                )));
            }
        },
        (None, _) => {
            return Err(ProjectError::Param(format!(
                "{} search needs --max-runs N (or run_cap in the sweep file)",
                method.as_str()
            )));
        }
    };
    let parallel = args.parallel.or(file_settings.parallel).unwrap_or(1);
    if parallel == 0 {
        return Err(ProjectError::Param("--parallel must be at least 1".to_string()));
    }
    Ok(SweepSpec {
        method,
        parameters: checked,
        objective,
        max_runs,
        parallel,
        max_failures: args.max_failures.or(file_settings.max_failures),
        early_stop,
        seed: args.seed.or(file_settings.seed).unwrap_or(default_seed),
    })
}

fn check_value(name: &str, kind: ParamType, value: &str) -> Result<(), ProjectError> {
    let ok = match kind {
        ParamType::Float => value.trim().parse::<f64>().is_ok(),
        ParamType::Int => value.trim().parse::<i64>().is_ok(),
        ParamType::String | ParamType::Path | ParamType::Uri => true,
    };
    if ok { Ok(()) } else { Err(param_error(name, format!("'{value}' is not a valid {kind}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "\
name: sweepy
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
      layers: {type: int, default: 2}
      optimizer: {type: string, default: adam}
      data: {type: path, default: data.csv}
    command: python train.py --lr {lr}
";

    fn project() -> MlProject {
        MlProject::parse(PROJECT, "sweepy").unwrap()
    }

    fn args(parameters: &[(&str, &str)]) -> SweepArgs {
        SweepArgs {
            parameters: parameters
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            ..SweepArgs::default()
        }
    }

    fn build(args: &SweepArgs) -> Result<SweepSpec, ProjectError> {
        build_sweep(None, args, &project(), "main", &PathCheck::AsSubmitted, 7)
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(Domain::parse("a", "0.5").unwrap(), Domain::Fixed("0.5".into()));
        assert_eq!(
            Domain::parse("a", "2, 4,8").unwrap(),
            Domain::Values(vec!["2".into(), "4".into(), "8".into()])
        );
        assert_eq!(
            Domain::parse("a", "loguniform(1e-4,1e-1)").unwrap(),
            Domain::LogUniform { low: 1e-4, high: 1e-1 }
        );
        assert_eq!(Domain::parse("a", "int(1, 64)").unwrap(), Domain::Int { low: 1, high: 64 });
        assert_eq!(
            Domain::parse("a", "qstep(0,1,0.25)").unwrap(),
            Domain::QUniform { low: 0.0, high: 1.0, q: 0.25 }
        );
        for bad in [
            "uniform(1,1)",
            "uniform(2,1)",
            "loguniform(0,1)",
            "int(1.5,3)",
            "qstep(0,1,0)",
            "uniform(a,1)",
            "uniform(1)",
            "a,,b",
        ] {
            let error = Domain::parse("a", bad).expect_err(bad).to_string();
            assert!(error.contains("sweep parameter 'a'"), "{bad}: {error}");
        }
    }

    #[test]
    fn builds_and_types_parameters() {
        let mut given = args(&[("lr", "loguniform(1e-4,1e-1)"), ("layers", "uniform(1,8)")]);
        given.max_runs = Some(20);
        given.metric = Some("val_loss".into());
        let spec = build(&given).unwrap();
        assert_eq!(spec.method, Method::Random);
        assert_eq!(spec.seed, 7);
        assert!(!spec.parameters[0].integer);
        assert!(spec.parameters[1].integer, "an int parameter gets ints");
        assert_eq!(spec.objective.unwrap().goal, Goal::Minimize);
    }

    #[test]
    fn refuses_bad_sweeps_before_anything_runs() {
        let cases: Vec<(SweepArgs, &str)> = vec![
            (
                SweepArgs { method: Some("grid".into()), ..args(&[("lr", "uniform(0,1)")]) },
                "grid search cannot enumerate",
            ),
            (SweepArgs { max_runs: Some(3), ..args(&[("momentum", "0.1,0.2")]) }, "not declared"),
            (SweepArgs { max_runs: Some(3), ..args(&[("layers", "2,x")]) }, "not a valid int"),
            (args(&[("lr", "uniform(0,1)")]), "needs --max-runs"),
            (SweepArgs { max_runs: Some(3), ..args(&[("lr", "0.1")]) }, "nothing to sweep"),
            (
                SweepArgs {
                    max_runs: Some(3),
                    method: Some("tpe".into()),
                    ..args(&[("lr", "uniform(0,1)")])
                },
                "needs the metric",
            ),
            (
                SweepArgs {
                    max_runs: Some(3),
                    early_stop: Some("asha".into()),
                    ..args(&[("lr", "uniform(0,1)")])
                },
                "needs the metric",
            ),
            (SweepArgs { max_runs: Some(3), ..args(&[("data", "uniform(0,1)")]) }, "declared path"),
            (
                SweepArgs { method: Some("sideways".into()), ..args(&[("lr", "0.1,0.2")]) },
                "unknown --method",
            ),
            (
                SweepArgs { max_runs: Some(3), ..args(&[("layers", "qstep(0.1,0.9,0.2)")]) },
                "holds no integer",
            ),
            (
                SweepArgs { max_runs: Some(3), ..args(&[("layers", "uniform(1.2,1.8)")]) },
                "holds no integer",
            ),
        ];
        for (given, expected) in cases {
            let error = build(&given).expect_err(expected).to_string();
            assert!(error.contains(expected), "expected '{expected}' in: {error}");
        }
    }

    #[test]
    fn grid_defaults_to_every_combination() {
        let given = SweepArgs {
            method: Some("grid".into()),
            ..args(&[("lr", "0.1,0.2,0.3"), ("layers", "int(1,4)")])
        };
        let spec = build(&given).unwrap();
        assert_eq!(spec.max_runs, 12);
        assert_eq!(spec.grid_size(), Some(12));
        let q = Domain::QUniform { low: 0.0, high: 1.0, q: 0.1 };
        let values = q.grid_values(false).unwrap();
        assert_eq!(values.len(), 11);
        assert_eq!(values[3], "0.3");
        let rounded = Domain::QUniform { low: 0.0, high: 2.0, q: 0.5 }.grid_values(true).unwrap();
        assert_eq!(rounded, ["0", "1", "2"], "rounded steps that meet appear once");
        assert_eq!(Domain::QUniform { low: 0.0, high: 1.0, q: 1e-300 }.grid_values(false), None);
    }

    #[test]
    fn reads_a_wandb_style_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.yaml");
        std::fs::write(
            &path,
            "name: lr-search\nmethod: bayes\nmetric: {name: val_loss, goal: minimize}\nrun_cap: 30\nparallel: 4\n\
             early_terminate: {type: hyperband, min_iter: 2, eta: 2}\nparameters:\n  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}\n  \
             layers: {values: [2, 4, 8]}\n  optimizer: {value: sgd}\n",
        )
        .unwrap();
        let given = SweepArgs { parallel: Some(2), ..SweepArgs::default() };
        let spec = build_sweep(Some(&path), &given, &project(), "main", &PathCheck::AsSubmitted, 1)
            .unwrap();
        assert_eq!(spec.method, Method::Tpe);
        assert_eq!(spec.max_runs, 30);
        assert_eq!(spec.parallel, 2);
        assert_eq!(spec.early_stop, Some(EarlyStop { rule: StopRule::Asha, min_step: 2, eta: 2 }));
        assert_eq!(spec.parameters.len(), 3);
        assert_eq!(sweep_file_name(&path).unwrap().as_deref(), Some("lr-search"));

        std::fs::write(&path, "method: grid\ncolour: blue\n").unwrap();
        let error =
            build_sweep(Some(&path), &given, &project(), "main", &PathCheck::AsSubmitted, 1)
                .unwrap_err()
                .to_string();
        assert!(error.contains("colour") && error.contains("unknown key"), "{error}");
        std::fs::write(&path, "parameters:\n  lr: {distribution: uniform, min: 1, max: 0.5}\n")
            .unwrap();
        let error =
            build_sweep(Some(&path), &given, &project(), "main", &PathCheck::AsSubmitted, 1)
                .unwrap_err()
                .to_string();
        assert!(error.contains("minimum must be below the maximum"), "{error}");
    }
}
