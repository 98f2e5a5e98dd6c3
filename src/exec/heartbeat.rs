//! The lock's heartbeat, beaten by a task of its own.
//!
//! The run loop may wait on the outside world (a journal segment written to
//! S3, a balancer that is slow to answer); the heartbeat must not wait with
//! it, or a live run would look dead to `status`, `resume` and
//! `unlock --force` on every machine. So the lock lives here: a task renews
//! it every [`RunLock::heartbeat_every`], renews the host tasks'
//! [`LeaseClock`] with each heartbeat that landed, and tells the loop when
//! the lock turned out to be someone else's or a renewal failed.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::messages::LeaseClock;
use crate::clock::Clock;
use crate::lock::{LockError, LockInfo, RunLock};

/// What a heartbeat found that the run must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// The lock is no longer this run's: start nothing more.
    Lost(String),
    /// A renewal failed; the lease still runs out unless a later one lands.
    Failed(String),
}

/// The lock, held by the heartbeat task until the run releases it.
#[derive(Debug)]
pub struct Heartbeat {
    lock: Arc<Mutex<Option<RunLock>>>,
    info: LockInfo,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating `lock` (from the next interval on: it was just taken
    /// or renewed); what it finds arrives on the receiver.
    pub fn start(
        lock: RunLock,
        lease: Arc<LeaseClock>,
        clock: Clock,
    ) -> (Self, mpsc::UnboundedReceiver<Beat>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let every = lock.heartbeat_every();
        let info = lock.info().clone();
        let lock = Arc::new(Mutex::new(Some(lock)));
        let stop = CancellationToken::new();
        let task = {
            let (lock, stop) = (Arc::clone(&lock), stop.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval.tick().await;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = interval.tick() => {}
                    }
                    let beat = {
                        let mut held = lock.lock().unwrap_or_else(PoisonError::into_inner);
                        let Some(lock) = held.as_mut() else { return };
                        lock.heartbeat(clock.now())
                    };
                    match beat {
                        Ok(()) => lease.renew(),
                        Err(error @ LockError::Lost { .. }) => {
                            let _ = tx.send(Beat::Lost(error.to_string()));
                            return;
                        }
                        Err(error) => {
                            let _ = tx.send(Beat::Failed(error.to_string()));
                        }
                    }
                }
            })
        };
        (
            Self {
                lock,
                info,
                stop,
                task: Some(task),
            },
            rx,
        )
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Stops beating and releases the lock if it is still this run's;
    /// whether it did. A beat under way is finished first (it holds the
    /// lock), so the release is never overtaken by a renewal.
    pub fn release(self) -> bool {
        // The task stops when `self` is dropped, below; a beat it began
        // meanwhile finds the lock gone.
        let lock = self
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        lock.is_some_and(RunLock::release)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
