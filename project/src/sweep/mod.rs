//! Sweep definitions: what `drover sweep` takes from `-P` values, flags and a `sweep.yaml` in
//! the keys W&B users know, merged (flags win) and checked against the entry point's declared
//! parameters before anything is queued.
//!
//! ```text
//! -P k=v                   fixed
//! -P k=a,b,c               one of the listed values
//! -P k=uniform(lo,hi)      a float in [lo, hi]
//! -P k=loguniform(lo,hi)   a float in [lo, hi], uniform in log space
//! -P k=int(lo,hi)          an integer in [lo, hi]
//! -P k=qstep(lo,hi,q)      lo, lo+q, lo+2q, ... up to hi
//! ```

mod build;
mod domain;
mod file;
mod spec;

pub use build::build_sweep;
pub use domain::{Domain, MAX_GRID, format_number};
pub use file::sweep_file_name;
pub use spec::{
    DEFAULT_ETA, DEFAULT_MIN_STEP, EarlyStop, Goal, Method, Objective, StopRule, SweepArgs,
    SweepParameter, SweepSpec,
};
