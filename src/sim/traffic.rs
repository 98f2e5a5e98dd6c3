//! Live traffic through the balancer during the demo, and its tally: the
//! evidence that the rolling update lost no requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::app::http_get;

/// Bound on one request, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two requests of one client: steady load, not a flood.
const PAUSE: Duration = Duration::from_millis(20);
/// A forgotten generator stops by itself after this.
const HARD_STOP: Duration = Duration::from_secs(600);
/// How many failures are described in the report.
const KEEP_FAILURES: usize = 5;

/// What the traffic saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficReport {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests answered otherwise, or not at all.
    pub failed: u64,
    /// Successful answers by the version that served them.
    pub by_version: BTreeMap<String, u64>,
    /// Failed requests that got an HTTP answer, by its status.
    pub by_status: BTreeMap<u16, u64>,
    /// The first few failures, described.
    pub failures: Vec<String>,
}

#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    by_version: Mutex<BTreeMap<String, u64>>,
    by_status: Mutex<BTreeMap<u16, u64>>,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, result: Result<(u16, String), String>) {
        match result {
            Ok((200, body)) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let mut versions = self
                    .by_version
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *versions.entry(body.trim().to_owned()).or_default() += 1;
            }
            other => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let detail = match other {
                    Ok((status, body)) => {
                        *self
                            .by_status
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(status)
                            .or_default() += 1;
                        format!("HTTP {status}: {}", body.trim())
                    }
                    Err(err) => err,
                };
                let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
                if failures.len() < KEEP_FAILURES {
                    failures.push(detail);
                }
            }
        }
    }

    fn report(&self) -> TrafficReport {
        TrafficReport {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            by_version: self
                .by_version
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            by_status: self
                .by_status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            failures: self
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Clients sending `GET /` through the frontend in a loop.
#[derive(Debug)]
pub struct Traffic {
    stop: CancellationToken,
    clients: JoinSet<()>,
    tally: Arc<Tally>,
}

impl Traffic {
    /// Starts `concurrency` clients on the current runtime.
    pub fn start(frontend: SocketAddr, concurrency: usize) -> Self {
        let stop = CancellationToken::new();
        let tally = Arc::new(Tally::default());
        let mut clients = JoinSet::new();
        for _ in 0..concurrency {
            let stop = stop.clone();
            let tally = Arc::clone(&tally);
            clients.spawn(async move {
                let until = tokio::time::Instant::now() + HARD_STOP;
                // A request in flight when told to stop is finished and
                // counted: cutting it off would count as a failure that the
                // fleet did not cause.
                while !stop.is_cancelled() && tokio::time::Instant::now() < until {
                    tally.record(http_get(frontend, "/", REQUEST_TIMEOUT).await);
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(PAUSE) => {}
                    }
                }
            });
        }
        Self {
            stop,
            clients,
            tally,
        }
    }

    /// The tally so far, without stopping.
    pub fn snapshot(&self) -> TrafficReport {
        self.tally.report()
    }

    /// Stops the clients, lets their last requests finish, and reports.
    pub async fn stop(mut self) -> TrafficReport {
        self.stop.cancel();
        while self.clients.join_next().await.is_some() {}
        self.tally.report()
    }
}
