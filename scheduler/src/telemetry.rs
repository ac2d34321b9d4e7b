//! The scheduler's own metrics, for Prometheus at `GET /metrics` (OpenMetrics text):
//! runs by state and by how they ended, queue depth by priority, placement latency, workers
//! by state, metric points ingested, store size, and request latency by route. Counters and
//! histograms are recorded as things happen; gauges are read when scraped.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// What the scheduler measures about itself.
pub struct Telemetry {
    registry: Mutex<Registry>,
    requests: Family<Labels, Histogram, fn() -> Histogram>,
    placement: Histogram,
    ended: Family<Labels, Counter>,
    runs: Family<Labels, Gauge>,
    queue: Family<Labels, Gauge>,
    workers: Family<Labels, Gauge>,
    points: Counter,
    /// Points counted into `points` so far, of those the store reports.
    points_seen: AtomicU64,
    store_bytes: Gauge,
}

/// What the scheduler's state holds at a scrape.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Runs not ended, by state: queued, assigned, running.
    pub runs: Vec<(&'static str, u64)>,
    /// Queued runs by priority.
    pub queue: Vec<(i32, u64)>,
    /// Workers by state: connected, draining, disconnected.
    pub workers: Vec<(&'static str, u64)>,
    /// Metric points the store has written since it opened.
    pub points: u64,
    pub store_bytes: u64,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 100 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 11))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let telemetry = Telemetry {
            registry: Mutex::new(Registry::with_prefix("drover")),
            requests: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            placement: latency_histogram(),
            ended: Family::default(),
            runs: Family::default(),
            queue: Family::default(),
            workers: Family::default(),
            points: Counter::default(),
            points_seen: AtomicU64::new(0),
            store_bytes: Gauge::default(),
        };
        {
            let mut registry = telemetry.registry.lock().unwrap_or_else(|p| p.into_inner());
            registry.register(
                "request_duration_seconds",
                "Time to answer a call, by route (gRPC service or REST path pattern), method and status",
                telemetry.requests.clone(),
            );
            registry.register(
                "placement_latency_seconds",
                "Time from a run's submission to its placement on a worker",
                telemetry.placement.clone(),
            );
            registry.register(
                "runs_ended",
                "Runs drover executed that ended, by final status",
                telemetry.ended.clone(),
            );
            registry.register("runs", "Runs not ended, by state", telemetry.runs.clone());
            registry.register(
                "queue_depth",
                "Runs waiting for a worker, by priority",
                telemetry.queue.clone(),
            );
            registry.register("workers", "Workers, by state", telemetry.workers.clone());
            registry.register(
                "metric_points_ingested",
                "Metric points written to the store since it opened",
                telemetry.points.clone(),
            );
            registry.register(
                "store_size_bytes",
                "Bytes the store takes on disk",
                telemetry.store_bytes.clone(),
            );
        }
        telemetry
    }

    /// Records how long a call took.
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let status = status.to_string();
        self.requests
            .get_or_create(&labels(&[("route", route), ("method", method), ("status", &status)]))
            .observe(took.as_secs_f64());
    }

    /// Records a placement `took` after its run's submission.
    pub fn placed(&self, took: Duration) {
        self.placement.observe(took.as_secs_f64());
    }

    /// Counts a run that ended with `status`.
    pub fn ended(&self, status: &str) {
        self.ended.get_or_create(&labels(&[("status", status)])).inc();
    }

    /// The metrics in OpenMetrics text, with the gauges set from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.runs.clear();
        for (state, count) in &snapshot.runs {
            self.runs.get_or_create(&labels(&[("state", state)])).set(gauge(*count));
        }
        self.queue.clear();
        for (priority, count) in &snapshot.queue {
            let priority = priority.to_string();
            self.queue.get_or_create(&labels(&[("priority", &priority)])).set(gauge(*count));
        }
        self.workers.clear();
        for (state, count) in &snapshot.workers {
            self.workers.get_or_create(&labels(&[("state", state)])).set(gauge(*count));
        }
        let seen = self.points_seen.swap(snapshot.points, Ordering::Relaxed);
        self.points.inc_by(snapshot.points.saturating_sub(seen));
        self.store_bytes.set(gauge(snapshot.store_bytes));
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded_and_the_snapshot() {
        let telemetry = Telemetry::new();
        telemetry.request("/api/drover/runs", "GET", 200, Duration::from_millis(3));
        telemetry.placed(Duration::from_millis(5));
        telemetry.ended("FINISHED");
        let snapshot = Snapshot {
            runs: vec![("queued", 3)],
            queue: vec![(5, 2), (0, 1)],
            workers: vec![("connected", 2)],
            points: 40,
            store_bytes: 4096,
        };
        let text = telemetry.render(&snapshot);
        for line in [
            "drover_request_duration_seconds_count{route=\"/api/drover/runs\",method=\"GET\",status=\"200\"} 1",
            "drover_placement_latency_seconds_count 1",
            "drover_runs_ended_total{status=\"FINISHED\"} 1",
            "drover_runs{state=\"queued\"} 3",
            "drover_queue_depth{priority=\"5\"} 2",
            "drover_workers{state=\"connected\"} 2",
            "drover_metric_points_ingested_total 40",
            "drover_store_size_bytes 4096",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // The counter follows the store's count without counting twice.
        let text = telemetry.render(&Snapshot { points: 50, ..Snapshot::default() });
        assert!(text.contains("drover_metric_points_ingested_total 50"), "{text}");
        assert!(!text.contains("drover_runs{state=\"queued\"}"), "stale gauges are cleared");
    }
}
