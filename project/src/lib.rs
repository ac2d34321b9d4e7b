//! MLflow projects as drover runs them: the MLproject file, typed parameters, the command an
//! entry point renders to, Docker options, and the content-addressed snapshot a project
//! travels in. The CLI uses this to check a submission before anything is queued; the worker
//! uses the same code to render the command it executes.

pub mod command;
pub mod compare;
pub mod digest;
pub mod docker;
pub mod mlproject;
pub mod params;
pub mod snapshot;
pub mod sweep;

pub use mlproject::{
    DockerEnv, EntryPoint, EnvVar, Environment, MlProject, ParamType, ParameterSpec,
};
pub use params::{Invocation, PathCheck, parse_param_args};

/// Why a project, its parameters or its options were refused.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{file}: {}{reason}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Invalid { file: String, field: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{0}")]
    Param(String),
    #[error("{0}")]
    DockerArg(String),
}

#[cfg(test)]
mod props;
