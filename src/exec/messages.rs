//! How host tasks talk to the dispatcher: events, some awaiting durability.

use tokio::sync::{mpsc, oneshot};

use crate::events::Event;

/// One event from a host task. With an `ack`, the task waits until the
/// event is in the journal on disk before it acts on it (write-ahead).
#[derive(Debug)]
pub struct HostMessage {
    pub event: Event,
    pub ack: Option<oneshot::Sender<()>>,
}

/// A host task's handle for reporting.
#[derive(Debug, Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<HostMessage>,
}

/// The dispatcher is gone: the run is ending, the task should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run is shutting down")]
pub struct Closed;

impl Reporter {
    pub fn new(tx: mpsc::UnboundedSender<HostMessage>) -> Self {
        Self { tx }
    }

    /// Records `event` durably; returns once it is fsynced.
    pub async fn record(&self, event: Event) -> Result<(), Closed> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(HostMessage {
                event,
                ack: Some(ack),
            })
            .map_err(|_| Closed)?;
        done.await.map_err(|_| Closed)
    }

    /// Reports `event` without waiting (probe results, warnings).
    pub fn note(&self, event: Event) {
        let _ = self.tx.send(HostMessage { event, ack: None });
    }
}
