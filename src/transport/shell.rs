//! Running commands on a host: the contract an SSH client fulfils.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::inventory::Host;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// Killed by a signal, by name as the server reports it ("KILL", "TERM").
    Signal(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit code as shells report it: 128 + n for signals is not known
    /// portably, so a signal is reported as -1.
    pub fn code(&self) -> i64 {
        match self {
            ExitStatus::Code(code) => i64::from(*code),
            ExitStatus::Signal(_) => -1,
        }
    }
}

/// What a finished command returned; only the tails of its output are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: ExitStatus,
    /// The last [`OUTPUT_TAIL_BYTES`] of stdout, lossily decoded.
    pub stdout_tail: String,
    /// The last [`OUTPUT_TAIL_BYTES`] of stderr, lossily decoded.
    pub stderr_tail: String,
    pub duration: Duration,
}

/// Bytes of each output stream kept per command.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// Nothing answered: refused, no route, DNS failure, connect timeout.
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
    /// The host key is not in known_hosts (and accept-new was not given).
    #[error(
        "host key of {host} is not known ({key_type} {fingerprint}); add it to {known_hosts} or pass --accept-new-host-keys"
    )]
    HostKeyUnknown {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
    },
    /// The host presented a key that differs from every recorded one.
    #[error(
        "HOST KEY CHANGED for {host}: it presented {key_type} {fingerprint}, but {known_hosts}:{line} records another key; refusing to connect"
    )]
    HostKeyChanged {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    /// The host presented a key that known_hosts marks `@revoked`.
    #[error(
        "host key of {host} ({key_type} {fingerprint}) is marked @revoked at {known_hosts}:{line}; refusing to connect"
    )]
    HostKeyRevoked {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    /// The host presented a certificate signed by one of its
    /// `@cert-authority` keys that is not valid for it now.
    #[error(
        "host certificate of {host} refused: {reason} (its CA is trusted at {known_hosts}:{line}); refusing to connect"
    )]
    HostCertificateRefused {
        host: String,
        reason: String,
        known_hosts: String,
        line: usize,
    },
    #[error("authentication as {user} on {host} failed: {reason}")]
    Auth {
        host: String,
        user: String,
        reason: String,
    },
    /// The connection broke or timed out after it was established.
    #[error("connection to {host} lost: {reason}")]
    Disconnected { host: String, reason: String },
    /// The command did not finish before its deadline; it was abandoned.
    #[error("command on {host} timed out after {after:?}")]
    Timeout { host: String, after: Duration },
    /// The run cut the command short (a second signal).
    #[error("cut short by the run")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

impl ShellError {
    /// Whether trying again later could succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ShellError::Unreachable { .. } | ShellError::Disconnected { .. }
        )
    }
}

/// An open session to one host, reused for every command run on it.
#[async_trait]
pub trait RemoteShell: Send + Sync + std::fmt::Debug {
    /// Runs `command` through the remote user's shell and waits, at most
    /// `timeout`, for it to exit. With `sudo`, the command runs under
    /// `sudo -n sh -c '…'`.
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, ShellError>;

    /// Like [`RemoteShell::exec`], but if `cancel` fires first the remote
    /// command is asked to stop (where the transport can) before this
    /// returns [`ShellError::Cancelled`]: a run cut short must not leave a
    /// step running on the host.
    async fn exec_until(
        &self,
        command: &str,
        timeout: Duration,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<ExecOutput, ShellError> {
        if cancel.is_cancelled() {
            return Err(ShellError::Cancelled);
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ShellError::Cancelled),
            result = self.exec(command, timeout) => result,
        }
    }

    /// Closes the session politely; errors are ignored.
    async fn close(&self);
}

/// Opens shells to hosts.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Connects and authenticates, verifying the host key; every stage has
    /// its own timeout.
    async fn connect(&self, host: &Host) -> Result<Arc<dyn RemoteShell>, ShellError>;

    /// At the end of a run: closes what the connector keeps open for
    /// every host (the jump hosts' shared connections), politely.
    async fn close(&self) {}
}
