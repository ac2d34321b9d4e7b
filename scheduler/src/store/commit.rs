//! Group commit: writers hand their change to the store's [`Kv`], then wait until a flush
//! that began after their write has reached the disk. One flusher thread serves every
//! waiter, so concurrent writers share each sled batch and each fsync instead of queueing for
//! their own. It also applies writes nobody waits for, every [`APPLY_EVERY`], so they do not
//! pile up in memory.
//!
//! A waiter whose caller is not held up by the wait (a worker's report, which the worker
//! keeps until it is acknowledged) takes a lazy ticket: its flush starts with the next
//! urgent ticket's, and at the latest [`LAZY_WITHIN`] after it was taken. Every flush
//! costs sled a log write handed to its I/O threads; a run's reports would otherwise cost two
//! flushes of their own, beside the one its placement needs.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use drover_proto::ApiError;
use tokio::sync::watch;

use super::kv::Kv;

/// How long writes nobody waits for may stay unapplied.
const APPLY_EVERY: Duration = Duration::from_millis(20);
/// The longest a lazy ticket's writes wait for their flush to start.
const LAZY_WITHIN: Duration = Duration::from_millis(5);

#[derive(Clone, Debug, Default)]
struct Flushed {
    /// Every write whose ticket is at most this is on disk.
    through: u64,
    /// Set once a flush fails or the store closes; nothing is acknowledged after that.
    failure: Option<Arc<str>>,
}

#[derive(Default)]
struct Requests {
    issued: u64,
    /// The last ticket whose waiter wants its flush at once.
    urgent: u64,
    /// When the first lazy ticket since the last flush began was taken.
    lazy_since: Option<Instant>,
    closing: bool,
}

struct Shared {
    requests: Mutex<Requests>,
    /// [`LAZY_WITHIN`], but for tests.
    lazy_within: Duration,
    wake: Condvar,
    flushed: watch::Sender<Flushed>,
}

/// Stands for the writes applied before it was taken; see [`GroupCommit::wait`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

pub struct GroupCommit {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    pub fn start(kv: Arc<Kv>) -> std::io::Result<GroupCommit> {
        GroupCommit::start_with_lazy_window(kv, LAZY_WITHIN)
    }

    fn start_with_lazy_window(kv: Arc<Kv>, lazy_within: Duration) -> std::io::Result<GroupCommit> {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests::default()),
            lazy_within,
            wake: Condvar::new(),
            flushed: watch::Sender::new(Flushed::default()),
        });
        let flusher = std::thread::Builder::new().name("drover-flusher".to_string()).spawn({
            let shared = shared.clone();
            move || flush_loop(&kv, &shared)
        })?;
        Ok(GroupCommit { shared, flusher: Mutex::new(Some(flusher)) })
    }

    /// Waits until every write applied before this call is durable.
    pub async fn durable(&self) -> Result<(), ApiError> {
        self.wait(self.ticket()).await
    }

    /// A ticket for every write applied before this call, and a flush requested for them.
    pub fn ticket(&self) -> Ticket {
        let ticket = {
            let mut requests = lock(&self.shared.requests);
            requests.issued += 1;
            requests.urgent = requests.issued;
            requests.issued
        };
        self.shared.wake.notify_one();
        Ticket(ticket)
    }

    /// A ticket for every write applied before this call, whose flush may wait up to
    /// [`LAZY_WITHIN`] to be shared with other writes.
    pub fn lazy_ticket(&self) -> Ticket {
        let (ticket, first) = {
            let mut requests = lock(&self.shared.requests);
            requests.issued += 1;
            let first = requests.lazy_since.is_none();
            requests.lazy_since.get_or_insert_with(Instant::now);
            (requests.issued, first)
        };
        // The flusher learns the deadline from the first lazy ticket; later ones share it.
        if first {
            self.shared.wake.notify_one();
        }
        Ticket(ticket)
    }

    /// Waits until the writes `ticket` covers are durable.
    pub async fn wait(&self, Ticket(ticket): Ticket) -> Result<(), ApiError> {
        let mut flushed = self.shared.flushed.subscribe();
        let state = flushed
            .wait_for(|state| state.through >= ticket || state.failure.is_some())
            .await
            .map_err(|_| ApiError::Unavailable("the store is closed".to_string()))?;
        match &state.failure {
            Some(failure) if state.through < ticket => {
                Err(ApiError::Unavailable(failure.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Flushes what is pending and stops the flusher. Later `durable` calls fail.
    pub fn close(&self) {
        lock(&self.shared.requests).closing = true;
        self.shared.wake.notify_one();
        if let Some(flusher) = lock(&self.flusher).take() {
            let _ = flusher.join();
        }
        self.shared.flushed.send_modify(|state| {
            state.failure.get_or_insert_with(|| "the store is closed".into());
        });
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves only counters behind, which stay valid.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn flush_loop(kv: &Kv, shared: &Shared) {
    let mut through = 0;
    loop {
        let (target, closing) = {
            let mut requests = lock(&shared.requests);
            loop {
                if requests.closing || requests.urgent > through {
                    break;
                }
                // Tickets past `through` that are not urgent are lazy, and `lazy_since` is set.
                let now = Instant::now();
                let lazy_due = requests
                    .lazy_since
                    .filter(|_| requests.issued > through)
                    .map(|since| since + shared.lazy_within);
                if lazy_due.is_some_and(|due| due <= now) {
                    break;
                }
                let timeout = lazy_due.map_or(APPLY_EVERY, |due| (due - now).min(APPLY_EVERY));
                let (next, waited) = shared
                    .wake
                    .wait_timeout(requests, timeout)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                requests = next;
                if waited.timed_out() && requests.issued == through && kv.has_unapplied() {
                    break;
                }
            }
            // This pass covers every ticket issued so far, the lazy ones included.
            requests.lazy_since = None;
            (requests.issued, requests.closing)
        };
        // Writes covered by a ticket up to `target` were taken in before it was issued, so
        // this pass applies them.
        let result = if target == through { kv.apply_unapplied() } else { kv.flush() };
        match result {
            Ok(()) => {
                if target != through {
                    through = target;
                    shared.flushed.send_modify(|state| state.through = target);
                }
            }
            Err(error) => {
                tracing::error!(%error, "writing the store failed");
                let failure: Arc<str> =
                    format!("the store could not write to disk: {error}").into();
                shared.flushed.send_modify(|state| state.failure = Some(failure));
                return;
            }
        }
        if closing && lock(&shared.requests).issued == through {
            // Whatever was written after the last ticket reaches the disk too.
            if let Err(error) = kv.flush() {
                tracing::error!(%error, "writing the store's last changes failed");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::values::ValueLog;

    fn open(dir: &std::path::Path, lazy_within: Duration) -> (Arc<Kv>, GroupCommit) {
        let db = sled::Config::new().path(dir.join("db")).open().expect("sled");
        let values = ValueLog::open(dir, true).expect("value log");
        let kv = Arc::new(Kv::new(db, values));
        let commit = GroupCommit::start_with_lazy_window(kv.clone(), lazy_within).expect("flusher");
        (kv, commit)
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn a_lazy_ticket_is_flushed_with_no_other_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (kv, commit) = open(dir.path(), LAZY_WITHIN);
        kv.insert(b"a/1", b"lazy").expect("written");
        let ticket = commit.lazy_ticket();
        let waited = block_on(async {
            tokio::time::timeout(Duration::from_secs(5), commit.wait(ticket)).await
        });
        assert!(matches!(waited, Ok(Ok(()))), "a lazy ticket was never flushed: {waited:?}");
        assert!(!kv.has_unapplied(), "the flush left the write unapplied");
    }

    #[test]
    fn an_urgent_ticket_does_not_wait_out_the_lazy_window_and_covers_the_lazy_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A lazy window no test run could wait out: every wait below is served by the
        // urgent ticket's flush, or the test times out.
        let (kv, commit) = open(dir.path(), Duration::from_secs(3600));
        block_on(async {
            for round in 0..20 {
                kv.insert(format!("a/{round}").as_bytes(), b"lazy").expect("written");
                let lazy = commit.lazy_ticket();
                kv.insert(format!("b/{round}").as_bytes(), b"urgent").expect("written");
                let urgent =
                    tokio::time::timeout(Duration::from_secs(30), commit.wait(commit.ticket()));
                assert!(
                    matches!(urgent.await, Ok(Ok(()))),
                    "round {round}: the urgent flush waited"
                );
                // Covered by the flush the urgent ticket asked for: no further wait.
                let covered = tokio::time::timeout(Duration::ZERO, commit.wait(lazy)).await;
                assert!(matches!(covered, Ok(Ok(()))), "round {round}: {covered:?}");
            }
        });
    }
}
