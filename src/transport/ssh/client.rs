//! The SSH connector and shell: russh sessions with a deadline on every stage,
//! OpenSSH-style host key checks, jump hosts, and bounded command output.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, DisconnectReason};
use russh::keys::PublicKey;
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::{Algorithm, Certificate};
use russh::{ChannelMsg, Disconnect, Sig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use super::keys::{self, AuthError, Identities, KeySources};
use super::known_hosts::{self, CertVerdict, Verdict};
use crate::model::inventory::{Host, IdentityAgent, JumpHost};
use crate::model::template::shell_quote;
use crate::transport::shell::{
    Connector, ExecOutput, ExitStatus, OUTPUT_TAIL_BYTES, RemoteShell, ShellError,
};

/// Knobs of the SSH transport; every stage of a connection has a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// Record unknown host keys in known_hosts instead of refusing them
    /// (OpenSSH's `StrictHostKeyChecking=accept-new`). A changed key is
    /// refused either way.
    pub accept_new_host_keys: bool,
    /// Bound on the TCP connect, and separately on the SSH handshake.
    pub connect_timeout: Duration,
    /// Bound on authentication once the handshake is done.
    pub auth_timeout: Duration,
    /// Silence after which a keepalive is sent; zero disables keepalives.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives after which the connection counts as lost.
    pub keepalive_max: usize,
    /// SSH handshakes (connect and log in) in flight at once to one
    /// destination; four times as many over every destination.
    pub max_handshakes: usize,
}

impl Default for SshOptions {
    fn default() -> Self {
        Self {
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            keepalive_max: 3,
            max_handshakes: crate::model::inventory::DEFAULT_MAX_HANDSHAKES,
        }
    }
}

/// Opens [`SshShell`]s with russh.
#[derive(Debug)]
pub struct SshConnector {
    options: SshOptions,
    sources: KeySources,
    /// Serialises read-check-append on known_hosts files, so that parallel
    /// connections to one new host record its key once.
    known_hosts_lock: Arc<Mutex<()>>,
    /// One authenticated connection per chain of jump hosts, shared by
    /// every host behind it: a bastion sees one login for the whole run,
    /// not one per host (its sshd's `MaxStartups` and `MaxSessions` are
    /// OpenSSH's defaults more often than not). `direct-tcpip` channels are
    /// not sessions: one connection carries every tunnel.
    chains: tokio::sync::Mutex<HashMap<ChainKey, Arc<ChainSlot>>>,
    /// SSH handshakes in flight at once, over every destination, so that
    /// a batch of hundreds does not open hundreds of handshakes in the same
    /// millisecond ([`SshOptions::max_handshakes`] times
    /// [`OVERALL_PER_DESTINATION`]).
    handshakes: Arc<tokio::sync::Semaphore>,
    /// SSH handshakes in flight at once per destination address and port:
    /// until it is logged in, a connection counts against that sshd's
    /// `MaxStartups` ([`SshOptions::max_handshakes`]).
    destinations: Mutex<HashMap<(String, u16), Arc<tokio::sync::Semaphore>>>,
}

/// A connection's turn to connect and log in (see
/// [`SshConnector::handshake_turn`]); dropping it gives the turn back.
struct HandshakeTurn {
    _for_destination: tokio::sync::OwnedSemaphorePermit,
    _overall: tokio::sync::OwnedSemaphorePermit,
}

/// How many destinations' worth of handshakes run at once overall.
pub const OVERALL_PER_DESTINATION: usize = 4;

/// The jump hosts' connections, outermost first: each carried by the one
/// before it.
type Chain = Vec<Session>;

/// One chain's place: empty until it is first opened; locked while it is
/// (re)opened, so that the hosts behind it wait for one handshake.
type ChainSlot = tokio::sync::Mutex<Option<Arc<Chain>>>;

/// What makes two hosts' jump chains the same connections: each hop's
/// address, port, user and keys, and the known_hosts files its key is
/// checked against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChainKey {
    hops: Vec<(String, u16, String, Vec<PathBuf>)>,
    known_hosts: Vec<PathBuf>,
}

impl SshConnector {
    /// `home` holds `.ssh/known_hosts` and the default identities;
    /// `agent_socket` is ssh-agent's socket (`$SSH_AUTH_SOCK`), if any.
    pub fn new(
        options: SshOptions,
        home: impl Into<PathBuf>,
        agent_socket: Option<PathBuf>,
    ) -> Self {
        Self {
            sources: KeySources {
                home: home.into(),
                agent_socket,
            },
            known_hosts_lock: Arc::new(Mutex::new(())),
            chains: tokio::sync::Mutex::default(),
            handshakes: Arc::new(tokio::sync::Semaphore::new(
                options.max_handshakes.max(1) * OVERALL_PER_DESTINATION,
            )),
            destinations: Mutex::default(),
            options,
        }
    }

    /// [`SshConnector::new`] with `$HOME` and `$SSH_AUTH_SOCK`; for the
    /// composition root. Without `$HOME`, `/` is used: no default key or
    /// known_hosts will be found there, and the errors will say so.
    pub fn from_env(options: SshOptions) -> Self {
        let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let home = non_empty("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        Self::new(options, home, non_empty("SSH_AUTH_SOCK").map(PathBuf::from))
    }

    /// Waits for a turn to connect to `endpoint` and log in: taken before
    /// the TCP connect (or the tunnel), held until the login is done, since
    /// sshd counts a connection against its `MaxStartups` from the moment
    /// it accepts it until it is authenticated.
    async fn handshake_turn(&self, endpoint: &Endpoint<'_>) -> Result<HandshakeTurn, ShellError> {
        let closed = |_| ShellError::Other("the connector is closed".to_owned());
        let destination = self.destination(endpoint.address, endpoint.port);
        let for_destination = destination.acquire_owned().await.map_err(closed)?;
        let overall = Arc::clone(&self.handshakes)
            .acquire_owned()
            .await
            .map_err(closed)?;
        Ok(HandshakeTurn {
            _for_destination: for_destination,
            _overall: overall,
        })
    }

    /// The bound on handshakes to `address:port`.
    fn destination(&self, address: &str, port: u16) -> Arc<tokio::sync::Semaphore> {
        let mut destinations = self
            .destinations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            destinations
                .entry((address.to_owned(), port))
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Semaphore::new(
                        self.options.max_handshakes.max(1),
                    ))
                }),
        )
    }

    /// The files searched for a host's key: its own (default
    /// `~/.ssh/known_hosts`), then the system-wide ones; new keys are
    /// recorded in the first of its own.
    fn known_hosts_files(&self, host: &Host) -> KnownHostsFiles {
        let user = host.ssh.known_hosts.clone().unwrap_or_else(|| {
            let dir = self.sources.home.join(".ssh");
            vec![dir.join("known_hosts"), dir.join("known_hosts2")]
        });
        let global = host.ssh.global_known_hosts.clone().unwrap_or_else(|| {
            vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ]
        });
        KnownHostsFiles {
            record_to: user.first().cloned(),
            search: user.into_iter().chain(global).collect(),
        }
    }

    /// The connector's options, with the host's own keepalive if ssh_config
    /// set one.
    fn options_for(&self, host: &Host) -> SshOptions {
        match host.ssh.keepalive {
            None => self.options.clone(),
            Some((interval, max)) => SshOptions {
                keepalive_interval: interval,
                keepalive_max: max,
                ..self.options.clone()
            },
        }
    }

    async fn tcp_connect(&self, endpoint: &Endpoint<'_>) -> Result<TcpStream, ShellError> {
        let unreachable = |reason| ShellError::Unreachable {
            host: endpoint.label.clone(),
            reason,
        };
        let connect = TcpStream::connect((endpoint.address, endpoint.port));
        match timeout(endpoint.connect_timeout, connect).await {
            Err(_) => Err(unreachable(format!(
                "TCP connect to port {} timed out after {:?}",
                endpoint.port, endpoint.connect_timeout
            ))),
            Ok(Err(err)) => Err(unreachable(format!(
                "TCP connect to port {}: {err}",
                endpoint.port
            ))),
            Ok(Ok(stream)) => {
                // Commands are small request/response exchanges: do not let
                // Nagle hold them back. Failing to set it is harmless.
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
        }
    }

    /// Handshake (verifying the host key), then authentication, over an
    /// already open byte stream: a TCP socket or a jump host's tunnel.
    async fn establish<S>(
        &self,
        _turn: HandshakeTurn,
        stream: S,
        endpoint: &Endpoint<'_>,
        options: &SshOptions,
        known_hosts: &KnownHostsFiles,
    ) -> Result<Session, ShellError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let lost = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            label: endpoint.key_label.clone(),
            address: endpoint.address.to_owned(),
            port: endpoint.port,
            files: known_hosts.clone(),
            accept_new: self.options.accept_new_host_keys,
            lock: Arc::clone(&self.known_hosts_lock),
        };
        let recorded = {
            let check = check.clone();
            tokio::task::spawn_blocking(move || check.recorded())
                .await
                .unwrap_or_default()
        };
        let config = Arc::new(client::Config {
            preferred: recorded.preferred(),
            ..client_config(options)
        });
        let handler = SessionHandler {
            check,
            lost: Arc::clone(&lost),
        };
        let handshake = client::connect_stream(config, stream, handler);
        let mut handle = match timeout(endpoint.connect_timeout, handshake).await {
            Err(_) => {
                return Err(ShellError::Unreachable {
                    host: endpoint.label.clone(),
                    reason: format!(
                        "SSH handshake did not finish within {:?}",
                        endpoint.connect_timeout
                    ),
                });
            }
            Ok(Err(SessionError::HostKey(err))) => return Err(err),
            Ok(Err(SessionError::Russh(err))) => return Err(handshake_error(endpoint, &err)),
            Ok(Ok(handle)) => handle,
        };
        let auth = keys::authenticate(
            &mut handle,
            endpoint.user,
            &endpoint.identities,
            &self.sources,
        );
        match timeout(self.options.auth_timeout, auth).await {
            Err(_) => Err(ShellError::Disconnected {
                host: endpoint.label.clone(),
                reason: format!(
                    "authentication did not finish within {:?}",
                    self.options.auth_timeout
                ),
            }),
            Ok(Err(AuthError::Rejected(reason))) => Err(ShellError::Auth {
                host: endpoint.label.clone(),
                user: endpoint.user.to_owned(),
                reason,
            }),
            Ok(Err(AuthError::ConnectionLost(reason))) => Err(ShellError::Disconnected {
                host: endpoint.label.clone(),
                reason: lost_reason(&lost).unwrap_or(reason),
            }),
            Ok(Ok(())) => Ok(Session { handle, lost }),
        }
    }

    /// Opens a `direct-tcpip` tunnel from the jump host to the target: the
    /// target's SSH connection runs inside it.
    async fn tunnel(
        &self,
        jump: &Session,
        jump_label: &str,
        target: &Endpoint<'_>,
    ) -> Result<russh::ChannelStream<client::Msg>, ShellError> {
        let unreachable = |reason| ShellError::Unreachable {
            host: target.label.clone(),
            reason,
        };
        let open = jump.handle.channel_open_direct_tcpip(
            target.address,
            u32::from(target.port),
            "127.0.0.1",
            0,
        );
        match timeout(target.connect_timeout, open).await {
            Err(_) => Err(unreachable(format!(
                "{jump_label} did not open a tunnel to port {} within {:?}",
                target.port, target.connect_timeout
            ))),
            Ok(Err(russh::Error::ChannelOpenFailure(failure))) => Err(unreachable(format!(
                "{jump_label} could not connect to port {}: {failure:?}",
                target.port
            ))),
            Ok(Err(err)) => Err(unreachable(format!(
                "connection to {jump_label} lost while opening a tunnel: {}",
                lost_reason(&jump.lost).unwrap_or_else(|| err.to_string())
            ))),
            Ok(Ok(channel)) => Ok(channel.into_stream()),
        }
    }
}

#[async_trait]
impl Connector for SshConnector {
    /// The jump hosts' shared connections, innermost hop first; a shell
    /// still using one loses it.
    async fn close(&self) {
        let slots: Vec<Arc<ChainSlot>> = self
            .chains
            .lock()
            .await
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        for slot in slots {
            if let Some(chain) = slot.lock().await.take() {
                for session in chain.iter().rev() {
                    session.close().await;
                }
            }
        }
    }

    async fn connect(&self, host: &Host) -> Result<Arc<dyn RemoteShell>, ShellError> {
        let known_hosts = self.known_hosts_files(host);
        let options = self.options_for(host);
        let connect_timeout = host
            .ssh
            .connect_timeout
            .unwrap_or(self.options.connect_timeout);
        let identities = Identities::of(host, &host.ssh.identity_files, &self.sources);
        let lookup = known_hosts::lookup_name(&host.address, host.ssh.port);
        let target = Endpoint {
            label: label(&host.name, &host.address),
            key_label: label(&host.name, &lookup),
            address: &host.address,
            port: host.ssh.port,
            user: &host.ssh.user,
            identities: identities.clone(),
            connect_timeout,
        };
        tracing::debug!(
            "{}: connecting to {}@{}:{} (known_hosts {}, jump {:?})",
            host.name,
            host.ssh.user,
            host.address,
            host.ssh.port,
            known_hosts.describe(),
            host.ssh
                .jump
                .iter()
                .map(|hop| &hop.host)
                .collect::<Vec<_>>()
        );
        // The jump hosts' chain is shared by every host behind it (see
        // `chains`); the target is reached through its last hop.
        let hops = if host.ssh.jump.is_empty() {
            None
        } else {
            Some(
                self.chain(host, &identities, &options, &known_hosts, connect_timeout)
                    .await?,
            )
        };
        let turn = self.handshake_turn(&target).await?;
        let session = match hops.as_deref().and_then(|chain| chain.last()) {
            None => {
                let stream = self.tcp_connect(&target).await?;
                self.establish(turn, stream, &target, &options, &known_hosts)
                    .await?
            }
            Some(last) => {
                let chain = hops.as_deref().map_or(&[][..], Vec::as_slice);
                let tunnel = self
                    .tunnel(last, &previous_label(chain, host), &target)
                    .await?;
                self.establish(turn, tunnel, &target, &options, &known_hosts)
                    .await?
            }
        };
        Ok(Arc::new(SshShell {
            label: target.label,
            sudo: host.ssh.sudo,
            session,
            jump: hops,
        }))
    }
}

impl SshConnector {
    /// The connections to `host`'s jump hosts: the shared ones if they are
    /// still up, else opened now (once for everyone waiting on the same
    /// chain) and kept for the next host behind them.
    async fn chain(
        &self,
        host: &Host,
        identities: &Identities,
        options: &SshOptions,
        known_hosts: &KnownHostsFiles,
        connect_timeout: Duration,
    ) -> Result<Arc<Chain>, ShellError> {
        let key = ChainKey {
            hops: host
                .ssh
                .jump
                .iter()
                .map(|jump| {
                    (
                        jump.host.clone(),
                        hop_port(jump),
                        hop_user(host, jump).to_owned(),
                        hop_identity_files(host, jump).to_vec(),
                    )
                })
                .collect(),
            known_hosts: known_hosts.search.clone(),
        };
        let slot = Arc::clone(self.chains.lock().await.entry(key).or_default());
        let mut slot = slot.lock().await;
        if let Some(chain) = slot.as_ref()
            && chain.iter().all(|session| !session.handle.is_closed())
        {
            return Ok(Arc::clone(chain));
        }
        // None yet, or it dropped: (re)open it; a host whose chain cannot be
        // opened fails alone, and the next host tries again.
        let chain = Arc::new(
            self.open_chain(host, identities, options, known_hosts, connect_timeout)
                .await?,
        );
        *slot = Some(Arc::clone(&chain));
        Ok(chain)
    }

    /// Each hop is reached through the one before it.
    async fn open_chain(
        &self,
        host: &Host,
        identities: &Identities,
        options: &SshOptions,
        known_hosts: &KnownHostsFiles,
        connect_timeout: Duration,
    ) -> Result<Chain, ShellError> {
        let mut hops: Chain = Vec::new();
        for jump in &host.ssh.jump {
            let port = hop_port(jump);
            let jump_label = format!("jump host {} for {}", jump.host, host.name);
            let hop = Endpoint {
                label: jump_label.clone(),
                key_label: format!(
                    "jump host {} for {}",
                    known_hosts::lookup_name(&jump.host, port),
                    host.name
                ),
                address: &jump.host,
                port,
                user: hop_user(host, jump),
                identities: if jump.identity_files.is_empty() {
                    identities.clone()
                } else {
                    Identities::of(host, hop_identity_files(host, jump), &self.sources)
                },
                connect_timeout,
            };
            let turn = self.handshake_turn(&hop).await?;
            let session = match hops.last() {
                None => {
                    let stream = self.tcp_connect(&hop).await?;
                    self.establish(turn, stream, &hop, options, known_hosts)
                        .await?
                }
                Some(previous) => {
                    let tunnel = self
                        .tunnel(previous, &previous_label(&hops, host), &hop)
                        .await?;
                    self.establish(turn, tunnel, &hop, options, known_hosts)
                        .await?
                }
            };
            hops.push(session);
        }
        Ok(hops)
    }
}

/// A jump host's port: its own, else SSH's.
fn hop_port(jump: &JumpHost) -> u16 {
    jump.port.unwrap_or(22)
}

/// Who logs in to a jump host: its own user, else the host's.
fn hop_user<'a>(host: &'a Host, jump: &'a JumpHost) -> &'a str {
    jump.user.as_deref().unwrap_or(&host.ssh.user)
}

/// The keys offered to a jump host: its own, else the host's.
fn hop_identity_files<'a>(host: &'a Host, jump: &'a JumpHost) -> &'a [PathBuf] {
    if jump.identity_files.is_empty() {
        &host.ssh.identity_files
    } else {
        &jump.identity_files
    }
}

/// How errors name the last hop opened so far.
fn previous_label(hops: &[Session], host: &Host) -> String {
    let jump = &host.ssh.jump[hops.len() - 1];
    format!("jump host {} for {}", jump.host, host.name)
}

/// The known_hosts files a connection checks keys against.
#[derive(Debug, Clone)]
struct KnownHostsFiles {
    search: Vec<PathBuf>,
    /// Where `--accept-new-host-keys` records a new key; `None` when the
    /// host's own files are `none`.
    record_to: Option<PathBuf>,
}

impl KnownHostsFiles {
    fn describe(&self) -> String {
        self.search
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Identities {
    fn of(host: &Host, files: &[PathBuf], sources: &KeySources) -> Self {
        Self {
            files: files.to_vec(),
            certificates: host.ssh.certificate_files.clone(),
            only: host.ssh.identities_only,
            agent: match &host.ssh.identity_agent {
                IdentityAgent::Environment => sources.agent_socket.clone(),
                IdentityAgent::None => None,
                IdentityAgent::Socket(path) => Some(path.clone()),
            },
        }
    }
}

/// One end to connect to and log in at.
struct Endpoint<'a> {
    /// How errors name it.
    label: String,
    /// How host key errors name it: with the name known_hosts is searched
    /// for, so that the user can fix the right line.
    key_label: String,
    address: &'a str,
    port: u16,
    user: &'a str,
    identities: Identities,
    /// Bound on the TCP connect, the handshake and opening a tunnel.
    connect_timeout: Duration,
}

/// `name (address)`, or just the name when it is the address.
fn label(name: &str, address: &str) -> String {
    if name.eq_ignore_ascii_case(address) {
        name.to_owned()
    } else {
        format!("{name} ({address})")
    }
}

fn client_config(options: &SshOptions) -> client::Config {
    let keepalive = Some(options.keepalive_interval).filter(|interval| !interval.is_zero());
    // russh sends keepalives only once authenticated and, by default, waits
    // forever: the inactivity timeout also ends a connection that goes
    // silent before that. It is reset by any packet, keepalive replies
    // included, so it never cuts a healthy idle connection, and it is longer
    // than the keepalive budget so that "keepalive timeout" is what a dead
    // authenticated peer reports.
    let budget = u32::try_from(options.keepalive_max.saturating_add(2)).unwrap_or(u32::MAX);
    client::Config {
        keepalive_interval: keepalive,
        keepalive_max: options.keepalive_max,
        inactivity_timeout: keepalive.map(|interval| interval.saturating_mul(budget)),
        ..client::Config::default()
    }
}

/// Handshake errors: transport-level ones mean the server could not be
/// talked to (retryable, nothing touched); protocol mismatches will not fix
/// themselves.
fn handshake_error(endpoint: &Endpoint<'_>, err: &russh::Error) -> ShellError {
    match err {
        russh::Error::IO(_)
        | russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::ConnectionTimeout
        | russh::Error::InactivityTimeout
        | russh::Error::KeepaliveTimeout => ShellError::Unreachable {
            host: endpoint.label.clone(),
            reason: format!("SSH handshake failed: {err}"),
        },
        _ => ShellError::Other(format!(
            "SSH handshake with {} failed: {err}",
            endpoint.label
        )),
    }
}

/// A connected, authenticated russh session.
struct Session {
    handle: client::Handle<SessionHandler>,
    /// Why the connection ended, once it has.
    lost: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("closed", &self.handle.is_closed())
            .finish_non_exhaustive()
    }
}

impl Session {
    async fn close(&self) {
        // A polite goodbye; if the peer is gone there is nothing to do.
        let _ = timeout(
            Duration::from_secs(1),
            self.handle
                .disconnect(Disconnect::ByApplication, "fleetroll done", "en"),
        )
        .await;
    }
}

fn lost_reason(lost: &Mutex<Option<String>>) -> Option<String> {
    lost.lock().ok().and_then(|reason| reason.clone())
}

/// The russh callbacks: host key verification, and noting why the
/// connection ended.
struct SessionHandler {
    check: HostKeyCheck,
    lost: Arc<Mutex<Option<String>>>,
}

#[derive(Debug)]
enum SessionError {
    Russh(russh::Error),
    /// The host key was refused (or known_hosts could not be used).
    HostKey(ShellError),
}

impl From<russh::Error> for SessionError {
    fn from(err: russh::Error) -> Self {
        SessionError::Russh(err)
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Russh(err) => err.fmt(f),
            SessionError::HostKey(err) => err.fmt(f),
        }
    }
}

impl client::Handler for SessionHandler {
    type Error = SessionError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let certificate = match server_public_key {
            PublicKeyOrCertificate::Certificate(certificate) => Some(certificate.clone()),
            PublicKeyOrCertificate::PublicKey { .. } => None,
        };
        let key = server_public_key.public_key();
        let check = self.check.clone();
        // File I/O (and possibly an fsync): keep it off the async workers.
        let verdict = tokio::task::spawn_blocking(move || match &certificate {
            Some(certificate) => check.run_certificate(certificate),
            None => check.run(&key),
        });
        match verdict.await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(err)) => Err(SessionError::HostKey(err)),
            Err(join) => Err(SessionError::HostKey(ShellError::Other(format!(
                "checking the host key of {} failed: {join}",
                self.check.label
            )))),
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let (text, result) = match reason {
            DisconnectReason::ReceivedDisconnect(info) => (
                if info.message.is_empty() {
                    "the server closed the connection".to_owned()
                } else {
                    format!("the server closed the connection: {}", info.message)
                },
                Ok(()),
            ),
            DisconnectReason::Error(err) => (err.to_string(), Err(err)),
        };
        if let Ok(mut lost) = self.lost.lock() {
            lost.get_or_insert(text);
        }
        // As russh's default: hand the error back so the session task ends with it.
        result
    }
}

/// Everything needed to check a host key against known_hosts files.
#[derive(Debug, Clone)]
struct HostKeyCheck {
    /// Names the host in errors, with its known_hosts lookup name.
    label: String,
    address: String,
    port: u16,
    files: KnownHostsFiles,
    accept_new: bool,
    lock: Arc<Mutex<()>>,
}

impl HostKeyCheck {
    /// Blocking: reads the known_hosts files, decides as OpenSSH does (a
    /// revocation anywhere wins, then a match in any file, then another
    /// key recorded anywhere), and with accept-new appends.
    fn run(&self, key: &PublicKey) -> Result<(), ShellError> {
        // A poisoned lock only means another check panicked; the file is
        // still consistent because appends are single writes.
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let host = self.label.clone();
        let key_type = key.algorithm().as_str().to_owned();
        let fingerprint = known_hosts::fingerprint(key);
        let mut changed = None;
        let mut trusted = false;
        for path in &self.files.search {
            let text = read_known_hosts(path, &host)?;
            match known_hosts::verify(&known_hosts::parse(&text), &self.address, self.port, key) {
                Verdict::Revoked { line } => {
                    return Err(ShellError::HostKeyRevoked {
                        host,
                        key_type,
                        fingerprint,
                        known_hosts: path.display().to_string(),
                        line,
                    });
                }
                Verdict::Trusted => trusted = true,
                Verdict::Changed { line } => {
                    changed.get_or_insert((path, line));
                }
                Verdict::Unknown => {}
            }
        }
        if trusted {
            return Ok(());
        }
        if let Some((path, line)) = changed {
            return Err(ShellError::HostKeyChanged {
                host,
                key_type,
                fingerprint,
                known_hosts: path.display().to_string(),
                line,
            });
        }
        match (&self.files.record_to, self.accept_new) {
            (Some(path), true) => {
                let Some(entry) = known_hosts::format_entry(&self.address, self.port, key) else {
                    return Err(ShellError::Other(format!(
                        "cannot encode the host key of {host} for {}",
                        path.display()
                    )));
                };
                let text = read_known_hosts(path, &host)?;
                let needs_newline = !text.is_empty() && !text.ends_with('\n');
                append_entry(path, &entry, needs_newline).map_err(|err| {
                    ShellError::Other(format!(
                        "cannot record the host key of {host} in {}: {err}",
                        path.display()
                    ))
                })
            }
            _ => Err(ShellError::HostKeyUnknown {
                host,
                key_type,
                fingerprint,
                known_hosts: self.files.describe(),
            }),
        }
    }
}

/// What the known_hosts files record for one endpoint, read before the
/// handshake to choose the host key algorithms offered.
#[derive(Debug, Default)]
struct Recorded {
    key_types: Vec<String>,
    authority: bool,
}

impl Recorded {
    /// russh's defaults, with the algorithms of the recorded keys first
    /// and, when a CA covers the host, certificates before plain keys.
    fn preferred(&self) -> russh::Preferred {
        let defaults = russh::Preferred::DEFAULT;
        let rank = |algorithm: &Algorithm| {
            self.key_types
                .iter()
                .position(|recorded| {
                    Algorithm::new(recorded).is_ok_and(|recorded| same_family(&recorded, algorithm))
                })
                .unwrap_or(usize::MAX)
        };
        let mut key: Vec<Algorithm> = defaults.key.to_vec();
        key.sort_by_key(rank);
        russh::Preferred {
            host_key_certificates: if self.authority {
                key.clone().into()
            } else {
                defaults.host_key_certificates.clone()
            },
            key: key.into(),
            ..defaults
        }
    }
}

/// RSA keys sign with SHA-1, SHA-256 or SHA-512: one recorded `ssh-rsa`
/// key answers for all three.
fn same_family(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

impl HostKeyCheck {
    /// The key types and CAs recorded for the endpoint; unreadable files
    /// count as empty here (the check itself reports them).
    fn recorded(&self) -> Recorded {
        let mut recorded = Recorded::default();
        for path in &self.files.search {
            let entries = known_hosts::parse(&std::fs::read_to_string(path).unwrap_or_default());
            for key_type in known_hosts::recorded_key_types(&entries, &self.address, self.port) {
                if !recorded.key_types.contains(&key_type) {
                    recorded.key_types.push(key_type);
                }
            }
            recorded.authority |= known_hosts::has_authority(&entries, &self.address, self.port);
        }
        recorded
    }

    /// A presented host certificate: trusted when a `@cert-authority` of
    /// the host signed it and it is valid for the host now; refused when
    /// such a CA signed it but it is not valid (expired, another host's),
    /// or when anything about it is revoked. Signed by no CA of the host,
    /// its key is checked as a plain key, as OpenSSH does.
    fn run_certificate(&self, certificate: &Certificate) -> Result<(), ShellError> {
        let now = known_hosts::unix_now();
        let key_type = certificate.algorithm().to_certificate_type();
        let key = PublicKey::from(certificate.public_key().clone());
        let fingerprint = known_hosts::fingerprint(&key);
        let mut invalid = None;
        for path in &self.files.search {
            let text = read_known_hosts(path, &self.label)?;
            let entries = known_hosts::parse(&text);
            let known_hosts = path.display().to_string();
            match known_hosts::verify_certificate(
                &entries,
                &self.address,
                self.port,
                certificate,
                now,
            ) {
                CertVerdict::Trusted => return Ok(()),
                CertVerdict::Revoked { line } => {
                    return Err(ShellError::HostKeyRevoked {
                        host: self.label.clone(),
                        key_type,
                        fingerprint,
                        known_hosts,
                        line,
                    });
                }
                CertVerdict::Invalid { reason, line } => {
                    invalid.get_or_insert((reason, known_hosts, line));
                }
                CertVerdict::NoAuthority => {}
            }
        }
        match invalid {
            Some((reason, known_hosts, line)) => Err(ShellError::HostCertificateRefused {
                host: self.label.clone(),
                reason,
                known_hosts,
                line,
            }),
            None => self.run(&key),
        }
    }
}

/// A known_hosts file's text; a missing file is an empty one.
fn read_known_hosts(path: &Path, host: &str) -> Result<String, ShellError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(ShellError::Other(format!(
            "cannot read known_hosts {} to check {host}: {err}",
            path.display()
        ))),
    }
}

/// Appends one line to known_hosts and syncs it: the key is only trusted
/// from now on if it is really on disk. Creates the file `0600` (and its
/// directory `0700`) as OpenSSH does.
fn append_entry(path: &Path, entry: &str, needs_newline: bool) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    if let Some(parent) = parent {
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
    }
    let created = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mut line = String::with_capacity(entry.len() + 2);
    if needs_newline {
        line.push('\n');
    }
    line.push_str(entry);
    line.push('\n');
    // One write: concurrent appenders (another fleetroll, an ssh) interleave
    // whole lines at worst.
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    if created {
        if let Some(parent) = parent {
            // Make the new directory entry itself durable.
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// A shell on one host over one SSH connection; every command gets its own
/// session channel on it.
pub struct SshShell {
    label: String,
    sudo: bool,
    session: Session,
    /// The jump hosts' connections carrying `session`, outermost first,
    /// shared with every other host behind them. Declared after `session`
    /// so that they are dropped after it (the last host's shell, or the
    /// connector, drops them).
    jump: Option<Arc<Chain>>,
}

impl fmt::Debug for SshShell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshShell")
            .field("host", &self.label)
            .field("sudo", &self.sudo)
            .field("session", &self.session)
            .field("jump", &self.jump)
            .finish()
    }
}

impl SshShell {
    fn disconnected(&self, fallback: impl FnOnce() -> String) -> ShellError {
        let reason = lost_reason(&self.session.lost)
            .or_else(|| {
                self.jump
                    .iter()
                    .flat_map(|chain| chain.iter())
                    .rev()
                    .find_map(|jump| {
                        lost_reason(&jump.lost)
                            .map(|reason| format!("jump host connection lost: {reason}"))
                    })
            })
            .unwrap_or_else(fallback);
        ShellError::Disconnected {
            host: self.label.clone(),
            reason,
        }
    }

    fn channel_error(&self, err: &russh::Error) -> ShellError {
        match err {
            russh::Error::ChannelOpenFailure(failure) => ShellError::Other(format!(
                "{} refused to open a session channel: {failure:?}",
                self.label
            )),
            _ => self.disconnected(|| err.to_string()),
        }
    }
}

/// Best effort when giving up on a command: ask the remote side to stop it,
/// then close the channel. Closing alone leaves a command that writes
/// nothing running. OpenSSH (7.9+) honours `signal` requests, except for root
/// logins, which it serves without privilege separation: there the command
/// may outlive its deadline.
async fn abandon(channel: &russh::Channel<client::Msg>) {
    let _ = timeout(Duration::from_secs(1), async {
        let _ = channel.signal(Sig::TERM).await;
        let _ = channel.close().await;
    })
    .await;
}

fn signal_name(signal: &Sig) -> String {
    match signal {
        Sig::Custom(name) => name.clone(),
        // The named variants' Debug form is the SSH name ("KILL", "TERM").
        other => format!("{other:?}"),
    }
}

#[async_trait]
impl RemoteShell for SshShell {
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, ShellError> {
        self.run(command, timeout, None).await
    }

    async fn exec_until(
        &self,
        command: &str,
        timeout: Duration,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<ExecOutput, ShellError> {
        if cancel.is_cancelled() {
            return Err(ShellError::Cancelled);
        }
        self.run(command, timeout, Some(cancel)).await
    }

    async fn close(&self) {
        // The jump hosts' connections are shared: they close when the last
        // shell through them and the connector let go of them.
        self.session.close().await;
    }
}

impl SshShell {
    /// Runs one command; with `cancel`, a cancellation signals the remote
    /// command to stop and closes its channel.
    async fn run(
        &self,
        command: &str,
        timeout: Duration,
        cancel: Option<&tokio_util::sync::CancellationToken>,
    ) -> Result<ExecOutput, ShellError> {
        let cancelled = || async {
            match cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let started = Instant::now();
        let deadline = started + timeout;
        let timed_out = || ShellError::Timeout {
            host: self.label.clone(),
            after: timeout,
        };
        let command = if self.sudo {
            // -n: fail instead of waiting for a password nobody will type.
            format!("sudo -n sh -c {}", shell_quote(command))
        } else {
            command.to_owned()
        };

        let mut channel =
            match timeout_at(deadline, self.session.handle.channel_open_session()).await {
                Err(_) => return Err(timed_out()),
                Ok(Err(err)) => return Err(self.channel_error(&err)),
                Ok(Ok(channel)) => channel,
            };
        match timeout_at(deadline, channel.exec(true, command)).await {
            Err(_) => {
                abandon(&channel).await;
                return Err(timed_out());
            }
            Ok(Err(err)) => return Err(self.channel_error(&err)),
            Ok(Ok(())) => {}
        }

        let mut stdout = Tail::new(OUTPUT_TAIL_BYTES);
        let mut stderr = Tail::new(OUTPUT_TAIL_BYTES);
        let mut status = None;
        let mut eof = false;
        let mut closed = false;
        // The exit status may come before or after EOF, or never if the
        // server closes early: wait for the channel to close (or the
        // connection to end), whichever order things come in.
        loop {
            let waited = tokio::select! {
                biased;
                () = cancelled() => {
                    abandon(&channel).await;
                    return Err(ShellError::Cancelled);
                }
                waited = timeout_at(deadline, channel.wait()) => waited,
            };
            let message = match waited {
                Ok(Some(message)) => message,
                // The channel is gone without a Close: the connection ended.
                Ok(None) => break,
                Err(_) => {
                    abandon(&channel).await;
                    // Status and all output are in, only the Close is late:
                    // the command did finish.
                    if status.is_some() && eof {
                        break;
                    }
                    return Err(timed_out());
                }
            };
            match message {
                ChannelMsg::Data { data } => stdout.push(&data),
                // Extended data type 1 is stderr (RFC 4254 §5.2).
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.push(&data),
                ChannelMsg::ExitStatus { exit_status } => {
                    status = Some(ExitStatus::Code(exit_status));
                }
                ChannelMsg::ExitSignal {
                    signal_name: sig, ..
                } => {
                    status = Some(ExitStatus::Signal(signal_name(&sig)));
                }
                ChannelMsg::Eof => eof = true,
                ChannelMsg::Close => {
                    closed = true;
                    break;
                }
                // The reply to our exec request (want_reply): refused.
                ChannelMsg::Failure => {
                    abandon(&channel).await;
                    return Err(ShellError::Other(format!(
                        "{} refused to run the command",
                        self.label
                    )));
                }
                _ => {}
            }
        }
        match status {
            Some(status) => Ok(ExecOutput {
                status,
                stdout_tail: stdout.into_string(),
                stderr_tail: stderr.into_string(),
                duration: started.elapsed(),
            }),
            None if closed && !self.session.handle.is_closed() => Err(ShellError::Disconnected {
                host: self.label.clone(),
                reason: "the server closed the command's channel without an exit status".to_owned(),
            }),
            None => Err(self.disconnected(|| "the connection closed".to_owned())),
        }
    }
}

/// The last `capacity` bytes of a stream; older bytes are dropped as new
/// ones arrive, so memory stays bounded whatever the command prints.
#[derive(Debug)]
struct Tail {
    bytes: std::collections::VecDeque<u8>,
    capacity: usize,
    truncated: bool,
}

impl Tail {
    fn new(capacity: usize) -> Self {
        Self {
            bytes: std::collections::VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            truncated: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.capacity {
            self.truncated = true;
            self.bytes.clear();
            &data[data.len() - self.capacity..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            self.truncated = true;
            self.bytes.drain(..overflow);
        }
        self.bytes.extend(data);
    }

    /// Lossy UTF-8; when the front was cut, a character split by the cut is
    /// dropped rather than shown as a replacement character.
    fn into_string(self) -> String {
        let bytes: Vec<u8> = self.bytes.into();
        let start = if self.truncated {
            bytes
                .iter()
                .take(3)
                .take_while(|&&byte| byte & 0b1100_0000 == 0b1000_0000)
                .count()
        } else {
            0
        };
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let cases: &[(&[&str], usize, &str)] = &[
            (&["hello"], 10, "hello"),
            (&["hello", " world"], 10, "ello world"),
            (&["0123456789abc"], 4, "9abc"),
            (&["ab", "cdefgh", "ij"], 4, "ghij"),
            (&[], 4, ""),
            // "é" is two bytes: a cut through it drops the orphan byte.
            (&["aé", "bcd"], 4, "bcd"),
            (&["éé"], 3, "é"),
        ];
        for (chunks, capacity, expected) in cases {
            let mut tail = Tail::new(*capacity);
            for chunk in *chunks {
                tail.push(chunk.as_bytes());
            }
            assert_eq!(tail.into_string(), *expected, "{chunks:?} in {capacity}");
        }
    }

    #[test]
    fn tail_never_grows_past_capacity() {
        let mut tail = Tail::new(OUTPUT_TAIL_BYTES);
        let chunk = [b'x'; 1000];
        for _ in 0..100 {
            tail.push(&chunk);
            assert!(tail.bytes.len() <= OUTPUT_TAIL_BYTES);
        }
        assert_eq!(tail.into_string().len(), OUTPUT_TAIL_BYTES);
    }

    #[test]
    fn config_detects_half_open_connections() {
        let config = client_config(&SshOptions::default());
        assert_eq!(config.keepalive_interval, Some(Duration::from_secs(5)));
        assert_eq!(config.keepalive_max, 3);
        assert_eq!(config.inactivity_timeout, Some(Duration::from_secs(25)));

        let config = client_config(&SshOptions {
            keepalive_interval: Duration::ZERO,
            ..SshOptions::default()
        });
        assert_eq!(config.keepalive_interval, None);
        assert_eq!(config.inactivity_timeout, None);
    }

    #[test]
    fn signal_names_are_the_ssh_names() {
        assert_eq!(signal_name(&Sig::KILL), "KILL");
        assert_eq!(signal_name(&Sig::TERM), "TERM");
        assert_eq!(signal_name(&Sig::Custom("XCPU".to_owned())), "XCPU");
    }

    #[test]
    fn host_key_check_records_new_keys_when_asked() {
        use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_hosts");
        let key = PublicKey::new(KeyData::Ed25519(Ed25519PublicKey([4; 32])), "");
        let other = PublicKey::new(KeyData::Ed25519(Ed25519PublicKey([5; 32])), "");
        let mut check = HostKeyCheck {
            label: "web1 ([10.0.0.1]:2222)".to_owned(),
            address: "10.0.0.1".to_owned(),
            port: 2222,
            files: KnownHostsFiles {
                search: vec![path.clone()],
                record_to: Some(path.clone()),
            },
            accept_new: false,
            lock: Arc::new(Mutex::new(())),
        };
        assert!(matches!(
            check.run(&key),
            Err(ShellError::HostKeyUnknown { .. })
        ));
        assert!(!path.exists(), "refusing must not create the file");

        check.accept_new = true;
        check.run(&key).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("[10.0.0.1]:2222 ssh-ed25519 "), "{text}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        check.accept_new = false;
        check.run(&key).unwrap();
        let Err(ShellError::HostKeyChanged { line, .. }) = check.run(&other) else {
            panic!("a different key must be refused");
        };
        assert_eq!(line, 1);

        // A file without a final newline gets one before the new line.
        std::fs::write(&path, "# no newline").unwrap();
        check.accept_new = true;
        check.run(&key).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# no newline\n[10.0.0.1]:2222 "), "{text}");
    }
}
