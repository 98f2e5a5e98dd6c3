//! Tests of the HAProxy client against a fake runtime API on loopback.

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::*;

#[test]
fn parses_show_stat_by_column_name() {
    let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
               app,web-01,0,0,3,5,,10,0,0,,0,,0,0,0,0,UP,1\n\
               app,web-02,0,0,0,1,,4,0,0,,0,,0,0,0,0,DRAIN,1\n\
               app,web-03,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1\n\
               app,BACKEND,0,0,3,5,,14,0,0,0,0,,0,0,0,0,UP,2\n\n";
    let rows = parse_stat(csv);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        StatRow {
            server: "web-01".into(),
            status: "UP".into(),
            sessions: 3,
            counters: ServerCounters::default(),
        }
    );
    assert_eq!(rows[2].status, "MAINT");
}

#[test]
fn a_servers_responses_are_counted_by_class() {
    let csv = "# pxname,svname,scur,status,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,rtime\n\
               app,web-01,0,UP,0,700,10,20,270,0,42\n\
               app,web-02,0,UP,,,,,,,\n";
    let rows = parse_stat(csv);
    assert_eq!(
        rows[0].counters,
        ServerCounters {
            responses: 1000,
            errors: 270,
            mean_ms: Some(42),
            mean_spans: Some(512),
        }
    );
    // A TCP-mode server counts no responses.
    assert_eq!(rows[1].counters.responses, 0);
    assert_eq!(rows[1].counters.mean_ms, None);
}

#[test]
fn admin_state_comes_from_the_server_state_bits() {
    let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n\
                3 app 1 web-01 127.0.1.2 2 0 1\n\
                3 app 2 web-02 127.0.1.3 0 8 1\n\
                3 app 3 web-03 127.0.1.4 0 1 1\n\
                3 app 4 web-04 127.0.1.5 0 9 1\n";
    assert_eq!(parse_admin_state(text, "web-01"), Some(AdminState::Ready));
    assert_eq!(parse_admin_state(text, "web-02"), Some(AdminState::Drain));
    assert_eq!(parse_admin_state(text, "web-03"), Some(AdminState::Maint));
    assert_eq!(parse_admin_state(text, "web-04"), Some(AdminState::Maint));
    assert_eq!(parse_admin_state(text, "web-09"), None);
    assert_eq!(parse_servers_state("Can't find backend.\n\n"), None);
}

#[test]
fn health_reads_transitions() {
    for (status, up) in [
        ("UP", true),
        ("UP 1/2", true),
        ("DOWN", false),
        ("DOWN 1/2", false),
        ("MAINT", false),
        ("DRAIN", false),
        ("NOLB", true),
    ] {
        assert_eq!(is_up(status), up, "{status}");
    }
}

/// What the fake runtime API saw and holds.
#[derive(Debug, Default)]
struct FakeState {
    /// Server → (admin bits as in `show servers state`, sessions).
    servers: BTreeMap<String, (u32, u64)>,
    commands: Vec<String>,
    open: usize,
    most_open: usize,
    /// Answer every command with only its first half.
    cut_answers: bool,
}

/// A runtime API on loopback that answers like HAProxy: one command
/// per connection, `show stat`, `show servers state` and `set server`
/// over a table of servers (`web-01`.. with 0 sessions, all ready). It
/// counts the connections open at once and records every command.
#[derive(Debug, Clone)]
struct FakeApi {
    address: String,
    state: Arc<StdMutex<FakeState>>,
}

impl FakeApi {
    async fn start(servers: usize) -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeApi {
            address: listener.local_addr().unwrap().to_string(),
            state: Arc::default(),
        };
        for n in 1..=servers {
            fake.lock().servers.insert(format!("web-{n:02}"), (0, 0));
        }
        let server = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let fake = server.clone();
                tokio::spawn(async move { fake.serve(stream).await });
            }
        });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    async fn serve(&self, stream: tokio::net::TcpStream) {
        {
            let mut state = self.lock();
            state.open += 1;
            state.most_open = state.most_open.max(state.open);
        }
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let _ = BufReader::new(read).read_line(&mut line).await;
        // HAProxy takes a moment too; the connection stays open
        // meanwhile, so that connections a client opens together
        // overlap here and are counted together.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut reply = self.answer(line.trim());
        if self.lock().cut_answers {
            reply.truncate(reply.len() / 2);
        }
        let _ = write.write_all(reply.as_bytes()).await;
        self.lock().open -= 1;
    }

    fn answer(&self, command: &str) -> String {
        let mut state = self.lock();
        state.commands.push(command.to_owned());
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["show", "stat", "app", "4", "-1"] => {
                let mut out = String::from("# pxname,svname,qcur,qmax,scur,status\n");
                for (name, (admin, sessions)) in &state.servers {
                    let status = match admin {
                        0 => "UP",
                        8 => "DRAIN",
                        _ => "MAINT",
                    };
                    out.push_str(&format!("app,{name},0,0,{sessions},{status}\n"));
                }
                out + "\n"
            }
            ["show", "servers", "state", "app"] => {
                let mut out = String::from(
                    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n",
                );
                for (id, (name, (admin, _))) in state.servers.iter().enumerate() {
                    out.push_str(&format!("3 app {id} {name} 10.0.0.1 2 {admin}\n"));
                }
                out + "\n"
            }
            ["set", "server", target, "state", admin] => {
                let bits = match *admin {
                    "ready" => 0,
                    "drain" => 8,
                    _ => 1,
                };
                let server = target.strip_prefix("app/").unwrap_or(target);
                match state.servers.get_mut(server) {
                    Some(entry) => {
                        entry.0 = bits;
                        "\n".to_owned()
                    }
                    None => "No such server.\n\n".to_owned(),
                }
            }
            _ => "Unknown command.\n\n".to_owned(),
        }
    }

    fn count(&self, prefix: &str) -> usize {
        let state = self.lock();
        state
            .commands
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    fn set(&self, server: &str, admin: u32, sessions: u64) {
        self.lock()
            .servers
            .insert(server.to_owned(), (admin, sessions));
    }

    fn balancer(&self) -> Haproxy {
        Haproxy::new("lb", HaproxyEndpoint::Address(self.address.clone()), "app")
    }
}

fn host(name: &str) -> Host {
    Host {
        name: name.into(),
        address: "10.0.0.1".into(),
        zone: "a".into(),
        ssh: crate::model::inventory::SshSettings {
            user: "root".into(),
            port: 22,
            ..crate::model::inventory::SshSettings::default()
        },
        balancers: vec!["lb".into()],
        lb_server: name.into(),
        target_id: None,
        vars: Default::default(),
        aws: None,
    }
}

fn target(host: &Host) -> Target<'_> {
    Target { host, shell: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_hosts_polling_together_share_one_read_and_two_connections() {
    let fake = FakeApi::start(60).await;
    let hosts: Vec<Host> = (1..=60).map(|n| host(&format!("web-{n:02}"))).collect();
    for n in 1..=60u64 {
        fake.set(&format!("web-{n:02}"), 0, n);
    }
    fake.set("web-07", 8, 7);
    let lb = Arc::new(fake.balancer());
    let polls = hosts.iter().map(|host| {
        let lb = Arc::clone(&lb);
        let host = host.clone();
        tokio::spawn(async move { lb.status(target(&host)).await })
    });
    let statuses = futures_util::future::join_all(polls).await;
    for (n, status) in (1..=60u64).zip(statuses) {
        let status = status.unwrap().unwrap();
        // Each host gets its own server's row out of the shared read.
        assert_eq!(status.sessions, Some(n), "web-{n:02}");
        let admin = if n == 7 {
            AdminState::Drain
        } else {
            AdminState::Ready
        };
        assert_eq!(status.admin, admin, "web-{n:02}");
    }
    assert!(
        fake.count("show stat") <= 2,
        "{} reads of show stat",
        fake.count("show stat")
    );
    assert!(fake.count("show servers state") <= 2);
    assert_eq!(lb.pool().await.unwrap().map(|p| p.total), Some(60));

    // Commands too: sixty drains at once never hold more than the
    // pool's connections.
    let drains = hosts.iter().map(|host| {
        let lb = Arc::clone(&lb);
        let host = host.clone();
        tokio::spawn(async move { lb.drain(target(&host)).await })
    });
    for drained in futures_util::future::join_all(drains).await {
        drained.unwrap().unwrap();
    }
    assert_eq!(fake.count("set server"), 60);
    assert!(fake.lock().servers.values().all(|(admin, _)| *admin == 8));
    let most_open = fake.lock().most_open;
    assert!(
        (1..=MAX_EXCHANGES).contains(&most_open),
        "{most_open} connections open at once"
    );
}

#[tokio::test]
async fn a_drain_shows_in_the_next_status_and_a_fresh_snapshot_is_reused() {
    let fake = FakeApi::start(2).await;
    let lb = fake.balancer();
    let web01 = host("web-01");
    assert_eq!(
        lb.status(target(&web01)).await.unwrap().admin,
        AdminState::Ready
    );
    lb.status(target(&web01)).await.unwrap();
    assert_eq!(fake.count("show stat"), 1, "the second status is served");

    lb.drain(target(&web01)).await.unwrap();
    let status = lb.status(target(&web01)).await.unwrap();
    assert_eq!(status.admin, AdminState::Drain, "not the stale snapshot");
    assert_eq!(status.up, Some(false));
    assert_eq!(fake.count("show stat"), 2);

    lb.undrain(target(&web01)).await.unwrap();
    let status = lb.status(target(&web01)).await.unwrap();
    assert_eq!(status.admin, AdminState::Ready);
    assert_eq!(status.up, Some(true));
}

#[tokio::test]
async fn lost_drains_are_reapplied_to_ready_servers_only_with_one_warning() {
    let fake = FakeApi::start(4).await;
    let lb = fake.balancer();
    let hosts: Vec<Host> = ["web-01", "web-02", "web-03"]
        .into_iter()
        .map(host)
        .collect();
    // After a reload: web-01 and web-03 came back ready, web-02 kept
    // its drain (say, a server-state file); web-04 is not ours.
    fake.set("web-02", 8, 0);
    let warnings = lb.reassert_drains(&hosts).await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("HAProxy lb lost fleetroll's drain of web-01, web-03 "),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("server-state file"), "{warnings:?}");
    let sets: Vec<String> = fake
        .lock()
        .commands
        .iter()
        .filter(|c| c.starts_with("set server"))
        .cloned()
        .collect();
    assert_eq!(
        sets,
        [
            "set server app/web-01 state drain",
            "set server app/web-03 state drain"
        ]
    );
    assert_eq!(fake.lock().servers["web-04"].0, 0, "web-04 untouched");
    assert_eq!(fake.count("show servers state"), 1, "one read");

    // Nothing lost since: nothing sent, nothing said.
    assert!(lb.reassert_drains(&hosts).await.unwrap().is_empty());
    assert_eq!(fake.count("set server"), 2);
    // And the re-applied drain shows at once.
    assert_eq!(
        lb.status(target(&hosts[0])).await.unwrap().admin,
        AdminState::Drain
    );
}

#[tokio::test]
async fn transient_failures_are_unreachable_and_retryable_a_missing_server_is_not() {
    let web01 = host("web-01");
    let unreachable = |error: BalancerError, what: &str| {
        assert!(
            matches!(error, BalancerError::Unreachable { .. }) && error.retryable(),
            "{what}: {error:?}"
        );
        error.to_string()
    };

    // Connection refused: a port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let lb = Haproxy::new("lb", HaproxyEndpoint::Address(address), "app");
    let message = unreachable(lb.status(target(&web01)).await.unwrap_err(), "refused");
    assert!(message.contains("refused"), "{message}");
    unreachable(lb.drain(target(&web01)).await.unwrap_err(), "refused drain");

    // No socket file (HAProxy restarting).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let lb = Haproxy::new("lb", HaproxyEndpoint::Socket(path.clone()), "app");
    let message = unreachable(lb.status(target(&web01)).await.unwrap_err(), "no file");
    assert!(message.contains("No such file"), "{message}");

    // EAGAIN: a socket whose listen backlog is full, as HAProxy's
    // stats socket is when too many clients connect at once.
    let socket = tokio::net::UnixSocket::new_stream().unwrap();
    socket.bind(&path).unwrap();
    let _listener = socket.listen(0).unwrap();
    let _queued = tokio::net::UnixStream::connect(&path).await.unwrap();
    let message = unreachable(lb.status(target(&web01)).await.unwrap_err(), "EAGAIN");
    assert!(message.contains("os error 11"), "{message}");

    // An answer cut short would lack servers: unreachable, not "no such server".
    let fake = FakeApi::start(3).await;
    fake.lock().cut_answers = true;
    let lb = fake.balancer();
    let message = unreachable(lb.status(target(&web01)).await.unwrap_err(), "cut");
    assert!(message.contains("cut short"), "{message}");

    // HAProxy's "No such server" is final.
    fake.lock().cut_answers = false;
    let stranger = host("web-09");
    let error = lb.drain(target(&stranger)).await.unwrap_err();
    assert!(
        matches!(error, BalancerError::UnknownServer { .. }) && !error.retryable(),
        "{error:?}"
    );
    let error = lb.status(target(&stranger)).await.unwrap_err();
    assert!(
        matches!(error, BalancerError::UnknownServer { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_api_that_never_answers_is_unreachable_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let lb = Haproxy::new("lb", HaproxyEndpoint::Address(address), "app")
        .with_timeout(Duration::from_millis(200));
    let error = lb.status(target(&host("web-01"))).await.unwrap_err();
    assert!(error.retryable(), "{error:?}");
    assert!(
        error.to_string().contains("no answer within 200ms"),
        "{error}"
    );
}

/// A server name with a command separator (from an old journal, say)
/// never reaches the runtime API.
#[tokio::test]
async fn a_command_with_a_separator_is_never_sent() {
    let fake = FakeApi::start(2).await;
    let lb = fake.balancer();
    for server in ["web-01;shutdown sessions server app/web-02", "web-01\nx"] {
        let error = lb.drain(target(&host(server))).await.unwrap_err();
        assert!(matches!(error, BalancerError::Refused { .. }), "{error:?}");
    }
    assert_eq!(fake.count("set server"), 0);
}
