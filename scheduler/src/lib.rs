//! drover's scheduler: the durable store of experiments, runs, params, tags and metrics, and
//! the server that exposes it to the CLI and the workers.

mod names;
pub mod server;
pub mod store;
mod tracking;

pub use server::run;
pub use store::{Holder, OpenError, Store, read_holder};
