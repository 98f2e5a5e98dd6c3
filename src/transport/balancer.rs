//! Taking a host out of its load balancer and back: the contract.

use std::sync::Arc;

use async_trait::async_trait;

use super::shell::RemoteShell;
use crate::model::inventory::Host;

/// The host a balancer operation is about, with its shell for balancers
/// that act on the host itself.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub host: &'a Host,
    pub shell: Option<&'a Arc<dyn RemoteShell>>,
}

/// What an operator or fleetroll set on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
    /// The balancer cannot tell (a command balancer).
    Unknown,
}

/// The balancer's view of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStatus {
    pub admin: AdminState,
    /// Whether the balancer's own health check passes, when it has one.
    pub up: Option<bool>,
    /// Connections still open to the server, when the balancer counts them.
    pub sessions: Option<u64>,
}

/// Healthy and total servers behind a balancer, for `min_healthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub healthy: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalancerError {
    #[error("balancer {balancer}: cannot reach its API: {reason}")]
    Unreachable { balancer: String, reason: String },
    #[error("balancer {balancer} has no server {server} in backend {backend}")]
    UnknownServer {
        balancer: String,
        backend: String,
        server: String,
    },
    #[error("balancer {balancer} refused `{command}`: {reply}")]
    Refused {
        balancer: String,
        command: String,
        reply: String,
    },
    #[error("balancer {balancer}: {command} command failed: {detail}")]
    CommandFailed {
        balancer: String,
        command: String,
        detail: String,
    },
}

impl BalancerError {
    pub fn retryable(&self) -> bool {
        matches!(self, BalancerError::Unreachable { .. })
    }
}

/// A server's response counters, as the balancer keeps them since it
/// started: a watch subtracts two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerCounters {
    /// Every HTTP response it sent through the balancer.
    pub responses: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Its mean response time over its latest requests, as the balancer
    /// averages it, in milliseconds.
    pub mean_ms: Option<u64>,
    /// How many of its latest responses that average spans, as a sliding
    /// window (`sum += value - sum / n`): HAProxy's `rtime` is such an
    /// average over 512 samples (`TIME_STATS_SAMPLES`, documented as "the
    /// last 1024 requests"). A watch uses it to recover the mean of the
    /// responses in its own window from two readings.
    pub mean_spans: Option<u64>,
}

#[async_trait]
pub trait LoadBalancer: Send + Sync + std::fmt::Debug {
    /// The balancer's name in the inventory.
    fn name(&self) -> &str;

    async fn status(&self, target: Target<'_>) -> Result<ServerStatus, BalancerError>;

    /// Stops sending new connections to the host; existing ones may finish.
    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError>;

    /// Sends traffic to the host again (once its health check passes).
    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError>;

    /// Whether an operator has disabled the server (maintenance), read
    /// fresh right before fleetroll returns the host: HAProxy's `state
    /// ready` would lift an operator's MAINT along with fleetroll's drain,
    /// so a host an operator took over is left as it is. Returns how the
    /// operator left it.
    async fn disabled_by_operator(
        &self,
        target: Target<'_>,
    ) -> Result<Option<&'static str>, BalancerError> {
        Ok((self.status(target).await?.admin == AdminState::Maint).then_some("maintenance"))
    }

    /// The pool's health, when the balancer can report it.
    async fn pool(&self) -> Result<Option<PoolStatus>, BalancerError>;

    /// Every server's response counters, by server name, from one reading
    /// shared by every host watched on this balancer; `None` if the
    /// balancer keeps none (`[watch]` then cannot use it).
    async fn counters(
        &self,
    ) -> Result<Option<std::collections::HashMap<String, ServerCounters>>, BalancerError> {
        Ok(None)
    }

    /// Whether every call needs the host's SSH session (a command balancer
    /// with `ssh = true`): such a balancer cannot be checked before the
    /// run connects to the host.
    fn needs_host_session(&self) -> bool {
        false
    }

    /// How long a drain of this host can take at most by the balancer's own
    /// settings (an ELBv2 deregistration delay), when it has one; the wait
    /// is bounded by this and by `[drain].timeout`, whichever is shorter.
    async fn drain_bound(&self, _target: Target<'_>) -> Option<std::time::Duration> {
        None
    }

    /// How long a returned host may take to be reported up by the
    /// balancer's own health check (an ELBv2 group's interval × healthy
    /// threshold), when it has one; otherwise the run's default applies.
    /// `[drain] return_timeout` overrides both.
    async fn return_bound(&self, _target: Target<'_>) -> Option<std::time::Duration> {
        None
    }

    /// What this balancer must remember to return `host` to service after
    /// a restart of fleetroll (an ELBv2 `discover` balancer's drained
    /// registrations, which can no longer be discovered). Journaled right
    /// after the drain; opaque text.
    fn drain_memory(&self, _host: &Host) -> Option<String> {
        None
    }

    /// The host's instance was replaced: `old` is gone for good and `new`
    /// stands in for it. What the balancer remembers of the old target's
    /// drain moves to the new one (the same groups, the same ports), so that
    /// the return puts the new instance wherever the old one was, and the
    /// old one is no longer counted as a member of the pool.
    fn follow(&self, _old: &Host, _new: &Host) {}

    /// Takes back what [`LoadBalancer::drain_memory`] gave in an earlier
    /// process, before the host is returned to service.
    fn restore_memory(&self, _memory: &str) {}

    /// Checks, every few seconds while hosts are out, that the balancer
    /// still holds fleetroll's drains (HAProxy forgets runtime states on a
    /// reload) and re-applies any it lost. `drained` are the hosts the
    /// journal says fleetroll drained from this balancer and has not begun
    /// to return; the balancer keeps no list of its own. Returns what it
    /// repaired, for people to read.
    async fn reassert_drains(&self, _drained: &[Host]) -> Result<Vec<String>, BalancerError> {
        Ok(Vec::new())
    }
}
