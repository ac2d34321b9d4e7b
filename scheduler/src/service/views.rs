//! What the web UI asks for beyond MLflow's API: experiments with their run counts, the runs
//! table (one page, the number of matches, the keys a user can pick as columns, sweep
//! children folded under their parent), a run's execution record, a metric reduced to a
//! chart's pixel width, and a run's log from a cursor. Each is one call, so a page needs one
//! request per view, and the heavy ones run on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use drover_project::compare::{CodeDiff, compare};
use drover_project::snapshot::SnapshotDigest;
use drover_proto::ApiError;
use drover_proto::domain::{
    Experiment, ExperimentId, ExperimentRef, Run, RunId, RunStatus, ViewType,
};
use drover_proto::execution::LogStream;
use drover_proto::lineage::{self, RunDiff};
use drover_proto::sweep::Trial;
use drover_proto::tags;

use super::Scheduler;
use super::paging::PageLimits;
use crate::search::{Filter, OrderBy};
use crate::store::{ExecutionRecord, Placement};

type ApiResult<T> = Result<T, ApiError>;

/// Rows one table page holds.
pub const TABLE_ROWS: PageLimits = PageLimits { default: 100, max: 1000 };
/// Keys of each kind offered as columns, at most.
const MAX_COLUMN_KEYS: usize = 1000;
/// Runs one chart may overlay.
pub const MAX_CHART_RUNS: usize = 20;
/// Widest chart, in pixels (buckets).
const MAX_CHART_WIDTH: usize = 8192;
/// Log bytes one request returns, at most.
const MAX_LOG_BYTES: usize = 1 << 20;

/// An experiment with what its runs are doing.
#[derive(Clone, Debug)]
pub struct ExperimentSummary {
    pub experiment: Experiment,
    /// Active runs by status.
    pub counts: HashMap<RunStatus, u64>,
    pub deleted_runs: u64,
    /// The latest start or end of any of its runs, else its last update.
    pub last_activity_ms: i64,
}

/// One page of the runs table.
#[derive(Clone, Debug)]
pub struct TableQuery {
    pub experiment_ids: Vec<ExperimentId>,
    pub view: ViewType,
    pub filter: String,
    pub order_by: Vec<String>,
    pub offset: usize,
    pub limit: Option<i64>,
    /// Leave out runs that have a parent among the matches, and count them on the parent.
    pub fold_children: bool,
}

#[derive(Clone, Debug)]
pub struct Table {
    /// Rows that match, before paging (parents only, when folding).
    pub total: usize,
    pub offset: usize,
    pub runs: Vec<Arc<Run>>,
    /// Matching children of each run on the page that has any.
    pub children: HashMap<RunId, usize>,
    pub params: Vec<String>,
    pub metrics: Vec<String>,
    pub tags: Vec<String>,
}

/// A run and how drover executed it, if it did.
#[derive(Clone, Debug)]
pub struct RunDetail {
    pub run: Run,
    pub experiment: Experiment,
    pub execution: Option<ExecutionRecord>,
}

/// The x axis of a chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartAxis {
    Step,
    /// Wall-clock time of each point, in milliseconds.
    Time,
}

#[derive(Clone, Debug)]
pub struct ChartQuery {
    pub run_ids: Vec<RunId>,
    pub key: String,
    pub axis: ChartAxis,
    /// Pixels the chart is wide: the most buckets each series is reduced to.
    pub width: usize,
    /// The x range to draw (inclusive), for a zoom; the whole history when absent.
    pub from: Option<f64>,
    pub to: Option<f64>,
    /// One attempt's history (of a run drover executed more than once); the current one's
    /// when absent.
    pub attempt: Option<u32>,
}

/// One pixel column of a series: the points whose x falls in it, summed up so that spikes
/// and oscillations survive (the min and the max), and the line can be drawn through the
/// first and last.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub x_first: f64,
    pub x_last: f64,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub count: u32,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub run_id: RunId,
    /// Points in the range, before reduction.
    pub points: usize,
    /// Every point, when they fit in the width; else one bucket per pixel.
    pub buckets: Vec<Bucket>,
}

/// Log text from a cursor on.
#[derive(Clone, Debug)]
pub struct LogPage {
    pub cursor: u64,
    pub next_cursor: u64,
    /// Standard output and standard error interleaved as written, with drover's own notes.
    pub chunks: Vec<(LogStream, String)>,
    /// The run has ended and nothing follows.
    pub complete: bool,
}

impl Scheduler {
    pub async fn experiment_summaries(&self, view: ViewType) -> ApiResult<Vec<ExperimentSummary>> {
        let store = self.store.clone();
        self.run_heavy(move || {
            let experiments = store.experiments(view)?;
            let mut summaries = Vec::with_capacity(experiments.len());
            for experiment in experiments {
                let runs = store.runs_of(&[experiment.id], ViewType::All)?;
                let mut counts = HashMap::new();
                let mut deleted_runs = 0;
                let mut last_activity_ms = experiment.last_update_time_ms;
                for run in &runs {
                    if view_deleted(run) {
                        deleted_runs += 1;
                    } else {
                        *counts.entry(run.info.status).or_insert(0) += 1;
                    }
                    let latest = run.info.end_time_ms.unwrap_or(run.info.start_time_ms);
                    last_activity_ms = last_activity_ms.max(latest);
                }
                summaries.push(ExperimentSummary {
                    experiment,
                    counts,
                    deleted_runs,
                    last_activity_ms,
                });
            }
            summaries.sort_by_key(|summary| std::cmp::Reverse(summary.last_activity_ms));
            Ok(summaries)
        })
        .await
    }

    pub async fn runs_table(&self, query: TableQuery) -> ApiResult<Table> {
        let filter = Filter::parse(&query.filter)?;
        let order_by = OrderBy::parse(&query.order_by)?;
        let limit = TABLE_ROWS.check(query.limit)?;
        for id in &query.experiment_ids {
            self.store.experiment(&ExperimentRef::Id(*id))?;
        }
        let store = self.store.clone();
        let tables = self.tables.clone();
        self.run_heavy(move || {
            let experiment_ids = if query.experiment_ids.is_empty() {
                store.experiments(ViewType::ActiveOnly)?.into_iter().map(|e| e.id).collect()
            } else {
                query.experiment_ids
            };
            let mut tables = tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tables.with_table(&store, experiment_ids, |table| {
                let mut rows = table.rows(query.view);
                filter.retain_rows(table, &mut rows);
                let [params, metrics, tags] = table.keys(MAX_COLUMN_KEYS);
                let mut children: HashMap<RunId, usize> = HashMap::new();
                if query.fold_children && rows.iter().any(|&row| table.parent(row).is_some()) {
                    let matched: HashSet<RunId> =
                        rows.iter().map(|&row| table.run_id(row)).collect();
                    rows.retain(|&row| match table.parent(row) {
                        Some(parent) if matched.contains(&parent) => {
                            *children.entry(parent).or_insert(0) += 1;
                            false
                        }
                        _ => true,
                    });
                }
                order_by.sort_top_rows(table, &mut rows, query.offset.saturating_add(limit));
                let total = rows.len();
                let page: Vec<Arc<Run>> = rows
                    .iter()
                    .skip(query.offset)
                    .take(limit)
                    .map(|&row| table.run(row).clone())
                    .collect();
                children.retain(|id, _| page.iter().any(|run| run.info.run_id == *id));
                Table { total, offset: query.offset, runs: page, children, params, metrics, tags }
            })
        })
        .await
    }

    pub async fn run_detail(&self, run_id: RunId) -> ApiResult<RunDetail> {
        let run = self.store.run(run_id)?;
        let experiment = self.store.experiment(&ExperimentRef::Id(run.info.experiment_id))?;
        let execution = self.store.execution(run_id)?;
        Ok(RunDetail { run, experiment, execution })
    }

    /// The uncommitted changes a run's snapshot was made with, as a diff against its commit.
    pub async fn run_source_diff(&self, run_id: RunId) -> ApiResult<Vec<u8>> {
        let run = self.store.run(run_id)?;
        let (Some(snapshot), Some(commit), Some(_)) =
            (run.tag(tags::SNAPSHOT), run.tag(tags::GIT_COMMIT), run.tag(tags::GIT_DIFF))
        else {
            return Err(ApiError::NotFound(format!(
                "run {run_id} was made from a clean work tree (or outside git): it has no uncommitted changes"
            )));
        };
        let snapshot = snapshot
            .parse::<SnapshotDigest>()
            .map_err(|error| ApiError::Internal(error.to_string()))?;
        self.snapshots.diff(&snapshot, commit).await
    }

    /// What differs between two runs, as `drover runs diff` prints it: their snapshots
    /// compared file by file (on the blocking pool), then what each recorded.
    pub async fn diff_runs(&self, a: RunId, b: RunId) -> ApiResult<RunDiff> {
        // Two snapshots' small files are held while they are compared (up to twice the
        // snapshot limit): one comparison at a time.
        static COMPARING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        let _turn = COMPARING.acquire().await.map_err(|_| ApiError::Internal("closed".into()))?;
        let (run_a, run_b) = (self.store.run(a)?, self.store.run(b)?);
        let files = match lineage::snapshots_to_compare(&run_a, &run_b) {
            Some((x, y)) => {
                let parse = |digest: &str| {
                    digest
                        .parse::<SnapshotDigest>()
                        .map_err(|error| ApiError::Internal(error.to_string()))
                };
                let tree_a = self.snapshots.tree(&parse(&x)?).await?;
                let tree_b = self.snapshots.tree(&parse(&y)?).await?;
                self.run_heavy(move || Ok(compare(&tree_a, &tree_b))).await?
            }
            None => CodeDiff::default(),
        };
        let code = lineage::code_section(&run_a, &run_b, files);
        Ok(lineage::run_diff(&run_a, &run_b, code))
    }

    pub async fn chart(&self, query: ChartQuery) -> ApiResult<Vec<Series>> {
        if query.run_ids.is_empty() || query.run_ids.len() > MAX_CHART_RUNS {
            return Err(ApiError::InvalidArgument(format!(
                "a chart draws 1 to {MAX_CHART_RUNS} runs"
            )));
        }
        if query.width == 0 || query.width > MAX_CHART_WIDTH {
            return Err(ApiError::InvalidArgument(format!(
                "width must be 1 to {MAX_CHART_WIDTH} pixels"
            )));
        }
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from > to
        {
            return Err(ApiError::InvalidArgument(format!("the range {from} to {to} is empty")));
        }
        for run_id in &query.run_ids {
            self.store.run(*run_id)?;
        }
        let store = self.store.clone();
        self.run_heavy(move || {
            let mut series = Vec::with_capacity(query.run_ids.len());
            for run_id in &query.run_ids {
                let (start_step, end_step) = match query.axis {
                    ChartAxis::Step => (
                        query.from.map(|from| from.ceil() as i64),
                        query.to.map(|to| to.floor() as i64),
                    ),
                    ChartAxis::Time => (None, None),
                };
                let history = store.metric_series(
                    *run_id,
                    &query.key,
                    query.attempt,
                    (start_step.unwrap_or(i64::MIN), end_step.unwrap_or(i64::MAX)),
                )?;
                let mut points: Vec<(f64, f64)> = history
                    .iter()
                    .map(|&(step, timestamp_ms, value)| {
                        let x = match query.axis {
                            ChartAxis::Step => step as f64,
                            ChartAxis::Time => timestamp_ms as f64,
                        };
                        (x, value)
                    })
                    .filter(|(x, _)| {
                        query.from.is_none_or(|from| *x >= from)
                            && query.to.is_none_or(|to| *x <= to)
                    })
                    .collect();
                if query.axis == ChartAxis::Time {
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                }
                series.push(Series {
                    run_id: *run_id,
                    points: points.len(),
                    buckets: reduce(&points, query.width),
                });
            }
            Ok(series)
        })
        .await
    }

    /// Every trial of a sweep, in the order they were created.
    pub fn sweep_trials(&self, sweep_id: RunId) -> ApiResult<Vec<Trial>> {
        Ok(self.store.trial_records(sweep_id)?.into_iter().map(|record| record.trial).collect())
    }

    /// Runs not yet ended: waiting for a worker in the order the dispatcher takes them
    /// (highest priority first, then first submitted), then those placed on workers.
    pub fn pending_runs(&self) -> ApiResult<Vec<(ExecutionRecord, Run)>> {
        let mut pending = self.store.pending_executions()?;
        pending.sort_by_key(|record| {
            (
                record.placement != Placement::Queued,
                std::cmp::Reverse(record.spec.priority),
                record.submitted_ms,
            )
        });
        pending
            .into_iter()
            .map(|record| {
                let run = self.store.run(record.run_id)?;
                Ok((record, run))
            })
            .collect()
    }

    pub fn log_since(&self, run_id: RunId, cursor: u64, max_bytes: usize) -> ApiResult<LogPage> {
        let run = self.store.run(run_id)?;
        let max_bytes = max_bytes.clamp(1, MAX_LOG_BYTES);
        let chunks = self.store.read_log(run_id, cursor, max_bytes)?;
        let next_cursor = chunks.last().map_or(cursor, |chunk| chunk.end_cursor);
        // A read that stopped short of the limit reached the end of the log; read after the
        // status, so an ended run's log has nothing more to come.
        let read = usize::try_from(next_cursor - cursor).unwrap_or(usize::MAX);
        let complete = run.info.status.is_terminal() && read < max_bytes;
        let chunks = chunks
            .into_iter()
            .map(|chunk| (chunk.stream, String::from_utf8_lossy(&chunk.data).into_owned()))
            .collect();
        Ok(LogPage { cursor, next_cursor, chunks, complete })
    }
}

fn view_deleted(run: &Run) -> bool {
    !ViewType::ActiveOnly.includes(run.info.lifecycle_stage)
}

/// Reduces points (sorted by x) to at most `width` buckets of equal x span, each keeping its
/// minimum and maximum; points that already fit are returned one per bucket.
pub fn reduce(points: &[(f64, f64)], width: usize) -> Vec<Bucket> {
    let single = |&(x, y): &(f64, f64)| Bucket {
        x_first: x,
        x_last: x,
        first: y,
        last: y,
        min: y,
        max: y,
        count: 1,
    };
    if points.len() <= width {
        return points.iter().map(single).collect();
    }
    let (low, high) = (points[0].0, points[points.len() - 1].0);
    let span = (high - low).max(f64::MIN_POSITIVE);
    let mut buckets: Vec<Bucket> = Vec::with_capacity(width);
    let mut current: Option<(usize, Bucket)> = None;
    for point in points {
        let index =
            (((point.0 - low) / span) * width as f64).floor().min(width as f64 - 1.0) as usize;
        match &mut current {
            Some((at, bucket)) if *at == index => {
                bucket.x_last = point.0;
                bucket.last = point.1;
                bucket.min = bucket.min.min(point.1);
                bucket.max = bucket.max.max(point.1);
                bucket.count += 1;
            }
            _ => {
                if let Some((_, done)) = current.take() {
                    buckets.push(done);
                }
                current = Some((index, single(point)));
            }
        }
    }
    buckets.extend(current.map(|(_, bucket)| bucket));
    buckets
}

#[cfg(test)]
mod tests {
    use super::reduce;

    #[test]
    fn reduction_keeps_every_spike_and_both_ends() {
        let points: Vec<(f64, f64)> = (0..1_000_000)
            .map(|i| (i as f64, if i == 123_457 { 1e9 } else { (i % 7) as f64 }))
            .collect();
        let buckets = reduce(&points, 1000);
        assert_eq!(buckets.len(), 1000);
        assert_eq!(buckets.iter().map(|b| b.count as usize).sum::<usize>(), points.len());
        assert!(buckets.iter().any(|b| b.max == 1e9), "the spike survives");
        assert!(buckets.iter().all(|b| b.min == 0.0), "every pixel keeps the wave's trough");
        assert_eq!((buckets[0].x_first, buckets[999].x_last), (0.0, 999_999.0));
    }

    #[test]
    fn points_that_fit_are_kept_as_they_are() {
        let points = [(0.0, 1.0), (5.0, 2.0), (9.0, f64::NAN)];
        let buckets = reduce(&points, 10);
        assert_eq!(buckets.len(), 3);
        assert_eq!(buckets[1].x_first, 5.0);
    }
}
