//! The sweep vocabulary: search method, objective, early stopping, parameters, the checked
//! `SweepSpec` the scheduler drives, and the command line's `SweepArgs`.

use serde::{Deserialize, Serialize};

use super::domain::{Domain, MAX_GRID, format_number};

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
