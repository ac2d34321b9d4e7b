//! One module per top-level command.

pub mod experiments;
pub mod lineage;
pub mod models;
pub mod run;
pub mod runs;
pub mod scheduler;
pub mod status;
pub mod sweep;
pub mod ui;
pub mod worker;
pub mod workers;

use clap::Args;
use drover_proto::domain::{ExperimentId, ExperimentRef};

/// Picks one experiment by id or by name.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ExperimentSelector {
    /// The experiment's ID.
    #[arg(long, value_name = "ID")]
    pub experiment_id: Option<String>,
    /// The experiment's name.
    #[arg(long, value_name = "NAME")]
    pub experiment_name: Option<String>,
}

impl ExperimentSelector {
    pub fn reference(&self) -> anyhow::Result<ExperimentRef> {
        match (&self.experiment_id, &self.experiment_name) {
            (Some(id), _) => Ok(ExperimentRef::Id(id.parse::<ExperimentId>()?)),
            (None, Some(name)) => Ok(ExperimentRef::Name(name.clone())),
            (None, None) => anyhow::bail!("give --experiment-id or --experiment-name"),
        }
    }
}

/// Which lifecycle stages a listing shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    #[default]
    Active,
    Deleted,
    All,
}

impl From<View> for drover_proto::domain::ViewType {
    fn from(view: View) -> Self {
        match view {
            View::Active => Self::ActiveOnly,
            View::Deleted => Self::DeletedOnly,
            View::All => Self::All,
        }
    }
}
