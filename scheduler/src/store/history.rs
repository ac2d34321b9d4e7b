//! Metric history, stored in chunks: each logged batch adds, per metric key, one record
//! holding all of that key's points from the batch. A write costs one sled insert per key,
//! not per point, and a read decodes the chunks and orders their points by step, then
//! timestamp, then arrival.
//!
//! A chunk's key ends with a store-wide increasing id, so chunks scan in arrival order; how
//! its value encodes the points is in `chunk.rs`.

use drover_proto::ApiError;
use drover_proto::domain::{Metric, MetricHistoryQuery, Page, RunId};
use drover_proto::execution::{MetricPoint, MetricSeries};

use super::chunk::{chunk_steps, decode_schema2_chunk, each_point, encode_chunk, number};
use super::{Batch, Store, keys, storage_error};

const DEFAULT_HISTORY_PAGE: usize = 25_000;
/// A whole history is returned when asked for; this bounds one answer's memory.
const MAX_HISTORY_PAGE: usize = 10_000_000;

/// Points per chunk when a schema-1 store's history is rewritten.
const MIGRATION_CHUNK_POINTS: usize = 10_000;
/// Points moved per write while rewriting, bounding the rewrite's memory.
pub(super) const MIGRATION_BATCH_POINTS: usize = 200_000;
/// Chunks rewritten per write when a schema-2 store's chunks are re-encoded.
pub(super) const MIGRATION_BATCH_CHUNKS: usize = 1_000;

/// A point's place in a history: step, timestamp, then arrival (chunk id, index in chunk).
/// Page tokens carry the place of a page's last point.
type Place = (i64, i64, u64, u32);
const TOKEN_LEN: usize = 8 + 8 + 8 + 4;

#[derive(Clone, Copy)]
struct Point {
    place: Place,
    value: f64,
}

/// Appends the points of one chunk that fall in `steps` to `into`.
fn decode_chunk(chunk: u64, value: &[u8], steps: (i64, i64), into: &mut Vec<Point>) -> Option<()> {
    each_point(value, |index, step, timestamp, value| {
        if step >= steps.0 && step <= steps.1 {
            into.push(Point { place: (step, timestamp, chunk, index), value });
        }
    })
}

fn encode_token(place: Place) -> String {
    let mut bytes = Vec::with_capacity(TOKEN_LEN);
    bytes.extend_from_slice(&place.0.to_be_bytes());
    bytes.extend_from_slice(&place.1.to_be_bytes());
    bytes.extend_from_slice(&place.2.to_be_bytes());
    bytes.extend_from_slice(&place.3.to_be_bytes());
    hex::encode(bytes)
}

fn decode_token(token: &str) -> Option<Place> {
    let bytes = hex::decode(token).ok().filter(|bytes| bytes.len() == TOKEN_LEN)?;
    let index = u32::from_be_bytes(bytes.get(24..28)?.try_into().ok()?);
    Some((number(&bytes, 0)? as i64, number(&bytes, 8)? as i64, number(&bytes, 16)?, index))
}

fn unreadable() -> ApiError {
    ApiError::Internal("stored metric history is unreadable".to_string())
}

impl Store {
    /// Adds each series to `batch` as one chunk, and the latest value per key where it
    /// supersedes the stored one: the highest step, then the latest timestamp, then the last
    /// to arrive. Call under the write lock.
    pub(super) fn stage_metrics(
        &self,
        run_id: RunId,
        series: &[MetricSeries],
        batch: &mut Batch,
    ) -> Result<(), ApiError> {
        if series.is_empty() {
            return Ok(());
        }
        let chunk = self.db().generate_id().map_err(storage_error)?;
        let count: usize = series.iter().map(|series| series.points.len()).sum();
        self.inner.points_written.fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
        for MetricSeries { key, points } in series {
            let Some(candidate) = latest_of(points) else {
                continue;
            };
            batch.insert(keys::history_chunk(run_id, key, chunk), encode_chunk(points));
            let stored = self.db().get(keys::latest_metric(run_id, key)).map_err(storage_error)?;
            let replaces = match stored.as_deref().and_then(keys::decode_latest) {
                Some((value, timestamp_ms, step)) => {
                    supersedes(&candidate, &MetricPoint { step, timestamp_ms, value })
                }
                None => true,
            };
            if replaces {
                batch.insert(keys::latest_metric(run_id, key), &keys::encode_latest(&candidate));
            }
        }
        Ok(())
    }

    /// Where one metric's points of `attempt` are kept: the run's own history for its
    /// current attempt (or when no attempt is named), else that attempt's, set aside when the
    /// next attempt was placed.
    fn history_prefix(
        &self,
        run_id: RunId,
        key: &str,
        attempt: Option<u32>,
    ) -> Result<Vec<u8>, ApiError> {
        let Some(attempt) = attempt else {
            return Ok(keys::history(run_id, key));
        };
        let Some(record) = self.execution(run_id)? else {
            return Err(ApiError::InvalidArgument(format!(
                "run {run_id} was not executed by drover, so it has one history: leave out the attempt"
            )));
        };
        if attempt == 0 || attempt > record.attempt {
            return Err(ApiError::NotFound(match record.attempt {
                0 => format!("run {run_id} has not started an attempt yet"),
                last => {
                    format!("run {run_id} has no attempt {attempt}: its attempts are 1 to {last}")
                }
            }));
        }
        Ok(if attempt == record.attempt {
            keys::history(run_id, key)
        } else {
            keys::attempt_history(run_id, attempt, key)
        })
    }

    /// Sets the run's history (every metric's points) and its latest values aside as
    /// `attempt`'s, in `batch`: the write that places the next attempt, which then starts
    /// with none, so no history ever mixes two attempts' points. Call under the write lock.
    pub(super) fn stage_history_aside(
        &self,
        run_id: RunId,
        attempt: u32,
        batch: &mut Batch,
    ) -> Result<(), ApiError> {
        let current = keys::run_history(run_id);
        let aside = keys::attempt_histories(run_id, attempt);
        for entry in self.db().scan_prefix(&current) {
            let (key, value) = entry.map_err(storage_error)?;
            let mut moved = aside.clone();
            moved.extend_from_slice(&key[current.len()..]);
            batch.insert(moved, value);
            batch.remove(key);
        }
        for entry in self.db().scan_prefix(keys::latest_metrics(run_id)) {
            let (key, _) = entry.map_err(storage_error)?;
            batch.remove(key);
        }
        Ok(())
    }

    /// The latest value of each metric of an earlier attempt, by metric key.
    pub fn attempt_latest_metrics(
        &self,
        run_id: RunId,
        attempt: u32,
    ) -> Result<Vec<Metric>, ApiError> {
        let prefix = keys::attempt_histories(run_id, attempt);
        let mut latest: std::collections::BTreeMap<String, MetricPoint> = Default::default();
        for entry in self.db().scan_prefix(&prefix) {
            let (key, value) = entry.map_err(storage_error)?;
            // After the prefix: the metric key, a 0, the chunk id.
            let rest = &key[prefix.len()..];
            let end = rest.iter().position(|&byte| byte == 0).ok_or_else(unreadable)?;
            let metric = String::from_utf8_lossy(&rest[..end]).into_owned();
            let mut points = Vec::new();
            decode_chunk(0, &value, (i64::MIN, i64::MAX), &mut points).ok_or_else(unreadable)?;
            for point in points {
                let candidate = MetricPoint {
                    step: point.place.0,
                    timestamp_ms: point.place.1,
                    value: point.value,
                };
                match latest.get(&metric) {
                    Some(best) if !supersedes(&candidate, best) => {}
                    _ => {
                        latest.insert(metric.clone(), candidate);
                    }
                }
            }
        }
        Ok(latest
            .into_iter()
            .map(|(key, point)| Metric {
                key,
                value: point.value,
                timestamp_ms: point.timestamp_ms,
                step: point.step,
            })
            .collect())
    }

    /// A page of one metric's history, ordered by step, then timestamp, then arrival.
    pub fn metric_history(&self, query: MetricHistoryQuery) -> Result<Page<Metric>, ApiError> {
        self.run_info(query.run_id)?;
        let prefix = self.history_prefix(query.run_id, &query.key, query.attempt)?;
        let limit = query
            .max_results
            .map_or(DEFAULT_HISTORY_PAGE, |n| (n as usize).clamp(1, MAX_HISTORY_PAGE));
        let after = match &query.page_token {
            Some(token) => Some(decode_token(token).ok_or_else(|| {
                ApiError::InvalidArgument(format!("invalid page token '{token}'"))
            })?),
            None => None,
        };
        let steps = (
            query.start_step.unwrap_or(i64::MIN).max(after.map_or(i64::MIN, |place| place.0)),
            query.end_step.unwrap_or(i64::MAX),
        );
        let points = self.ordered_points(&prefix, steps, after, limit)?;
        let start = after.map_or(0, |after| points.partition_point(|point| point.place <= after));
        let end = points.len().min(start.saturating_add(limit));
        let next_page_token = (end < points.len()).then(|| encode_token(points[end - 1].place));
        let items = points[start..end]
            .iter()
            .map(|point| Metric {
                key: query.key.clone(),
                value: point.value,
                timestamp_ms: point.place.1,
                step: point.place.0,
            })
            .collect();
        Ok(Page { items, next_page_token })
    }

    /// Every point of one metric with a step in `steps` (both ends included), in history
    /// order, as (step,
    /// timestamp, value): what a chart reduces, without a key string per point.
    pub fn metric_series(
        &self,
        run_id: RunId,
        key: &str,
        attempt: Option<u32>,
        steps: (i64, i64),
    ) -> Result<Vec<(i64, i64, f64)>, ApiError> {
        self.run_info(run_id)?;
        let prefix = self.history_prefix(run_id, key, attempt)?;
        let points = self.ordered_points(&prefix, steps, None, usize::MAX)?;
        Ok(points.iter().map(|point| (point.place.0, point.place.1, point.value)).collect())
    }

    /// The points of one metric in the step window, sorted, decoding chunks in order of
    /// their first step and stopping once `limit` points after `after` are certain: points
    /// before the next chunk's first step cannot be preceded by anything not decoded yet. A
    /// page thus costs about its own size, not the whole history.
    fn ordered_points(
        &self,
        prefix: &[u8],
        steps: (i64, i64),
        after: Option<Place>,
        limit: usize,
    ) -> Result<Vec<Point>, ApiError> {
        // The chunks that reach into the step window, by their first step.
        let mut chunks = Vec::new();
        for entry in self.db().scan_prefix(prefix) {
            let (key, value) = entry.map_err(storage_error)?;
            let chunk = keys::decode_u64(&key[prefix.len()..]).ok_or_else(unreadable)?;
            let (min, max) = chunk_steps(&value).ok_or_else(unreadable)?;
            if max >= steps.0 && min <= steps.1 {
                chunks.push((min, chunk, value));
            }
        }
        chunks.sort_by_key(|(min, chunk, _)| (*min, *chunk));
        let mut points = Vec::new();
        for (position, (_, chunk, value)) in chunks.iter().enumerate() {
            decode_chunk(*chunk, value, steps, &mut points).ok_or_else(unreadable)?;
            if points.len() > limit {
                let next = chunks.get(position + 1).map_or(i64::MAX, |(min, ..)| *min);
                let settled = points
                    .iter()
                    .filter(|point| point.place.0 < next)
                    .filter(|point| after.is_none_or(|after| point.place > after))
                    .count();
                if settled > limit {
                    break;
                }
            }
        }
        // Chunks arrive in order and most hold ascending steps, which this sort finds.
        points.sort_by_key(|point| point.place);
        Ok(points)
    }

    /// Rewrites a schema-1 history (one key per point, ordered by step, timestamp, arrival)
    /// as chunks. Points keep their order: each (run, key) becomes chunks of consecutive
    /// points with increasing ids. Runs before the store serves anything.
    pub(super) fn migrate_history_to_chunks(
        db: &sled::Db,
        batch_points: usize,
    ) -> sled::Result<u64> {
        let mut migrated = 0;
        let mut in_batch = 0;
        let mut pending: Option<(Vec<u8>, Vec<MetricPoint>)> = None;
        let mut batch = sled::Batch::default();
        let flush =
            |db: &sled::Db, prefix: &[u8], points: &[MetricPoint], batch: &mut sled::Batch| {
                let chunk = db.generate_id()?;
                let mut key = prefix.to_vec();
                key.extend_from_slice(&chunk.to_be_bytes());
                batch.insert(key, encode_chunk(points));
                sled::Result::Ok(())
            };
        for entry in db.scan_prefix(keys::HISTORY) {
            let (key, value) = entry?;
            // h/, run id (16 bytes), metric key, 0, step, timestamp, batch, index.
            let Some(prefix_len) = keys::HISTORY.len().checked_add(16).and_then(|start| {
                key.get(start..)?.iter().position(|byte| *byte == 0).map(|at| start + at + 1)
            }) else {
                continue;
            };
            if key.len() != prefix_len + 28 {
                continue;
            }
            let prefix = &key[..prefix_len];
            let Some((step, timestamp_ms)) = keys::decode_history_point(&key, prefix_len) else {
                continue;
            };
            let Some(value) = keys::decode_f64(&value) else { continue };
            let point = MetricPoint { step, timestamp_ms, value };
            match &mut pending {
                Some((current, points))
                    if current.as_slice() == prefix && points.len() < MIGRATION_CHUNK_POINTS =>
                {
                    points.push(point);
                }
                _ => {
                    if let Some((current, points)) = pending.take() {
                        flush(db, &current, &points, &mut batch)?;
                        // Every removal so far belongs to a chunk in this batch, so it can be
                        // applied on its own: a crash between batches leaves some points
                        // moved and the rest in place, and the next open moves the rest.
                        if in_batch >= batch_points {
                            db.apply_batch(std::mem::take(&mut batch))?;
                            in_batch = 0;
                        }
                    }
                    pending = Some((prefix.to_vec(), vec![point]));
                }
            }
            batch.remove(key);
            in_batch += 1;
            migrated += 1;
        }
        if let Some((current, points)) = pending.take() {
            flush(db, &current, &points, &mut batch)?;
        }
        // The new version goes with the last points moved.
        batch.insert(keys::SCHEMA, &super::INLINE_VALUES_SCHEMA.to_be_bytes());
        db.apply_batch(batch)?;
        Ok(migrated)
    }

    /// Rewrites a schema-2 store's chunks (24 bytes per point) in the compact encoding, in
    /// writes of `batch_chunks` chunks. Each write also records the last chunk it rewrote, so
    /// a rewrite cut short by a crash resumes after it; the last sets schema 4, whose chunks
    /// `values::move_into_log` then moves into the value log. Runs before
    /// the store serves anything.
    pub(super) fn migrate_chunks_to_compact(
        db: &sled::Db,
        batch_chunks: usize,
    ) -> sled::Result<u64> {
        // Of a schema-2 store's prefixes, only `h/` and `ha/` (the chunks) start with `h`.
        let start = match db.get(keys::MIGRATION_PROGRESS)? {
            Some(done) => std::ops::Bound::Excluded(done.to_vec()),
            None => std::ops::Bound::Included(b"h".to_vec()),
        };
        let mut rewritten = 0;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in db.range((start, std::ops::Bound::Excluded(b"i".to_vec()))) {
            let (key, value) = entry?;
            let points = decode_schema2_chunk(&value).ok_or_else(|| {
                sled::Error::Unsupported(format!(
                    "a schema-2 metric history chunk of {} bytes is unreadable",
                    value.len()
                ))
            })?;
            batch.insert(key.clone(), encode_chunk(&points));
            in_batch += 1;
            rewritten += points.len() as u64;
            if in_batch >= batch_chunks {
                batch.insert(keys::MIGRATION_PROGRESS, key);
                db.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        batch.remove(keys::MIGRATION_PROGRESS);
        batch.insert(keys::SCHEMA, &super::INLINE_VALUES_SCHEMA.to_be_bytes());
        db.apply_batch(batch)?;
        Ok(rewritten)
    }
}

/// Whether `candidate`, arriving after `current`, becomes the latest value: a step at least
/// as high, then a timestamp at least as late.
pub(super) fn supersedes(candidate: &MetricPoint, current: &MetricPoint) -> bool {
    (candidate.step, candidate.timestamp_ms) >= (current.step, current.timestamp_ms)
}

/// The point of `points` (in arrival order) that a run reports as the latest.
pub(super) fn latest_of(points: &[MetricPoint]) -> Option<MetricPoint> {
    points
        .iter()
        .copied()
        .reduce(|best, point| if supersedes(&point, &best) { point } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn new_run(store: &Store) -> RunId {
        let request = drover_proto::domain::CreateRun {
            experiment_id: drover_proto::domain::DEFAULT_EXPERIMENT_ID,
            run_name: None,
            user_id: "test".to_string(),
            start_time_ms: None,
            tags: Vec::new(),
            status: drover_proto::domain::RunStatus::Running,
        };
        store.create_run(request).await.unwrap().info.run_id
    }

    fn assert_current_schema(store: &Store) {
        let schema = store.db().get(keys::SCHEMA).unwrap();
        assert_eq!(schema.as_deref(), Some(&super::super::SCHEMA_VERSION.to_be_bytes()[..]));
    }

    /// A schema-1 point key: h/, run id, metric key, 0, then sign-flipped step and timestamp,
    /// batch and index.
    fn schema1_point(run: RunId, key: &str, step: i64, timestamp: i64, batch: u64) -> Vec<u8> {
        let flip = |n: i64| ((n as u64) ^ (1 << 63)).to_be_bytes();
        let mut bytes = keys::history(run, key);
        bytes.extend_from_slice(&flip(step));
        bytes.extend_from_slice(&flip(timestamp));
        bytes.extend_from_slice(&batch.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes
    }

    #[tokio::test]
    async fn a_schema1_store_keeps_its_history_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let run_id = {
            let store = Store::open(dir.path()).unwrap();
            let run_id = new_run(&store).await;
            let db = store.db().sled().expect("applied");
            db.insert(keys::SCHEMA, &1u32.to_be_bytes()).unwrap();
            // 25,003 points of "loss" (more than two migration chunks) and one of "acc",
            // written out of step order.
            for step in (0..25_003i64).rev() {
                let key = schema1_point(run_id, "loss", step, 1_000 + step, step as u64);
                db.insert(key, &(step as f64 / 2.0).to_bits().to_be_bytes()).unwrap();
            }
            let key = schema1_point(run_id, "acc", -1, 5, 0);
            db.insert(key, &0.75f64.to_bits().to_be_bytes()).unwrap();
            // Move it in small batches, then leave the store as a rewrite cut short by a
            // crash would: schema 1, chunks, and a point still under its own key. The open
            // below finishes the job.
            Store::migrate_history_to_chunks(db, 3_000).unwrap();
            db.insert(keys::SCHEMA, &1u32.to_be_bytes()).unwrap();
            let loose = schema1_point(run_id, "loss", 25_003, 99, 0);
            db.insert(loose, &1.5f64.to_bits().to_be_bytes()).unwrap();
            store.close();
            run_id
        };
        let store = Store::open(dir.path()).unwrap();
        assert_current_schema(&store);
        let query = |key: &str, page_token| MetricHistoryQuery {
            run_id,
            key: key.to_string(),
            start_step: None,
            end_step: None,
            max_results: Some(10_000),
            page_token,
            attempt: None,
        };
        let mut loss = Vec::new();
        let mut token = None;
        loop {
            let page = store.metric_history(query("loss", token)).unwrap();
            loss.extend(page.items);
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(loss.len(), 25_004);
        for (step, point) in loss.iter().take(25_003).enumerate() {
            assert_eq!((point.step, point.timestamp_ms), (step as i64, 1_000 + step as i64));
            assert_eq!(point.value, step as f64 / 2.0);
        }
        assert_eq!((loss[25_003].step, loss[25_003].value), (25_003, 1.5));
        let acc = store.metric_history(query("acc", None)).unwrap();
        assert_eq!(acc.items.len(), 1);
        assert_eq!((acc.items[0].step, acc.items[0].value), (-1, 0.75));
        // Every point is in a chunk now, none is left under its own key.
        let prefix = keys::history(run_id, "loss").len();
        assert!(store.db().sled().unwrap().scan_prefix(keys::HISTORY).keys().all(|key| {
            let key = key.unwrap();
            key.len() == prefix + 8 || key.starts_with(&keys::history(run_id, "acc"))
        }));
    }

    #[tokio::test]
    async fn pages_follow_the_order_of_steps_whatever_order_chunks_arrive_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run_id = new_run(&store).await;
        // Batches of overlapping, descending and repeated step ranges.
        let mut expected = Vec::new();
        for (batch, start) in [50i64, 0, 25, 90, 10, 50].into_iter().enumerate() {
            let points: Vec<Metric> = (start..start + 20)
                .map(|step| Metric {
                    key: "loss".into(),
                    value: (batch * 1000) as f64 + step as f64,
                    timestamp_ms: 7,
                    step,
                })
                .collect();
            expected.extend(points.iter().map(|point| (point.step, point.value)));
            store.log_metrics(run_id, points).await.unwrap();
        }
        // Same step and timestamp: arrival order.
        expected.sort_by_key(|(step, _)| *step);
        for page_size in [1, 7, 20, 33, 1000] {
            let mut read = Vec::new();
            let mut token = None;
            loop {
                let page = store
                    .metric_history(MetricHistoryQuery {
                        run_id,
                        key: "loss".into(),
                        start_step: None,
                        end_step: None,
                        max_results: Some(page_size),
                        page_token: token,
                        attempt: None,
                    })
                    .unwrap();
                assert!(page.items.len() <= page_size as usize);
                read.extend(page.items.iter().map(|point| (point.step, point.value)));
                token = page.next_page_token;
                if token.is_none() {
                    break;
                }
            }
            assert_eq!(read, expected, "pages of {page_size}");
        }
    }

    #[test]
    fn tokens_round_trip() {
        let place = (-4, 1_700_000_000_000, 99, 7);
        assert_eq!(decode_token(&encode_token(place)), Some(place));
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("00"), None);
    }

    #[test]
    fn chunks_keep_points_and_their_step_range() {
        let points = [
            MetricPoint { step: 3, timestamp_ms: 10, value: 0.5 },
            MetricPoint { step: -2, timestamp_ms: 11, value: f64::NAN },
            MetricPoint { step: 9, timestamp_ms: 12, value: f64::INFINITY },
        ];
        let value = encode_chunk(&points);
        assert_eq!(chunk_steps(&value), Some((-2, 9)));
        let mut decoded = Vec::new();
        decode_chunk(5, &value, (i64::MIN, i64::MAX), &mut decoded).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1].place, (-2, 11, 5, 1));
        assert!(decoded[1].value.is_nan());
        let mut window = Vec::new();
        decode_chunk(5, &value, (0, 5), &mut window).unwrap();
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].place, (3, 10, 5, 0));
        assert_eq!(decode_chunk(5, &value[..value.len() - 1], (0, 1), &mut window), None);
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(decode_chunk(5, &longer, (0, 1), &mut window), None);
    }

    /// A schema-2 chunk: the header, then 24 bytes per point.
    fn schema2_chunk(points: &[MetricPoint]) -> Vec<u8> {
        let min = points.iter().map(|point| point.step).min().unwrap_or(0);
        let max = points.iter().map(|point| point.step).max().unwrap_or(0);
        let mut value = [min.to_be_bytes(), max.to_be_bytes()].concat();
        for point in points {
            value.extend_from_slice(&point.step.to_be_bytes());
            value.extend_from_slice(&point.timestamp_ms.to_be_bytes());
            value.extend_from_slice(&point.value.to_bits().to_be_bytes());
        }
        value
    }

    #[tokio::test]
    async fn a_schema2_store_keeps_every_point_and_attempt_when_rewritten_even_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let curve = |attempt: i64, steps: std::ops::Range<i64>| -> Vec<MetricPoint> {
            steps
                .map(|step| MetricPoint {
                    step,
                    timestamp_ms: 100 + step,
                    value: attempt as f64 * 1_000.0 + step as f64 / 3.0,
                })
                .collect()
        };
        let run_id = {
            let store = Store::open(dir.path()).unwrap();
            let run_id = new_run(&store).await;
            let db = store.db().sled().expect("applied");
            db.insert(keys::SCHEMA, &2u32.to_be_bytes()).unwrap();
            // 2,500 chunks of "loss" (over two rewrite writes), one of "acc", and an earlier
            // attempt's chunk under `ha/`.
            for chunk in 0..2_500u64 {
                let step = chunk as i64 * 2;
                let mut key = keys::history(run_id, "loss");
                key.extend_from_slice(&(10 + chunk).to_be_bytes());
                db.insert(key, schema2_chunk(&curve(2, step..step + 2))).unwrap();
            }
            let mut key = keys::history(run_id, "acc");
            key.extend_from_slice(&5u64.to_be_bytes());
            db.insert(key, schema2_chunk(&curve(2, -3..-1))).unwrap();
            let mut key = keys::attempt_histories(run_id, 1);
            key.extend_from_slice(b"loss\0");
            key.extend_from_slice(&1u64.to_be_bytes());
            db.insert(key, schema2_chunk(&curve(1, 0..4))).unwrap();
            // A rewrite cut short by a crash: the first write landed, the rest did not.
            let progress = {
                let mut key = keys::history(run_id, "acc");
                key.extend_from_slice(&5u64.to_be_bytes());
                key
            };
            let first = db.get(&progress).unwrap().unwrap();
            db.insert(&progress, encode_chunk(&decode_schema2_chunk(&first).unwrap())).unwrap();
            db.insert(keys::MIGRATION_PROGRESS, progress).unwrap();
            store.close();
            run_id
        };
        let store = Store::open(dir.path()).unwrap();
        assert_current_schema(&store);
        assert_eq!(store.db().get(keys::MIGRATION_PROGRESS).unwrap(), None);
        let series = |key: &str, attempt| {
            store.metric_series(run_id, key, attempt, (i64::MIN, i64::MAX)).unwrap()
        };
        let expected = |points: Vec<MetricPoint>| -> Vec<(i64, i64, f64)> {
            points.iter().map(|point| (point.step, point.timestamp_ms, point.value)).collect()
        };
        assert_eq!(series("loss", None), expected(curve(2, 0..5_000)));
        assert_eq!(series("acc", None), expected(curve(2, -3..-1)));
        let earlier = store.attempt_latest_metrics(run_id, 1).unwrap();
        assert_eq!(earlier.len(), 1);
        assert_eq!((earlier[0].step, earlier[0].value), (3, 1_001.0));
    }
}
