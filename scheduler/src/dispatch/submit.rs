//! Queueing runs: a submission, or a sweep's trial, is written to the store with the facts
//! the scheduler vouches for, then handed to the dispatcher to place.

use drover_proto::ApiError;
use drover_proto::domain::{Run, Tag};
use drover_proto::execution::SubmitRun;
use drover_proto::sweep::Trial;
use drover_proto::tags;

use super::DispatchHandle;
use crate::store::{SweepRecord, TrialRecord};

impl DispatchHandle {
    /// Queues a run whose snapshot the caller has checked is stored.
    pub async fn submit_run(&self, mut request: SubmitRun) -> Result<Run, ApiError> {
        self.check(&request.spec).await?;
        add_facts(&mut request);
        let (run, record) = self.store.submit_run(request).await?;
        self.submitted(record).await?;
        Ok(run)
    }

    /// Queues a sweep's trial: its run, its record and the sweep's cursor in one write.
    pub async fn submit_trial(
        &self,
        sweep: &SweepRecord,
        trial: Trial,
        mut request: SubmitRun,
    ) -> Result<TrialRecord, ApiError> {
        add_facts(&mut request);
        let (run, record, trial) = self.store.submit_trial(sweep, trial, request)?;
        // The trial is written and its run queued in the store (the dispatcher recovers it
        // from there after a restart); what follows cannot undo that. Its placement's flush
        // makes it durable before any worker hears of it.
        let run_id = run.info.run_id;
        if let Err(error) = self.submitted(record).await {
            tracing::warn!(%run_id, %error, "the dispatcher did not take the trial's run");
        }
        Ok(trial)
    }
}

/// Adds the tags the scheduler vouches for, whatever the client sent.
fn add_facts(request: &mut SubmitRun) {
    let spec = &request.spec;
    let mut facts = vec![
        Tag::new(tags::SNAPSHOT, spec.snapshot.as_str()),
        Tag::new(tags::ENTRY_POINT, &spec.entry_point),
        Tag::new(tags::ENV_MANAGER, spec.env_manager.as_str()),
    ];
    if let Some(image) = &spec.image {
        facts.push(Tag::new(tags::IMAGE, image));
    }
    request.tags.retain(|tag| !facts.iter().any(|fact| fact.key == tag.key));
    request.tags.extend(facts);
}
