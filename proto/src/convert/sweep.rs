//! Sweeps between the wire and the domain. The wire form of a sweep definition is checked for
//! what the project crate's checks assume (known names, ordered ranges), so a hand-made
//! request cannot hand the scheduler a sweep the CLI would have refused.

use crate::convert::tracking::parse_run_id;
use crate::domain::Param;
use crate::error::ApiError;
use crate::pb;
use crate::sweep::{
    CreateSweep, Domain, EarlyStop, Goal, Method, Objective, StopRule, Sweep, SweepCounts,
    SweepParameter, SweepSpec, SweepStatus, Trial, TrialState,
};

fn invalid(reason: String) -> ApiError {
    ApiError::InvalidArgument(reason)
}

impl From<SweepParameter> for pb::SweepParameter {
    fn from(parameter: SweepParameter) -> Self {
        use pb::sweep_parameter::Domain as Wire;
        let range = |low, high, q| pb::Range { low, high, q };
        let domain = match parameter.domain {
            Domain::Fixed(value) => Wire::Fixed(value),
            Domain::Values(values) => Wire::Values(pb::Values { values }),
            Domain::Uniform { low, high } => Wire::Uniform(range(low, high, 0.0)),
            Domain::LogUniform { low, high } => Wire::LogUniform(range(low, high, 0.0)),
            Domain::Int { low, high } => Wire::IntRange(pb::IntRange { low, high }),
            Domain::QUniform { low, high, q } => Wire::QUniform(range(low, high, q)),
        };
        pb::SweepParameter {
            name: parameter.name,
            integer: parameter.integer,
            domain: Some(domain),
        }
    }
}

impl TryFrom<pb::SweepParameter> for SweepParameter {
    type Error = ApiError;

    fn try_from(parameter: pb::SweepParameter) -> Result<Self, ApiError> {
        use pb::sweep_parameter::Domain as Wire;
        let name = parameter.name;
        if name.trim().is_empty() {
            return Err(invalid("a sweep parameter needs a name".to_string()));
        }
        let domain = match parameter.domain {
            None => return Err(invalid(format!("sweep parameter '{name}' has no values"))),
            Some(Wire::Fixed(value)) => Domain::Fixed(value),
            Some(Wire::Values(values)) => Domain::Values(values.values),
            Some(Wire::Uniform(range)) => Domain::Uniform { low: range.low, high: range.high },
            Some(Wire::LogUniform(range)) => {
                Domain::LogUniform { low: range.low, high: range.high }
            }
            Some(Wire::IntRange(range)) => Domain::Int { low: range.low, high: range.high },
            Some(Wire::QUniform(range)) => {
                Domain::QUniform { low: range.low, high: range.high, q: range.q }
            }
        };
        domain.check(&name).map_err(|error| invalid(error.to_string()))?;
        let parameter = SweepParameter { name, domain, integer: parameter.integer };
        parameter.check_integers().map_err(invalid)?;
        Ok(parameter)
    }
}

impl From<SweepSpec> for pb::SweepSpec {
    fn from(spec: SweepSpec) -> Self {
        let (metric, goal) = match spec.objective {
            Some(objective) => (objective.metric, objective.goal.as_str().to_string()),
            None => (String::new(), String::new()),
        };
        let (early_stop, min_step, eta) = match spec.early_stop {
            Some(stop) => (stop.rule.as_str().to_string(), stop.min_step, stop.eta),
            None => (String::new(), 0, 0),
        };
        pb::SweepSpec {
            method: spec.method.as_str().to_string(),
            parameters: spec.parameters.into_iter().map(Into::into).collect(),
            metric,
            goal,
            max_runs: spec.max_runs,
            parallel: spec.parallel,
            max_failures: spec.max_failures,
            early_stop,
            min_step,
            eta,
            seed: spec.seed,
        }
    }
}

impl TryFrom<pb::SweepSpec> for SweepSpec {
    type Error = ApiError;

    fn try_from(spec: pb::SweepSpec) -> Result<Self, ApiError> {
        let method = Method::parse(&spec.method)
            .ok_or_else(|| invalid(format!("unknown sweep method '{}'", spec.method)))?;
        let objective = if spec.metric.is_empty() {
            None
        } else {
            let goal = Goal::parse(&spec.goal)
                .ok_or_else(|| invalid(format!("unknown goal '{}' (min or max)", spec.goal)))?;
            Some(Objective { metric: spec.metric, goal })
        };
        let early_stop = if spec.early_stop.is_empty() {
            None
        } else {
            let rule = StopRule::parse(&spec.early_stop).ok_or_else(|| {
                invalid(format!("unknown early stopping rule '{}'", spec.early_stop))
            })?;
            if spec.min_step < 1 || spec.eta < 2 {
                return Err(invalid(
                    "early stopping needs min_step of at least 1 and eta of at least 2".to_string(),
                ));
            }
            if objective.is_none() {
                return Err(invalid("early stopping needs the sweep's metric".to_string()));
            }
            Some(EarlyStop { rule, min_step: spec.min_step, eta: spec.eta })
        };
        if spec.max_runs == 0 || spec.parallel == 0 {
            return Err(invalid("max_runs and parallel must be at least 1".to_string()));
        }
        let parameters = spec
            .parameters
            .into_iter()
            .map(SweepParameter::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        if parameters.is_empty() {
            return Err(invalid("a sweep needs parameters".to_string()));
        }
        let spec = SweepSpec {
            method,
            parameters,
            objective,
            max_runs: spec.max_runs,
            parallel: spec.parallel,
            max_failures: spec.max_failures,
            early_stop,
            seed: spec.seed,
        };
        if method == Method::Grid && spec.grid_size().is_none() {
            return Err(invalid(
                "a grid sweep needs every parameter discrete, and at most a million combinations"
                    .to_string(),
            ));
        }
        if method == Method::Tpe && spec.objective.is_none() {
            return Err(invalid("a tpe sweep needs the metric to optimize".to_string()));
        }
        Ok(spec)
    }
}

impl From<CreateSweep> for pb::CreateSweepRequest {
    fn from(request: CreateSweep) -> Self {
        pb::CreateSweepRequest {
            spec: Some(request.spec.into()),
            run: Some(request.run.into()),
            name: request.name.unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::CreateSweepRequest> for CreateSweep {
    type Error = ApiError;

    fn try_from(request: pb::CreateSweepRequest) -> Result<Self, ApiError> {
        Ok(CreateSweep {
            spec: request
                .spec
                .ok_or_else(|| invalid("a sweep needs its definition".to_string()))?
                .try_into()?,
            run: request
                .run
                .ok_or_else(|| invalid("a sweep needs the run its children make".to_string()))?
                .try_into()?,
            name: Some(request.name).filter(|name| !name.trim().is_empty()),
        })
    }
}

impl From<Trial> for pb::Trial {
    fn from(trial: Trial) -> Self {
        pb::Trial {
            index: trial.index,
            run_id: trial.run_id.to_string(),
            state: trial.state.as_str().to_string(),
            value: trial.value,
            params: trial.params.into_iter().map(|(key, value)| pb::Param { key, value }).collect(),
            stopped_by: trial.stopped_by,
        }
    }
}

impl TryFrom<pb::Trial> for Trial {
    type Error = ApiError;

    fn try_from(trial: pb::Trial) -> Result<Self, ApiError> {
        Ok(Trial {
            index: trial.index,
            run_id: parse_run_id(&trial.run_id)?,
            state: TrialState::parse(&trial.state)
                .ok_or_else(|| invalid(format!("unknown trial state '{}'", trial.state)))?,
            value: trial.value,
            params: trial
                .params
                .into_iter()
                .map(|param| {
                    let Param { key, value } = param.into();
                    (key, value)
                })
                .collect(),
            stopped_by: trial.stopped_by,
        })
    }
}

impl From<Sweep> for pb::Sweep {
    fn from(sweep: Sweep) -> Self {
        pb::Sweep {
            sweep_id: sweep.id.to_string(),
            experiment_id: sweep.experiment_id.to_string(),
            name: sweep.name,
            spec: Some(sweep.spec.into()),
            status: sweep.status.as_str().to_string(),
            reason: sweep.reason,
            created_ms: sweep.created_ms,
            ended_ms: sweep.ended_ms,
            created: sweep.counts.created,
            active: sweep.counts.active,
            finished: sweep.counts.finished,
            failed: sweep.counts.failed,
            killed: sweep.counts.killed,
            stopped: sweep.counts.stopped,
            best: sweep.best.map(Into::into),
            leaderboard: sweep.leaderboard.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::Sweep> for Sweep {
    type Error = ApiError;

    fn try_from(sweep: pb::Sweep) -> Result<Self, ApiError> {
        Ok(Sweep {
            id: parse_run_id(&sweep.sweep_id)?,
            experiment_id: sweep.experiment_id.parse()?,
            name: sweep.name,
            spec: sweep
                .spec
                .ok_or_else(|| invalid("a sweep without its definition".to_string()))?
                .try_into()?,
            status: SweepStatus::parse(&sweep.status)
                .ok_or_else(|| invalid(format!("unknown sweep status '{}'", sweep.status)))?,
            reason: sweep.reason,
            created_ms: sweep.created_ms,
            ended_ms: sweep.ended_ms,
            counts: SweepCounts {
                created: sweep.created,
                active: sweep.active,
                finished: sweep.finished,
                failed: sweep.failed,
                killed: sweep.killed,
                stopped: sweep.stopped,
            },
            best: sweep.best.map(Trial::try_from).transpose()?,
            leaderboard: sweep
                .leaderboard
                .into_iter()
                .map(Trial::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}
