//! How host tasks talk to the dispatcher: events, some awaiting durability.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

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
    lease: Arc<LeaseClock>,
}

/// Until when this process may act for the inventory's lock, by its own
/// monotonic clock: the last heartbeat that landed, plus the lease, less
/// one heartbeat interval. A holder frozen past it (SIGSTOP, a suspended
/// VM) may have been taken over meanwhile; on waking, its host tasks must
/// not begin anything before the dispatcher has checked the lock again.
/// Judged by this clock, not the wall clock: a clock that jumps cannot
/// extend it.
#[derive(Debug)]
pub struct LeaseClock {
    base: Instant,
    /// Milliseconds after `base`.
    until: AtomicU64,
    span: Duration,
}

impl LeaseClock {
    /// A lease renewed now, for `span`.
    pub fn new(span: Duration) -> Self {
        let clock = Self {
            base: Instant::now(),
            until: AtomicU64::new(0),
            span,
        };
        clock.renew();
        clock
    }

    /// A heartbeat landed.
    pub fn renew(&self) {
        let until = self.base.elapsed() + self.span;
        self.until.store(
            u64::try_from(until.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// How long past now this process may still act, by its own clock.
    pub fn left(&self) -> Duration {
        let until = Duration::from_millis(self.until.load(Ordering::SeqCst));
        until.saturating_sub(self.base.elapsed())
    }

    pub fn holds(&self) -> bool {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        now <= self.until.load(Ordering::SeqCst)
    }
}

/// The dispatcher is gone: the run is ending, the task should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run is shutting down")]
pub struct Closed;

impl Reporter {
    pub fn new(tx: mpsc::UnboundedSender<HostMessage>, lease: Arc<LeaseClock>) -> Self {
        Self { tx, lease }
    }

    /// Records `event` durably; returns once it is fsynced, and only while
    /// this process still holds the lock by its own clock ([`LeaseClock`]):
    /// what the record announces may then be done.
    pub async fn record(&self, event: Event) -> Result<(), Closed> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(HostMessage {
                event,
                ack: Some(ack),
            })
            .map_err(|_| Closed)?;
        done.await.map_err(|_| Closed)?;
        if self.lease.holds() {
            Ok(())
        } else {
            Err(Closed)
        }
    }

    /// How long past now the lock is still this process's, by its own
    /// clock.
    pub fn lease_left(&self) -> Duration {
        self.lease.left()
    }

    /// Reports `event` without waiting (probe results, warnings).
    pub fn note(&self, event: Event) {
        let _ = self.tx.send(HostMessage { event, ack: None });
    }
}
