//! drover's worker: holds one long-lived stream to the scheduler, receives assignments, and
//! executes each run in a Docker container or a local process, streaming its state and
//! output back. Everything it reports is resent until the scheduler acknowledges it.

mod executor;
mod lineage;
mod metrics;
mod options;
#[cfg(test)]
mod props;
mod runner;
mod session;
mod snapshots;
mod tracking_proxy;

pub use options::WorkerOptions;
pub use session::run;
