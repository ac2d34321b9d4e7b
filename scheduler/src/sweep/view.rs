//! A sweep as the API shows it: counts by trial state, the leaderboard and the best trial.

use drover_proto::domain::ExperimentId;
use drover_proto::sweep::{Goal, Sweep, SweepCounts, Trial, TrialState};

use crate::store::{SweepRecord, TrialRecord};

/// Trials in a sweep's leaderboard.
const LEADERBOARD: usize = 10;

/// Whether a trial can rank: it has a value, and it finished or was stopped early.
fn ranked(trial: &TrialRecord, state: TrialState) -> bool {
    trial.trial.state == state && trial.trial.value.is_some_and(|value| !value.is_nan())
}

/// The best trials, best first: finished ones with a value, and a stopped one only while its
/// partial value is still better than every finished one.
fn leaderboard<'a>(record: &SweepRecord, trials: &'a [TrialRecord]) -> Vec<&'a TrialRecord> {
    let Some(objective) = &record.spec.objective else { return Vec::new() };
    let goal = objective.goal;
    let value = |trial: &TrialRecord| trial.trial.value.unwrap_or(f64::NAN);
    let mut board: Vec<&TrialRecord> =
        trials.iter().filter(|trial| ranked(trial, TrialState::Finished)).collect();
    let best_finished = board
        .iter()
        .map(|trial| value(trial))
        .reduce(|best, value| if goal.better(value, best) { value } else { best });
    board.extend(trials.iter().filter(|trial| {
        ranked(trial, TrialState::Stopped)
            && best_finished.is_none_or(|best| goal.better(value(trial), best))
    }));
    board.sort_by(|a, b| match goal {
        Goal::Minimize => value(a).total_cmp(&value(b)),
        Goal::Maximize => value(b).total_cmp(&value(a)),
    });
    board.truncate(LEADERBOARD);
    board
}

/// The leaderboard's first trial, found in one pass.
pub(super) fn best_trial<'a>(
    record: &SweepRecord,
    trials: &'a [TrialRecord],
) -> Option<&'a TrialRecord> {
    let goal = record.spec.objective.as_ref()?.goal;
    let better = |candidate: &TrialRecord, best: Option<&TrialRecord>| {
        best.is_none_or(|best| {
            goal.better(
                candidate.trial.value.unwrap_or(f64::NAN),
                best.trial.value.unwrap_or(f64::NAN),
            )
        })
    };
    let mut best_finished: Option<&TrialRecord> = None;
    let mut best_stopped: Option<&TrialRecord> = None;
    for trial in trials {
        if ranked(trial, TrialState::Finished) && better(trial, best_finished) {
            best_finished = Some(trial);
        } else if ranked(trial, TrialState::Stopped) && better(trial, best_stopped) {
            best_stopped = Some(trial);
        }
    }
    match best_stopped {
        Some(stopped) if better(stopped, best_finished) => Some(stopped),
        _ => best_finished,
    }
}

/// A sweep as the API shows it.
pub fn view(record: &SweepRecord, trials: &[TrialRecord]) -> Sweep {
    let count =
        |state: TrialState| trials.iter().filter(|trial| trial.trial.state == state).count() as u32;
    let board: Vec<Trial> =
        leaderboard(record, trials).into_iter().map(|trial| trial.trial.clone()).collect();
    Sweep {
        id: record.id,
        experiment_id: record.experiment_id,
        name: record.name.clone(),
        spec: record.spec.clone(),
        status: record.status,
        reason: record.reason.clone(),
        created_ms: record.created_ms,
        ended_ms: record.ended_ms,
        counts: SweepCounts {
            created: trials.len() as u32,
            active: count(TrialState::Active),
            finished: count(TrialState::Finished),
            failed: count(TrialState::Failed),
            killed: count(TrialState::Killed),
            stopped: count(TrialState::Stopped),
        },
        best: board.first().cloned(),
        leaderboard: board,
    }
}

/// Filters sweeps by experiment.
pub fn in_experiment(record: &SweepRecord, experiment: Option<ExperimentId>) -> bool {
    experiment.is_none_or(|experiment| record.experiment_id == experiment)
}

/// A trial as drover's JSON shows it (`drover sweeps describe -o json`, `/api/drover/sweeps`).
pub fn trial_json(trial: &Trial) -> serde_json::Value {
    serde_json::json!({
        "index": trial.index,
        "run_id": trial.run_id.to_string(),
        "state": trial.state.as_str(),
        "value": trial.value,
        "params": trial.params.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "stopped_by": trial.stopped_by,
    })
}

/// A sweep as drover's JSON shows it, the one shape the CLI and the REST endpoints print.
pub fn sweep_json(sweep: &Sweep) -> serde_json::Value {
    let counts = sweep.counts;
    serde_json::json!({
        "sweep_id": sweep.id.to_string(),
        "experiment_id": sweep.experiment_id.to_string(),
        "name": sweep.name,
        "status": sweep.status.as_str(),
        "reason": sweep.reason,
        "created_ms": sweep.created_ms,
        "ended_ms": sweep.ended_ms,
        "spec": sweep.spec,
        "counts": {
            "created": counts.created,
            "active": counts.active,
            "finished": counts.finished,
            "failed": counts.failed,
            "killed": counts.killed,
            "stopped": counts.stopped,
        },
        "best": sweep.best.as_ref().map(trial_json),
        "leaderboard": sweep.leaderboard.iter().map(trial_json).collect::<Vec<_>>(),
    })
}
