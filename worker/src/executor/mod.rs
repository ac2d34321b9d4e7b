//! What the executors share: how a run's process reports its start, output and end, how it
//! learns it is cancelled, and how executing it can fail. The executors themselves are
//! `docker` (a container per attempt) and `local` (a process group per attempt).
//!
//! An executor knows nothing of the scheduler or of reports: the runner hands it a command,
//! channels and a cancellation, and turns what comes back into reports.

pub mod docker;
pub mod local;

use std::time::Duration;

use drover_proto::domain::Tag;
use drover_proto::execution::LogStream;
use tokio::sync::{mpsc, oneshot, watch};

/// How an executed process ended.
#[derive(Debug)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    /// Stopped because the run was cancelled.
    pub killed: bool,
}

/// Output of a running process: which stream, and the bytes.
pub type Output = mpsc::Sender<(LogStream, Vec<u8>)>;

/// Told once the process has started, with facts to record on the run.
pub type Started = oneshot::Sender<Vec<Tag>>;

/// Why a run's process could not be executed or watched to its end. The message becomes the
/// run's failure reason, so it says what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(
        "worker {worker_id} cannot reach Docker; start the Docker engine there and restart the worker"
    )]
    DockerUnavailable { worker_id: String },
    #[error("a Docker run needs an image; name one in the MLproject's docker_env")]
    NoImage,
    #[error(
        "image '{image}' is not present on worker {worker_id}; build or load it on that machine, or run `drover worker --pull` there to fetch it from a registry"
    )]
    ImageMissing { image: String, worker_id: String },
    #[error(
        "image '{image}' is not present on worker {worker_id} and pulling it failed: {source}; check the image's name and that its registry is reachable"
    )]
    PullFailed { image: String, worker_id: String, source: bollard::errors::Error },
    #[error("cannot inspect image '{image}': {source}; check that the Docker engine is running")]
    InspectImage { image: String, source: bollard::errors::Error },
    #[error("cannot create the container: {source}; check the run's Docker options and volumes")]
    CreateContainer { source: bollard::errors::Error },
    #[error("cannot start the container: {source}; check the run's Docker options and volumes")]
    StartContainer { source: bollard::errors::Error },
    #[error("cannot inspect the container: {source}; check that the Docker engine is running")]
    InspectContainer { source: bollard::errors::Error },
    #[error("the container ran out of memory (OOM killed); give it more with -A memory=SIZE")]
    OutOfMemory,
    #[error(
        "image '{image}' is now {found}, not {expected} as when the run this reruns ran; a strict rerun does not start (rebuild that image, or rerun without --strict)"
    )]
    ImageChanged { image: String, expected: String, found: String },
    #[error("cannot start the command: {source}; check that sh runs on the worker")]
    Spawn { source: std::io::Error },
    #[error("cannot wait for the command: {source}")]
    Wait { source: std::io::Error },
}

/// A run's cancellation as an executor watches it: the grace period the cancellation asks
/// for, once it asks.
pub struct Cancellation {
    requests: watch::Receiver<Option<Duration>>,
}

impl Cancellation {
    /// Watches `requests`: `None` while the run goes on, the grace period once it is
    /// cancelled. A closed channel means the worker is going away.
    pub fn new(requests: watch::Receiver<Option<Duration>>) -> Cancellation {
        Cancellation { requests }
    }

    /// Waits until the run is cancelled and returns the grace period it has to stop.
    /// Cancel-safe: it keeps no state across awaits, so it can sit in a `select!` loop.
    pub async fn requested(&mut self) -> Duration {
        loop {
            let changed = self.requests.changed().await;
            if let Some(grace) = cancel_grace(changed, &self.requests) {
                return grace;
            }
        }
    }
}

/// The grace period a cancellation asks for, once `changed` reports one: `None` while the run
/// is not cancelled. A closed channel means the worker is going away: stop promptly.
fn cancel_grace(
    changed: Result<(), watch::error::RecvError>,
    requests: &watch::Receiver<Option<Duration>>,
) -> Option<Duration> {
    match changed {
        Ok(()) => *requests.borrow(),
        Err(_) => Some(Duration::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancellation_carries_its_grace_period_and_a_worker_going_away_stops_at_once() {
        let (cancel, requests) = watch::channel(None);
        let mut cancellation = Cancellation::new(requests);
        cancel.send(None).unwrap();
        let waited =
            tokio::time::timeout(Duration::from_millis(20), cancellation.requested()).await;
        assert!(waited.is_err(), "a change to no cancellation is not a cancellation");
        cancel.send(Some(Duration::from_secs(7))).unwrap();
        assert_eq!(cancellation.requested().await, Duration::from_secs(7));

        let (cancel, requests) = watch::channel(None);
        let mut cancellation = Cancellation::new(requests);
        drop(cancel);
        assert_eq!(cancellation.requested().await, Duration::ZERO);
    }
}
