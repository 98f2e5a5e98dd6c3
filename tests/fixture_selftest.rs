//! Self-test of the integration-test fixture (`tests/fixture/`): the servers
//! it starts are real, reachable with the real OpenSSH client, behind a real
//! HAProxy, and gone once the fleet is dropped. Needs `bash tests/setup.sh`.

#[path = "fixture/mod.rs"]
mod fixture;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fixture::{
    BalancerAccess, Bastion, BastionCounts, Fleet, FleetSpec, Host, HttpResponse, InventoryOptions,
    LatencyProxy, ServerState, Traffic, TrafficReport, http_get, pid_alive,
};

const SECOND: Duration = Duration::from_secs(1);

/// `ssh -i KEY -o UserKnownHostsFile=KNOWN_HOSTS -o StrictHostKeyChecking=yes
/// -p PORT root@ADDRESS COMMAND`, spelt out here rather than through
/// `Fleet::ssh` so that the fixture's files are checked by a plain client.
fn plain_ssh(key: &Path, known_hosts: &Path, port: u16, host: &Host, command: &str) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-i",
        ])
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-p")
        .arg(port.to_string())
        .arg(format!("root@{}", host.address))
        .arg(command)
        .output()
        .expect("run ssh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `probe` every 20 ms until true; panics after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !probe() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `fleetroll validate` on `inventory` with a playbook deploying
/// through appctl, to prove the real parser accepts what the fixture writes.
fn validate(dir: &Path, inventory: &Path) {
    let playbook = dir.join("playbook.toml");
    std::fs::write(
        &playbook,
        r#"name = "fixture-selftest"

[vars]
version = "2.0"

[[steps]]
name = "deploy"
run = "{vars.appctl} {vars.dir} deploy {vars.version}"

[[probes]]
http = "http://{address}:{vars.app_port}/healthz"
expect_status = 200
expect_body = "{vars.version}"
"#,
    )
    .expect("write the playbook");
    let output = Command::new(env!("CARGO_BIN_EXE_fleetroll"))
        .arg("validate")
        .arg("-i")
        .arg(inventory)
        .arg("-p")
        .arg(&playbook)
        .env("NO_COLOR", "1")
        .output()
        .expect("run fleetroll validate");
    assert!(
        output.status.success(),
        "fleetroll validate refused the fixture's inventory:\n{}{}\n{}",
        text(&output.stdout),
        text(&output.stderr),
        std::fs::read_to_string(inventory).unwrap_or_default()
    );
}

#[test]
fn fleet_serves_over_ssh_and_haproxy_and_rolls_one_host_without_failed_requests() {
    let fleet = Fleet::start(FleetSpec::new(3, 1));

    let hosts = fleet.hosts();
    let names: Vec<_> = hosts
        .iter()
        .map(|h| (h.name.as_str(), h.zone.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("web-01", "zone-a"),
            ("web-02", "zone-b"),
            ("web-03", "zone-c")
        ]
    );
    for host in hosts {
        let [a, b, c, n] = host.address.octets();
        assert!(
            (a, b, c) == (127, 0, 1) && (2..200).contains(&n),
            "{host:?}"
        );
        assert!(host.dir.starts_with(fleet.dir()), "{host:?}");
        // The real OpenSSH client accepts the fixture's key and known_hosts.
        let command = format!("cat {}/VERSION", host.dir.display());
        let output = plain_ssh(
            fleet.client_key_path(),
            fleet.known_hosts_path(),
            host.ssh_port,
            host,
            &command,
        );
        assert!(
            output.status.success(),
            "ssh to {}: {}",
            host.name,
            text(&output.stderr)
        );
        assert_eq!(text(&output.stdout), "1.0\n");
        assert_eq!(host.version(), "1.0");
        assert_eq!(host.deploys(), Vec::<String>::new());
        let answer: HttpResponse =
            http_get(host.app_address(), "/", SECOND).expect("the app answers");
        assert_eq!((answer.status, answer.body.as_str()), (200, "1.0"));
    }

    // HAProxy sees every server UP, over both runtime API sockets.
    let states: Vec<ServerState> = fleet.server_states();
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(states.iter().all(|s| s.status == "UP"), "{states:?}");
    assert!(
        fleet
            .haproxy_command("show stat app 4 -1")
            .contains("web-02")
    );
    let mut tcp =
        TcpStream::connect_timeout(&fleet.haproxy_tcp(), 5 * SECOND).expect("TCP runtime API");
    tcp.set_read_timeout(Some(5 * SECOND))
        .expect("set a read timeout");
    tcp.write_all(b"show info\n").expect("send show info");
    let mut info = String::new();
    tcp.read_to_string(&mut info).expect("read show info");
    assert!(
        info.contains(&format!("Pid: {}", fleet.haproxy_pid())),
        "{info}"
    );
    let logs = fleet.logs();
    assert!(logs.contains("Server listening on"), "{logs}");
    let started_pids = fleet.pids();
    assert_eq!(started_pids.len(), 3 + 3 + 1, "3 sshd, 3 apps, haproxy");

    // Traffic through the frontend succeeds.
    let traffic = Traffic::start(&fleet.frontend_url(), 3);
    wait_until("requests through HAProxy", 10 * SECOND, || {
        traffic.snapshot().ok >= 30
    });

    // Drain web-02, redeploy it over SSH, put it back: no request fails.
    let host = fleet.host("web-02");
    let old_pid = host.app_pid().expect("web-02's app runs");
    fleet.haproxy_command("set server app/web-02 state drain");
    let drained =
        fleet.wait_for_server("web-02", 5 * SECOND, |s| s.status == "DRAIN" && s.scur == 0);
    assert_eq!(drained.scur, 0);
    let deploy = format!(
        "{} {} deploy 2.0 200",
        fleet.appctl_path().display(),
        host.dir.display()
    );
    let output = fleet.ssh(host, &deploy);
    assert!(
        output.status.success(),
        "appctl deploy: {}",
        text(&output.stderr)
    );
    assert_eq!(host.version(), "2.0");
    assert_eq!(host.deploys(), ["deploy 2.0"]);
    let new_pid = host.app_pid().expect("web-02's app runs again");
    assert_ne!(new_pid, old_pid, "deploy restarts the app");
    assert!(!pid_alive(old_pid), "the old app process is gone");
    let answer = http_get(host.app_address(), "/healthz", SECOND).expect("the new app answers");
    assert_eq!((answer.status, answer.body.as_str()), (200, "2.0"));
    fleet.haproxy_command("set server app/web-02 state ready");
    fleet.wait_for_server("web-02", 5 * SECOND, |s| s.status == "UP");
    wait_until("version 2.0 through HAProxy", 10 * SECOND, || {
        traffic
            .snapshot()
            .by_body
            .get("2.0")
            .is_some_and(|&n| n >= 5)
    });
    let report: TrafficReport = traffic.stop();
    assert_eq!(report.failed, 0, "{report}");
    assert!(
        report.ok >= 30 && report.by_status.keys().eq([&200]),
        "{report}"
    );
    assert!(report.by_body.contains_key("1.0"), "{report}");
    let output = fleet.ssh(
        host,
        &format!(
            "{} {} version",
            fleet.appctl_path().display(),
            host.dir.display()
        ),
    );
    assert_eq!(text(&output.stdout), "2.0\n");

    // An operator's maintenance shows in server_states.
    fleet.haproxy_command("set server app/web-03 state maint");
    assert_eq!(fleet.server_state("web-03").status, "MAINT");

    // BROKEN and DOWN make the app fail, and HAProxy's checks notice.
    let web01 = fleet.host("web-01");
    std::fs::write(web01.dir.join("BROKEN"), "").expect("create BROKEN");
    assert_eq!(
        http_get(web01.app_address(), "/", SECOND)
            .expect("answer")
            .status,
        500
    );
    fleet.wait_for_server("web-01", 5 * SECOND, |s| s.status == "DOWN");
    std::fs::remove_file(web01.dir.join("BROKEN")).expect("remove BROKEN");
    std::fs::write(web01.dir.join("DOWN"), "").expect("create DOWN");
    assert_eq!(
        http_get(web01.app_address(), "/healthz", SECOND)
            .expect("answer")
            .status,
        503
    );
    std::fs::remove_file(web01.dir.join("DOWN")).expect("remove DOWN");
    fleet.wait_for_server("web-01", 5 * SECOND, |s| s.status == "UP");

    // The inventory, with the balancer over TCP, passes fleetroll validate.
    let scratch = tempfile::tempdir().expect("scratch directory");
    let inventory = scratch.path().join("inventory.toml");
    let options = InventoryOptions {
        balancer: BalancerAccess::Tcp,
        ..InventoryOptions::default()
    };
    fleet.write_inventory(&inventory, &options);
    let written = std::fs::read_to_string(&inventory).expect("read the inventory");
    assert!(
        written.contains(&format!("address = \"{}\"", fleet.haproxy_tcp())),
        "{written}"
    );
    validate(scratch.path(), &inventory);
    fleet.write_inventory(&inventory, &InventoryOptions::default());
    let written = std::fs::read_to_string(&inventory).expect("read the inventory");
    assert!(
        written.contains(&format!(
            "socket = \"{}\"",
            fleet.haproxy_socket().display()
        )),
        "{written}"
    );
    validate(scratch.path(), &inventory);

    // Dropping the fleet ends every process, restarted ones included, and
    // removes its directory.
    let dir = fleet.dir().to_owned();
    let pids = fleet.pids();
    assert!(pids.contains(&new_pid), "{pids:?}");
    drop(fleet);
    let alive: Vec<_> = pids.iter().filter(|&&pid| pid_alive(pid)).collect();
    assert!(alive.is_empty(), "still running after drop: {alive:?}");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn inventory_options_break_ssh_the_way_they_say() {
    let fleet = Fleet::start(FleetSpec {
        haproxy: false,
        version: "7.1".to_owned(),
        ..FleetSpec::new(1, 3)
    });
    assert!(
        fleet
            .hosts()
            .iter()
            .all(|h| h.zone == "zone-a" && h.version() == "7.1")
    );
    let scratch = tempfile::tempdir().expect("scratch directory");
    let inventory = scratch.path().join("inventory.toml");
    let options = InventoryOptions {
        wrong_host_key: vec!["web-01".to_owned()],
        unknown_host_key: vec!["web-02".to_owned()],
        dead_port: vec!["web-03".to_owned()],
        ..InventoryOptions::default()
    };
    fleet.write_inventory(&inventory, &options);
    let written = std::fs::read_to_string(&inventory).expect("read the inventory");
    assert!(
        written.contains("balancer = \"none\"") && !written.contains("[balancers"),
        "{written}"
    );
    validate(scratch.path(), &inventory);

    // Read the inventory back and try each host the way it says.
    let parsed: toml::Table = toml::from_str(&written).expect("the inventory is TOML");
    let entries = parsed["zones"]["zone-a"]["hosts"]
        .as_array()
        .expect("hosts");
    let key = Path::new(
        parsed["defaults"]["identity_file"]
            .as_str()
            .expect("identity_file"),
    );
    let expected = [
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "Host key verification failed",
        "Connection refused",
    ];
    for ((host, entry), expected) in fleet.hosts().iter().zip(entries).zip(expected) {
        let known_hosts = entry
            .get("known_hosts")
            .or(parsed["defaults"].get("known_hosts"))
            .and_then(|v| v.as_str())
            .expect("known_hosts");
        let port = entry["port"].as_integer().expect("port");
        let port = u16::try_from(port).expect("a port number");
        let output = plain_ssh(key, Path::new(known_hosts), port, host, "true");
        assert!(!output.status.success(), "ssh to {} should fail", host.name);
        assert!(
            text(&output.stderr).contains(expected),
            "{}: {}",
            host.name,
            text(&output.stderr)
        );
        // ...while the fleet's own files still work.
        assert!(fleet.ssh(host, "true").status.success(), "{}", host.name);
    }

    // appctl stop makes the port refuse connections; start brings it back.
    let host = &fleet.hosts()[0];
    let appctl = |args: &[&str]| {
        // A trailing slash names the same host directory.
        Command::new(fleet.appctl_path())
            .arg(format!("{}/", host.dir.display()))
            .args(args)
            .output()
            .expect("run appctl")
    };
    assert!(appctl(&["stop"]).status.success());
    assert!(http_get(host.app_address(), "/", SECOND).is_err());
    assert_eq!(host.app_pid(), None);
    assert!(appctl(&["start"]).status.success());
    let answer = http_get(host.app_address(), "/", SECOND).expect("the app answers again");
    assert_eq!((answer.status, answer.body.as_str()), (200, "7.1"));
    assert_eq!(appctl(&["deploy"]).status.code(), Some(2), "usage error");
    assert_eq!(
        appctl(&["deploy", "8", "soon"]).status.code(),
        Some(1),
        "bad delay"
    );
}

#[test]
fn fleets_started_at_once_get_their_own_addresses() {
    let spec = FleetSpec {
        haproxy: false,
        ..FleetSpec::new(2, 1)
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| Fleet::start(spec.clone()));
        let b = scope.spawn(|| Fleet::start(spec.clone()));
        (a.join().expect("fleet a"), b.join().expect("fleet b"))
    });
    let addresses = |fleet: &Fleet| fleet.hosts().iter().map(|h| h.address).collect::<Vec<_>>();
    let (in_a, in_b) = (addresses(&a), addresses(&b));
    assert!(
        in_a.iter().all(|x| !in_b.contains(x)),
        "{in_a:?} and {in_b:?} overlap"
    );
    for fleet in [&a, &b] {
        for host in fleet.hosts() {
            let answer = http_get(host.app_address(), "/", SECOND).expect("the app answers");
            assert_eq!(answer.body, "1.0");
        }
    }
}

/// A server that echoes every chunk back, then half-closes at the end of
/// its input; it serves `connections` connections, each in a thread.
fn echo_server(connections: usize) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the echo server");
    let address = listener.local_addr().expect("the echo server's address");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 16 * 1024];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    address
}

/// Writes `message` and reads as many bytes back; returns how long it took.
fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(message).expect("send through the proxy");
    let mut answer = vec![0_u8; message.len()];
    stream
        .read_exact(&mut answer)
        .expect("read the echo through the proxy");
    let took = started.elapsed();
    assert_eq!(answer, message);
    took
}

#[test]
fn latency_proxy_delays_each_way_without_limiting_throughput_and_stops_when_dropped() {
    let delay = Duration::from_millis(40);
    let echo = echo_server(2);
    let proxy = LatencyProxy::start(Ipv4Addr::LOCALHOST, echo, delay);
    assert_eq!((proxy.target(), proxy.delay()), (echo, delay));
    assert_eq!(proxy.address().ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(proxy.address(), echo);

    let mut stream = TcpStream::connect(proxy.address()).expect("connect to the proxy");
    stream.set_read_timeout(Some(10 * SECOND)).expect("timeout");
    // The first message waits for the upstream connection too.
    let rtts = [
        round_trip(&mut stream, b"ping\n"),
        round_trip(&mut stream, b"pong\n"),
        round_trip(&mut stream, b"x"),
    ];
    for rtt in rtts {
        assert!(
            rtt >= 2 * delay && rtt < 2 * delay + 2 * SECOND,
            "round trips {rtts:?} with {delay:?} each way"
        );
    }

    // 8 MiB through and back, then end of stream both ways: were each
    // chunk held back its delay in turn, it would take 128 chunks of
    // 64 KiB x 80 ms = 10 s.
    let bulk: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let started = Instant::now();
    let writer = {
        let (mut stream, bulk) = (stream.try_clone().expect("clone"), bulk.clone());
        std::thread::spawn(move || {
            stream.write_all(&bulk).expect("send the bulk");
            stream.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let mut back = Vec::new();
    stream
        .read_to_end(&mut back)
        .expect("read the bulk back, to the end");
    let took = started.elapsed();
    writer.join().expect("the writer");
    assert!(back == bulk, "{} bytes back of {}", back.len(), bulk.len());
    assert!(
        took >= 2 * delay && took < 3 * SECOND,
        "8 MiB there and back took {took:?}"
    );
    assert_eq!(proxy.accepted(), 1);

    // A connection still open when the proxy is dropped is ended, and
    // nothing listens on its port any more.
    let mut open = TcpStream::connect(proxy.address()).expect("connect to the proxy");
    open.set_read_timeout(Some(10 * SECOND)).expect("timeout");
    round_trip(&mut open, b"still here");
    let address = proxy.address();
    drop(proxy);
    let mut rest = Vec::new();
    let ended = open.read_to_end(&mut rest);
    assert!(
        matches!(ended, Ok(0)) || ended.is_err(),
        "{ended:?}, {rest:?}"
    );
    let refused = TcpStream::connect_timeout(&address, SECOND);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
}

/// An ssh_config for the real OpenSSH client and for the jump hosts it
/// starts (options on the command line apply to the target only).
fn ssh_config(dir: &Path, key: &Path, known_hosts: &Path) -> PathBuf {
    let path = dir.join("ssh_config");
    std::fs::write(
        &path,
        format!(
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n  UpdateHostKeys no\n  BatchMode yes\n  \
             ConnectTimeout 5\n  LogLevel ERROR\n",
            key.display(),
            known_hosts.display()
        ),
    )
    .expect("write ssh_config");
    path
}

#[test]
fn bastion_keeps_openssh_defaults_and_its_log_counts_connections_logins_and_tunnels() {
    let fleet = Fleet::start(FleetSpec {
        haproxy: false,
        bastion: true,
        ..FleetSpec::new(1, 2)
    });
    let bastion: &Bastion = fleet.bastion();
    let settings = bastion.effective_config();
    for default in ["maxstartups 10:30:100\n", "maxsessions 10\n"] {
        assert!(settings.contains(default), "{default:?} not in\n{settings}");
    }
    assert!(fleet.pids().contains(&bastion.pid()));
    assert!(
        fleet.logs().contains("Server listening on"),
        "{}",
        fleet.logs()
    );
    let at_start = bastion.counts();
    assert_eq!(
        (at_start.logins, at_start.tunnels, at_start.dropped),
        (0, 0, 0),
        "{at_start:?}"
    );

    // The inventory dials the bastion through a proxy in front of it, and
    // web-02 directly through another.
    let delay = Duration::from_millis(40);
    let IpAddr::V4(bastion_ip) = bastion.address().ip() else {
        panic!("an IPv4 bastion: {}", bastion.address())
    };
    let jump = LatencyProxy::start(bastion_ip, bastion.address(), delay);
    let (web01, web02) = (fleet.host("web-01"), fleet.host("web-02"));
    let direct = LatencyProxy::start(
        web02.address,
        SocketAddr::from((web02.address, web02.ssh_port)),
        delay,
    );
    let scratch = tempfile::tempdir().expect("scratch directory");
    let inventory = scratch.path().join("inventory.toml");
    fleet.write_inventory(
        &inventory,
        &InventoryOptions {
            jump: Some(jump.address()),
            ssh_via: [("web-02".to_owned(), direct.address())].into(),
            ..InventoryOptions::default()
        },
    );
    let written = std::fs::read_to_string(&inventory).expect("read the inventory");
    assert!(
        written.contains(&format!("jump = \"root@{}\"", jump.address())),
        "{written}"
    );
    assert!(
        written.contains(&format!(
            "address = \"{}\", port = {}",
            web02.address,
            direct.address().port()
        )),
        "{written}"
    );
    validate(scratch.path(), &inventory);
    let parsed: toml::Table = toml::from_str(&written).expect("the inventory is TOML");
    let known_hosts = Path::new(
        parsed["defaults"]["known_hosts"]
            .as_str()
            .expect("known_hosts"),
    );
    let config = ssh_config(scratch.path(), fleet.client_key_path(), known_hosts);

    // The real client, through the proxy and the bastion to web-01: one
    // connection, one login, one tunnel on the bastion.
    let started = Instant::now();
    let output = Command::new("timeout")
        .args(["60", "ssh", "-F"])
        .arg(&config)
        .arg("-J")
        .arg(format!("root@{}", jump.address()))
        .arg("-p")
        .arg(web01.ssh_port.to_string())
        .arg(web01.address.to_string())
        .arg(format!("cat {}/VERSION", web01.dir.display()))
        .output()
        .expect("run ssh -J");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "ssh -J: {}\n{}",
        text(&output.stderr),
        bastion.log_text()
    );
    assert_eq!(text(&output.stdout), "1.0\n");
    assert!(took >= 2 * delay, "{took:?}");
    assert_eq!(jump.accepted(), 1);
    let web01_ssh = SocketAddr::from((web01.address, web01.ssh_port));
    wait_until("the tunnel in the bastion's log", 10 * SECOND, || {
        bastion.tunnelled_to(web01_ssh)
    });
    let through = bastion.counts().since(at_start);
    assert_eq!(
        through,
        BastionCounts {
            connections: 1,
            logins: 1,
            tunnels: 1,
            dropped: 0
        },
        "{}",
        bastion.log_text()
    );

    // The real client to web-02 through its own proxy: the bastion sees
    // nothing of it.
    let output = plain_ssh(
        fleet.client_key_path(),
        known_hosts,
        direct.address().port(),
        web02,
        "echo direct",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "direct\n");
    assert_eq!(direct.accepted(), 1);
    assert_eq!(bastion.counts().since(at_start), through);

    // MaxStartups is OpenSSH's: 40 connections held unauthenticated at
    // once get some dropped (30 % of those past the 10th, rising to all at
    // the 100th), and the counts show it.
    let held: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect_timeout(&bastion.address(), SECOND).ok())
        .collect();
    wait_until("connections dropped past MaxStartups", 10 * SECOND, || {
        bastion.counts().dropped > 0
    });
    drop(held);
    assert!(
        bastion.log_text().contains("past MaxStartups"),
        "{}",
        bastion.log_text()
    );

    let pid = bastion.pid();
    drop(fleet);
    assert!(!pid_alive(pid), "the bastion outlived its fleet");
}
