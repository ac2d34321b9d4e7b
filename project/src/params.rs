//! Parameters: `-P key=value` arguments, type checks, defaults, and the resolution of an
//! entry point and its parameters into the command a run executes.

use std::path::{Component, Path, PathBuf};

use crate::ProjectError;
use crate::command::{render_template, shell_quote};
use crate::mlproject::{EntryPoint, MlProject, ParamType, ParameterSpec};

/// Parses `key=value` arguments, refusing malformed and repeated keys.
pub fn parse_param_args(args: &[String]) -> Result<Vec<(String, String)>, ProjectError> {
    let mut params: Vec<(String, String)> = Vec::with_capacity(args.len());
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(ProjectError::Param(format!(
                "malformed parameter '{arg}': expected key=value"
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ProjectError::Param(format!(
                "malformed parameter '{arg}': the key is empty"
            )));
        }
        if params.iter().any(|(existing, _)| existing == key) {
            return Err(ProjectError::Param(format!("parameter '{key}' is given more than once")));
        }
        params.push((key.to_string(), value.to_string()));
    }
    Ok(params)
}

/// Checks that `value` has the parameter's declared type.
pub fn check_type(spec: &ParameterSpec, value: &str) -> Result<(), ProjectError> {
    let ok = match spec.kind {
        ParamType::Float => value.trim().parse::<f64>().is_ok(),
        ParamType::Int => value.trim().parse::<i64>().is_ok(),
        ParamType::String | ParamType::Path | ParamType::Uri => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ProjectError::Param(format!(
            "parameter '{}' expects {} {}, got '{value}'",
            spec.name,
            article(spec.kind),
            spec.kind
        )))
    }
}

fn article(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Int => "an",
        _ => "a",
    }
}

/// Where `path` parameters are checked.
#[derive(Clone, Debug)]
pub enum PathCheck {
    /// On the submitting machine: the file must exist (relative to `cwd`). A path inside the
    /// project becomes relative to the project root, so it resolves inside the run's snapshot;
    /// one outside it becomes absolute.
    Local { cwd: PathBuf, project_dir: PathBuf },
    /// On the worker: values were checked and rewritten at submission; use them as given.
    AsSubmitted,
}

/// What a run executes: an entry point, its final parameter values, and the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub entry_point: String,
    /// Declared parameters (defaults filled in), then extra ones, as the command receives them.
    pub params: Vec<(String, String)>,
    pub command: String,
}

impl MlProject {
    /// Resolves `entry` and `-P` values into the command to run, checking everything first:
    /// the entry point exists, no parameter is missing, each value has its declared type.
    pub fn invocation(
        &self,
        entry: &str,
        given: &[(String, String)],
        paths: &PathCheck,
    ) -> Result<Invocation, ProjectError> {
        match self.entry_points.get(entry) {
            Some(entry_point) => declared_invocation(entry_point, given, paths),
            None => self.file_invocation(entry, given),
        }
    }

    /// An entry point that is a `.py` or `.sh` file of the project rather than a declared one.
    fn file_invocation(
        &self,
        entry: &str,
        given: &[(String, String)],
    ) -> Result<Invocation, ProjectError> {
        let interpreter = if entry.ends_with(".py") {
            "python"
        } else if entry.ends_with(".sh") {
            "sh"
        } else {
            let known: Vec<&str> = self.entry_points.keys().map(String::as_str).collect();
            let known =
                if known.is_empty() { "none declared".to_string() } else { known.join(", ") };
            return Err(ProjectError::Param(format!(
                "entry point '{entry}' not found (known entry points: {known}); a .py or .sh file of the project also works"
            )));
        };
        if !is_relative_inside(Path::new(entry)) {
            return Err(ProjectError::Param(format!(
                "entry point file '{entry}' must be a relative path inside the project"
            )));
        }
        let mut command = format!("{interpreter} {}", shell_quote(entry));
        append_extras(&mut command, given);
        Ok(Invocation { entry_point: entry.to_string(), params: given.to_vec(), command })
    }
}

fn declared_invocation(
    entry_point: &EntryPoint,
    given: &[(String, String)],
    paths: &PathCheck,
) -> Result<Invocation, ProjectError> {
    let missing: Vec<&str> = entry_point
        .parameters
        .iter()
        .filter(|spec| spec.default.is_none() && !given.iter().any(|(key, _)| *key == spec.name))
        .map(|spec| spec.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(ProjectError::Param(format!(
            "entry point '{}' is missing values for parameters: {} (pass each with -P name=value)",
            entry_point.name,
            missing.join(", ")
        )));
    }
    let mut declared = Vec::with_capacity(entry_point.parameters.len());
    for spec in &entry_point.parameters {
        let explicit =
            given.iter().find(|(key, _)| *key == spec.name).map(|(_, value)| value.clone());
        let value = match explicit {
            Some(value) => {
                check_type(spec, &value)?;
                match spec.kind {
                    ParamType::Path => resolve_path(&spec.name, &value, paths)?,
                    _ => value,
                }
            }
            // Defaults were type-checked when the MLproject was read.
            None => spec.default.clone().unwrap_or_default(),
        };
        declared.push((spec.name.clone(), value));
    }
    let extras: Vec<(String, String)> = given
        .iter()
        .filter(|(key, _)| !entry_point.parameters.iter().any(|spec| spec.name == *key))
        .cloned()
        .collect();
    let mut command = render_template(&entry_point.name, &entry_point.command, &declared)?;
    append_extras(&mut command, &extras);
    let mut params = declared;
    params.extend(extras);
    Ok(Invocation { entry_point: entry_point.name.clone(), params, command })
}

/// Parameters the entry point does not declare go to the command as `--key value`.
fn append_extras(command: &mut String, extras: &[(String, String)]) {
    for (key, value) in extras {
        command.push_str(&format!(" --{} {}", shell_quote(key), shell_quote(value)));
    }
}

fn resolve_path(name: &str, value: &str, paths: &PathCheck) -> Result<String, ProjectError> {
    let PathCheck::Local { cwd, project_dir } = paths else {
        return Ok(value.to_string());
    };
    // URIs (s3://, file://, ...) are passed through for the script to handle.
    if value.contains("://") {
        return Ok(value.to_string());
    }
    let path = cwd.join(value);
    let absolute = path.canonicalize().map_err(|_| {
        ProjectError::Param(format!("parameter '{name}' names '{value}', which does not exist"))
    })?;
    let root = project_dir.canonicalize().unwrap_or_else(|_| project_dir.clone());
    Ok(match absolute.strip_prefix(&root) {
        Ok(inside) if inside.as_os_str().is_empty() => ".".to_string(),
        Ok(inside) => inside.display().to_string(),
        Err(_) => absolute.display().to_string(),
    })
}

fn is_relative_inside(path: &Path) -> bool {
    path.components().all(|component| matches!(component, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> MlProject {
        MlProject::parse(
            r#"
entry_points:
  main:
    parameters:
      alpha: float
      l1_ratio: {type: float, default: 0.1}
      epochs: {type: int, default: 2}
      data: {type: path, default: data.csv}
    command: "python train.py --alpha {alpha} --l1 {l1_ratio} --epochs {epochs} {data}"
"#,
            "dir",
        )
        .unwrap()
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn renders_declared_and_extra_parameters_quoted() {
        let invocation = project()
            .invocation(
                "main",
                &given(&[("alpha", "0.5"), ("name", "x; rm -rf /")]),
                &PathCheck::AsSubmitted,
            )
            .unwrap();
        assert_eq!(
            invocation.command,
            "python train.py --alpha 0.5 --l1 0.1 --epochs 2 data.csv --name 'x; rm -rf /'"
        );
        assert_eq!(invocation.params.len(), 5);
    }

    #[test]
    fn refuses_missing_mistyped_and_unknown() {
        let project = project();
        let error = project.invocation("main", &[], &PathCheck::AsSubmitted).unwrap_err();
        assert_eq!(
            error.to_string(),
            "entry point 'main' is missing values for parameters: alpha (pass each with -P name=value)"
        );
        let error = project
            .invocation("main", &given(&[("alpha", "abc")]), &PathCheck::AsSubmitted)
            .unwrap_err();
        assert_eq!(error.to_string(), "parameter 'alpha' expects a float, got 'abc'");
        let error = project
            .invocation(
                "main",
                &given(&[("alpha", "1"), ("epochs", "2.5")]),
                &PathCheck::AsSubmitted,
            )
            .unwrap_err();
        assert_eq!(error.to_string(), "parameter 'epochs' expects an int, got '2.5'");
        let error = project.invocation("train", &[], &PathCheck::AsSubmitted).unwrap_err();
        assert!(error.to_string().contains("known entry points: main"), "{error}");
    }

    #[test]
    fn file_entry_points_run_with_their_interpreter() {
        let project = project();
        let invocation = project
            .invocation("tools/prep.py", &given(&[("n", "3")]), &PathCheck::AsSubmitted)
            .unwrap();
        assert_eq!(invocation.command, "python tools/prep.py --n 3");
        let invocation = project.invocation("run me.sh", &[], &PathCheck::AsSubmitted).unwrap();
        assert_eq!(invocation.command, "sh 'run me.sh'");
        assert!(project.invocation("../escape.py", &[], &PathCheck::AsSubmitted).is_err());
    }

    #[test]
    fn param_args_refuse_malformed_and_repeated() {
        let args = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_param_args(&args(&["a=1", "b=x=y"])).unwrap(),
            given(&[("a", "1"), ("b", "x=y")])
        );
        assert_eq!(
            parse_param_args(&args(&["a"])).unwrap_err().to_string(),
            "malformed parameter 'a': expected key=value"
        );
        assert_eq!(
            parse_param_args(&args(&["a=1", "a=2"])).unwrap_err().to_string(),
            "parameter 'a' is given more than once"
        );
    }

    #[test]
    fn local_paths_must_exist_and_become_project_relative() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.csv"), "1").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        let check = PathCheck::Local {
            cwd: dir.path().to_path_buf(),
            project_dir: dir.path().to_path_buf(),
        };
        let project = project();
        let invocation = project
            .invocation("main", &given(&[("alpha", "1"), ("data", "./data.csv")]), &check)
            .unwrap();
        assert!(invocation.command.ends_with(" data.csv"), "{}", invocation.command);
        let absolute = outside.path().canonicalize().unwrap().display().to_string();
        let invocation = project
            .invocation("main", &given(&[("alpha", "1"), ("data", &absolute)]), &check)
            .unwrap();
        assert!(invocation.params.contains(&("data".to_string(), absolute)));
        let error = project
            .invocation("main", &given(&[("alpha", "1"), ("data", "nope.csv")]), &check)
            .unwrap_err();
        assert_eq!(error.to_string(), "parameter 'data' names 'nope.csv', which does not exist");
    }
}
