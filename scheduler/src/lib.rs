//! drover's scheduler: the durable store of experiments, runs, params, tags, metrics and
//! logs; the queue and the dispatcher that places runs on workers under leases; snapshot and
//! artifact storage; the sweep driver; the service layer over all of it; and the server that
//! exposes that service over gRPC and MLflow's REST API on one address.
//!
//! Modules depend one way: store → snapshots, artifacts → dispatch → sweep → auth → service
//! → rest, guard → server.

mod artifacts;
pub mod auth;
pub mod dispatch;
mod guard;
mod names;
mod rest;
mod search;
pub mod server;
mod service;
mod snapshots;
pub mod store;
pub mod sweep;
pub mod telemetry;
mod ui;

pub use dispatch::LeaseOptions;
pub use server::run;
pub use service::{ConnectionOptions, Scheduler, SchedulerOptions, StopSignal};
pub use store::{Holder, OpenError, Store, read_holder};
