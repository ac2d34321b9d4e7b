//! Submitted runs: their execution records (spec, attempt, placement), their state changes,
//! their logs, and the snapshots they run from.

use std::collections::HashSet;

use drover_project::snapshot::SnapshotDigest;
use drover_proto::ApiError;
use drover_proto::domain::{CreateRun, Param, Run, RunId, RunInfo, RunStatus};
use drover_proto::execution::{AttemptId, LogStream, MetricBatch, SubmitRun};

use drover_proto::validate::{self, MAX_PARAM_VALUE_LEN};

use super::records::{
    ExecutionRecord, ExecutionState, LogChunk, Placement, RunChange, SnapshotRecord,
    StoredExecution,
};
use super::staging::{stage_tags, validate_param, validate_tag};
use super::{Batch, Store, decode, encode, keys, now_ms, storage_error};

fn stream_byte(stream: LogStream) -> u8 {
    match stream {
        LogStream::Stdout => 1,
        LogStream::Stderr => 2,
        LogStream::System => 3,
    }
}

fn stream_from_byte(byte: u8) -> LogStream {
    match byte {
        1 => LogStream::Stdout,
        2 => LogStream::Stderr,
        _ => LogStream::System,
    }
}

/// The line a queued run's log starts with.
const QUEUED_LINE: &str = "run queued";

/// A log chunk as stored: its stream, then its bytes.
fn log_value(stream: LogStream, data: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(data.len() + 1);
    value.push(stream_byte(stream));
    value.extend_from_slice(data);
    value
}

/// How drover's own lines read in a run's log.
fn system_line(line: &str) -> String {
    format!("drover: {line}\n")
}

impl Store {
    /// Creates a SCHEDULED run with its params, tags, execution record and the first line of
    /// its log, in one write.
    pub async fn submit_run(&self, request: SubmitRun) -> Result<(Run, ExecutionRecord), ApiError> {
        let (run, record, batch) = self.stage_submission(request)?;
        self.write_submission(run.info.run_id, batch)?;
        self.durable().await?;
        Ok((run, record))
    }

    /// A SCHEDULED run with its params, tags, execution record and first log line, and the
    /// batch that stores it, for the caller to extend and apply.
    pub(super) fn stage_submission(
        &self,
        request: SubmitRun,
    ) -> Result<(Run, ExecutionRecord, Batch), ApiError> {
        for (key, value) in &request.spec.parameters {
            validate::key("param", key)?;
            validate::value("param", key, value, MAX_PARAM_VALUE_LEN)?;
        }
        for tag in &request.tags {
            validate_tag(tag)?;
        }
        let create = CreateRun {
            experiment_id: request.experiment_id,
            run_name: request.run_name,
            user_id: request.user_id,
            start_time_ms: None,
            tags: request.tags,
            status: RunStatus::Scheduled,
        };
        let (mut run, mut batch) = self.new_run(create)?;
        for (key, value) in &request.spec.parameters {
            batch.insert(keys::param(run.info.run_id, key), value.as_bytes());
            run.data.params.push(Param { key: key.clone(), value: value.clone() });
        }
        run.data.params.sort_by(|a, b| a.key.cmp(&b.key));
        let record = ExecutionRecord {
            run_id: run.info.run_id,
            experiment_id: run.info.experiment_id,
            spec: request.spec,
            attempt: 0,
            placement: Placement::Queued,
            retries_used: 0,
            cancel_requested: false,
            submitted_ms: run.info.start_time_ms,
            exit_code: None,
            message: String::new(),
            attempts: Vec::new(),
        };
        batch.insert(keys::run_spec(run.info.run_id), encode(&record.spec));
        batch.insert(keys::execution(run.info.run_id), encode(&ExecutionState::from(&record)));
        batch.insert(keys::pending_execution(run.info.run_id), &[]);
        // A new run's log is empty: the queued line starts it at offset 0.
        let line = system_line(QUEUED_LINE);
        batch.insert(
            keys::log_chunk(run.info.run_id, 0),
            log_value(LogStream::System, line.as_bytes()),
        );
        Ok((run, record, batch))
    }

    /// Writes a batch from [`Store::stage_submission`], extended or not.
    pub(super) fn write_submission(&self, run_id: RunId, batch: Batch) -> Result<(), ApiError> {
        self.write_new_run(run_id, batch)?;
        // The queued line is all of the new run's log, unless a writer that found the run
        // since (outside the write lock this takes) has appended already.
        self.log_begun(run_id, system_line(QUEUED_LINE).len() as u64);
        Ok(())
    }

    pub fn execution(&self, run_id: RunId) -> Result<Option<ExecutionRecord>, ApiError> {
        let Some(value) = self.db().get(keys::execution(run_id)).map_err(storage_error)? else {
            return Ok(None);
        };
        let mut stored: StoredExecution = decode(&value, "execution record")?;
        let spec = match stored.spec.take() {
            Some(spec) => spec,
            None => {
                let spec = self.db().get(keys::run_spec(run_id)).map_err(storage_error)?;
                let spec = spec.ok_or_else(|| {
                    ApiError::Internal(format!("run {run_id}'s spec is missing from the store"))
                })?;
                decode(&spec, "run spec")?
            }
        };
        Ok(Some(stored.into_record(spec)))
    }

    /// Records that a worker takes no new runs (`drained`), or takes them again.
    pub async fn set_worker_drained(&self, worker_id: &str, drained: bool) -> Result<(), ApiError> {
        let key = keys::drained_worker(worker_id);
        if drained {
            self.db().insert(key, &[]).map_err(storage_error)?;
        } else {
            self.db().remove(key).map_err(storage_error)?;
        }
        self.durable().await
    }

    /// The workers drained and not undrained since.
    pub fn drained_workers(&self) -> Result<HashSet<String>, ApiError> {
        let mut drained = HashSet::new();
        for entry in self.db().scan_prefix(keys::DRAINED_WORKER) {
            let (key, _) = entry.map_err(storage_error)?;
            drained
                .insert(String::from_utf8_lossy(&key[keys::DRAINED_WORKER.len()..]).into_owned());
        }
        Ok(drained)
    }

    /// Every execution record that has not ended, for recovery at start-up and the queue's
    /// views. Read through the index of executions not done (`qp/`), so a store of a million
    /// finished runs costs nothing here.
    pub fn pending_executions(&self) -> Result<Vec<ExecutionRecord>, ApiError> {
        let mut records = Vec::new();
        for entry in self.db().scan_prefix(keys::PENDING_EXECUTION) {
            let (key, _) = entry.map_err(storage_error)?;
            let run_id =
                <[u8; 16]>::try_from(&key[keys::PENDING_EXECUTION.len()..]).map(RunId).map_err(
                    |_| ApiError::Internal("a pending execution's key is unreadable".to_string()),
                )?;
            if let Some(record) = self.execution(run_id)?
                && record.placement != Placement::Done
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Indexes the executions not done of a store written before the index existed (schema
    /// 2 and older). Only adds entries, so running it again after a crash is harmless.
    pub(super) fn index_pending_executions(db: &sled::Db) -> sled::Result<u64> {
        #[derive(serde::Deserialize)]
        struct Placed {
            placement: Placement,
        }
        let mut indexed = 0;
        let mut batch = sled::Batch::default();
        for entry in db.scan_prefix(keys::EXECUTION) {
            let (key, value) = entry?;
            let pending = serde_json::from_slice::<Placed>(&value)
                .map_or(true, |placed| placed.placement != Placement::Done);
            if pending {
                let mut index = keys::PENDING_EXECUTION.to_vec();
                index.extend_from_slice(&key[keys::EXECUTION.len()..]);
                batch.insert(index, &[]);
                indexed += 1;
            }
        }
        db.apply_batch(batch)?;
        Ok(indexed)
    }

    /// Stores `record` and, in the same write, the run's new status, tags and log line. A
    /// terminal status sets the run's end time. Returns once the write is durable.
    pub async fn save_execution(
        &self,
        record: &ExecutionRecord,
        change: RunChange,
    ) -> Result<RunInfo, ApiError> {
        self.write_execution(record, change)?;
        self.durable().await?;
        self.run_info(record.run_id)
    }

    /// As [`Store::save_execution`], without waiting for the disk: the write is durable once
    /// a [`Store::ticket`] taken after it is. Whoever acts on it outside the scheduler (an
    /// acknowledgement, an assignment sent to a worker) waits for that first.
    pub fn write_execution(
        &self,
        record: &ExecutionRecord,
        change: RunChange,
    ) -> Result<(), ApiError> {
        let _guard = self.write_guard();
        let mut batch = Batch::default();
        // A new attempt starts with no history: the last one's points are set aside.
        let stored_attempt = self.stored_attempt(record.run_id)?;
        if record.attempt > stored_attempt && stored_attempt >= 1 {
            self.stage_history_aside(record.run_id, stored_attempt, &mut batch)?;
        }
        if let Some(status) = change.status {
            let mut info = self.run_info(record.run_id)?;
            info.status = status;
            // The scheduler's own report ends a run it executes: it ended now, whatever a
            // client wrote before, and a run that starts (again) has not ended.
            info.end_time_ms = status.is_terminal().then(now_ms);
            batch.insert(keys::run(record.run_id), encode(&info));
        }
        for tag in &change.tags {
            batch.insert(keys::tag(record.run_id, &tag.key), tag.value.as_bytes());
        }
        for key in &change.removed_tags {
            batch.remove(keys::tag(record.run_id, key));
        }
        batch.insert(keys::execution(record.run_id), encode(&ExecutionState::from(record)));
        // Indexed as pending since its submission; a record never leaves Done.
        if record.placement == Placement::Done {
            batch.remove(keys::pending_execution(record.run_id));
        }
        let log_end = match &change.log_line {
            Some(line) => Some(self.stage_system_line(record.run_id, line, &mut batch)?),
            None => None,
        };
        self.write_run(record.run_id, batch)?;
        if let Some(end) = log_end {
            self.logged_to(record.run_id, end);
        }
        if record.placement == Placement::Done {
            // Its drover lines are written; a late one reads the end from the store.
            self.forget_log_end(record.run_id);
        }
        Ok(())
    }

    /// The attempt number of a run's stored execution record (0 if none), read without
    /// decoding the rest of the record.
    fn stored_attempt(&self, run_id: RunId) -> Result<u32, ApiError> {
        #[derive(serde::Deserialize)]
        struct Attempt {
            attempt: u32,
        }
        let Some(value) = self.db().get(keys::execution(run_id)).map_err(storage_error)? else {
            return Ok(0);
        };
        Ok(decode::<Attempt>(&value, "execution record")?.attempt)
    }

    /// Appends output of `attempt` at byte `offset` of that attempt's output. A chunk seen
    /// before (a resend) is skipped; returns whether anything was written. The write is
    /// durable once a [`Store::ticket`] taken after it is.
    pub fn write_attempt_log(
        &self,
        attempt: AttemptId,
        stream: LogStream,
        offset: u64,
        data: &[u8],
    ) -> Result<bool, ApiError> {
        let _guard = self.write_guard();
        let received_key = keys::attempt_log_length(attempt.run_id, attempt.attempt);
        let received = self
            .db()
            .get(&received_key)
            .map_err(storage_error)?
            .as_deref()
            .and_then(keys::decode_u64)
            .unwrap_or(0);
        let end = offset.saturating_add(data.len() as u64);
        if end <= received {
            return Ok(false);
        }
        // Keep only the part not stored yet (a resend may overlap what arrived).
        let skip =
            usize::try_from(received.saturating_sub(offset)).unwrap_or(usize::MAX).min(data.len());
        let mut batch = Batch::default();
        batch.insert(received_key, &end.to_be_bytes());
        let log_end = self.stage_log_append(attempt.run_id, stream, &data[skip..], &mut batch)?;
        self.db().apply_batch(batch).map_err(storage_error)?;
        self.logged_to(attempt.run_id, log_end);
        Ok(true)
    }

    /// Writes what a run printed as metrics, params and tags, once per batch number: a resent
    /// batch is skipped. Params that would change a stored value are left out, and noted in
    /// the run's log. Durable once a [`Store::ticket`] taken after it is. A batch of an
    /// attempt that is no longer the run's current one on `worker_id` is dropped, checked
    /// under the write lock so that no placement of a next attempt slips in between; returns
    /// whether the batch was current.
    pub fn write_metric_batch(
        &self,
        batch: &MetricBatch,
        worker_id: &str,
    ) -> Result<bool, ApiError> {
        for series in &batch.series {
            validate::key("metric", &series.key)?;
        }
        for param in &batch.params {
            validate_param(param)?;
        }
        for tag in &batch.tags {
            validate_tag(tag)?;
        }
        let run_id = batch.attempt.run_id;
        let skipped = {
            let _guard = self.write_guard();
            let applied_key = keys::applied_metric_batch(run_id, batch.attempt.attempt);
            let applied = self
                .db()
                .get(&applied_key)
                .map_err(storage_error)?
                .as_deref()
                .and_then(keys::decode_u64)
                .unwrap_or(0);
            if batch.batch <= applied {
                return Ok(true);
            }
            let current = self.execution(run_id)?.is_some_and(|record| {
                record.current_attempt() == batch.attempt
                    && record.placement.worker() == Some(worker_id)
            });
            if !current {
                return Ok(false);
            }
            let info = self.run_info(run_id)?;
            let mut writes = Batch::default();
            self.stage_metrics(run_id, &batch.series, &mut writes)?;
            let conflicts = self.stage_params(run_id, &batch.params, &mut writes)?;
            stage_tags(info, &batch.tags, &mut writes);
            writes.insert(applied_key, &batch.batch.to_be_bytes());
            self.write_run(run_id, writes)?;
            conflicts
        };
        for conflict in skipped {
            self.write_system_log(run_id, &format!("ignored a ::param line: {conflict}"))?;
        }
        Ok(true)
    }

    /// Appends a line drover writes into a run's log.
    pub async fn append_system_log(&self, run_id: RunId, line: &str) -> Result<(), ApiError> {
        self.write_system_log(run_id, line)?;
        self.durable().await
    }

    fn write_system_log(&self, run_id: RunId, line: &str) -> Result<(), ApiError> {
        let _guard = self.write_guard();
        let mut batch = Batch::default();
        let end = self.stage_system_line(run_id, line, &mut batch)?;
        self.db().apply_batch(batch).map_err(storage_error)?;
        self.logged_to(run_id, end);
        Ok(())
    }

    /// Adds to `batch` a line drover writes at the end of the run's log, returning where the
    /// log then ends. Call under the write lock, as the last staging before the write.
    fn stage_system_line(
        &self,
        run_id: RunId,
        line: &str,
        batch: &mut Batch,
    ) -> Result<u64, ApiError> {
        self.stage_log_append(run_id, LogStream::System, system_line(line).as_bytes(), batch)
    }

    /// Adds to `batch` the append of `data` at the end of the run's log, returning where the
    /// log then ends. Call under the write lock, and [`Store::logged_to`] once the batch is
    /// written.
    fn stage_log_append(
        &self,
        run_id: RunId,
        stream: LogStream,
        data: &[u8],
        batch: &mut Batch,
    ) -> Result<u64, ApiError> {
        let start = match self.known_log_end(run_id) {
            Some(end) => end,
            None => self.stored_log_end(run_id)?,
        };
        batch.insert(keys::log_chunk(run_id, start), log_value(stream, data));
        Ok(start + data.len() as u64)
    }

    /// Where a run's log ends, from its last chunk.
    fn stored_log_end(&self, run_id: RunId) -> Result<u64, ApiError> {
        let prefix = keys::log_chunks(run_id);
        let Some((key, value)) = self.db().last_in_prefix(&prefix).map_err(storage_error)? else {
            return Ok(0);
        };
        let start = keys::decode_u64(&key[prefix.len()..])
            .ok_or_else(|| ApiError::Internal("a log chunk's key is unreadable".to_string()))?;
        // The chunk's value is its stream byte, then its bytes.
        Ok(start.saturating_add(value.len().saturating_sub(1) as u64))
    }

    /// Log chunks from `after_cursor` on, up to about `max_bytes`.
    pub fn read_log(
        &self,
        run_id: RunId,
        after_cursor: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogChunk>, ApiError> {
        let prefix = keys::log_chunks(run_id);
        let mut chunks = Vec::new();
        let mut bytes = 0;
        for entry in self.db().scan_prefix_from(&prefix, keys::log_chunk(run_id, after_cursor)) {
            let (key, value) = entry.map_err(storage_error)?;
            if !key.starts_with(&prefix) || bytes >= max_bytes {
                break;
            }
            let start = keys::decode_u64(&key[prefix.len()..])
                .ok_or_else(|| ApiError::Internal("stored log key is unreadable".to_string()))?;
            let Some((&stream, data)) = value.split_first() else { continue };
            bytes += data.len();
            chunks.push(LogChunk {
                stream: stream_from_byte(stream),
                data: data.to_vec(),
                end_cursor: start + data.len() as u64,
            });
        }
        Ok(chunks)
    }

    pub fn snapshot_record(
        &self,
        digest: &SnapshotDigest,
    ) -> Result<Option<SnapshotRecord>, ApiError> {
        let value = self.db().get(keys::snapshot(digest.as_str())).map_err(storage_error)?;
        value.map(|bytes| decode(&bytes, "snapshot record")).transpose()
    }

    pub async fn record_snapshot(&self, record: &SnapshotRecord) -> Result<(), ApiError> {
        self.db()
            .insert(keys::snapshot(record.digest.as_str()), encode(record))
            .map_err(storage_error)?;
        self.durable().await
    }
}

#[cfg(test)]
mod tests {
    use drover_proto::domain::DEFAULT_EXPERIMENT_ID;
    use drover_proto::execution::RunSpec;

    use super::*;

    async fn submit(store: &Store) -> ExecutionRecord {
        let digest = format!("sha256:{}", "cd".repeat(32)).parse().expect("a digest");
        let spec = RunSpec::local("p", digest, 1);
        let request = SubmitRun {
            experiment_id: DEFAULT_EXPERIMENT_ID,
            run_name: None,
            user_id: "test".into(),
            tags: Vec::new(),
            spec,
        };
        store.submit_run(request).await.expect("submitted").1
    }

    fn pending(store: &Store) -> Vec<RunId> {
        let mut runs: Vec<RunId> = store
            .pending_executions()
            .expect("readable")
            .iter()
            .map(|record| record.run_id)
            .collect();
        runs.sort();
        runs
    }

    #[tokio::test]
    async fn only_executions_not_done_are_pending_also_in_a_store_from_before_their_index() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut expected = Vec::new();
        {
            let store = Store::open(dir.path()).expect("the store opens");
            let queued = submit(&store).await;
            let mut running = submit(&store).await;
            let mut finished = submit(&store).await;
            running.attempt = 1;
            running.placement = Placement::Running { worker_id: "w".into() };
            store.save_execution(&running, RunChange::default()).await.expect("saved");
            finished.placement = Placement::Done;
            let change = RunChange { status: Some(RunStatus::Finished), ..Default::default() };
            store.save_execution(&finished, change).await.expect("saved");
            expected.extend([queued.run_id, running.run_id]);
            expected.sort();
            assert_eq!(pending(&store), expected);
            // As a schema-2 store has it: no index.
            let db = store.db().sled().expect("applied");
            for key in db.scan_prefix(keys::PENDING_EXECUTION).keys() {
                db.remove(key.expect("readable")).expect("removed");
            }
            db.insert(keys::SCHEMA, &2u32.to_be_bytes()).expect("written");
            super::super::values::inline_all(db, store.db().value_log());
            assert_eq!(pending(&store), Vec::new());
            store.close();
        }
        let store = Store::open(dir.path()).expect("the store opens");
        assert_eq!(pending(&store), expected);
    }

    #[tokio::test]
    async fn a_log_continues_where_it_ended_across_writers_and_restarts() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = |store: &Store, run_id| {
            let chunks = store.read_log(run_id, 0, usize::MAX).expect("readable");
            let mut cursor = 0;
            let mut text = String::new();
            for chunk in chunks {
                // No gap and no overlap between chunks.
                assert_eq!(chunk.end_cursor, cursor + chunk.data.len() as u64);
                cursor = chunk.end_cursor;
                text.push_str(std::str::from_utf8(&chunk.data).expect("text"));
            }
            text
        };
        let run_id = {
            let store = Store::open(dir.path()).expect("the store opens");
            let record = submit(&store).await;
            let attempt = AttemptId { run_id: record.run_id, attempt: 1 };
            store.append_system_log(record.run_id, "first").await.expect("written");
            assert!(store.write_attempt_log(attempt, LogStream::Stdout, 0, b"out\n").unwrap());
            store.append_system_log(record.run_id, "second").await.expect("written");
            // As a schema-3 store has it: a length key, which no longer counts.
            let db = store.db().sled().expect("applied");
            let stale_length = [b"oz/".as_slice(), record.run_id.as_bytes()].concat();
            db.insert(stale_length, &0u64.to_be_bytes()).expect("written");
            db.insert(keys::SCHEMA, &3u32.to_be_bytes()).expect("written");
            super::super::values::inline_all(db, store.db().value_log());
            store.close();
            record.run_id
        };
        let store = Store::open(dir.path()).expect("the store opens again");
        let schema = store.db().get(keys::SCHEMA).expect("readable");
        assert_eq!(schema.as_deref(), Some(&super::super::SCHEMA_VERSION.to_be_bytes()[..]));
        let attempt = AttemptId { run_id, attempt: 1 };
        assert!(store.write_attempt_log(attempt, LogStream::Stderr, 4, b"err\n").unwrap());
        store.append_system_log(run_id, "third").await.expect("written");
        assert_eq!(
            log(&store, run_id),
            "drover: run queued\ndrover: first\nout\ndrover: second\nerr\ndrover: third\n"
        );
    }

    #[tokio::test]
    async fn a_record_stored_with_its_spec_inline_reads_whole() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("the store opens");
        let mut record = submit(&store).await;
        record.attempt = 2;
        record.placement = Placement::Assigned { worker_id: "w".into() };
        store.save_execution(&record, RunChange::default()).await.expect("saved");
        assert_eq!(store.execution(record.run_id).expect("readable"), Some(record.clone()));
        // As records were stored before the spec had its own key.
        let mut inline = serde_json::to_value(ExecutionState::from(&record)).expect("JSON");
        inline["spec"] = serde_json::to_value(&record.spec).expect("JSON");
        let db = store.db();
        db.insert(keys::execution(record.run_id), serde_json::to_vec(&inline).expect("JSON"))
            .expect("written");
        db.remove(keys::run_spec(record.run_id)).expect("removed");
        assert_eq!(store.execution(record.run_id).expect("readable"), Some(record.clone()));
        // A record whose spec is nowhere is an error, not a run with no spec.
        db.insert(keys::execution(record.run_id), encode(&ExecutionState::from(&record)))
            .expect("written");
        assert!(store.execution(record.run_id).is_err());
    }
}
