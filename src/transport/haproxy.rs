//! HAProxy through its runtime API (unix socket or TCP): one shared view of
//! the backend per balancer, and a small, bounded pool of exchanges.
//!
//! HAProxy's stats socket serves few connections at once (its `maxconn`,
//! 10 by default, plus a listen backlog as small): past that, a connect
//! fails at once with EAGAIN. Asking per host per poll fails as soon as a
//! batch of hosts polls together (issue 8), so:
//!
//! - every host's [`LoadBalancer::status`] and the [`LoadBalancer::pool`]
//!   answer come from one [`Snapshot`] of `show stat` and `show servers
//!   state`, which answer for every server of the backend at once. It is
//!   at most [`SNAPSHOT_MAX_AGE`] old and single-flight: callers that ask
//!   while it is being refreshed wait for that refresh instead of asking
//!   HAProxy themselves;
//! - at most [`MAX_EXCHANGES`] exchanges with HAProxy are in flight per
//!   balancer, whatever the number of hosts in flight;
//! - a `set server` that fleetroll sends invalidates the snapshot, so the
//!   next status shows fleetroll's own drain.
//!
//! Each exchange is one connection, HAProxy's non-interactive mode: it
//! answers one command and closes. Interactive mode (`prompt`) would save
//! the connects, but HAProxy closes idle CLI connections after `stats
//! timeout`, an answer's end is only recognisable by the prompt, and a
//! connection given up mid-answer would hand the rest of that answer to
//! the next command; with two connections at most, connecting costs
//! nothing worth that.
//!
//! The client never retries: every transient failure (EAGAIN, refused,
//! no socket file, reset, timeout, an answer cut short) is
//! [`BalancerError::Unreachable`], which the exec layer retries with
//! backoff; HAProxy's refusals (no such server) are not.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::balancer::{
    AdminState, BalancerError, LoadBalancer, PoolStatus, ServerCounters, ServerStatus, Target,
};
use crate::model::inventory::{HaproxyEndpoint, Host};

/// Every runtime API exchange, waiting for its turn included, is bounded by this.
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// Runtime API exchanges in flight at most, per balancer.
pub const MAX_EXCHANGES: usize = 2;

/// How old a snapshot may be when it answers a status: exec polls
/// balancers every 100 ms (`Cadence::balancer_poll`).
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Haproxy {
    name: String,
    backend: String,
    api: Arc<RuntimeApi>,
    observer: Arc<Observer>,
}

/// Where the runtime API listens, and the turns to speak to it.
#[derive(Debug)]
struct RuntimeApi {
    balancer: String,
    endpoint: HaproxyEndpoint,
    turns: Semaphore,
    /// [`API_TIMEOUT`], shorter in tests.
    timeout: Duration,
}

/// The shared view of the backend. The mutex is held across a refresh:
/// that is what makes callers that ask meanwhile wait for it.
#[derive(Debug, Default)]
struct Observer {
    /// Bumped by every `set server` fleetroll sends: a snapshot taken
    /// before the bump may not show it, and is not used again.
    generation: AtomicU64,
    last: Mutex<Option<Observation>>,
}

/// One refresh of the snapshot, failed or not: a failure is shared with
/// everyone who waited for it, like an answer.
#[derive(Debug)]
struct Observation {
    generation: u64,
    done: Instant,
    result: Result<Arc<Snapshot>, BalancerError>,
}

impl Observation {
    /// Whether this refresh answers a caller that asked at `asked`, with
    /// fleetroll's commands counted up to `generation`. One that ended
    /// after the call began answers it whatever its age: the caller waited
    /// for it. A failure answers no one else: the next caller (the exec
    /// layer's retry) asks HAProxy again.
    fn answers(&self, asked: Instant, generation: u64) -> bool {
        self.generation == generation
            && (self.done >= asked
                || (self.result.is_ok() && self.done.elapsed() < SNAPSHOT_MAX_AGE))
    }
}

/// Every server of the backend at one moment.
#[derive(Debug)]
struct Snapshot {
    servers: HashMap<String, ServerView>,
    pool: PoolStatus,
}

#[derive(Debug, Clone)]
struct ServerView {
    /// The `status` column of `show stat`.
    status: String,
    sessions: u64,
    admin: AdminState,
    counters: ServerCounters,
}

impl Haproxy {
    pub fn new(name: &str, endpoint: HaproxyEndpoint, backend: &str) -> Self {
        Self {
            name: name.to_owned(),
            backend: backend.to_owned(),
            api: Arc::new(RuntimeApi {
                balancer: name.to_owned(),
                endpoint,
                turns: Semaphore::new(MAX_EXCHANGES),
                timeout: API_TIMEOUT,
            }),
            observer: Arc::default(),
        }
    }

    /// The same client with every exchange bounded by `timeout`.
    #[cfg(test)]
    fn with_timeout(self, timeout: Duration) -> Self {
        let api = RuntimeApi {
            balancer: self.api.balancer.clone(),
            endpoint: self.api.endpoint.clone(),
            turns: Semaphore::new(MAX_EXCHANGES),
            timeout,
        };
        Self {
            api: Arc::new(api),
            ..self
        }
    }

    /// Sends one command and returns HAProxy's whole answer.
    pub async fn command(&self, command: &str) -> Result<String, BalancerError> {
        self.refuse_separators(command)?;
        tracing::debug!("haproxy: {command}");
        self.api.exchange(command).await
    }

    /// The runtime API runs each `;`- or newline-separated part as a
    /// command of its own. Names are checked where they come from (the
    /// inventory, discovery); this is the last line, for names from
    /// anywhere else (an old journal, say).
    fn refuse_separators(&self, command: &str) -> Result<(), BalancerError> {
        if command.contains([';', '\n', '\r']) {
            return Err(BalancerError::Refused {
                balancer: self.name.clone(),
                command: format!("{command:?}"),
                reply: "not sent: a name in it is not a plain identifier".to_owned(),
            });
        }
        Ok(())
    }

    async fn set_state(&self, server: &str, state: &str) -> Result<(), BalancerError> {
        let command = format!("set server {}/{server} state {state}", self.backend);
        self.refuse_separators(&command)?;
        let reply = self.api.exchange(&command).await;
        // Whatever came of it, HAProxy may have applied it: a snapshot
        // read before now must not answer a later status.
        self.observer.generation.fetch_add(1, Ordering::SeqCst);
        let reply = reply?;
        // Success is an empty answer; anything else is HAProxy saying why not.
        if reply.trim().is_empty() {
            Ok(())
        } else if reply.contains("No such server") || reply.contains("No such backend") {
            Err(self.unknown_server(server))
        } else {
            Err(self.refused(&command, &reply))
        }
    }

    fn unknown_server(&self, server: &str) -> BalancerError {
        BalancerError::UnknownServer {
            balancer: self.name.clone(),
            backend: self.backend.clone(),
            server: server.to_owned(),
        }
    }

    fn refused(&self, command: &str, reply: &str) -> BalancerError {
        BalancerError::Refused {
            balancer: self.name.clone(),
            command: command.to_owned(),
            reply: reply.trim().to_owned(),
        }
    }

    /// The backend as HAProxy sees it now, or at most [`SNAPSHOT_MAX_AGE`]
    /// ago and since fleetroll's last command; refreshed by one caller at
    /// a time, while the others wait for its result.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, BalancerError> {
        let asked = Instant::now();
        let mut last = self.observer.last.lock().await;
        // Read under the lock, before the refresh: a command that lands
        // during the refresh bumps it past what the refresh records.
        let generation = self.observer.generation.load(Ordering::SeqCst);
        if let Some(seen) = last.as_ref()
            && seen.answers(asked, generation)
        {
            return seen.result.clone();
        }
        let result = self.read_snapshot().await.map(Arc::new);
        *last = Some(Observation {
            generation,
            done: Instant::now(),
            result: result.clone(),
        });
        result
    }

    /// `show stat` for the status and sessions of every server, `show
    /// servers state` for their admin states: `show stat` says DOWN for a
    /// drained server that fails its health check, which would hide an
    /// operator's drain.
    async fn read_snapshot(&self) -> Result<Snapshot, BalancerError> {
        let stat_command = format!("show stat {} 4 -1", self.backend);
        let state_command = format!("show servers state {}", self.backend);
        let (stat, state) = tokio::try_join!(self.show(&stat_command), self.show(&state_command))?;
        if !stat.starts_with("# ") {
            return Err(self.refused(&stat_command, &stat));
        }
        let rows = parse_stat(&stat);
        let admin =
            parse_servers_state(&state).ok_or_else(|| self.refused(&state_command, &state))?;
        let pool = PoolStatus {
            healthy: rows.iter().filter(|row| is_up(&row.status)).count(),
            total: rows.len(),
        };
        let servers = rows
            .into_iter()
            .filter_map(|row| {
                let admin = *admin.get(&row.server)?;
                Some((
                    row.server,
                    ServerView {
                        status: row.status,
                        sessions: row.sessions,
                        admin,
                        counters: row.counters,
                    },
                ))
            })
            .collect();
        Ok(Snapshot { servers, pool })
    }

    /// A `show` command's whole answer. HAProxy ends every answer with an
    /// empty line (its CLI adds a newline after each command's output, and
    /// the output ends with one): an answer without it was cut short, and
    /// would lack servers that are there.
    async fn show(&self, command: &str) -> Result<String, BalancerError> {
        let reply = self.api.exchange(command).await?;
        if reply.ends_with("\n\n") {
            Ok(reply)
        } else {
            Err(self.api.unreachable(if reply.is_empty() {
                format!("`{command}`: the connection closed without an answer")
            } else {
                format!("`{command}`: the answer was cut short")
            }))
        }
    }
}

impl RuntimeApi {
    fn unreachable(&self, reason: String) -> BalancerError {
        BalancerError::Unreachable {
            balancer: self.balancer.clone(),
            reason,
        }
    }

    /// One command on a connection of its own, when one of the
    /// [`MAX_EXCHANGES`] turns is free; bounded by [`API_TIMEOUT`] in all,
    /// the wait for a turn included.
    async fn exchange(&self, command: &str) -> Result<String, BalancerError> {
        let exchange = async {
            // Never closed: an error here cannot happen, but is no panic.
            let _turn = self
                .turns
                .acquire()
                .await
                .map_err(|_| "the client is shutting down".to_owned())?;
            match &self.endpoint {
                HaproxyEndpoint::Socket(path) => {
                    let stream = tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    exchange(stream, command)
                        .await
                        .map_err(|e| format!("`{command}`: {e}"))
                }
                HaproxyEndpoint::Address(address) => {
                    let stream = tokio::net::TcpStream::connect(address)
                        .await
                        .map_err(|e| format!("{address}: {e}"))?;
                    exchange(stream, command)
                        .await
                        .map_err(|e| format!("`{command}`: {e}"))
                }
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result.map_err(|reason| self.unreachable(reason)),
            Err(_) => {
                Err(self.unreachable(format!("`{command}`: no answer within {:?}", self.timeout)))
            }
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    command: &str,
) -> std::io::Result<String> {
    stream.write_all(command.as_bytes()).await?;
    stream.write_all(b"\n").await?;
    stream.flush().await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    Ok(reply)
}

/// One server row of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    pub server: String,
    pub status: String,
    pub sessions: u64,
    /// `hrsp_1xx` … `hrsp_other` summed, `hrsp_5xx`, and `rtime`.
    pub counters: ServerCounters,
}

/// How many responses HAProxy's `rtime` sliding average spans
/// (`TIME_STATS_SAMPLES` in its source).
const RTIME_SAMPLES: u64 = 512;

/// The `show stat` columns that count a server's HTTP responses by class.
const RESPONSE_COLUMNS: [&str; 6] = [
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
];

/// Parses `show stat` CSV by the column names in its header, so a HAProxy
/// version that adds columns does not break us.
pub fn parse_stat(csv: &str) -> Vec<StatRow> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(sv), Some(status), Some(scur)) = (index("svname"), index("status"), index("scur"))
    else {
        return Vec::new();
    };
    lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let server = *fields.get(sv)?;
            if server == "FRONTEND" || server == "BACKEND" {
                return None;
            }
            let count =
                |column: Option<usize>| -> Option<u64> { fields.get(column?)?.parse().ok() };
            let responses = RESPONSE_COLUMNS
                .iter()
                .map(|name| count(index(name)).unwrap_or(0))
                .sum();
            Some(StatRow {
                server: server.to_owned(),
                status: fields.get(status)?.to_string(),
                sessions: fields.get(scur)?.parse().unwrap_or(0),
                counters: ServerCounters {
                    responses,
                    errors: count(index("hrsp_5xx")).unwrap_or(0),
                    mean_ms: count(index("rtime")),
                    mean_spans: count(index("rtime")).map(|_| RTIME_SAMPLES),
                },
            })
        })
        .collect()
}

/// The admin state of one server in `show servers state` output.
pub fn parse_admin_state(text: &str, server: &str) -> Option<AdminState> {
    parse_servers_state(text)?.remove(server)
}

/// Every server's admin state in `show servers state` output: a version
/// line, a `#` header naming the columns, then one row per server. None
/// when the text is not that (HAProxy's "Can't find backend.", say).
pub fn parse_servers_state(text: &str) -> Option<HashMap<String, AdminState>> {
    let mut lines = text.lines().skip_while(|line| !line.starts_with('#'));
    let header: Vec<&str> = lines
        .next()?
        .trim_start_matches('#')
        .split_whitespace()
        .collect();
    let name_at = header.iter().position(|c| *c == "srv_name")?;
    let admin_at = header.iter().position(|c| *c == "srv_admin_state")?;
    Some(
        lines
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let bits: u32 = fields.get(admin_at)?.parse().ok()?;
                Some(((*fields.get(name_at)?).to_owned(), admin_from_bits(bits)))
            })
            .collect(),
    )
}

/// SRV_ADMF_*: FMAINT 0x01, IMAINT 0x02, CMAINT 0x04, FDRAIN 0x08,
/// IDRAIN 0x10, RMAINT 0x20, HMAINT 0x40.
fn admin_from_bits(bits: u32) -> AdminState {
    if bits & (0x01 | 0x02 | 0x04 | 0x20 | 0x40) != 0 {
        AdminState::Maint
    } else if bits & (0x08 | 0x10) != 0 {
        AdminState::Drain
    } else {
        AdminState::Ready
    }
}

/// Whether HAProxy's own health check passes: "UP", "UP 1/2" (going down
/// but still up), "NOLB"; not "DOWN", "DOWN 1/2", "MAINT", "DRAIN".
fn is_up(status: &str) -> bool {
    status == "UP" || status.starts_with("UP ") || status == "NOLB" || status == "no check"
}

#[async_trait]
impl LoadBalancer for Haproxy {
    fn name(&self) -> &str {
        &self.name
    }

    async fn status(&self, target: Target<'_>) -> Result<ServerStatus, BalancerError> {
        let server = &target.host.lb_server;
        let snapshot = self.snapshot().await?;
        let view = snapshot
            .servers
            .get(server)
            .ok_or_else(|| self.unknown_server(server))?;
        Ok(ServerStatus {
            admin: view.admin,
            up: Some(is_up(&view.status)),
            sessions: Some(view.sessions),
        })
    }

    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.set_state(&target.host.lb_server, "drain").await
    }

    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.set_state(&target.host.lb_server, "ready").await
    }

    async fn counters(&self) -> Result<Option<HashMap<String, ServerCounters>>, BalancerError> {
        let snapshot = self.snapshot().await?;
        Ok(Some(
            snapshot
                .servers
                .iter()
                .map(|(name, view)| (name.clone(), view.counters))
                .collect(),
        ))
    }

    async fn pool(&self) -> Result<Option<PoolStatus>, BalancerError> {
        Ok(Some(self.snapshot().await?.pool))
    }

    /// A fresh `show servers state`, not the shared snapshot: an operator's
    /// MAINT set a moment ago must be seen before `state ready` lifts it.
    async fn disabled_by_operator(
        &self,
        target: Target<'_>,
    ) -> Result<Option<&'static str>, BalancerError> {
        let server = &target.host.lb_server;
        let command = format!("show servers state {}", self.backend);
        let reply = self.show(&command).await?;
        let admin = parse_servers_state(&reply).ok_or_else(|| self.refused(&command, &reply))?;
        match admin.get(server) {
            Some(AdminState::Maint) => Ok(Some("maintenance")),
            Some(_) => Ok(None),
            None => Err(self.unknown_server(server)),
        }
    }

    /// One `show servers state` read, fresh rather than from the snapshot:
    /// every host of `drained` that HAProxy has back at Ready lost its
    /// drain (a reload starts with every server ready) and is drained
    /// again. When one of those drains fails after others succeeded, the
    /// ones done are still reported, with the failure; the next check
    /// tries again.
    async fn reassert_drains(&self, drained: &[Host]) -> Result<Vec<String>, BalancerError> {
        if drained.is_empty() {
            return Ok(Vec::new());
        }
        let command = format!("show servers state {}", self.backend);
        let reply = self.show(&command).await?;
        let admin = parse_servers_state(&reply).ok_or_else(|| self.refused(&command, &reply))?;
        let lost: Vec<&Host> = drained
            .iter()
            .filter(|host| admin.get(&host.lb_server) == Some(&AdminState::Ready))
            .collect();
        let mut repaired = Vec::new();
        let mut failure = None;
        for host in lost {
            match self.set_state(&host.lb_server, "drain").await {
                Ok(()) => repaired.push(host.name.as_str()),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let mut warnings = Vec::new();
        if !repaired.is_empty() {
            warnings.push(format!(
                "HAProxy {} lost fleetroll's drain of {} (a reload forgets runtime states): \
                 drain re-applied; configure a server-state file to keep them",
                self.name,
                repaired.join(", ")
            ));
        }
        match failure {
            Some(error) if warnings.is_empty() => Err(error),
            Some(error) => {
                warnings.push(format!("could not re-apply the rest: {error}"));
                Ok(warnings)
            }
            None => Ok(warnings),
        }
    }
}

#[cfg(test)]
#[path = "haproxy_tests.rs"]
mod tests;
