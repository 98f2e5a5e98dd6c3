//! A simulated host's SSH server: the real SSH protocol (russh), public key
//! authentication, and `exec` requests run by the host's simulated shell.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::host::SimHost;

/// One host's SSH server on 127.0.0.1. Stops accepting when dropped;
/// sessions already open end when their client leaves.
#[derive(Debug)]
pub struct SshServer {
    addr: SocketAddr,
    host_key: PublicKey,
    task: JoinHandle<()>,
}

impl SshServer {
    /// Serves `host`, letting in only the holder of `client_key`.
    pub async fn start(host: SimHost, client_key: PublicKey) -> io::Result<Self> {
        let host_key = random_ed25519()?;
        let public = host_key.public_key().clone();
        let config = Arc::new(server::Config {
            keys: vec![host_key],
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            // Rejections in constant time defend real servers against user
            // enumeration; a simulated one on loopback has nothing to hide,
            // and a one-second delay per probe would slow the demo down.
            auth_rejection_time: Duration::from_millis(10),
            auth_rejection_time_initial: Some(Duration::ZERO),
            // fleetroll sends keepalives every few seconds; a client that
            // vanished is forgotten after this.
            inactivity_timeout: Some(Duration::from_secs(120)),
            nodelay: true,
            ..server::Config::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while sessions.try_join_next().is_some() {}
                let handler = Connection {
                    host: host.clone(),
                    client_key: client_key.clone(),
                };
                let config = Arc::clone(&config);
                sessions.spawn(async move {
                    // A failed handshake or a client that drops the
                    // connection is that client's problem, not the server's.
                    if let Ok(session) = server::run_stream(config, stream, handler).await {
                        let _ = session.await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            host_key: public,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host key, for known_hosts.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh ed25519 key. The seed comes from the kernel's CSPRNG, read
/// directly: russh's own random source is not re-exported, and a new crate
/// for 32 bytes is not worth it.
pub(crate) fn random_ed25519() -> io::Result<PrivateKey> {
    use std::io::Read as _;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

/// The russh callbacks of one client connection.
struct Connection {
    host: SimHost,
    client_key: PublicKey,
}

impl Connection {
    fn check(&self, key: &PublicKey) -> Auth {
        // Compare the key material only: comments are not part of a key.
        if key.key_data() == self.client_key.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(self.check(key))
    }

    async fn auth_publickey(&mut self, _user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        Ok(self.check(key))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The session's replies go through its handle, so the channel
        // object itself is not needed.
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let command = String::from_utf8_lossy(data).into_owned();
        let host = self.host.clone();
        let handle = session.handle();
        // Run the command off the session loop: a `deploy` takes seconds,
        // and the connection must keep answering keepalives meanwhile.
        tokio::spawn(async move {
            let (status, stdout, stderr) = host.exec(&command).await;
            // Errors here mean the client is gone: nobody to tell.
            if !stdout.is_empty() {
                let _ = handle.data(channel, stdout.into_bytes()).await;
            }
            if !stderr.is_empty() {
                // Extended data type 1 is stderr (RFC 4254 §5.2).
                let _ = handle.extended_data(channel, 1, stderr.into_bytes()).await;
            }
            let _ = handle.exit_status_request(channel, status).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}
