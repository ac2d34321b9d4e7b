//! The sweep driver: one task that keeps each running sweep's children queued or running up
//! to its `parallel`, records every child's result, enforces the failure budget, stops
//! children early by the sweep's rule, and ends the sweep when its trials are done.

use std::collections::HashMap;
use std::time::Duration;

use drover_proto::ApiError;
use drover_proto::domain::{CreateRun, Metric, MetricHistoryQuery, RunId, RunStatus, Tag};
use drover_proto::execution::SubmitRun;
use drover_proto::sweep::{
    CreateSweep, EarlyStop, Goal, Method, StopRule, SweepStatus, Trial, TrialState,
};
use drover_proto::tags;
use tokio::sync::{mpsc, watch};

use super::handle::{Command, SweepCommands};
use super::space::{self, Observation, Space};
use super::stopping;
use super::view::best_trial;
use crate::dispatch::DispatchHandle;
use crate::snapshots::SnapshotStore;
use crate::store::{Store, SweepRecord, TrialRecord, TrialTemplate, now_ms};

/// How often running sweeps are looked at when nothing wakes the driver.
const TICK: Duration = Duration::from_millis(500);
/// How often early stopping reads the running children's curves, at most.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// A sweep the driver is working on: running, or ended with children still active.
struct ActiveSweep {
    record: SweepRecord,
    space: Space,
    /// Every trial so far; a trial's index is its position.
    trials: Vec<TrialRecord>,
    /// Positions of the trials still queued or running.
    active: Vec<usize>,
    failed: u32,
    finished: u32,
    /// Values recorded at each ASHA rung, across the sweep's trials.
    rungs: Vec<Vec<f64>>,
    /// The finished trials' objective curves, for the median rule (loaded on first use).
    curves: HashMap<u64, Vec<(i64, f64)>>,
    curves_loaded: bool,
    /// The running trials' curves so far, read a step range at a time.
    live: HashMap<u64, Vec<(i64, f64)>>,
    /// Trials whose early stop this process has carried out (tags set, cancel sent).
    stops_sent: std::collections::HashSet<u64>,
    /// The best value the parent run shows; `None` until this process has published one.
    published_best: Option<f64>,
}

impl ActiveSweep {
    fn new(record: SweepRecord, trials: Vec<TrialRecord>) -> ActiveSweep {
        let mut rungs: Vec<Vec<f64>> = Vec::new();
        for trial in &trials {
            for (rung, value) in trial.rungs.iter().enumerate() {
                if rungs.len() <= rung {
                    rungs.resize(rung + 1, Vec::new());
                }
                rungs[rung].push(*value);
            }
        }
        let space = Space::new(&record.spec.parameters);
        let in_state = |state: TrialState| {
            trials.iter().filter(|trial| trial.trial.state == state).count() as u32
        };
        let (failed, finished) = (in_state(TrialState::Failed), in_state(TrialState::Finished));
        let active = (0..trials.len())
            .filter(|index| trials[*index].trial.state == TrialState::Active)
            .collect();
        ActiveSweep {
            record,
            space,
            trials,
            active,
            failed,
            finished,
            rungs,
            curves: HashMap::new(),
            curves_loaded: false,
            live: HashMap::new(),
            stops_sent: Default::default(),
            published_best: None,
        }
    }

    fn goal(&self) -> Option<Goal> {
        self.record.spec.objective.as_ref().map(|objective| objective.goal)
    }

    fn active(&self) -> impl Iterator<Item = &TrialRecord> {
        self.active.iter().map(|index| &self.trials[*index])
    }

    /// Whether no more trials will be created.
    fn exhausted(&self) -> bool {
        let limit = match self.record.spec.method {
            Method::Grid => self.space.grid_size().min(u64::from(self.record.spec.max_runs)),
            Method::Random | Method::Tpe => u64::from(self.record.spec.max_runs),
        };
        self.record.next_trial >= limit
    }

    /// The parameters of the next trial.
    fn suggest(&self) -> Option<Vec<(String, String)>> {
        let spec = &self.record.spec;
        let index = self.record.next_trial;
        match spec.method {
            Method::Grid => self.space.grid_point(index),
            Method::Random => Some(self.space.random_point(spec.seed, index)),
            Method::Tpe => {
                let sign = match self.goal() {
                    Some(Goal::Maximize) => -1.0,
                    _ => 1.0,
                };
                let mut history: Vec<Observation> = self
                    .trials
                    .iter()
                    .filter(|trial| {
                        matches!(trial.trial.state, TrialState::Finished | TrialState::Stopped)
                    })
                    .filter_map(|trial| {
                        Some(Observation {
                            params: &trial.trial.params,
                            loss: sign * trial.trial.value?,
                        })
                    })
                    .collect();
                // Trials still running count as the worst result so far (a "constant
                // liar"), so parallel suggestions spread out instead of piling onto the
                // same promising point. Only once TPE models results: before that, trials
                // are drawn at random anyway.
                let worst = history
                    .iter()
                    .map(|observation| observation.loss)
                    .filter(|loss| loss.is_finite())
                    .reduce(f64::max);
                if let Some(worst) = worst
                    && history.len() >= space::TPE_STARTUP
                {
                    history.extend(
                        self.active()
                            .map(|trial| Observation { params: &trial.trial.params, loss: worst }),
                    );
                }
                Some(self.space.tpe_point(spec.seed, index, &history))
            }
        }
    }
}

/// The sweep driver's state, owned by its task.
pub struct Driver {
    store: Store,
    dispatch: DispatchHandle,
    snapshots: SnapshotStore,
    commands: mpsc::Receiver<Command>,
    sweeps: HashMap<RunId, ActiveSweep>,
    last_stop_check: std::time::Instant,
}

impl Driver {
    /// Loads the sweeps still in progress from the store.
    pub fn recover(
        store: Store,
        dispatch: DispatchHandle,
        snapshots: SnapshotStore,
        commands: SweepCommands,
    ) -> Result<Driver, ApiError> {
        let mut sweeps = HashMap::new();
        for record in store.sweep_records()? {
            let trials = store.trial_records(record.id)?;
            let busy = trials.iter().any(|trial| trial.trial.state == TrialState::Active);
            if record.status == SweepStatus::Running || busy {
                sweeps.insert(record.id, ActiveSweep::new(record, trials));
            }
        }
        if !sweeps.is_empty() {
            tracing::info!(sweeps = sweeps.len(), "recovered sweeps in progress");
        }
        Ok(Driver {
            store,
            dispatch,
            snapshots,
            commands: commands.0,
            sweeps,
            last_stop_check: std::time::Instant::now(),
        })
    }

    pub async fn run(mut self, mut changes: watch::Receiver<u64>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                _ = changes.changed() => {}
                _ = ticks.tick() => {}
            }
            let check_stops = self.last_stop_check.elapsed() >= STOP_CHECK_INTERVAL;
            if check_stops {
                self.last_stop_check = std::time::Instant::now();
            }
            let ids: Vec<RunId> = self.sweeps.keys().copied().collect();
            for id in ids {
                if let Err(error) = self.step(id, check_stops).await {
                    tracing::error!(sweep = %id, %error, "cannot advance the sweep");
                }
            }
        }
        tracing::debug!("sweep driver stopped");
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Create { request, reply } => {
                let mut created = self.create(*request).await;
                if let Ok(id) = &created {
                    if let Err(error) = self.step(*id, false).await {
                        tracing::error!(sweep = %id, %error, "cannot start the sweep");
                    }
                    // The answer counts the first trials, which were written without waiting
                    // for the disk: one flush for them all.
                    if let Err(error) = self.store.durable().await {
                        created = Err(error);
                    }
                }
                let _ = reply.send(created);
            }
            Command::Cancel { id, reply } => {
                let _ = reply.send(self.cancel(id).await);
            }
        }
    }

    async fn create(&mut self, request: CreateSweep) -> Result<RunId, ApiError> {
        let CreateSweep { spec, run, name } = request;
        self.snapshots.require(&run.spec.snapshot)?;
        let name = name
            .or(run.run_name.clone())
            .unwrap_or_else(|| format!("{}-sweep", run.spec.project_name));
        let mut parent_tags = vec![
            Tag::new(tags::SWEEP_METHOD, spec.method.as_str()),
            Tag::new(tags::SWEEP_MAX_RUNS, spec.max_runs.to_string()),
            Tag::new(tags::SWEEP_PARALLEL, spec.parallel.to_string()),
            Tag::new(tags::SWEEP_SEED, spec.seed.to_string()),
        ];
        if let Some(objective) = &spec.objective {
            parent_tags.push(Tag::new(tags::SWEEP_METRIC, objective.metric.clone()));
            parent_tags.push(Tag::new(tags::SWEEP_GOAL, objective.goal.as_str()));
        }
        parent_tags.extend(run.tags.iter().cloned());
        let parent = CreateRun {
            experiment_id: run.experiment_id,
            run_name: Some(name.clone()),
            user_id: run.user_id.clone(),
            start_time_ms: None,
            tags: parent_tags,
            status: RunStatus::Running,
        };
        let record = SweepRecord {
            id: RunId([0; 16]),
            experiment_id: run.experiment_id,
            name,
            spec,
            template: TrialTemplate { user_id: run.user_id, tags: run.tags, spec: run.spec },
            status: SweepStatus::Running,
            reason: String::new(),
            next_trial: 0,
            created_ms: now_ms(),
            ended_ms: None,
        };
        let (_, record) = self.store.create_sweep(parent, record).await?;
        let id = record.id;
        tracing::info!(sweep = %id, method = record.spec.method.as_str(), "sweep created");
        self.sweeps.insert(id, ActiveSweep::new(record, Vec::new()));
        Ok(id)
    }

    async fn cancel(&mut self, id: RunId) -> Result<(), ApiError> {
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            return match self.store.sweep_record(id)? {
                Some(record) => Err(ApiError::FailedPrecondition(format!(
                    "sweep {id} has already ended ({})",
                    record.status.as_str()
                ))),
                None => Err(ApiError::NotFound(format!("no sweep with ID {id}"))),
            };
        };
        if sweep.record.status.is_terminal() {
            return Err(ApiError::FailedPrecondition(format!(
                "sweep {id} has already ended ({})",
                sweep.record.status.as_str()
            )));
        }
        self.end(id, SweepStatus::Killed, "cancelled".to_string()).await
    }

    /// Ends a sweep: records the status and ends its parent run (one write), then cancels
    /// its active children.
    async fn end(
        &mut self,
        id: RunId,
        status: SweepStatus,
        reason: String,
    ) -> Result<(), ApiError> {
        let Some(sweep) = self.sweeps.get_mut(&id) else { return Ok(()) };
        let mut record = sweep.record.clone();
        record.status = status;
        record.reason = reason;
        record.ended_ms = Some(now_ms());
        let run_status = match status {
            SweepStatus::Running | SweepStatus::Finished => RunStatus::Finished,
            SweepStatus::Failed => RunStatus::Failed,
            SweepStatus::Killed => RunStatus::Killed,
        };
        self.store.end_sweep(&record, run_status).await?;
        sweep.record = record;
        let active: Vec<RunId> = sweep.active().map(|trial| trial.trial.run_id).collect();
        for run_id in active {
            if let Err(error) = self.dispatch.cancel(run_id).await {
                tracing::debug!(%run_id, %error, "cancelling a child run");
            }
        }
        tracing::info!(sweep = %id, status = status.as_str(), "sweep ended");
        Ok(())
    }

    /// Looks at one sweep: records ended children, enforces the failure budget, stops
    /// children early, creates trials up to `parallel`, and ends the sweep when it is done.
    async fn step(&mut self, id: RunId, check_stops: bool) -> Result<(), ApiError> {
        self.record_ended(id).await?;
        self.publish_best(id).await?;
        let Some(sweep) = self.sweeps.get(&id) else { return Ok(()) };
        if sweep.record.status.is_terminal() {
            if sweep.active().next().is_none() {
                self.sweeps.remove(&id);
            }
            return Ok(());
        }
        let failed = sweep.failed;
        if let Some(budget) = sweep.record.spec.max_failures
            && failed > budget
        {
            let reason =
                format!("{failed} child runs failed, more than the {budget} --max-failures allows");
            return self.end(id, SweepStatus::Failed, reason).await;
        }
        if check_stops {
            self.stop_early(id).await?;
        }
        self.launch(id).await?;
        let Some(sweep) = self.sweeps.get(&id) else { return Ok(()) };
        if sweep.exhausted() && sweep.active().next().is_none() {
            self.end(id, SweepStatus::Finished, String::new()).await?;
            self.sweeps.remove(&id);
        }
        Ok(())
    }

    /// Records the result of every active child that has ended. Changes reach memory only
    /// once they are saved, so a failed save is simply retried on the next step.
    async fn record_ended(&mut self, id: RunId) -> Result<(), ApiError> {
        let store = self.store.clone();
        let Some(sweep) = self.sweeps.get_mut(&id) else { return Ok(()) };
        let metric = sweep.record.spec.objective.as_ref().map(|o| o.metric.clone());
        let median = sweep.record.spec.early_stop.is_some_and(|stop| stop.rule == StopRule::Median);
        let mut ended: Vec<(usize, TrialRecord)> = Vec::new();
        let mut curves = Vec::new();
        for &index in &sweep.active {
            let run_id = sweep.trials[index].trial.run_id;
            // The status alone first: most wakes find every child still running.
            let status = match store.run_info(run_id) {
                Ok(info) => info.status,
                Err(ApiError::NotFound(_)) => {
                    // Deleted for good; count it as killed.
                    let mut record = sweep.trials[index].clone();
                    record.trial.state = TrialState::Killed;
                    ended.push((index, record));
                    continue;
                }
                Err(error) => return Err(error),
            };
            if !status.is_terminal() {
                continue;
            }
            let mut record = sweep.trials[index].clone();
            let trial = &mut record.trial;
            trial.state = match status {
                RunStatus::Finished => TrialState::Finished,
                RunStatus::Failed => TrialState::Failed,
                _ if !trial.stopped_by.is_empty() => TrialState::Stopped,
                _ => TrialState::Killed,
            };
            if trial.state != TrialState::Stopped
                && let Some(metric) = &metric
            {
                trial.value = store
                    .run(run_id)?
                    .data
                    .latest_metrics
                    .iter()
                    .find(|latest| latest.key == *metric)
                    .map(|latest| latest.value);
            }
            if median
                && trial.state == TrialState::Finished
                && let Some(metric) = &metric
            {
                curves.push((trial.index, curve(&store, trial.run_id, metric, None)?));
            }
            ended.push((index, record));
        }
        if ended.is_empty() {
            return Ok(());
        }
        let records: Vec<&TrialRecord> = ended.iter().map(|(_, record)| record).collect();
        // Not waited for: a restart reads the results off the runs again.
        store.record_trials(sweep.record.id, &records)?;
        for (index, record) in ended {
            match record.trial.state {
                TrialState::Finished => sweep.finished += 1,
                TrialState::Failed => sweep.failed += 1,
                _ => {}
            }
            sweep.live.remove(&record.trial.index);
            sweep.active.retain(|active| *active != index);
            sweep.trials[index] = record;
        }
        sweep.curves.extend(curves);
        Ok(())
    }

    /// Shows the best value so far on the parent run (as its metric, at the number of
    /// finished trials) and tags the best run.
    async fn publish_best(&mut self, id: RunId) -> Result<(), ApiError> {
        let store = self.store.clone();
        let Some(sweep) = self.sweeps.get_mut(&id) else { return Ok(()) };
        let Some(metric) = sweep.record.spec.objective.as_ref().map(|o| o.metric.clone()) else {
            return Ok(());
        };
        let Some(best) = best_trial(&sweep.record, &sweep.trials) else { return Ok(()) };
        if best.trial.value == sweep.published_best {
            return Ok(());
        }
        let (value, run_id) = (best.trial.value, best.trial.run_id);
        let point = Metric {
            key: metric,
            value: value.unwrap_or(f64::NAN),
            timestamp_ms: now_ms(),
            step: i64::from(sweep.finished),
        };
        match store.log_metrics(id, vec![point]).await {
            // The parent was deleted: nothing to show the value on.
            Err(ApiError::FailedPrecondition(_) | ApiError::NotFound(_)) => {}
            result => {
                result?;
                store
                    .set_tags(id, vec![Tag::new(tags::SWEEP_BEST_RUN, run_id.to_string())])
                    .await?;
            }
        }
        sweep.published_best = value;
        Ok(())
    }

    /// Applies the sweep's early stopping rule to its running children. A decision is saved
    /// on the trial before the run is tagged and cancelled, and carried out again (once per
    /// process) until the run ends, so neither a crash nor a failed call loses it.
    async fn stop_early(&mut self, id: RunId) -> Result<(), ApiError> {
        let store = self.store.clone();
        let Some(sweep) = self.sweeps.get_mut(&id) else { return Ok(()) };
        let (Some(rule), Some(objective)) =
            (sweep.record.spec.early_stop, sweep.record.spec.objective.clone())
        else {
            return Ok(());
        };
        let goal = objective.goal;
        if rule.rule == StopRule::Median && !sweep.curves_loaded {
            // Curves of trials that finished before this process started are read once, here;
            // later ones are added as they finish.
            let missing: Vec<(u64, RunId)> = sweep
                .trials
                .iter()
                .filter(|trial| trial.trial.state == TrialState::Finished)
                .filter(|trial| !sweep.curves.contains_key(&trial.trial.index))
                .map(|trial| (trial.trial.index, trial.trial.run_id))
                .collect();
            for (index, run_id) in missing {
                sweep.curves.insert(index, curve(&store, run_id, &objective.metric, None)?);
            }
            sweep.curves_loaded = true;
        }
        let mut changed = Vec::new();
        for index in sweep.active.clone() {
            let trial = &sweep.trials[index].trial;
            if !trial.stopped_by.is_empty() {
                continue;
            }
            let (trial_index, run_id) = (trial.index, trial.run_id);
            // Only the points past those already read.
            let mut curve = sweep.live.remove(&trial_index).unwrap_or_default();
            let after = curve.last().map(|(step, _)| step.saturating_add(1));
            curve.extend(self::curve(&store, run_id, &objective.metric, after)?);
            let last_step = curve.last().map(|(step, _)| *step);
            let decision = match last_step {
                Some(last_step) if last_step >= rule.min_step => {
                    decide(sweep, index, &curve, last_step, rule, goal, &mut changed)
                }
                _ => None,
            };
            sweep.live.insert(trial_index, curve);
            if let Some((at, value)) = decision {
                let trial = &mut sweep.trials[index].trial;
                trial.stopped_by = at;
                trial.value = Some(value);
                changed.push(index);
            }
        }
        if !changed.is_empty() {
            changed.dedup();
            let records: Vec<&TrialRecord> =
                changed.iter().map(|index| &sweep.trials[*index]).collect();
            store.save_sweep(&sweep.record, &records).await?;
        }
        // Carry out the saved decisions not yet carried out by this process.
        let pending: Vec<(u64, RunId, String)> = sweep
            .active()
            .filter(|trial| !trial.trial.stopped_by.is_empty())
            .filter(|trial| !sweep.stops_sent.contains(&trial.trial.index))
            .map(|trial| (trial.trial.index, trial.trial.run_id, trial.trial.stopped_by.clone()))
            .collect();
        for (index, run_id, at) in pending {
            tracing::info!(sweep = %id, %run_id, at, "stopping a child early");
            let tags = vec![
                Tag::new(tags::EARLY_STOPPED, "true"),
                Tag::new(tags::EARLY_STOP_RULE, rule.rule.as_str()),
                Tag::new(tags::EARLY_STOP_AT, at),
            ];
            if let Err(error) = store.set_tags(run_id, tags).await {
                tracing::warn!(%run_id, %error, "cannot tag an early-stopped run");
            }
            match self.dispatch.cancel(run_id).await {
                Ok(_) => {
                    if let Some(sweep) = self.sweeps.get_mut(&id) {
                        sweep.stops_sent.insert(index);
                    }
                }
                Err(error) => tracing::warn!(%run_id, %error, "cannot stop a run early"),
            }
        }
        Ok(())
    }

    /// Creates trials while the sweep has room for them.
    async fn launch(&mut self, id: RunId) -> Result<(), ApiError> {
        loop {
            let Some(sweep) = self.sweeps.get_mut(&id) else { return Ok(()) };
            let active = sweep.active().count() as u32;
            if active >= sweep.record.spec.parallel || sweep.exhausted() {
                return Ok(());
            }
            let Some(params) = sweep.suggest() else { return Ok(()) };
            let index = sweep.record.next_trial;
            let mut record = sweep.record.clone();
            record.next_trial += 1;
            let template = &record.template;
            let mut spec = template.spec.clone();
            for (name, value) in &params {
                spec.parameters.retain(|(existing, _)| existing != name);
                spec.parameters.push((name.clone(), value.clone()));
            }
            let sweep_keys = [tags::PARENT_RUN, tags::SWEEP_ID, tags::SWEEP_TRIAL];
            let mut child_tags: Vec<Tag> = template
                .tags
                .iter()
                .filter(|tag| !sweep_keys.contains(&tag.key.as_str()))
                .cloned()
                .collect();
            child_tags.push(Tag::new(tags::PARENT_RUN, id.to_string()));
            child_tags.push(Tag::new(tags::SWEEP_ID, id.to_string()));
            child_tags.push(Tag::new(tags::SWEEP_TRIAL, index.to_string()));
            let request = SubmitRun {
                experiment_id: record.experiment_id,
                run_name: Some(format!("{}-{index}", record.name)),
                user_id: template.user_id.clone(),
                tags: child_tags,
                spec,
            };
            let trial = Trial {
                index,
                run_id: id,
                state: TrialState::Active,
                value: None,
                params,
                stopped_by: String::new(),
            };
            let trial = match self.dispatch.submit_trial(&record, trial, request).await {
                Ok(trial) => trial,
                // Refused for good (the experiment was deleted, a value is invalid): the
                // sweep cannot go on.
                Err(
                    error @ (ApiError::InvalidArgument(_)
                    | ApiError::FailedPrecondition(_)
                    | ApiError::NotFound(_)),
                ) => {
                    let reason = format!("cannot create trial {index}: {error}");
                    return self.end(id, SweepStatus::Failed, reason).await;
                }
                Err(error) => return Err(error),
            };
            let Some(sweep) = self.sweeps.get_mut(&id) else { return Ok(()) };
            sweep.record = record;
            sweep.active.push(sweep.trials.len());
            sweep.trials.push(trial);
        }
    }
}

/// The early stopping rule's verdict on one running trial whose curve reaches `last_step`:
/// why it stops and its value there, or `None` to let it go on. ASHA records the trial's
/// values at the rungs it has reached (noting the trial in `changed`).
fn decide(
    sweep: &mut ActiveSweep,
    index: usize,
    curve: &[(i64, f64)],
    last_step: i64,
    rule: EarlyStop,
    goal: Goal,
    changed: &mut Vec<usize>,
) -> Option<(String, f64)> {
    match rule.rule {
        StopRule::Median => {
            let best = stopping::best_until(curve, last_step, goal);
            let finished: Vec<f64> = sweep
                .curves
                .values()
                .filter_map(|finished| stopping::best_until(finished, last_step, goal))
                .collect();
            match best {
                Some(best) if stopping::median_stops(best, &finished, goal) => {
                    Some((format!("median at step {last_step}"), best))
                }
                _ => None,
            }
        }
        StopRule::Asha => {
            let mut decision = None;
            loop {
                let trial = &mut sweep.trials[index];
                let rung = trial.rungs.len();
                let step = stopping::rung_step(rule.min_step, rule.eta, rung as u32);
                // Past the last representable rung there is nothing more to decide.
                if step > last_step || step == i64::MAX {
                    break;
                }
                let Some(value) = stopping::best_until(curve, step, goal) else { break };
                trial.rungs.push(value);
                if sweep.rungs.len() <= rung {
                    sweep.rungs.resize(rung + 1, Vec::new());
                }
                sweep.rungs[rung].push(value);
                changed.push(index);
                if !stopping::asha_promotes(value, &sweep.rungs[rung], rule.eta, goal) {
                    decision = Some((format!("asha rung {rung} (step {step})"), value));
                    break;
                }
            }
            decision
        }
    }
}

/// A run's curve of `metric`: (step, value), by step; from `start_step` when given.
fn curve(
    store: &crate::store::Store,
    run_id: RunId,
    metric: &str,
    start_step: Option<i64>,
) -> Result<Vec<(i64, f64)>, ApiError> {
    let page = store.metric_history(MetricHistoryQuery {
        run_id,
        key: metric.to_string(),
        start_step,
        end_step: None,
        max_results: Some(u32::MAX),
        page_token: None,
        attempt: None,
    })?;
    Ok(page.items.iter().map(|point| (point.step, point.value)).collect())
}
