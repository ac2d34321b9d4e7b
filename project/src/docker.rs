//! Docker options for a run: `-A name=value` arguments (as `mlflow run --docker-args`) and the
//! `--cpus/--memory/--gpus` flags, checked at submission and applied by the worker.

use crate::ProjectError;

/// Resource limits and container settings for a Docker run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DockerOptions {
    /// `all`, a count, or `device=0,1`.
    pub gpus: Option<String>,
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub shm_size_bytes: Option<u64>,
    /// `NAME=value` pairs added to the container's environment.
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
}

const SUPPORTED: &str = "gpus, cpus, memory (m), shm-size, env (e), user (u)";

impl DockerOptions {
    /// Parses `-A` arguments: `name=value`, or `name` alone for flags.
    pub fn parse_args(args: &[String]) -> Result<DockerOptions, ProjectError> {
        let mut options = DockerOptions::default();
        for arg in args {
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name.trim_start_matches('-'), Some(value)),
                None => (arg.trim_start_matches('-'), None),
            };
            let value = || {
                value.filter(|v| !v.is_empty()).ok_or_else(|| {
                    ProjectError::DockerArg(format!(
                        "docker argument '{name}' needs a value: -A {name}=VALUE"
                    ))
                })
            };
            match name {
                "gpus" => options.set_gpus(value()?)?,
                "cpus" => options.set_cpus(value()?)?,
                "memory" | "m" => options.set_memory(value()?)?,
                "shm-size" => {
                    let bytes =
                        parse_bytes(value()?).ok_or_else(|| bad(arg, "a size such as 2g"))?;
                    once(&mut options.shm_size_bytes, bytes, "shm-size")?;
                }
                "env" | "e" => {
                    let pair = value()?;
                    let (key, val) = pair.split_once('=').ok_or_else(|| bad(arg, "NAME=value"))?;
                    if key.is_empty() {
                        return Err(bad(arg, "NAME=value"));
                    }
                    options.env.push((key.to_string(), val.to_string()));
                }
                "user" | "u" => once(&mut options.user, value()?.to_string(), "user")?,
                _ => {
                    return Err(ProjectError::DockerArg(format!(
                        "docker argument '{name}' is not supported; supported: {SUPPORTED}"
                    )));
                }
            }
        }
        Ok(options)
    }

    pub fn set_gpus(&mut self, value: &str) -> Result<(), ProjectError> {
        let valid = value == "all"
            || value.parse::<u32>().is_ok()
            || value.strip_prefix("device=").is_some_and(|ids| !ids.is_empty());
        if !valid {
            return Err(bad(&format!("gpus={value}"), "all, a count, or device=ID[,ID]"));
        }
        once(&mut self.gpus, value.to_string(), "gpus")
    }

    pub fn set_cpus(&mut self, value: &str) -> Result<(), ProjectError> {
        let cpus = value.parse::<f64>().ok().filter(|c| c.is_finite() && *c > 0.0);
        let cpus =
            cpus.ok_or_else(|| bad(&format!("cpus={value}"), "a positive number such as 1.5"))?;
        once(&mut self.cpus, cpus, "cpus")
    }

    pub fn set_memory(&mut self, value: &str) -> Result<(), ProjectError> {
        let bytes = parse_bytes(value)
            .ok_or_else(|| bad(&format!("memory={value}"), "a size such as 4g or 512m"))?;
        once(&mut self.memory_bytes, bytes, "memory")
    }
}

fn bad(arg: &str, expected: &str) -> ProjectError {
    ProjectError::DockerArg(format!("invalid docker argument '{arg}': expected {expected}"))
}

fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), ProjectError> {
    if slot.is_some() {
        return Err(ProjectError::DockerArg(format!(
            "docker argument '{name}' is given more than once"
        )));
    }
    *slot = Some(value);
    Ok(())
}

/// `512`, `512b`, `64k`, `512m`, `4g`, `1t` (binary units, as Docker reads them).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix('b').unwrap_or(&text);
    let (digits, multiplier) = match text.chars().last()? {
        'k' => (&text[..text.len() - 1], 1u64 << 10),
        'm' => (&text[..text.len() - 1], 1 << 20),
        'g' => (&text[..text.len() - 1], 1 << 30),
        't' => (&text[..text.len() - 1], 1 << 40),
        _ => (text, 1),
    };
    let number: f64 = digits.parse().ok()?;
    if !number.is_finite() || number <= 0.0 {
        return None;
    }
    Some((number * multiplier as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn translates_supported_arguments() {
        let options = DockerOptions::parse_args(&args(&[
            "gpus=all",
            "cpus=1.5",
            "memory=512m",
            "shm-size=1g",
            "env=A=b=c",
            "e=X=1",
            "user=1000:1000",
        ]))
        .unwrap();
        assert_eq!(options.gpus.as_deref(), Some("all"));
        assert_eq!(options.cpus, Some(1.5));
        assert_eq!(options.memory_bytes, Some(512 << 20));
        assert_eq!(options.shm_size_bytes, Some(1 << 30));
        assert_eq!(options.env, vec![("A".into(), "b=c".into()), ("X".into(), "1".into())]);
        assert_eq!(options.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn refuses_unknown_and_malformed_arguments() {
        let error = DockerOptions::parse_args(&args(&["privileged"])).unwrap_err().to_string();
        assert!(error.contains("'privileged' is not supported"), "{error}");
        assert!(DockerOptions::parse_args(&args(&["cpus=lots"])).is_err());
        assert!(DockerOptions::parse_args(&args(&["memory=-1g"])).is_err());
        assert!(DockerOptions::parse_args(&args(&["gpus"])).is_err());
        assert!(DockerOptions::parse_args(&args(&["cpus=1", "cpus=2"])).is_err());
        assert!(DockerOptions::parse_args(&args(&["env=novalue"])).is_err());
    }
}
