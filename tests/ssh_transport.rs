//! The SSH transport against a real OpenSSH sshd, started per test on its own
//! loopback address (127.0.1.200 and up) and a free port.
//!
//! Each test owns its sshd, keys and known_hosts in a temporary directory,
//! so tests run in parallel and repeatedly. When /usr/sbin/sshd is absent the
//! tests that need it print "skipping: sshd not installed" and pass.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetroll::model::inventory::{Host, JumpHost, SshSettings};
use fleetroll::transport::ssh::{SshConnector, SshOptions};
use fleetroll::transport::{Connector, ExitStatus, RemoteShell, ShellError};

const SSHD: &str = "/usr/sbin/sshd";

fn sshd_missing() -> bool {
    if Path::new(SSHD).exists() {
        return false;
    }
    println!("skipping: sshd not installed");
    true
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a helper command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Generates an ed25519 key pair at `path`; `passphrase` empty for none.
fn keygen(path: &Path, passphrase: &str) {
    keygen_typed(path, "ed25519", passphrase);
}

fn keygen_typed(path: &Path, key_type: &str, passphrase: &str) {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            key_type,
            "-C",
            "fleetroll-test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(path));
}

/// `keytype base64` of a public key file, without the comment.
fn public_key(path: &Path) -> String {
    let text = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let mut fields = text.split_whitespace();
    format!("{} {}", fields.next().unwrap(), fields.next().unwrap())
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .expect("bind a loopback address")
        .local_addr()
        .unwrap()
        .port()
}

/// An sshd of our own, killed when dropped.
struct Sshd {
    child: Child,
    ip: String,
    port: u16,
    /// Its host key's private half; `.pub` next to it.
    host_key: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// Starts sshd on `ip` accepting `client_key` (a private key path), with
    /// `extra` lines of configuration. Above `LogLevel VERBOSE`, sshd also
    /// writes its debug lines into sessions' stderr, so only servers that
    /// run no command may log at `DEBUG1`.
    fn start(dir: &Path, ip: &str, client_key: &Path, extra: &str) -> Sshd {
        let dir = dir.join(format!("sshd-{ip}"));
        std::fs::create_dir_all(&dir).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = dir.join("host_ed25519");
        keygen(&host_key, "");
        let authorized = dir.join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", public_key(client_key))).unwrap();
        let port = free_port(ip);
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {ip}:{port}\n\
                 HostKey {host_key}\n\
                 AuthorizedKeysFile {authorized}\n\
                 PidFile {pid}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PermitRootLogin yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 AllowTcpForwarding yes\n\
                 {extra}\n",
                host_key = host_key.display(),
                authorized = authorized.display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sshd");
        let mut sshd = Sshd {
            child,
            ip: ip.to_owned(),
            port,
            host_key,
            log,
        };
        sshd.wait_ready();
        sshd
    }

    /// Polls the port until sshd accepts, bounded; fails early if it died.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sshd exited with {status}: {}", self.log_text());
            }
            if TcpStream::connect_timeout(
                &format!("{}:{}", self.ip, self.port).parse().unwrap(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd not ready: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the client key at `key` (a private key path) log in too; sshd
    /// reads authorized_keys at every login.
    fn authorize(&self, key: &Path) {
        let path = self.host_key.with_file_name("authorized_keys");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&public_key(key));
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The known_hosts line recording this server's real key.
    fn known_hosts_line(&self) -> String {
        format!("[{}]:{} {}", self.ip, self.port, public_key(&self.host_key))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ssh-agent of our own, killed when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let agent = Agent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// `ssh-add`s `key`, answering its passphrase prompt through an askpass
    /// script as no terminal is there.
    fn add(&self, key: &Path, passphrase: &str) {
        let askpass = key.with_extension("askpass");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        run(Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .stdin(Stdio::null()));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's scratch space: a home, a client key, a known_hosts path.
struct Fixture {
    dir: tempfile::TempDir,
    client_key: PathBuf,
    known_hosts: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let client_key = dir.path().join("id_client");
        keygen(&client_key, "");
        let known_hosts = dir.path().join("known_hosts");
        Fixture {
            dir,
            client_key,
            known_hosts,
        }
    }

    fn sshd(&self, ip: &str) -> Sshd {
        Sshd::start(self.dir.path(), ip, &self.client_key, "LogLevel VERBOSE")
    }

    fn connector(&self, accept_new_host_keys: bool) -> SshConnector {
        // The temporary directory is the home: no real ~/.ssh is consulted,
        // and no agent, whatever the environment says.
        SshConnector::new(
            SshOptions {
                accept_new_host_keys,
                ..SshOptions::default()
            },
            self.dir.path(),
            None,
        )
    }

    /// A connector whose only agent is `agent`.
    fn agent_connector(&self, agent: &Agent) -> SshConnector {
        SshConnector::new(
            SshOptions::default(),
            self.dir.path(),
            Some(agent.socket.clone()),
        )
    }

    fn host(&self, address: &str, port: u16) -> Host {
        Host {
            name: format!("test-{address}"),
            address: address.to_owned(),
            zone: "z1".to_owned(),
            ssh: SshSettings {
                user: current_user(),
                port,
                identity_files: vec![self.client_key.clone()],
                known_hosts: Some(vec![self.known_hosts.clone()]),
                global_known_hosts: Some(Vec::new()),
                ..SshSettings::default()
            },
            balancers: Vec::new(),
            lb_server: format!("test-{address}"),
            target_id: None,
            vars: Default::default(),
            aws: None,
        }
    }

    fn host_for(&self, sshd: &Sshd) -> Host {
        self.host(&sshd.ip, sshd.port)
    }

    fn trust(&self, servers: &[&Sshd]) {
        let lines: Vec<String> = servers.iter().map(|s| s.known_hosts_line()).collect();
        std::fs::write(&self.known_hosts, lines.join("\n") + "\n").unwrap();
    }

    async fn connect(&self, sshd: &Sshd) -> Arc<dyn RemoteShell> {
        self.trust(&[sshd]);
        self.connector(false)
            .connect(&self.host_for(sshd))
            .await
            .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()))
    }
}

const EXEC_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exec_reports_exit_code_and_output_tails() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.200");
    let shell = fixture.connect(&sshd).await;

    let output = shell
        .exec("printf 'hello out'; printf 'hello err' >&2", EXEC_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Code(0));
    assert_eq!(output.stdout_tail, "hello out");
    assert_eq!(output.stderr_tail, "hello err");

    // Far more output than is kept: only the tail survives, on both streams.
    let output = shell
        .exec(
            "head -c 200000 /dev/zero | tr '\\0' a; echo END; \
             head -c 100000 /dev/zero | tr '\\0' b >&2; echo FIN >&2",
            EXEC_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Code(0));
    assert_eq!(
        output.stdout_tail.len(),
        fleetroll::transport::shell::OUTPUT_TAIL_BYTES
    );
    assert!(output.stdout_tail.ends_with("aaaEND\n"));
    assert_eq!(
        output.stderr_tail.len(),
        fleetroll::transport::shell::OUTPUT_TAIL_BYTES
    );
    assert!(output.stderr_tail.ends_with("bbbFIN\n"));

    // The same connection serves command after command.
    for round in 0..5 {
        let output = shell
            .exec(&format!("echo {round}"), EXEC_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(output.stdout_tail, format!("{round}\n"));
    }
    shell.close().await;
}

#[tokio::test]
async fn non_zero_exit_is_reported() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.201");
    let shell = fixture.connect(&sshd).await;
    let output = shell
        .exec("echo failing >&2; exit 3", EXEC_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Code(3));
    assert!(!output.status.success());
    assert_eq!(output.stderr_tail, "failing\n");
}

#[tokio::test]
async fn a_command_killed_by_a_signal_reports_the_signal() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.202");
    let shell = fixture.connect(&sshd).await;
    let output = shell
        .exec("echo before; kill -9 $$", EXEC_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Signal("KILL".to_owned()));
    assert_eq!(output.stdout_tail, "before\n");
}

#[tokio::test]
async fn a_command_past_its_deadline_times_out_and_the_connection_survives() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.203");
    let shell = fixture.connect(&sshd).await;
    let started = Instant::now();
    let err = shell
        .exec("echo started; sleep 10", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ShellError::Timeout { after, .. } if after == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let output = shell.exec("echo still here", EXEC_TIMEOUT).await.unwrap();
    assert_eq!(output.stdout_tail, "still here\n");
}

#[tokio::test]
async fn a_changed_host_key_is_refused_with_its_line() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.204");
    let impostor = fixture.dir.path().join("impostor");
    keygen(&impostor, "");
    std::fs::write(
        &fixture.known_hosts,
        format!(
            "# recorded keys\nother.example {other}\n[{ip}]:{port} {other}\n[{ip}]:{port} {other}\n",
            other = public_key(&impostor),
            ip = sshd.ip,
            port = sshd.port,
        ),
    )
    .unwrap();
    let err = fixture
        .connector(true)
        .connect(&fixture.host_for(&sshd))
        .await
        .unwrap_err();
    let ShellError::HostKeyChanged {
        line, known_hosts, ..
    } = &err
    else {
        panic!("expected a changed key, got {err:?}");
    };
    assert_eq!(*line, 3);
    assert_eq!(known_hosts, &fixture.known_hosts.display().to_string());
    assert!(!err.retryable());
    // accept-new never overrides a changed key, and never writes.
    let text = std::fs::read_to_string(&fixture.known_hosts).unwrap();
    assert_eq!(text.lines().count(), 4);

    // The real key appended after the stale one (a rotation) is accepted.
    let mut text = text;
    text.push_str(&sshd.known_hosts_line());
    text.push('\n');
    std::fs::write(&fixture.known_hosts, text).unwrap();
    let shell = fixture
        .connector(false)
        .connect(&fixture.host_for(&sshd))
        .await
        .unwrap();
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_then_recorded_with_accept_new() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.205");
    let host = fixture.host_for(&sshd);

    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    assert!(
        matches!(&err, ShellError::HostKeyUnknown { key_type, fingerprint, .. }
            if key_type == "ssh-ed25519" && fingerprint.starts_with("SHA256:")),
        "{err:?}"
    );
    assert!(!fixture.known_hosts.exists());

    let shell = fixture.connector(true).connect(&host).await.unwrap();
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );
    let text = std::fs::read_to_string(&fixture.known_hosts).unwrap();
    assert_eq!(text, format!("{}\n", sshd.known_hosts_line()));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&fixture.known_hosts)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Now known: strict checking accepts it, and nothing more is appended.
    fixture.connector(false).connect(&host).await.unwrap();
    fixture.connector(true).connect(&host).await.unwrap();
    assert_eq!(std::fs::read_to_string(&fixture.known_hosts).unwrap(), text);
}

#[tokio::test]
async fn a_hashed_known_hosts_entry_is_accepted() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.206");
    fixture.trust(&[&sshd]);
    run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&fixture.known_hosts));
    let text = std::fs::read_to_string(&fixture.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    assert!(!text.contains(&sshd.ip), "{text}");

    let shell = fixture
        .connector(false)
        .connect(&fixture.host_for(&sshd))
        .await
        .unwrap();
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test]
async fn an_encrypted_key_without_an_agent_says_what_to_do() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.207");
    fixture.trust(&[&sshd]);
    let encrypted = fixture.dir.path().join("id_encrypted");
    keygen(&encrypted, "correct horse");
    let mut host = fixture.host_for(&sshd);
    host.ssh.identity_files = vec![encrypted.clone()];

    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    let ShellError::Auth { reason, user, .. } = &err else {
        panic!("expected an auth error, got {err:?}");
    };
    assert_eq!(user, &current_user());
    assert!(reason.contains("encrypted"), "{reason}");
    assert!(reason.contains("ssh-agent"), "{reason}");
    assert!(
        reason.contains(&encrypted.display().to_string()),
        "{reason}"
    );
    assert!(!err.to_string().contains("correct horse"), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    // Needs no sshd: nothing listens on this address.
    let fixture = Fixture::new();
    let port = free_port("127.0.1.250");
    let err = fixture
        .connector(true)
        .connect(&fixture.host("127.0.1.250", port))
        .await
        .unwrap_err();
    assert!(matches!(err, ShellError::Unreachable { .. }), "{err:?}");
    assert!(err.retryable());
    assert!(!fixture.known_hosts.exists());
}

#[tokio::test]
async fn a_dropped_connection_is_reported_as_disconnected() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.208");
    let shell = fixture.connect(&sshd).await;
    // The shell's parent is the sshd process serving this connection.
    let err = shell
        .exec("kill -9 $PPID; sleep 5", EXEC_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, ShellError::Disconnected { .. }), "{err:?}");
    assert!(err.retryable());
    let err = shell.exec("true", EXEC_TIMEOUT).await.unwrap_err();
    assert!(matches!(err, ShellError::Disconnected { .. }), "{err:?}");
}

#[tokio::test]
async fn a_jump_host_carries_the_connection() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    // DEBUG1 so that its log shows the tunnel it opens.
    let bastion = Sshd::start(
        fixture.dir.path(),
        "127.0.1.209",
        &fixture.client_key,
        "LogLevel DEBUG1",
    );
    let target = fixture.sshd("127.0.1.210");
    let mut host = fixture.host_for(&target);
    host.ssh.jump = vec![JumpHost {
        user: None,
        host: bastion.ip.clone(),
        port: Some(bastion.port),
        identity_files: Vec::new(),
    }];

    // Only the target known: the jump host's key is checked too.
    fixture.trust(&[&target]);
    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    assert!(
        matches!(&err, ShellError::HostKeyUnknown { host, .. } if host.contains("jump host")),
        "{err:?}"
    );

    fixture.trust(&[&bastion, &target]);
    let shell = fixture.connector(false).connect(&host).await.unwrap();
    let output = shell
        .exec("echo through; exit 4", EXEC_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(output.status, ExitStatus::Code(4));
    assert_eq!(output.stdout_tail, "through\n");
    // The bastion opened the tunnel to the target.
    let log = bastion.log_text();
    assert!(
        log.contains(&format!("target {} port {}", target.ip, target.port)),
        "{log}"
    );
    shell.close().await;
}

/// Issue 18: a bastion keeps OpenSSH's defaults (`MaxStartups 10:30:100`,
/// `MaxSessions 10`). Twelve hosts behind it, connected at once, all get
/// through, over one authenticated connection to it: `direct-tcpip`
/// tunnels are channels of that connection, not logins of their own.
#[tokio::test]
async fn hosts_behind_one_bastion_share_one_connection_to_it() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let bastion = fixture.sshd("127.0.1.226");
    let targets: Vec<Sshd> = (227..239)
        .map(|n| fixture.sshd(&format!("127.0.1.{n}")))
        .collect();
    let mut trusted: Vec<&Sshd> = targets.iter().collect();
    trusted.push(&bastion);
    fixture.trust(&trusted);
    let connector = fixture.connector(false);
    let hosts: Vec<Host> = targets
        .iter()
        .enumerate()
        .map(|(n, target)| {
            let mut host = fixture.host_for(target);
            host.name = format!("web-{n:02}");
            host.ssh.jump = vec![JumpHost {
                user: None,
                host: bastion.ip.clone(),
                port: Some(bastion.port),
                identity_files: Vec::new(),
            }];
            host
        })
        .collect();
    let shells =
        futures_util::future::join_all(hosts.iter().map(|host| connector.connect(host))).await;
    for (host, shell) in hosts.iter().zip(&shells) {
        let shell = shell
            .as_ref()
            .unwrap_or_else(|err| panic!("{}: {err}\n{}", host.name, bastion.log_text()));
        let output = shell.exec("echo through", EXEC_TIMEOUT).await.unwrap();
        assert_eq!(output.stdout_tail, "through\n", "{}", host.name);
    }
    let log = bastion.log_text();
    let logins = log.matches("Accepted publickey").count();
    assert_eq!(logins, 1, "the bastion accepted {logins} logins:\n{log}");
    assert!(!log.contains("MaxStartups"), "{log}");
    for shell in shells.into_iter().flatten() {
        shell.close().await;
    }
    // At the end of the run, the shared connection is closed politely.
    connector.close().await;
    let closed = poll_log(&bastion, "fleetroll done").await;
    assert!(
        closed,
        "the bastion never saw the goodbye:\n{}",
        bastion.log_text()
    );
}

/// Issue 18: until it is logged in, a connection counts against its sshd's
/// `MaxStartups`, so at most `max_handshakes` of them are open to one
/// destination at once, from the TCP connect on. The destination here
/// never answers: it holds the connections it accepts, and each time it
/// holds two it watches for a third (which only a broken bound lets in:
/// the clients' own handshake timeout is far away), then closes them, which
/// fails those handshakes and gives their turns to the next hosts.
#[tokio::test]
async fn handshakes_to_one_destination_are_bounded_from_the_tcp_connect() {
    const BOUND: usize = 2;
    let listener = tokio::net::TcpListener::bind("127.0.1.239:0")
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut accepted, mut most) = (0, 0);
        let mut held = Vec::new();
        while accepted < 6 {
            let watching = held.len() >= BOUND;
            let next = if watching {
                tokio::time::timeout(Duration::from_millis(300), listener.accept())
                    .await
                    .ok()
            } else {
                Some(listener.accept().await)
            };
            match next {
                Some(connection) => {
                    held.push(connection.unwrap().0);
                    accepted += 1;
                    most = most.max(held.len());
                }
                // Nobody else came while BOUND were held: let them go.
                None => held.clear(),
            }
            if accepted == 6 {
                held.clear();
            }
        }
        (accepted, most)
    });
    let fixture = Fixture::new();
    let connector = SshConnector::new(
        SshOptions {
            connect_timeout: Duration::from_secs(30),
            max_handshakes: BOUND,
            ..SshOptions::default()
        },
        fixture.dir.path(),
        None,
    );
    let hosts: Vec<Host> = (0..6)
        .map(|n| Host {
            name: format!("web-{n}"),
            ..fixture.host("127.0.1.239", port)
        })
        .collect();
    let results =
        futures_util::future::join_all(hosts.iter().map(|host| connector.connect(host))).await;
    for result in &results {
        let Err(err) = result else {
            panic!("nothing answers there, yet a host connected");
        };
        assert!(err.retryable(), "a dropped handshake is retryable: {err:?}");
    }
    let (accepted, most) = server.await.unwrap();
    assert_eq!(accepted, 6, "every host had its turn");
    assert_eq!(most, BOUND, "connections open at once to one destination");
}

/// Whether `text` shows up in `sshd`'s log within 10 s (waiting without
/// blocking the runtime, whose session tasks still have to send).
async fn poll_log(sshd: &Sshd, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if sshd.log_text().contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn an_encrypted_key_loaded_in_the_agent_is_used() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.211");
    fixture.trust(&[&sshd]);
    let encrypted = fixture.dir.path().join("id_encrypted");
    keygen(&encrypted, "correct horse");
    sshd.authorize(&encrypted);
    let agent = Agent::start(fixture.dir.path());
    // A key the server does not accept comes first: the next one is tried.
    let stranger = fixture.dir.path().join("id_stranger");
    keygen(&stranger, "");
    agent.add(&stranger, "");
    agent.add(&encrypted, "correct horse");

    let mut host = fixture.host_for(&sshd);
    host.ssh.identity_files = vec![encrypted];
    let shell = fixture
        .agent_connector(&agent)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test]
async fn rsa_keys_sign_with_sha2_from_a_file_and_from_the_agent() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.212");
    fixture.trust(&[&sshd]);
    // OpenSSH 8.8+ refuses SHA-1 `ssh-rsa` signatures: success proves the
    // best hash the server offers was used.
    let rsa = fixture.dir.path().join("id_rsa_test");
    keygen_typed(&rsa, "rsa", "");
    sshd.authorize(&rsa);
    let mut host = fixture.host_for(&sshd);
    host.ssh.identity_files = vec![rsa.clone()];
    let shell = fixture
        .connector(false)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );
    assert!(
        sshd.log_text().contains("Accepted publickey for"),
        "{}",
        sshd.log_text()
    );

    // No identity file: the agent's keys are offered.
    let agent = Agent::start(fixture.dir.path());
    agent.add(&rsa, "");
    host.ssh.identity_files = Vec::new();
    let shell = fixture
        .agent_connector(&agent)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test]
async fn default_identities_in_home_are_tried() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.213");
    fixture.trust(&[&sshd]);
    let dot_ssh = fixture.dir.path().join(".ssh");
    std::fs::create_dir_all(&dot_ssh).unwrap();
    // id_ed25519 is encrypted (skipped without an agent); id_ecdsa works.
    keygen(&dot_ssh.join("id_ed25519"), "secret words");
    keygen_typed(&dot_ssh.join("id_ecdsa"), "ecdsa", "");
    sshd.authorize(&dot_ssh.join("id_ecdsa"));
    let mut host = fixture.host_for(&sshd);
    host.ssh.identity_files = Vec::new();
    let shell = fixture
        .connector(false)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );

    // Without the working key, the error lists what was tried and skipped.
    std::fs::remove_file(dot_ssh.join("id_ecdsa")).unwrap();
    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    let ShellError::Auth { reason, .. } = &err else {
        panic!("expected an auth error, got {err:?}");
    };
    assert!(
        reason.contains("id_ed25519") && reason.contains("encrypted"),
        "{reason}"
    );
}

#[tokio::test]
async fn sudo_wraps_the_command_with_shell_quoting() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    // A stand-in sudo, first on the session's PATH: it insists on -n (never
    // prompt), says it ran, and runs the rest as given.
    let bin = fixture.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let stub = bin.join("sudo");
    std::fs::write(
        &stub,
        "#!/bin/sh\n[ \"$1\" = -n ] || exit 99\nshift\necho via-sudo >&2\nexec \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sshd = Sshd::start(
        fixture.dir.path(),
        "127.0.1.214",
        &fixture.client_key,
        &format!(
            "LogLevel VERBOSE\nSetEnv PATH={}:/usr/bin:/bin",
            bin.display()
        ),
    );
    fixture.trust(&[&sshd]);
    let mut host = fixture.host_for(&sshd);
    host.ssh.sudo = true;
    let shell = fixture.connector(false).connect(&host).await.unwrap();
    let output = shell
        .exec(
            "printf '%s|' \"it's\" 'a  b' \"$((1 + 1))\"; exit 5",
            EXEC_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(output.stderr_tail, "via-sudo\n");
    assert_eq!(output.stdout_tail, "it's|a  b|2|");
    assert_eq!(output.status, ExitStatus::Code(5));
}

/// Loads a one-host inventory whose `[defaults] ssh_config` names
/// `ssh_config` (text) in the fixture's directory, the way `run` does.
fn load_with_ssh_config(fixture: &Fixture, hosts: &str, ssh_config: &str) -> Host {
    let dir = fixture.dir.path();
    std::fs::write(dir.join("ssh_config"), ssh_config).unwrap();
    let inventory = dir.join("inventory.toml");
    std::fs::write(
        &inventory,
        format!("[defaults]\nssh_config = \"ssh_config\"\n\n[zones.z1]\nhosts = [{hosts}]\n"),
    )
    .unwrap();
    let playbook = dir.join("playbook.toml");
    std::fs::write(&playbook, "name = \"t\"\n[[steps]]\nrun = \"true\"\n").unwrap();
    let config = fleetroll::config::load::load(
        &inventory,
        &playbook,
        &fleetroll::config::load::LoadOptions {
            overrides: &[],
            home: Some(dir),
            read_ssh_config: true,
        },
    )
    .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)));
    config.inventory.hosts().next().unwrap().clone()
}

#[tokio::test]
async fn a_host_named_only_in_ssh_config_is_reached_through_two_proxyjump_hops() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    // DEBUG1 so that their logs show the tunnels they open.
    let outer = Sshd::start(
        fixture.dir.path(),
        "127.0.1.215",
        &fixture.client_key,
        "LogLevel DEBUG1",
    );
    let inner = Sshd::start(
        fixture.dir.path(),
        "127.0.1.216",
        &fixture.client_key,
        "LogLevel DEBUG1",
    );
    let target = fixture.sshd("127.0.1.217");
    fixture.trust(&[&outer, &inner, &target]);
    let host = load_with_ssh_config(
        &fixture,
        "{ name = \"web-1\" }",
        &format!(
            "Host web-*\n  HostName {}\n  Port {}\n  ProxyJump hop-a,hop-b\n\n\
             Host hop-a\n  HostName {}\n  Port {}\n\n\
             Host hop-b\n  HostName {}\n  Port {}\n\n\
             Host *\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile none\n",
            target.ip,
            target.port,
            outer.ip,
            outer.port,
            inner.ip,
            inner.port,
            current_user(),
            fixture.client_key.display(),
            fixture.known_hosts.display(),
        ),
    );
    assert_eq!(host.address, target.ip);
    let hops: Vec<(&str, Option<u16>)> = host
        .ssh
        .jump
        .iter()
        .map(|hop| (hop.host.as_str(), hop.port))
        .collect();
    assert_eq!(
        hops,
        [
            (outer.ip.as_str(), Some(outer.port)),
            (inner.ip.as_str(), Some(inner.port))
        ]
    );
    let config_file = fixture.dir.path().join("ssh_config");
    assert_eq!(
        host.ssh.origins.get("jump"),
        Some(format!("{}:4", config_file.display()).as_str())
    );

    let shell = fixture
        .connector(false)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", inner.log_text()));
    let output = shell.exec("echo through", EXEC_TIMEOUT).await.unwrap();
    assert_eq!(output.stdout_tail, "through\n");
    // The outer hop tunnelled to the inner one, the inner one to the target.
    let outer_log = outer.log_text();
    assert!(
        outer_log.contains(&format!("target {} port {}", inner.ip, inner.port)),
        "{outer_log}"
    );
    let inner_log = inner.log_text();
    assert!(
        inner_log.contains(&format!("target {} port {}", target.ip, target.port)),
        "{inner_log}"
    );
    shell.close().await;
}

#[tokio::test]
async fn a_host_key_recorded_only_in_the_global_known_hosts_file_is_trusted() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let sshd = fixture.sshd("127.0.1.218");
    let global = fixture.dir.path().join("ssh_known_hosts");
    let user_file = fixture.dir.path().join("user_known_hosts");
    let ssh_config = format!(
        "Host web-2\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n\
         UserKnownHostsFile {}\n  GlobalKnownHostsFile {}\n",
        sshd.ip,
        sshd.port,
        current_user(),
        fixture.client_key.display(),
        user_file.display(),
        global.display(),
    );
    let host = load_with_ssh_config(&fixture, "{ name = \"web-2\" }", &ssh_config);
    assert_eq!(host.ssh.global_known_hosts, Some(vec![global.clone()]));

    // Neither file knows the key yet: refused, naming both files.
    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    let ShellError::HostKeyUnknown { known_hosts, .. } = &err else {
        panic!("expected an unknown host key, got {err:?}");
    };
    assert!(
        known_hosts.contains(&user_file.display().to_string())
            && known_hosts.contains(&global.display().to_string()),
        "{known_hosts}"
    );

    std::fs::write(&global, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let shell = fixture
        .connector(false)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert_eq!(
        shell
            .exec("echo ok", EXEC_TIMEOUT)
            .await
            .unwrap()
            .stdout_tail,
        "ok\n"
    );
    shell.close().await;
    // Trusted from the global file: nothing was written to the user's.
    assert!(!user_file.exists());
}

/// Signs `key`'s public half with the CA key `ca`: a host certificate for
/// `principals` when `host`, a user certificate otherwise, valid for
/// `validity` (ssh-keygen's `-V`; empty for forever). Returns the
/// certificate's path (`KEY-cert.pub`).
fn sign(ca: &Path, key: &Path, host: bool, principals: &str, validity: &str) -> PathBuf {
    let mut command = Command::new("ssh-keygen");
    command.args(["-q", "-s"]).arg(ca);
    command.args(["-I", "fleetroll-test", "-n", principals]);
    if host {
        command.arg("-h");
    }
    if !validity.is_empty() {
        command.args(["-V", validity]);
    }
    run(command.arg(key.with_extension("pub")));
    let mut certificate = key.as_os_str().to_owned();
    certificate.push("-cert.pub");
    PathBuf::from(certificate)
}

/// Starts sshd on `ip` presenting, besides its plain key, a host
/// certificate for `ip` valid for `validity` (see [`sign`]); returns it and
/// the CA's private key path.
fn sshd_with_host_certificate(fixture: &Fixture, ip: &str, validity: &str) -> (Sshd, PathBuf) {
    let ca = fixture.dir.path().join("host_ca");
    keygen(&ca, "");
    let certified = fixture.dir.path().join("host_certified");
    keygen(&certified, "");
    let certificate = sign(&ca, &certified, true, ip, validity);
    let sshd = Sshd::start(
        fixture.dir.path(),
        ip,
        &fixture.client_key,
        &format!(
            "LogLevel VERBOSE\nHostKey {}\nHostCertificate {}",
            certified.display(),
            certificate.display()
        ),
    );
    (sshd, ca)
}

#[tokio::test]
async fn a_host_recorded_only_with_its_ecdsa_key_is_offered_ecdsa_first() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let ecdsa = fixture.dir.path().join("host_ecdsa");
    keygen_typed(&ecdsa, "ecdsa", "");
    // The server has an ed25519 key too, which the client prefers unless
    // known_hosts says otherwise.
    let sshd = Sshd::start(
        fixture.dir.path(),
        "127.0.1.219",
        &fixture.client_key,
        &format!("LogLevel VERBOSE\nHostKey {}", ecdsa.display()),
    );
    std::fs::write(
        &fixture.known_hosts,
        format!("[{}]:{} {}\n", sshd.ip, sshd.port, public_key(&ecdsa)),
    )
    .unwrap();
    let shell = fixture
        .connector(false)
        .connect(&fixture.host_for(&sshd))
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert_eq!(
        shell
            .exec("echo ok", EXEC_TIMEOUT)
            .await
            .unwrap()
            .stdout_tail,
        "ok\n"
    );
    shell.close().await;
}

#[tokio::test]
async fn a_host_certificate_signed_by_a_cert_authority_line_is_trusted_and_refused_otherwise() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let ip = "127.0.1.220";
    let (sshd, ca) = sshd_with_host_certificate(&fixture, ip, "");
    let host = fixture.host_for(&sshd);
    let authority = format!("@cert-authority [{ip}]:* {}\n", public_key(&ca));

    // The CA trusted for the host: the certificate is asked for and trusted
    // although neither host key is recorded.
    std::fs::write(&fixture.known_hosts, &authority).unwrap();
    let shell = fixture
        .connector(false)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert_eq!(
        shell
            .exec("echo ok", EXEC_TIMEOUT)
            .await
            .unwrap()
            .stdout_tail,
        "ok\n"
    );
    shell.close().await;

    // Without the CA line, the plain key is unknown.
    std::fs::write(&fixture.known_hosts, "").unwrap();
    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    assert!(matches!(err, ShellError::HostKeyUnknown { .. }), "{err:?}");

    // A CA line for another host does not cover this one.
    std::fs::write(
        &fixture.known_hosts,
        format!("@cert-authority 10.9.9.9 {}\n", public_key(&ca)),
    )
    .unwrap();
    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    assert!(matches!(err, ShellError::HostKeyUnknown { .. }), "{err:?}");
}

#[tokio::test]
async fn an_expired_host_certificate_is_refused_saying_when_it_expired() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let (sshd, ca) = sshd_with_host_certificate(&fixture, "127.0.1.221", "20200101:20200102");
    std::fs::write(
        &fixture.known_hosts,
        format!("@cert-authority * {}\n", public_key(&ca)),
    )
    .unwrap();
    let err = fixture
        .connector(false)
        .connect(&fixture.host_for(&sshd))
        .await
        .unwrap_err();
    let ShellError::HostCertificateRefused { reason, line, .. } = &err else {
        panic!("expected a refused certificate, got {err:?}");
    };
    assert!(reason.contains("expired at 2020-01-02"), "{reason}");
    assert_eq!(*line, 1);
}

/// A new user CA, and sshd on `ip` trusting the certificates it signs and
/// no authorized key (only a certificate logs in), its host key in the
/// fixture's known_hosts; returns the server and the CA's private key.
fn sshd_trusting_a_new_user_ca(fixture: &Fixture, ip: &str) -> (Sshd, PathBuf) {
    let ca = fixture.dir.path().join("user_ca");
    keygen(&ca, "");
    let nobody = fixture
        .dir
        .path()
        .join(format!("no_key_{}", ip.replace('.', "_")));
    keygen(&nobody, "");
    let sshd = Sshd::start(
        fixture.dir.path(),
        ip,
        &nobody,
        &format!(
            "LogLevel VERBOSE\nTrustedUserCAKeys {}",
            ca.with_extension("pub").display()
        ),
    );
    fixture.trust(&[&sshd]);
    (sshd, ca)
}

#[tokio::test]
async fn a_user_certificate_logs_in_where_only_its_ca_is_trusted() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let (sshd, ca) = sshd_trusting_a_new_user_ca(&fixture, "127.0.1.222");
    let mut host = fixture.host_for(&sshd);

    // The plain key alone is refused: it is not in authorized_keys.
    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    assert!(matches!(err, ShellError::Auth { .. }), "{err:?}");

    // Signed for this user, in a file named by certificate_file.
    let certificate = sign(&ca, &fixture.client_key, false, &current_user(), "");
    let elsewhere = fixture.dir.path().join("issued.cert");
    std::fs::rename(&certificate, &elsewhere).unwrap();
    host.ssh.certificate_files = vec![elsewhere.clone()];
    let shell = fixture
        .connector(false)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert_eq!(
        shell
            .exec("echo ok", EXEC_TIMEOUT)
            .await
            .unwrap()
            .stdout_tail,
        "ok\n"
    );
    shell.close().await;
    assert!(
        sshd.log_text().contains("Accepted publickey") && sshd.log_text().contains("CA ED25519"),
        "{}",
        sshd.log_text()
    );

    // Found next to the identity file, as OpenSSH finds it.
    host.ssh.certificate_files = Vec::new();
    let mut beside = fixture.client_key.as_os_str().to_owned();
    beside.push("-cert.pub");
    std::fs::rename(&elsewhere, &beside).unwrap();
    let shell = fixture.connector(false).connect(&host).await.unwrap();
    shell.close().await;
}

#[tokio::test]
async fn an_expired_user_certificate_is_reported_with_its_expiry() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let (sshd, ca) = sshd_trusting_a_new_user_ca(&fixture, "127.0.1.223");
    let mut host = fixture.host_for(&sshd);
    let expired = sign(
        &ca,
        &fixture.client_key,
        false,
        &current_user(),
        "20200101:20200102",
    );
    host.ssh.certificate_files = vec![expired.clone()];
    let err = fixture.connector(false).connect(&host).await.unwrap_err();
    let ShellError::Auth { reason, .. } = &err else {
        panic!("expected an auth error, got {err:?}");
    };
    assert!(
        reason.contains(&format!(
            "the certificate {} expired at 2020-01-02",
            expired.display()
        )),
        "{reason}"
    );
}

#[tokio::test]
async fn a_user_certificate_held_by_the_agent_logs_in_and_an_expired_one_is_named() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let (sshd, ca) = sshd_trusting_a_new_user_ca(&fixture, "127.0.1.224");
    let mut host = fixture.host_for(&sshd);
    host.ssh.identity_files = Vec::new();

    // `ssh-add KEY` also adds `KEY-cert.pub`: the agent lists the key and
    // its certificate, and only the certificate is accepted.
    let certified_agent = |name: &str, validity: &str| {
        let key = fixture.dir.path().join(format!("id_{name}"));
        keygen(&key, "");
        sign(&ca, &key, false, &current_user(), validity);
        let agent = Agent::start(&fixture.dir.path().join(name));
        agent.add(&key, "");
        agent
    };
    let expired = certified_agent("stale", "20200101:20200102");
    let err = fixture
        .agent_connector(&expired)
        .connect(&host)
        .await
        .unwrap_err();
    let ShellError::Auth { reason, .. } = &err else {
        panic!("expected an auth error, got {err:?}");
    };
    assert!(
        reason.contains("ssh-agent's certificate \"fleetroll-test\"")
            && reason.contains("expired at 2020-01-02"),
        "{reason}"
    );

    let valid = certified_agent("fresh", "");
    let shell = fixture
        .agent_connector(&valid)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    assert!(
        shell
            .exec("true", EXEC_TIMEOUT)
            .await
            .unwrap()
            .status
            .success()
    );
    shell.close().await;
    assert!(
        sshd.log_text().contains("ED25519-CERT") && sshd.log_text().contains("CA ED25519"),
        "{}",
        sshd.log_text()
    );
}

#[tokio::test]
async fn a_certificate_on_disk_goes_with_its_encrypted_key_held_by_the_agent() {
    if sshd_missing() {
        return;
    }
    let fixture = Fixture::new();
    let (sshd, ca) = sshd_trusting_a_new_user_ca(&fixture, "127.0.1.225");
    let encrypted = fixture.dir.path().join("id_encrypted");
    keygen(&encrypted, "correct horse");
    let agent = Agent::start(fixture.dir.path());
    agent.add(&encrypted, "correct horse");
    // Issued after `ssh-add`: the agent holds the plain key only.
    sign(&ca, &encrypted, false, &current_user(), "");

    let mut host = fixture.host_for(&sshd);
    host.ssh.identity_files = vec![encrypted];
    let shell = fixture
        .agent_connector(&agent)
        .connect(&host)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}\n{}", sshd.log_text()));
    shell.close().await;
    assert!(
        sshd.log_text().contains("ED25519-CERT") && sshd.log_text().contains("CA ED25519"),
        "{}",
        sshd.log_text()
    );
}
