//! Sweeps as the API carries them: the request that starts one, and the view of one in
//! progress. The definition itself (`SweepSpec`) lives with the project crate, which checks
//! it against the MLproject.

use serde::{Deserialize, Serialize};

pub use drover_project::sweep::{
    Domain, EarlyStop, Goal, Method, Objective, StopRule, SweepParameter, SweepSpec,
};

use crate::domain::{ExperimentId, RunId};
use crate::execution::SubmitRun;

/// Starts a sweep: its definition, and what every child runs (the fixed parameters are in
/// `run.spec.parameters`; swept ones are added per child).
#[derive(Clone, Debug)]
pub struct CreateSweep {
    pub spec: SweepSpec,
    pub run: SubmitRun,
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SweepStatus {
    Running,
    Finished,
    Failed,
    Killed,
}

impl SweepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepStatus::Running => "RUNNING",
            SweepStatus::Finished => "FINISHED",
            SweepStatus::Failed => "FAILED",
            SweepStatus::Killed => "KILLED",
        }
    }

    pub fn parse(text: &str) -> Option<SweepStatus> {
        [SweepStatus::Running, SweepStatus::Finished, SweepStatus::Failed, SweepStatus::Killed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        self != SweepStatus::Running
    }
}

/// Where a child run stands, as its sweep counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Queued or running.
    Active,
    Finished,
    Failed,
    Killed,
    /// Killed by early stopping.
    Stopped,
}

impl TrialState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Active => "active",
            TrialState::Finished => "finished",
            TrialState::Failed => "failed",
            TrialState::Killed => "killed",
            TrialState::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<TrialState> {
        [
            TrialState::Active,
            TrialState::Finished,
            TrialState::Failed,
            TrialState::Killed,
            TrialState::Stopped,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One child run of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub index: u64,
    pub run_id: RunId,
    pub state: TrialState,
    /// The objective metric's value (the run's latest, or where it was stopped).
    pub value: Option<f64>,
    pub params: Vec<(String, String)>,
    pub stopped_by: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub created: u32,
    pub active: u32,
    pub finished: u32,
    pub failed: u32,
    pub killed: u32,
    pub stopped: u32,
}

/// A sweep and how far it has come.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// The parent run, whose id is the sweep's.
    pub id: RunId,
    pub experiment_id: ExperimentId,
    pub name: String,
    pub spec: SweepSpec,
    pub status: SweepStatus,
    pub reason: String,
    pub created_ms: i64,
    pub ended_ms: Option<i64>,
    pub counts: SweepCounts,
    pub best: Option<Trial>,
    /// The ten best trials, best first.
    pub leaderboard: Vec<Trial>,
}
