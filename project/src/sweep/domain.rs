//! A parameter's domain: the `-P` forms parsed, printed back, checked, and enumerated for grids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ProjectError;

/// Largest grid drover enumerates.
pub const MAX_GRID: u64 = 1_000_000;

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

pub(super) fn param_error(name: &str, reason: String) -> ProjectError {
    ProjectError::Param(format!("sweep parameter '{name}': {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn qstep_grids_are_tidy_rounded_once_and_bounded() {
        let q = Domain::QUniform { low: 0.0, high: 1.0, q: 0.1 };
        let values = q.grid_values(false).unwrap();
        assert_eq!(values.len(), 11);
        assert_eq!(values[3], "0.3");
        let rounded = Domain::QUniform { low: 0.0, high: 2.0, q: 0.5 }.grid_values(true).unwrap();
        assert_eq!(rounded, ["0", "1", "2"], "rounded steps that meet appear once");
        assert_eq!(Domain::QUniform { low: 0.0, high: 1.0, q: 1e-300 }.grid_values(false), None);
    }
}
