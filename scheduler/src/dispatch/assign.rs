//! The dispatcher's placement pass: queued runs in order (highest priority first, then
//! first submitted), each to the worker whose free resources hold it (see `placement`),
//! with the GPU devices it then holds; a run that cannot go anywhere now waits, and says
//! why, while the runs behind it may still fit elsewhere.

use drover_proto::domain::{RunId, Tag};
use drover_proto::execution::{Assignment, RunSpec, SchedulerMessage};
use drover_proto::tags;

use super::placement::{Request, WorkerView, choose, possible};
use super::{Dispatcher, Hold, Worker};
use crate::store::{AttemptRecord, Placement, RunChange, now_ms};

/// The plain wait of a full cluster: not worth a note on every queued run.
const NO_FREE_SLOT: &str = "no worker with a free slot";
/// Queued runs looked at in one pass, at most: past them, a pass would cost more than the
/// runs it could place are worth.
const MAX_SCANNED: usize = 1000;

impl Dispatcher {
    /// A worker's capacity, and what its current attempts hold.
    pub(super) fn view(&self, worker: &Worker) -> WorkerView {
        let registration = &worker.registration;
        let mut view = WorkerView {
            id: registration.worker_id.clone(),
            open: worker.outbox.is_some() && !self.drained.contains(&registration.worker_id),
            docker: registration.docker_available,
            labels: registration.labels.clone(),
            slots: registration.slots,
            slots_used: worker.attempts.len() as u32,
            cpus: registration.cpus,
            cpus_used: 0.0,
            memory_bytes: registration.memory_bytes,
            memory_used: 0,
            gpus: registration.gpus.clone(),
            gpus_used: Vec::new(),
        };
        for hold in worker.attempts.values() {
            view.cpus_used += hold.cpus;
            view.memory_used += hold.memory_bytes;
            view.gpus_used.extend(hold.gpu_ids.iter().cloned());
        }
        view
    }

    /// Whether a run could ever be placed on a registered worker; else why not.
    pub(super) fn check_possible(&self, spec: &RunSpec) -> Result<(), String> {
        let request = Request::of(spec)?;
        let views: Vec<WorkerView> = self.workers.values().map(|w| self.view(w)).collect();
        possible(&views, &request)
    }

    /// Places what fits of the queue. The workers are looked at once per pass, and each
    /// placement counted in, so a pass costs the queue plus the workers, not their product.
    /// The pass's placements are written together and sent to their workers once durable
    /// (by the courier, so the next pass need not wait for the flush): no worker runs an
    /// attempt a restarted scheduler would not know of.
    pub(super) async fn place(&mut self) {
        let keys: Vec<_> = self.queue.iter().take(MAX_SCANNED).copied().collect();
        let mut views: Vec<WorkerView> =
            self.workers.values().map(|worker| self.view(worker)).collect();
        self.place_again = false;
        let scanned_all = keys.len() == MAX_SCANNED;
        let mut placed: Vec<(String, Assignment)> = Vec::new();
        for key in keys {
            let Some(record) = self.records.get(&key.2) else {
                self.queue.remove(&key);
                continue;
            };
            if !views.iter().any(|view| view.open && view.slots_used < view.slots) {
                // Nothing can be placed anywhere until a slot frees.
                return self.send_placed(placed);
            }
            let request = Request::of(&record.spec);
            let chosen =
                request.as_ref().map_err(Clone::clone).and_then(|request| choose(&views, request));
            let (worker_id, gpu_ids) = match chosen {
                Ok(chosen) => chosen,
                Err(reason) => {
                    let run_id = record.run_id;
                    self.note_waiting(run_id, reason).await;
                    continue;
                }
            };
            let mut record = record.clone();
            record.attempt += 1;
            record.placement = Placement::Assigned { worker_id: worker_id.clone() };
            record.attempts.push(AttemptRecord {
                attempt: record.attempt,
                worker_id: worker_id.clone(),
                assigned_ms: now_ms(),
                started_ms: None,
                ended_ms: None,
                exit_code: None,
                outcome: String::new(),
                gpu_ids: gpu_ids.clone(),
            });
            let attempt = record.current_attempt();
            let mut change = RunChange {
                tags: vec![
                    Tag::new(tags::WORKER, &worker_id),
                    Tag::new(tags::ATTEMPT, attempt.attempt.to_string()),
                ],
                ..RunChange::default()
            };
            if !gpu_ids.is_empty() {
                change.tags.push(Tag::new(tags::GPUS, gpu_ids.join(",")));
            }
            if self.waiting.remove(&record.run_id).is_some() {
                change.removed_tags.push(tags::WAITING.to_string());
            }
            let gpus = if gpu_ids.is_empty() {
                String::new()
            } else {
                format!(" with GPUs {}", gpu_ids.join(","))
            };
            change.log_line =
                Some(format!("attempt {} assigned to worker {worker_id}{gpus}", attempt.attempt));
            if let Err(error) = self.store.write_execution(&record, change) {
                tracing::error!(%attempt, %error, "could not record an assignment; leaving the run queued");
                break;
            }
            self.queue.remove(&key);
            if let (Ok(request), Some(view)) =
                (&request, views.iter_mut().find(|view| view.id == worker_id))
            {
                view.take(request, &gpu_ids);
            }
            let waited = now_ms().saturating_sub(record.submitted_ms);
            self.telemetry.placed(std::time::Duration::from_millis(waited.max(0) as u64));
            let assignment = Assignment {
                attempt,
                experiment_id: record.experiment_id,
                spec: record.spec.clone(),
                gpu_ids,
            };
            if let Some(worker) = self.workers.get_mut(&worker_id) {
                worker.attempts.insert(attempt, Hold::of(&record));
            }
            self.records.insert(record.run_id, record);
            tracing::info!(%attempt, worker_id, "run assigned");
            placed.push((worker_id, assignment));
        }
        // The pass stopped at its scan limit with room left: another follows at once.
        self.place_again = scanned_all && !placed.is_empty();
        self.send_placed(placed);
    }

    /// Sends a pass's placements to their workers once they are durable, without waiting.
    fn send_placed(&mut self, placed: Vec<(String, Assignment)>) {
        if placed.is_empty() {
            return;
        }
        let messages = placed
            .into_iter()
            .filter_map(|(worker_id, assignment)| {
                let outbox = self.workers.get(&worker_id)?.outbox.clone()?;
                Some((outbox, SchedulerMessage::Assign(Box::new(assignment))))
            })
            .collect();
        self.courier.send_when_durable(self.store.ticket(), messages);
    }

    /// Records why a run waits, as a tag `drover runs describe` and the UI show, when the
    /// reason is more than a full cluster and has changed.
    async fn note_waiting(&mut self, run_id: RunId, reason: String) {
        if reason == NO_FREE_SLOT || self.waiting.get(&run_id) == Some(&reason) {
            return;
        }
        let Some(record) = self.records.get(&run_id).cloned() else { return };
        let change =
            RunChange { tags: vec![Tag::new(tags::WAITING, &reason)], ..RunChange::default() };
        match self.store.save_execution(&record, change).await {
            Ok(_) => {
                tracing::info!(%run_id, reason, "run waits");
                self.waiting.insert(run_id, reason);
                self.changed();
            }
            Err(error) => tracing::error!(%run_id, %error, "could not record why a run waits"),
        }
    }
}
