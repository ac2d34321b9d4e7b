//! The MLproject file, exactly as MLflow users write it: `name`, one environment
//! (`docker_env`, `python_env` or `conda_env`), and `entry_points` with typed parameters and
//! command templates. A directory without an MLproject is a project named after it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::ProjectError;

pub const MLPROJECT_FILE: &str = "MLproject";

/// The type of an entry point parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    String,
    Float,
    Int,
    Path,
    Uri,
}

impl ParamType {
    fn parse(text: &str) -> Option<ParamType> {
        match text {
            "string" | "str" => Some(ParamType::String),
            "float" => Some(ParamType::Float),
            "int" | "integer" => Some(ParamType::Int),
            "path" => Some(ParamType::Path),
            "uri" => Some(ParamType::Uri),
            _ => None,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Float => "float",
            ParamType::Int => "int",
            ParamType::Path => "path",
            ParamType::Uri => "uri",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterSpec {
    pub name: String,
    pub kind: ParamType,
    pub default: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    pub name: String,
    /// In the order the MLproject declares them.
    pub parameters: Vec<ParameterSpec>,
    pub command: String,
}

/// An environment variable a Docker run gets: copied from the submitting environment, or set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvVar {
    Copy(String),
    Set(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerEnv {
    pub image: String,
    /// `host:container[:options]`, as given.
    pub volumes: Vec<String>,
    pub environment: Vec<EnvVar>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Environment {
    /// No environment key: the interpreter on the worker.
    None,
    Docker(DockerEnv),
    /// `python_env: file.yaml`: recognised; runs with the interpreter in the image or host.
    Python(String),
    /// `conda_env: file.yaml`: recognised; runs with the interpreter in the image or host.
    Conda(String),
}

impl Environment {
    /// The value of the `mlflow.project.env` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Environment::None => "local",
            Environment::Docker(_) => "docker",
            Environment::Python(_) => "python_env",
            Environment::Conda(_) => "conda_env",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlProject {
    pub name: String,
    pub environment: Environment,
    pub entry_points: BTreeMap<String, EntryPoint>,
    /// False for a directory without an MLproject file.
    pub declared: bool,
}

impl MlProject {
    /// Reads the MLproject in `dir`, or describes a project without one.
    pub fn load(dir: &Path) -> Result<MlProject, ProjectError> {
        let dir_name = dir
            .canonicalize()
            .ok()
            .and_then(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "project".to_string());
        let path = dir.join(MLPROJECT_FILE);
        let in_file = |path: &Path, error: ProjectError| match error {
            ProjectError::Invalid { field, reason, .. } => {
                ProjectError::Invalid { file: path.display().to_string(), field, reason }
            }
            other => other,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => MlProject::parse(&text, &dir_name).map_err(|error| in_file(&path, error)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // MLflow also accepts a lowercase `mlproject`; anything else is not a project file.
                let lowercase = dir.join("mlproject");
                match std::fs::read_to_string(&lowercase) {
                    Ok(text) => MlProject::parse(&text, &dir_name)
                        .map_err(|error| in_file(&lowercase, error)),
                    Err(_) => Ok(MlProject {
                        name: dir_name,
                        environment: Environment::None,
                        entry_points: BTreeMap::new(),
                        declared: false,
                    }),
                }
            }
            Err(error) => Err(ProjectError::Unreadable {
                path: path.display().to_string(),
                reason: error.to_string(),
            }),
        }
    }

    /// Parses MLproject text; `dir_name` names a project whose file has no `name`.
    pub fn parse(text: &str, dir_name: &str) -> Result<MlProject, ProjectError> {
        // serde_yaml's message names the line and column.
        let document: Value = serde_yaml::from_str(text)
            .map_err(|error| invalid("", &format!("not valid YAML: {error}")))?;
        let top = match document {
            Value::Mapping(mapping) => mapping,
            Value::Null => Mapping::new(),
            _ => {
                return Err(invalid(
                    "",
                    "expected a mapping of keys such as name and entry_points",
                ));
            }
        };
        for key in top.keys() {
            let known = matches!(
                key.as_str(),
                Some("name" | "docker_env" | "python_env" | "conda_env" | "entry_points")
            );
            if !known {
                return Err(invalid(
                    &yaml_key(key),
                    "unknown key; expected name, docker_env, python_env, conda_env or entry_points",
                ));
            }
        }
        let name = match top.get("name") {
            None | Some(Value::Null) => dir_name.to_string(),
            Some(value) => scalar(value).ok_or_else(|| invalid("name", "expected a string"))?,
        };
        let environment = parse_environment(&top)?;
        let entry_points = match top.get("entry_points") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Mapping(entries)) => {
                let mut entry_points = BTreeMap::new();
                for (key, value) in entries {
                    let entry_name = scalar(key).ok_or_else(|| {
                        invalid("entry_points", "entry point names must be strings")
                    })?;
                    let entry = parse_entry_point(&entry_name, value)?;
                    entry_points.insert(entry_name, entry);
                }
                entry_points
            }
            Some(_) => {
                return Err(invalid(
                    "entry_points",
                    "expected a mapping of entry point names to {parameters, command}",
                ));
            }
        };
        Ok(MlProject { name, environment, entry_points, declared: true })
    }
}

fn invalid(field: &str, reason: &str) -> ProjectError {
    ProjectError::Invalid {
        file: MLPROJECT_FILE.to_string(),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn yaml_key(key: &Value) -> String {
    scalar(key).unwrap_or_else(|| format!("{key:?}"))
}

/// A YAML scalar as MLflow reads it: strings, numbers and booleans as their text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn parse_environment(top: &Mapping) -> Result<Environment, ProjectError> {
    let present: Vec<&str> = ["docker_env", "python_env", "conda_env"]
        .into_iter()
        .filter(|key| top.contains_key(*key))
        .collect();
    if present.len() > 1 {
        return Err(invalid(
            &present.join(", "),
            "a project declares at most one environment; keep one of docker_env, python_env and conda_env",
        ));
    }
    match present.first().copied() {
        None => Ok(Environment::None),
        Some("python_env") => top
            .get("python_env")
            .and_then(scalar)
            .map(Environment::Python)
            .ok_or_else(|| invalid("python_env", "expected the path of a python_env YAML file")),
        Some("conda_env") => {
            top.get("conda_env").and_then(scalar).map(Environment::Conda).ok_or_else(|| {
                invalid("conda_env", "expected the path of a conda environment YAML file")
            })
        }
        Some(_) => {
            parse_docker_env(top.get("docker_env").unwrap_or(&Value::Null)).map(Environment::Docker)
        }
    }
}

fn parse_docker_env(value: &Value) -> Result<DockerEnv, ProjectError> {
    let Value::Mapping(docker) = value else {
        return Err(invalid("docker_env", "expected a mapping with at least `image`"));
    };
    for key in docker.keys() {
        if !matches!(key.as_str(), Some("image" | "volumes" | "environment")) {
            return Err(invalid(
                &format!("docker_env.{}", yaml_key(key)),
                "unknown key; expected image, volumes or environment",
            ));
        }
    }
    let image = match docker.get("image") {
        None | Some(Value::Null) => return Err(invalid("docker_env", "`image` is required")),
        Some(value) => scalar(value).filter(|image| !image.trim().is_empty()).ok_or_else(|| {
            invalid("docker_env.image", "expected an image name such as python:3.11")
        })?,
    };
    let volumes = match docker.get("volumes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let field = format!("docker_env.volumes[{index}]");
                let volume = scalar(item)
                    .ok_or_else(|| invalid(&field, "expected \"host_path:container_path\""))?;
                let mut parts = volume.split(':');
                match (parts.next(), parts.next()) {
                    (Some(host), Some(container))
                        if !host.is_empty() && container.starts_with('/') =>
                    {
                        Ok(volume)
                    }
                    _ => Err(invalid(
                        &field,
                        &format!("'{volume}' is not \"host_path:/container/path\""),
                    )),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "docker_env.volumes",
                "expected a list of \"host_path:container_path\"",
            ));
        }
    };
    let environment = match docker.get("environment") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_env_var(&format!("docker_env.environment[{index}]"), item))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "docker_env.environment",
                "expected a list of NAME or [NAME, value]",
            ));
        }
    };
    Ok(DockerEnv { image, volumes, environment })
}

fn parse_env_var(field: &str, item: &Value) -> Result<EnvVar, ProjectError> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match item {
        Value::String(name) if valid_name(name) => Ok(EnvVar::Copy(name.clone())),
        Value::Sequence(pair) if pair.len() == 2 => {
            let name = scalar(&pair[0]).filter(|name| valid_name(name));
            let value = scalar(&pair[1]);
            match (name, value) {
                (Some(name), Some(value)) => Ok(EnvVar::Set(name, value)),
                _ => Err(invalid(
                    field,
                    "expected [NAME, value] with NAME made of letters, digits and _",
                )),
            }
        }
        _ => Err(invalid(field, "expected a variable NAME to copy, or a [NAME, value] pair")),
    }
}

fn parse_entry_point(name: &str, value: &Value) -> Result<EntryPoint, ProjectError> {
    let field = format!("entry_points.{name}");
    let Value::Mapping(entry) = value else {
        return Err(invalid(&field, "expected a mapping with `command` and optional `parameters`"));
    };
    for key in entry.keys() {
        if !matches!(key.as_str(), Some("command" | "parameters")) {
            return Err(invalid(
                &format!("{field}.{}", yaml_key(key)),
                "unknown key; expected command or parameters",
            ));
        }
    }
    let command = entry
        .get("command")
        .and_then(scalar)
        .filter(|command| !command.trim().is_empty())
        .ok_or_else(|| invalid(&format!("{field}.command"), "a command is required"))?;
    let parameters = match entry.get("parameters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(parameters)) => parameters
            .iter()
            .map(|(key, value)| {
                let param_name = scalar(key).ok_or_else(|| {
                    invalid(&format!("{field}.parameters"), "parameter names must be strings")
                })?;
                parse_parameter(&format!("{field}.parameters.{param_name}"), param_name, value)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                &format!("{field}.parameters"),
                "expected a mapping of parameter names to types",
            ));
        }
    };
    Ok(EntryPoint { name: name.to_string(), parameters, command })
}

fn parse_parameter(
    field: &str,
    name: String,
    value: &Value,
) -> Result<ParameterSpec, ProjectError> {
    let unknown_type = |kind: &str| {
        invalid(field, &format!("unknown type '{kind}'; expected float, int, string, path or uri"))
    };
    let (kind, default) = match value {
        // `p:` with nothing after it is a string parameter with no default.
        Value::Null => (ParamType::String, None),
        Value::String(kind) => (ParamType::parse(kind).ok_or_else(|| unknown_type(kind))?, None),
        Value::Mapping(spec) => {
            for key in spec.keys() {
                if !matches!(key.as_str(), Some("type" | "default")) {
                    return Err(invalid(
                        &format!("{field}.{}", yaml_key(key)),
                        "unknown key; expected type or default",
                    ));
                }
            }
            let kind = match spec.get("type") {
                None | Some(Value::Null) => ParamType::String,
                Some(kind) => {
                    let kind = scalar(kind)
                        .ok_or_else(|| invalid(&format!("{field}.type"), "expected a type name"))?;
                    ParamType::parse(&kind).ok_or_else(|| unknown_type(&kind))?
                }
            };
            let default = match spec.get("default") {
                None | Some(Value::Null) => None,
                Some(value) => Some(scalar(value).ok_or_else(|| {
                    invalid(&format!("{field}.default"), "expected a single value")
                })?),
            };
            (kind, default)
        }
        _ => return Err(invalid(field, "expected a type name or {type, default}")),
    };
    let spec = ParameterSpec { name, kind, default };
    if let Some(default) = &spec.default {
        crate::params::check_type(&spec, default).map_err(|_| {
            invalid(&format!("{field}.default"), &format!("'{default}' is not a valid {kind}"))
        })?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name: tutorial
docker_env:
  image: drover/python:3
  volumes: ["/data:/data"]
  environment: [["MODE", "train"], "HOME_VAR"]
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      l1_ratio: {type: float, default: 0.1}
      epochs: {type: int, default: 3}
      data: path
      note:
    command: "python train.py {alpha} {l1_ratio}"
"#;

    #[test]
    fn parses_mlflow_projects() {
        let project = MlProject::parse(EXAMPLE, "dir").unwrap();
        assert_eq!(project.name, "tutorial");
        let Environment::Docker(docker) = &project.environment else { panic!("docker expected") };
        assert_eq!(docker.image, "drover/python:3");
        assert_eq!(docker.volumes, vec!["/data:/data"]);
        assert_eq!(
            docker.environment,
            vec![EnvVar::Set("MODE".into(), "train".into()), EnvVar::Copy("HOME_VAR".into())]
        );
        let main = &project.entry_points["main"];
        let names: Vec<_> = main
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.kind, p.default.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("alpha", ParamType::Float, Some("0.5")),
                ("l1_ratio", ParamType::Float, Some("0.1")),
                ("epochs", ParamType::Int, Some("3")),
                ("data", ParamType::Path, None),
                ("note", ParamType::String, None),
            ]
        );
    }

    #[test]
    fn refuses_malformed_projects_naming_the_field() {
        let cases = [
            ("name: [unclosed", "not valid YAML: did not find expected ',' or ']' at line 2"),
            ("docker_env: {image: a}\npython_env: p.yaml", "at most one environment"),
            ("docker_env: {volumes: []}", "`image` is required"),
            ("docker_env: {image: a, volumes: [nocolon]}", "docker_env.volumes[0]"),
            ("entry_points: {main: {parameters: {a: flaot}, command: x}}", "unknown type 'flaot'"),
            (
                "entry_points: {main: {parameters: {a: {type: int, default: x}}, command: x}}",
                "entry_points.main.parameters.a.default",
            ),
            ("entry_points: {main: {parameters: {}}}", "entry_points.main.command"),
            ("entry_pionts: {}", "entry_pionts"),
        ];
        for (text, expected) in cases {
            let error = MlProject::parse(text, "dir").unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_directory_without_mlproject_is_named_after_itself() {
        let dir = tempfile::tempdir().unwrap();
        let project_dir = dir.path().join("my-project");
        std::fs::create_dir(&project_dir).unwrap();
        let project = MlProject::load(&project_dir).unwrap();
        assert_eq!(project.name, "my-project");
        assert!(!project.declared);
        assert!(project.entry_points.is_empty());
    }
}
