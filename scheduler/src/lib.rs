//! drover's scheduler: the durable store of experiments, runs, params, tags, metrics and
//! logs; the queue and the dispatcher that places runs on workers under leases; snapshot
//! storage; and the server that exposes it all to the CLI and the workers.

pub mod dispatch;
mod names;
mod rest;
mod scheduler;
mod search;
pub mod server;
mod snapshots;
pub mod store;
pub mod sweep;
mod tracking;

pub use dispatch::LeaseOptions;
pub use scheduler::{Scheduler, SchedulerOptions, StopSignal};
pub use server::run;
pub use store::{Holder, OpenError, Store, read_holder};
