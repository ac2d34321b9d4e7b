//! Combined logging: concurrent `log_batch` and `log_metrics` calls are written together.
//!
//! sled's cost is per record, so a call that logs ten keys pays for twenty records (a history
//! chunk and a latest value per key) whatever its size. Calls queue their changes instead; one
//! caller at a time, the leader, takes everything queued and writes it as one sled batch with
//! one history chunk and one latest value per (run, key), however many calls logged to it.
//! While a group is written the next one gathers, so the busier the store, the larger the
//! groups. Each call stays all-or-nothing: one refused (a deleted run, a param that would
//! change) is answered with its error and the rest of its group goes ahead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use drover_proto::ApiError;
use drover_proto::domain::{Metric, Param, Run, RunId, RunInfo, Tag};
use drover_proto::execution::{MetricPoint, MetricSeries};
use tokio::sync::oneshot;

use super::history::{latest_of, supersedes};
use super::staging::stage_tags;
use super::{Batch, Store, Ticket, keys, storage_error};
use drover_proto::tags;

/// Calls waiting to be written, and whether a leader is writing.
#[derive(Default)]
pub(super) struct Ingest {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    leading: bool,
}

/// One call's changes to one run.
pub(super) struct Logged {
    pub run_id: RunId,
    pub series: Vec<MetricSeries>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

struct Job {
    logged: Logged,
    done: oneshot::Sender<Result<Ticket, ApiError>>,
}

/// What a group changes in one run, in the order its calls were queued.
struct RunChanges {
    info: RunInfo,
    params: HashMap<String, String>,
    series: Vec<MetricSeries>,
    series_index: HashMap<String, usize>,
    tags: Vec<Tag>,
}

impl Ingest {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data that a panic cannot leave half-changed.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Held while a group is written. Should writing it panic, the calls still queued are
/// answered with an error and leadership is given up, so later calls are not left waiting for
/// a leader that is gone.
struct Leadership<'a> {
    ingest: &'a Ingest,
    written: bool,
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        if !self.written {
            let mut queue = self.ingest.queue();
            queue.jobs.clear();
            queue.leading = false;
        }
    }
}

impl Store {
    /// Writes `logged` with whatever else is queued, and waits until it is durable.
    pub(super) async fn log_combined(&self, logged: Logged) -> Result<(), ApiError> {
        let (done, outcome) = oneshot::channel();
        let lead = {
            let mut queue = self.inner.ingest.queue();
            queue.jobs.push(Job { logged, done });
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            self.lead_group();
        }
        let ticket = outcome.await.map_err(|_| {
            ApiError::Internal(
                "the write was abandoned after an internal error; log it again".to_string(),
            )
        })??;
        self.wait(ticket).await
    }

    /// Writes one group, then hands leadership to a new task while calls are still queued,
    /// so no caller waits on more than one group besides its own. Outside a tokio runtime
    /// there is no task to hand to, and the leader writes on until the queue is empty.
    fn lead_group(&self) {
        let mut leadership = Leadership { ingest: &self.inner.ingest, written: false };
        loop {
            let jobs = std::mem::take(&mut self.inner.ingest.queue().jobs);
            self.write_group(jobs);
            {
                let mut queue = self.inner.ingest.queue();
                if queue.jobs.is_empty() {
                    queue.leading = false;
                    leadership.written = true;
                    return;
                }
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let store = self.clone();
                // Detached on purpose: the new leader only writes groups whose callers are
                // waiting for its answer, so it is awaited through them, and a shutdown
                // drains those calls before the store closes.
                runtime.spawn(async move { store.lead_group() });
                leadership.written = true;
                return;
            }
        }
    }

    /// Writes the calls of one group that can be written, and answers every call. Refusals
    /// are answered after the write: one may rest on a value staged by an earlier call of the
    /// group, so if the write fails, every call gets that failure instead.
    fn write_group(&self, jobs: Vec<Job>) {
        let _guard = self.write_guard();
        let mut runs: HashMap<RunId, RunChanges> = HashMap::new();
        let mut accepted = Vec::with_capacity(jobs.len());
        let mut refused = Vec::new();
        for Job { logged, done } in jobs {
            match self.stage_logged(&mut runs, logged) {
                Ok(()) => accepted.push(done),
                Err(error) => refused.push((done, error)),
            }
        }
        let outcome = (!accepted.is_empty()).then(|| self.apply_changes(runs));
        let failure = match &outcome {
            Some(Err(failure)) => Some(failure.clone()),
            _ => None,
        };
        for (done, error) in refused {
            let _ = done.send(Err(failure.clone().unwrap_or(error)));
        }
        if let Some(outcome) = outcome {
            for done in accepted {
                let _ = done.send(outcome.clone());
            }
        }
    }

    /// Checks one call against the store and the group so far, and adds it to the group only
    /// if all of it can be written.
    fn stage_logged(
        &self,
        runs: &mut HashMap<RunId, RunChanges>,
        logged: Logged,
    ) -> Result<(), ApiError> {
        let Logged { run_id, series, params, tags } = logged;
        let changes = match runs.entry(run_id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(RunChanges {
                info: self.active_run_info(run_id)?,
                params: HashMap::new(),
                series: Vec::new(),
                series_index: HashMap::new(),
                tags: Vec::new(),
            }),
        };
        let (fresh, conflicts) = self.check_params(run_id, &params, &changes.params)?;
        if let Some(conflict) = conflicts.first() {
            return Err(ApiError::InvalidArgument(conflict.to_string()));
        }
        changes.params.extend(fresh.into_iter().map(|param| (param.key, param.value)));
        for MetricSeries { key, points } in series {
            match changes.series_index.get(&key) {
                Some(&index) => changes.series[index].points.extend(points),
                None => {
                    changes.series_index.insert(key.clone(), changes.series.len());
                    changes.series.push(MetricSeries { key, points });
                }
            }
        }
        changes.tags.extend(tags);
        Ok(())
    }

    /// Writes a group's changes as one atomic batch; the ticket covers all of them. Runs whose
    /// search views are cached get their views brought up to date rather than dropped, so
    /// searches between writes never read a logging run afresh.
    fn apply_changes(&self, runs: HashMap<RunId, RunChanges>) -> Result<Ticket, ApiError> {
        let mut batch = Batch::default();
        let mut views = Vec::new();
        for (run_id, changes) in runs {
            if let Some(view) = self.cached_run(run_id) {
                views.push(Arc::new(updated_view(&view, &changes)));
            }
            for (key, value) in &changes.params {
                batch.insert(keys::param(run_id, key), value.as_bytes());
            }
            self.stage_metrics(run_id, &changes.series, &mut batch)?;
            stage_tags(changes.info, &changes.tags, &mut batch);
        }
        // A failed write changed nothing, so the cached views stay as they are.
        self.db().apply_batch(batch).map_err(storage_error)?;
        self.cache_runs(views);
        Ok(self.ticket())
    }
}

/// `run`'s search view once `changes` are written: what reading the run back would give.
fn updated_view(run: &Run, changes: &RunChanges) -> Run {
    let mut run = run.clone();
    let data = &mut run.data;
    // Params are write-once, so the staged ones are all new to the run.
    let params =
        changes.params.iter().map(|(key, value)| Param { key: key.clone(), value: value.clone() });
    merge_by_key(&mut data.params, params, |param| &param.key);
    merge_by_key(&mut data.tags, changes.tags.iter().cloned(), |tag| &tag.key);
    if let Some(tag) = changes.tags.iter().rev().find(|tag| tag.key == tags::RUN_NAME) {
        run.info.run_name = tag.value.clone();
    }
    let mut new_keys = Vec::new();
    for series in &changes.series {
        let Some(candidate) = latest_of(&series.points) else { continue };
        let latest = Metric {
            key: series.key.clone(),
            value: candidate.value,
            timestamp_ms: candidate.timestamp_ms,
            step: candidate.step,
        };
        match data.latest_metrics.binary_search_by(|metric| metric.key.cmp(&series.key)) {
            Ok(index) => {
                let current = &data.latest_metrics[index];
                let current = MetricPoint {
                    step: current.step,
                    timestamp_ms: current.timestamp_ms,
                    value: current.value,
                };
                if supersedes(&candidate, &current) {
                    data.latest_metrics[index] = latest;
                }
            }
            Err(_) => new_keys.push(latest),
        }
    }
    merge_by_key(&mut data.latest_metrics, new_keys, |metric| &metric.key);
    run
}

/// Adds `changes` to `items`, sorted by key as the store lists them; a change replaces an item
/// with its key, and of several changes to one key the last wins. Costs a sort that finds
/// `items` already in order, not a shift per change.
fn merge_by_key<T>(
    items: &mut Vec<T>,
    changes: impl IntoIterator<Item = T>,
    key_of: impl Fn(&T) -> &String,
) {
    let before = items.len();
    items.extend(changes);
    if items.len() == before {
        return;
    }
    // A stable sort keeps equal keys in order: the item first, then its changes as they came.
    items.sort_by(|a, b| key_of(a).cmp(key_of(b)));
    let mut merged: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if merged.last().is_some_and(|last| key_of(last) == key_of(&item)) {
            merged.pop();
        }
        merged.push(item);
    }
    *items = merged;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use drover_proto::domain::{
        CreateRun, DEFAULT_EXPERIMENT_ID, Metric, MetricHistoryQuery, RunStatus,
    };

    use super::*;

    fn metric(key: &str, value: f64, timestamp_ms: i64, step: i64) -> Metric {
        Metric { key: key.to_string(), value, timestamp_ms, step }
    }

    fn param(key: &str, value: &str) -> Param {
        Param { key: key.to_string(), value: value.to_string() }
    }

    fn history(run_id: RunId, key: &str) -> MetricHistoryQuery {
        MetricHistoryQuery {
            run_id,
            key: key.to_string(),
            start_step: None,
            end_step: None,
            max_results: None,
            page_token: None,
            attempt: None,
        }
    }

    /// Concurrent calls are written in groups; each must still stand or fall alone, as if the
    /// calls had been made one after another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_keeps_each_call_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let new_run = CreateRun {
            experiment_id: DEFAULT_EXPERIMENT_ID,
            run_name: None,
            user_id: String::new(),
            start_time_ms: None,
            tags: Vec::new(),
            status: RunStatus::Running,
        };
        let live = store.create_run(new_run.clone()).await.unwrap().info.run_id;
        let deleted = store.create_run(new_run.clone()).await.unwrap().info.run_id;
        let curves = store.create_run(new_run.clone()).await.unwrap().info.run_id;
        let tagged = store.create_run(new_run).await.unwrap().info.run_id;
        store.delete_run(deleted).await.unwrap();

        // Every call claims the same write-once param with its own value, so exactly one of the
        // calls to the live run can succeed; every other one must leave no trace.
        store.inner.ingest.queue().leading = true;
        let calls = 48;
        let mut tasks = Vec::new();
        for call in 0..calls {
            let store = store.clone();
            let run_id = if call % 4 == 3 { deleted } else { live };
            tasks.push(tokio::spawn(async move {
                let outcome = store
                    .log_batch(
                        run_id,
                        vec![metric("loss", call as f64, 1, call), metric("acc", 0.5, 1, call)],
                        vec![param("owner", &call.to_string()), param(&format!("p{call}"), "x")],
                        vec![Tag::new("mlflow.runName", format!("name-{call}"))],
                    )
                    .await;
                (call, run_id, outcome)
            }));
        }
        // Calls to another run that all log to one key, merged into one chunk and one latest
        // value whatever order they queue in.
        let mut curve_tasks = Vec::new();
        for call in 0..10 {
            let store = store.clone();
            let steps = [30 - call, 20 - call, 10 - call];
            curve_tasks.push(tokio::spawn(async move {
                let points = steps.iter().map(|&step| metric("curve", step as f64, 7, step));
                store.log_metrics(curves, points.collect()).await
            }));
        }
        // Calls that overwrite each other's tags and add params and metrics in between.
        for call in 0..6 {
            let store = store.clone();
            curve_tasks.push(tokio::spawn(async move {
                let tags =
                    vec![Tag::new("t", call.to_string()), Tag::new(format!("k{}", call % 3), "v")];
                let params = vec![param(&format!("q{}", call % 2), "same")];
                let points = vec![metric("z", call as f64, 5 - call, 1), metric("a", 1.0, 1, 1)];
                store.log_batch(tagged, points, params, tags).await.map(|()| 3)
            }));
        }
        // Hold the group back until every call has queued, so all of them are written as one.
        while store.inner.ingest.queue().jobs.len() < calls as usize + curve_tasks.len() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        store.lead_group();
        let mut winners = Vec::new();
        for task in tasks {
            let (call, run_id, outcome) = task.await.unwrap();
            match outcome {
                Ok(()) => {
                    assert_eq!(run_id, live, "call {call} to a deleted run was accepted");
                    winners.push(call);
                }
                Err(ApiError::FailedPrecondition(_)) => assert_eq!(run_id, deleted),
                Err(ApiError::InvalidArgument(message)) => {
                    assert_eq!(run_id, live);
                    assert!(message.contains("'owner'"), "{message}");
                }
                Err(other) => panic!("call {call}: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        for task in curve_tasks {
            assert_eq!(task.await.unwrap().unwrap(), 3);
        }
        // The search views, kept up to date by the group, are what reading the runs gives.
        for run_id in [live, curves, tagged] {
            assert_eq!(*store.cached_run(run_id).unwrap(), store.run(run_id).unwrap());
        }
        let tagged_run = store.run(tagged).unwrap();
        let keys: Vec<&str> = tagged_run.data.tags.iter().map(|tag| tag.key.as_str()).collect();
        assert_eq!(keys, ["k0", "k1", "k2", "mlflow.runName", "t"]);
        assert_eq!(tagged_run.data.latest_metrics[1], metric("z", 0.0, 5, 1));
        let winner = winners[0];

        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let run = store.run(live).unwrap();
        let mut params = run.data.params.clone();
        params.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            params,
            vec![param("owner", &winner.to_string()), param(&format!("p{winner}"), "x")]
        );
        assert_eq!(run.info.run_name, format!("name-{winner}"));
        let loss = store.metric_history(history(live, "loss")).unwrap().items;
        assert_eq!(loss, vec![metric("loss", winner as f64, 1, winner)]);
        let acc = store.metric_history(history(live, "acc")).unwrap().items;
        assert_eq!(acc.len(), 1);
        let deleted_run = store.run(deleted).unwrap();
        assert!(deleted_run.data.params.is_empty() && deleted_run.data.latest_metrics.is_empty());
        let curve = store.metric_history(history(curves, "curve")).unwrap().items;
        assert_eq!(
            curve.iter().map(|point| point.step).collect::<Vec<_>>(),
            (1..=30).collect::<Vec<_>>()
        );
        assert_eq!(
            store.run(curves).unwrap().data.latest_metrics,
            vec![metric("curve", 30.0, 7, 30)]
        );
    }
}
