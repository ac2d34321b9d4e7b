//! The `drover` command: the CLI users type, and the glue that starts a scheduler (remote,
//! or embedded in this process over the local store).

mod backend;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::commands::{experiments, runs, scheduler};

/// Queue, run, sweep and track machine-learning runs across machines.
#[derive(Parser, Debug)]
#[command(name = "drover", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalOptions {
    /// Scheduler to talk to, as host:port or http://host:port. Without it, drover works on
    /// the local store in DROVER_HOME (default ./.drover), or on the scheduler serving it.
    #[arg(long, global = true, env = "DROVER_SCHEDULER", value_name = "ADDR")]
    pub scheduler: Option<String>,
}

/// The local store: DROVER_HOME, or `.drover` in the current directory.
pub fn drover_home() -> PathBuf {
    std::env::var_os("DROVER_HOME")
        .filter(|home| !home.is_empty())
        .map_or_else(|| PathBuf::from(".drover"), PathBuf::from)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, list, rename, delete and restore experiments.
    #[command(subcommand)]
    Experiments(experiments::Command),
    /// List, describe, delete and restore runs.
    #[command(subcommand)]
    Runs(runs::Command),
    /// Serve the scheduler: the store, the gRPC API, and (later) the web UI, on one address.
    Scheduler(scheduler::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Scheduler(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Experiments(command) => experiments::run(&cli.global, command).await,
            Command::Runs(command) => runs::run(&cli.global, command).await,
            Command::Scheduler(options) => scheduler::run(&cli.global, options).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
