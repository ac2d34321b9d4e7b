//! The dispatcher's messages to workers, delivered by a task of their own in the order the
//! dispatcher sends them. A placement's message waits until the write that placed it is
//! durable, so no worker runs an attempt a restarted scheduler would not know of; meanwhile
//! the dispatcher goes on placing, and its passes overlap the store's flushes instead of
//! waiting for them.

use std::sync::Arc;

use drover_proto::execution::SchedulerMessage;
use tokio::sync::{mpsc, watch};

use crate::store::{Store, Ticket};

/// A worker's stream, as the dispatcher writes to it.
pub(super) type Outbox = mpsc::UnboundedSender<SchedulerMessage>;

struct Delivery {
    /// The writes the messages depend on; none for messages that depend on nothing unwritten.
    after: Option<Ticket>,
    messages: Vec<(Outbox, SchedulerMessage)>,
}

pub(super) struct Courier {
    deliveries: mpsc::UnboundedSender<Delivery>,
    /// Taken by [`Courier::start`].
    inbox: Option<mpsc::UnboundedReceiver<Delivery>>,
}

impl Courier {
    pub(super) fn new() -> Courier {
        let (deliveries, inbox) = mpsc::unbounded_channel();
        Courier { deliveries, inbox: Some(inbox) }
    }

    /// Starts delivering (once). Followers hear of a change after each durable delivery. The
    /// task ends once the dispatcher is gone and everything it sent is delivered.
    pub(super) fn start(&mut self, store: Store, changes: Arc<watch::Sender<u64>>) {
        if let Some(inbox) = self.inbox.take() {
            tokio::spawn(deliver(inbox, store, changes));
        }
    }

    /// Sends `message` after everything sent before it.
    pub(super) fn send(&self, outbox: &Outbox, message: SchedulerMessage) {
        let delivery = Delivery { after: None, messages: vec![(outbox.clone(), message)] };
        let _ = self.deliveries.send(delivery);
    }

    /// Sends `messages` after everything sent before them, once the writes `ticket` covers
    /// are durable; if they cannot be made durable, not at all.
    pub(super) fn send_when_durable(
        &self,
        ticket: Ticket,
        messages: Vec<(Outbox, SchedulerMessage)>,
    ) {
        let _ = self.deliveries.send(Delivery { after: Some(ticket), messages });
    }
}

async fn deliver(
    mut inbox: mpsc::UnboundedReceiver<Delivery>,
    store: Store,
    changes: Arc<watch::Sender<u64>>,
) {
    while let Some(Delivery { after, messages }) = inbox.recv().await {
        let durable = after.is_some();
        if let Some(ticket) = after
            && let Err(error) = store.wait(ticket).await
        {
            // The workers never hear of these attempts; their leases and a restart sort out
            // the rest.
            tracing::error!(%error, messages = messages.len(), "writes are not durable; not sending what depends on them");
            continue;
        }
        for (outbox, message) in messages {
            // A closed stream is the connection's to report; the lease decides the rest.
            let _ = outbox.send(message);
        }
        if durable {
            changes.send_modify(|generation| *generation += 1);
        }
    }
}
