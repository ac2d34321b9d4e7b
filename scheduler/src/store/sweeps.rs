//! Sweeps: one record per sweep (its definition, what its children run, its status, and the
//! cursor of trials created) and one per trial. A trial's run, its record and the advanced
//! cursor are written in one batch, so a restart never loses or repeats a trial.

use drover_proto::ApiError;
use drover_proto::domain::{CreateRun, Run, RunId, RunStatus};
use drover_proto::execution::SubmitRun;
use drover_proto::sweep::Trial;

use super::records::{ExecutionRecord, SweepRecord, TrialRecord};
use super::{Batch, Store, decode, encode, keys, now_ms, storage_error};

impl Store {
    /// Creates the parent run and the sweep record in one write; `record.id` is set to the
    /// parent run's id.
    pub async fn create_sweep(
        &self,
        parent: CreateRun,
        mut record: SweepRecord,
    ) -> Result<(Run, SweepRecord), ApiError> {
        let (run, mut batch) = self.new_run(parent)?;
        record.id = run.info.run_id;
        record.experiment_id = run.info.experiment_id;
        batch.insert(keys::sweep(record.id), encode(&record));
        self.write_new_run(run.info.run_id, batch)?;
        self.durable().await?;
        Ok((run, record))
    }

    /// Creates a trial's run, its record and the sweep's advanced cursor in one write, without
    /// waiting for the disk: no worker learns of the trial before a later write is durable
    /// (its placement), the answer to the sweep's creation waits for the disk once for all its
    /// first trials, and flushes keep the order of writes. Reads may list the trial before
    /// then; a crash loses the run, the record and the cursor together, and the trial is
    /// created again.
    pub fn submit_trial(
        &self,
        sweep: &SweepRecord,
        trial: Trial,
        request: SubmitRun,
    ) -> Result<(Run, ExecutionRecord, TrialRecord), ApiError> {
        let (run, execution, mut batch) = self.stage_submission(request)?;
        let trial =
            TrialRecord { trial: Trial { run_id: run.info.run_id, ..trial }, rungs: Vec::new() };
        batch.insert(keys::sweep_trial(sweep.id, trial.trial.index), encode(&trial));
        batch.insert(keys::sweep(sweep.id), encode(sweep));
        self.write_submission(run.info.run_id, batch)?;
        Ok((run, execution, trial))
    }

    /// Saves a sweep record and, with it, changed trial records, once durable.
    pub async fn save_sweep(
        &self,
        sweep: &SweepRecord,
        trials: &[&TrialRecord],
    ) -> Result<(), ApiError> {
        let mut batch = trials_batch(sweep.id, trials);
        batch.insert(keys::sweep(sweep.id), encode(sweep));
        self.db().apply_batch(batch).map_err(storage_error)?;
        self.durable().await
    }

    /// Writes changed trial records of sweep `id`, without waiting for the disk: for
    /// results read off runs that ended, which a restart reads off them again.
    pub fn record_trials(&self, id: RunId, trials: &[&TrialRecord]) -> Result<(), ApiError> {
        self.db().apply_batch(trials_batch(id, trials)).map_err(storage_error)
    }

    /// Saves a sweep that has ended and ends its parent run with `status`, in one write.
    /// A parent already ended (or deleted) keeps its state.
    pub async fn end_sweep(&self, sweep: &SweepRecord, status: RunStatus) -> Result<(), ApiError> {
        {
            let _guard = self.write_guard();
            let mut batch = Batch::default();
            batch.insert(keys::sweep(sweep.id), encode(sweep));
            match self.run_info(sweep.id) {
                Ok(mut info) if !info.status.is_terminal() => {
                    info.status = status;
                    info.end_time_ms = sweep.ended_ms.or_else(|| Some(now_ms()));
                    batch.insert(keys::run(info.run_id), encode(&info));
                }
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
            self.write_run(sweep.id, batch)?;
        }
        self.durable().await
    }

    pub fn sweep_record(&self, id: RunId) -> Result<Option<SweepRecord>, ApiError> {
        match self.db().get(keys::sweep(id)).map_err(storage_error)? {
            Some(value) => Ok(Some(decode(&value, "sweep")?)),
            None => Ok(None),
        }
    }

    /// Every sweep, oldest first.
    pub fn sweep_records(&self) -> Result<Vec<SweepRecord>, ApiError> {
        let mut sweeps: Vec<SweepRecord> = Vec::new();
        for entry in self.db().scan_prefix(keys::SWEEP) {
            let (_, value) = entry.map_err(storage_error)?;
            sweeps.push(decode(&value, "sweep")?);
        }
        sweeps.sort_by_key(|sweep| sweep.created_ms);
        Ok(sweeps)
    }

    /// A sweep's trials, by index.
    pub fn trial_records(&self, id: RunId) -> Result<Vec<TrialRecord>, ApiError> {
        let mut trials = Vec::new();
        for entry in self.db().scan_prefix(keys::sweep_trials(id)) {
            let (_, value) = entry.map_err(storage_error)?;
            trials.push(decode(&value, "sweep trial")?);
        }
        Ok(trials)
    }
}

/// A batch writing the trial records `trials` of sweep `id`.
fn trials_batch(id: RunId, trials: &[&TrialRecord]) -> Batch {
    let mut batch = Batch::default();
    for trial in trials {
        batch.insert(keys::sweep_trial(id, trial.trial.index), encode(trial));
    }
    batch
}
