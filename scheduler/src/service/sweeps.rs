//! Parameter sweeps: created and cancelled through the driver, read from the store.

use drover_proto::ApiError;
use drover_proto::domain::{ExperimentId, RunId};
use drover_proto::service::Sweeps;
use drover_proto::sweep::{CreateSweep, Sweep};

use super::Scheduler;
use crate::sweep;

impl Sweeps for Scheduler {
    async fn create_sweep(&self, request: CreateSweep) -> Result<Sweep, ApiError> {
        // Every trial asks what the template asks; one no worker could hold is refused now.
        self.dispatch.check(&request.run.spec).await?;
        let id = self.sweeps.create(request).await?;
        self.get_sweep(id).await
    }

    async fn get_sweep(&self, sweep_id: RunId) -> Result<Sweep, ApiError> {
        let record = self
            .store
            .sweep_record(sweep_id)?
            .ok_or_else(|| ApiError::NotFound(format!("no sweep with ID {sweep_id}")))?;
        let trials = self.store.trial_records(sweep_id)?;
        Ok(sweep::view(&record, &trials))
    }

    async fn list_sweeps(&self, experiment: Option<ExperimentId>) -> Result<Vec<Sweep>, ApiError> {
        let mut sweeps = Vec::new();
        for record in self.store.sweep_records()? {
            if sweep::in_experiment(&record, experiment) {
                let trials = self.store.trial_records(record.id)?;
                sweeps.push(sweep::view(&record, &trials));
            }
        }
        Ok(sweeps)
    }

    async fn cancel_sweep(&self, sweep_id: RunId) -> Result<Sweep, ApiError> {
        self.sweeps.cancel(sweep_id).await?;
        self.get_sweep(sweep_id).await
    }
}
