//! Group commit: writers hand their change to the store's [`Kv`], then wait until a flush
//! that began after their write has reached the disk. One flusher thread serves every
//! waiter, so concurrent writers share each sled batch and each fsync instead of queueing for
//! their own. It also applies writes nobody waits for, every [`APPLY_EVERY`], so they do not
//! pile up in memory.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use drover_proto::ApiError;
use tokio::sync::watch;

use super::kv::Kv;

/// How long writes nobody waits for may stay unapplied.
const APPLY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

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
    closing: bool,
}

struct Shared {
    requests: Mutex<Requests>,
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
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests::default()),
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
            requests.issued
        };
        self.shared.wake.notify_one();
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
            while requests.issued == through && !requests.closing {
                let (next, waited) = shared
                    .wake
                    .wait_timeout(requests, APPLY_EVERY)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                requests = next;
                if waited.timed_out() && requests.issued == through && kv.has_unapplied() {
                    break;
                }
            }
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
