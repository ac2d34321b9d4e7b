//! Sweeps, driven by the scheduler: one task keeps each running sweep's children queued or
//! running up to its `parallel`, records every child's result, enforces the failure budget,
//! stops children early by the sweep's rule, and ends the sweep when its trials are done.
//!
//! Everything the driver decides is written before it is acted on: a trial's run, its record
//! and the sweep's advanced cursor go in one write, so after a restart the driver picks up
//! from the store exactly where it was (a grid never repeats or skips a combination, and
//! `max_runs` is never exceeded).
//!
//! `handle.rs` is how the service talks to the driver, `driver.rs` the task and its decisions,
//! `view.rs` a sweep as the API shows it (counts, leaderboard, best trial), `space.rs` the
//! search space and `stopping.rs` the early stopping rules.

mod driver;
mod handle;
pub mod space;
pub mod stopping;
mod view;

pub use driver::Driver;
pub use handle::{SweepCommands, SweepHandle};
pub use view::{in_experiment, sweep_json, trial_json, view};
