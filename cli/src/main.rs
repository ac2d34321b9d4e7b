//! The `drover` command: the CLI users type, and the glue that starts a scheduler (remote,
//! or embedded in this process over the local store).

mod backend;
mod commands;
mod follow;
mod git;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::commands::{
    experiments, models, run, runs, scheduler, status, sweep, ui, worker, workers,
};

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
    /// Whether `scheduler` came from DROVER_SCHEDULER rather than the command line.
    #[arg(skip)]
    pub scheduler_from_env: bool,
    /// File holding the cluster's token: the one `drover scheduler` requires, and the one
    /// clients and workers send. DROVER_TOKEN gives a client the token itself.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA (PEM) that signed an https:// scheduler's certificate, when it is not a public
    /// one.
    #[arg(long, global = true, env = "DROVER_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl GlobalOptions {
    /// The token a client sends: the content of --token-file, else DROVER_TOKEN.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!("cannot read the token file {}: {error}", path.display())
            })?;
            let token = text.trim();
            if token.is_empty() {
                anyhow::bail!("the token file {} is empty", path.display());
            }
            return Ok(Some(token.to_string()));
        }
        Ok(std::env::var("DROVER_TOKEN").ok().filter(|token| !token.trim().is_empty()))
    }
}

/// The local store: DROVER_HOME, or `.drover` in the current directory.
pub fn drover_home() -> PathBuf {
    std::env::var_os("DROVER_HOME")
        .filter(|home| !home.is_empty())
        .map_or_else(|| PathBuf::from(".drover"), PathBuf::from)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a project (a directory, with or without an MLproject) on a worker.
    Run(run::RunArgs),
    /// Search a project's parameters: -P k=a,b,c | k=uniform(lo,hi) | k=loguniform(lo,hi) |
    /// k=int(lo,hi) | k=qstep(lo,hi,q), by grid, random or TPE search, with early stopping.
    #[command(
        mut_arg("params", |arg| arg.help(
            "A parameter to sweep or fix (repeatable): k=v, k=a,b,c, k=uniform(lo,hi), \
             k=loguniform(lo,hi), k=int(lo,hi) or k=qstep(lo,hi,q)"
        )),
        mut_arg("run_name", |arg| arg.help(
            "A name for the sweep and its parent run (children are NAME-0, NAME-1, ...)"
        )),
        mut_arg("detach", |arg| arg.help(
            "Start the sweep, print its ID and return without following it"
        )),
        mut_arg("max_retries", |arg| arg.help(
            "Times each child run is requeued when its worker is lost"
        ))
    )]
    Sweep(sweep::SweepArgs),
    /// List, describe and cancel sweeps.
    #[command(subcommand)]
    Sweeps(sweep::Command),
    /// Create, list, rename, delete and restore experiments.
    #[command(subcommand)]
    Experiments(experiments::Command),
    /// List, describe, follow, cancel, delete and restore runs.
    #[command(subcommand)]
    Runs(runs::Command),
    /// Serve the scheduler: the store, the queue and the gRPC API, on one address.
    Scheduler(scheduler::Options),
    /// Execute runs for a scheduler, in Docker containers or local processes.
    Worker(worker::Options),
    /// List the workers; drain one (no new runs, its runs finish) or undrain it.
    #[command(subcommand)]
    Workers(workers::Command),
    /// Show the cluster: workers, their capacity, and the queue.
    Status(status::Options),
    /// The model registry: list models, describe a version and where it came from, move
    /// aliases, delete.
    #[command(subcommand)]
    Models(models::Command),
    /// Serve the web UI: experiments, runs, charts, sweeps and the cluster, in a browser.
    Ui(ui::Options),
}

/// Where `--scheduler`'s value came from, looked for in the subcommands too (a global
/// argument is matched where it was typed).
fn scheduler_source(matches: &clap::ArgMatches) -> Option<ValueSource> {
    let mut matches = Some(matches);
    let mut source = None;
    while let Some(current) = matches {
        source = current.value_source("scheduler").or(source);
        matches = current.subcommand().map(|(_, sub)| sub);
    }
    source
}

/// The scheduler's request paths allocate many small buffers from several threads, which
/// mimalloc serves with less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    cli.global.scheduler_from_env = scheduler_source(&matches) == Some(ValueSource::EnvVariable);
    let default_level = match cli.command {
        Command::Scheduler(_) | Command::Worker(_) | Command::Ui(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();

    // A command that only talks to a scheduler elsewhere needs one worker thread: the
    // connection's tasks run there while this thread packs a project or blocks writing to a
    // slow terminal (and answers the connection's pings meanwhile). A thread per core, each
    // started and woken for answers, cost a one-off `drover run --detach` about 0.3 ms more
    // on this 2-core machine (a runtime on this thread alone, 0.3 ms less, would stall the
    // connection behind a blocked terminal and connect only after packing). What serves (a
    // scheduler, a worker, the UI, or the scheduler and worker `drover run` embeds without
    // --scheduler) gets a thread per core.
    let client_only = cli.global.scheduler.is_some()
        && !matches!(cli.command, Command::Scheduler(_) | Command::Worker(_) | Command::Ui(_));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if client_only {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
        match cli.command {
            Command::Run(args) => run::run(&cli.global, args).await,
            Command::Sweep(args) => sweep::sweep(&cli.global, args).await,
            Command::Sweeps(command) => sweep::run(&cli.global, command).await,
            Command::Experiments(command) => done(experiments::run(&cli.global, command).await),
            Command::Runs(command) => runs::run(&cli.global, command).await,
            Command::Scheduler(options) => done(scheduler::run(&cli.global, options).await),
            Command::Worker(options) => done(worker::run(&cli.global, options).await),
            Command::Workers(command) => done(workers::run(&cli.global, command).await),
            Command::Status(options) => done(status::run(&cli.global, options).await),
            Command::Models(command) => done(models::run(&cli.global, command).await),
            Command::Ui(options) => done(ui::run(&cli.global, options).await),
        }
    });
    // Every command finishes its work inside `block_on` (an embedded scheduler has closed its
    // store, a worker has delivered its reports); what is left are idle connections, which
    // need not be waited for on the way out.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
