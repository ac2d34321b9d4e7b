//! Building a sweep: the file's settings and the command line merged (flags win), then checked
//! against the entry point's declared parameters before anything is queued.

use std::path::Path;

use super::domain::{Domain, MAX_GRID, param_error};
use super::file::{FileSettings, read_file};
use super::spec::{
    DEFAULT_ETA, DEFAULT_MIN_STEP, EarlyStop, Goal, Method, Objective, StopRule, SweepArgs,
    SweepParameter, SweepSpec,
};
use crate::ProjectError;
use crate::mlproject::{MlProject, ParamType};
use crate::params::PathCheck;

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
    use crate::sweep::sweep_file_name;

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
