//! The simulated load balancer: an HTTP frontend that spreads requests over
//! the hosts' apps, active health checks, and an admin listener speaking the
//! part of HAProxy's runtime API that fleetroll uses.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::app::{http_get, read_head, response, send_all};

/// HAProxy's `rise` and `fall`: consecutive checks that change a server's health.
const RISE: u32 = 2;
const FALL: u32 = 2;
/// Bound on one health check (HAProxy's `timeout check`).
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a whole proxied exchange with a backend.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on reading a request head or an admin command.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many responses `rtime` averages over once a server has answered
/// that many (HAProxy's `TIME_STATS_SAMPLES`); a plain mean before.
const RTIME_SAMPLES: u64 = 512;

/// What an operator (or fleetroll) set on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admin {
    Ready,
    Drain,
    Maint,
}

#[derive(Debug)]
struct Server {
    name: String,
    addr: SocketAddr,
    admin: Admin,
    /// The health check's verdict.
    up: bool,
    /// Consecutive checks disagreeing with `up`.
    streak: u32,
    /// Requests in flight, the most ever, and the total.
    scur: u64,
    smax: u64,
    stot: u64,
    /// Responses the server answered, by status class: `hrsp_1xx` to
    /// `hrsp_5xx`, then `hrsp_other`.
    hrsp: [u64; 6],
    /// Responses timed into `rtime`, and its average in ms.
    timed: u64,
    rtime: f64,
}

impl Server {
    fn new(name: &str, addr: SocketAddr) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            admin: Admin::Ready,
            // Like HAProxy, servers start UP and the checks take them
            // down if need be: the apps are serving at start.
            up: true,
            streak: 0,
            scur: 0,
            smax: 0,
            stot: 0,
            hrsp: [0; 6],
            timed: 0,
            rtime: 0.0,
        }
    }

    /// Counts one response of the server, as HAProxy does: by the class of
    /// its status (`hrsp_other` for a status outside 100-599), and into
    /// `rtime`, a plain mean until `RTIME_SAMPLES` responses, then a
    /// sliding average over that many.
    fn record_response(&mut self, status: Option<u16>, elapsed_ms: u64) {
        let class = match status {
            Some(code @ 100..=599) => usize::from(code / 100 - 1),
            _ => 5,
        };
        self.hrsp[class] += 1;
        self.timed += 1;
        let samples = self.timed.min(RTIME_SAMPLES) as f64;
        self.rtime += (elapsed_ms as f64 - self.rtime) / samples;
    }

    /// The `status` column of `show stat`, as HAProxy words it.
    fn status(&self) -> &'static str {
        match (self.admin, self.up) {
            (Admin::Maint, _) => "MAINT",
            (Admin::Drain, true) => "DRAIN",
            (_, true) => "UP",
            (_, false) => "DOWN",
        }
    }
}

/// The backend: its servers and the round-robin cursor.
#[derive(Debug)]
struct Pool {
    backend: String,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    servers: Vec<Server>,
    next: usize,
}

impl Pool {
    fn new(backend: &str, servers: &[(String, SocketAddr)]) -> Self {
        let servers = servers
            .iter()
            .map(|(name, addr)| Server::new(name, *addr))
            .collect();
        Self {
            backend: backend.to_owned(),
            state: Mutex::new(PoolState { servers, next: 0 }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // No code panics under this lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next ready and healthy server, round robin, counted in flight
    /// under the same lock: a drain that lands after this sees the request.
    fn pick(&self) -> Option<(usize, String, SocketAddr)> {
        let mut state = self.lock();
        let count = state.servers.len();
        let start = state.next;
        let index = (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&i| state.servers[i].admin == Admin::Ready && state.servers[i].up)?;
        state.next = (index + 1) % count;
        let server = &mut state.servers[index];
        server.scur += 1;
        server.smax = server.smax.max(server.scur);
        server.stot += 1;
        Some((index, server.name.clone(), server.addr))
    }

    fn release(&self, index: usize) {
        let server = &mut self.lock().servers[index];
        server.scur = server.scur.saturating_sub(1);
    }

    /// A response the server gave (not one the balancer made up because
    /// the server gave none).
    fn record_response(&self, index: usize, status: Option<u16>, elapsed_ms: u64) {
        self.lock().servers[index].record_response(status, elapsed_ms);
    }

    /// One health check result; `RISE`/`FALL` in a row flip the verdict.
    fn record_check(&self, index: usize, ok: bool) {
        let server = &mut self.lock().servers[index];
        if ok == server.up {
            server.streak = 0;
            return;
        }
        server.streak += 1;
        if server.streak >= if ok { RISE } else { FALL } {
            server.up = ok;
            server.streak = 0;
        }
    }

    /// Runs one runtime API command and returns the whole reply.
    fn command(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["set", "server", target, "state", state] => self.set_state(target, state),
            ["show", "stat", backend, ..] => self.show_stat(backend),
            ["show", "servers", "state", backend] => self.show_servers_state(backend),
            _ => "Unknown command.\n".to_owned(),
        }
    }

    fn set_state(&self, target: &str, state: &str) -> String {
        let admin = match state {
            "ready" => Admin::Ready,
            "drain" => Admin::Drain,
            "maint" => Admin::Maint,
            _ => {
                return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n"
                    .to_owned();
            }
        };
        let Some((backend, name)) = target.split_once('/') else {
            return "Require 'backend/server'.\n".to_owned();
        };
        if backend != self.backend {
            return "No such backend.\n".to_owned();
        }
        match self.lock().servers.iter_mut().find(|s| s.name == name) {
            Some(server) => {
                server.admin = admin;
                String::new()
            }
            None => "No such server.\n".to_owned(),
        }
    }

    fn show_stat(&self, backend: &str) -> String {
        if backend != self.backend && backend != "-1" {
            return "No such backend.\n".to_owned();
        }
        let mut out = String::from(
            "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,\
             hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,rtime\n",
        );
        for s in &self.lock().servers {
            let [h1, h2, h3, h4, h5, other] = s.hrsp;
            out.push_str(&format!(
                "{},{},0,0,{},{},,{},0,0,,0,,0,0,0,0,{},1,{h1},{h2},{h3},{h4},{h5},{other},{}\n",
                self.backend,
                s.name,
                s.scur,
                s.smax,
                s.stot,
                s.status(),
                // Whole milliseconds, like HAProxy's.
                s.rtime.round() as u64
            ));
        }
        // HAProxy ends the CSV with a blank line.
        out.push('\n');
        out
    }

    fn show_servers_state(&self, backend: &str) -> String {
        if backend != self.backend {
            return "Can't find backend.\n".to_owned();
        }
        let mut out = String::from(
            "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n",
        );
        for (index, s) in self.lock().servers.iter().enumerate() {
            // srv_op_state: 2 running, 0 stopped. srv_admin_state bits:
            // 0x01 forced maintenance, 0x08 forced drain.
            let op = if s.up { 2 } else { 0 };
            let admin = match s.admin {
                Admin::Ready => 0,
                Admin::Maint => 1,
                Admin::Drain => 8,
            };
            out.push_str(&format!(
                "1 {} {} {} {} {op} {admin} 1\n",
                self.backend,
                index + 1,
                s.name,
                s.addr.ip()
            ));
        }
        out.push('\n');
        out
    }
}

/// Keeps a request counted in `scur` until it is done, however it ends.
struct InFlight<'a> {
    pool: &'a Pool,
    index: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

/// The running balancer. Stops when dropped.
#[derive(Debug)]
pub struct Balancer {
    frontend: SocketAddr,
    admin: SocketAddr,
    /// Accept loops and health checkers; dropping the set aborts them.
    _tasks: JoinSet<()>,
}

impl Balancer {
    /// Balances over `servers` (name, app address) in backend `backend`,
    /// checking each one's `/healthz` every `check_interval`.
    pub async fn start(
        backend: &str,
        servers: &[(String, SocketAddr)],
        check_interval: Duration,
    ) -> io::Result<Self> {
        let pool = Arc::new(Pool::new(backend, servers));
        let frontend_listener = TcpListener::bind("127.0.0.1:0").await?;
        let admin_listener = TcpListener::bind("127.0.0.1:0").await?;
        let frontend = frontend_listener.local_addr()?;
        let admin = admin_listener.local_addr()?;
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(frontend_listener, Arc::clone(&pool), proxy));
        tasks.spawn(accept_loop(
            admin_listener,
            Arc::clone(&pool),
            admin_session,
        ));
        for (index, (_, addr)) in servers.iter().enumerate() {
            tasks.spawn(health_checks(
                Arc::clone(&pool),
                index,
                *addr,
                check_interval,
            ));
        }
        Ok(Self {
            frontend,
            admin,
            _tasks: tasks,
        })
    }

    /// Where clients send their requests.
    pub fn frontend_addr(&self) -> SocketAddr {
        self.frontend
    }

    /// Where the runtime API listens (HAProxy's `stats socket ipv4@…`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, pool: Arc<Pool>, serve: F)
where
    F: Fn(TcpStream, Arc<Pool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(serve(stream, Arc::clone(&pool)));
    }
}

async fn proxy(mut client: TcpStream, pool: Arc<Pool>) {
    let _ = client.set_nodelay(true);
    let Ok(Ok(head)) = tokio::time::timeout(CLIENT_TIMEOUT, read_head(&mut client)).await else {
        return;
    };
    let Some((index, name, addr)) = pool.pick() else {
        let reply = response("503 Service Unavailable", "no server available\n");
        return send_all(&mut client, reply.as_bytes()).await;
    };
    let _in_flight = InFlight { pool: &pool, index };
    let exchange = async {
        let mut backend = TcpStream::connect(addr).await?;
        let _ = backend.set_nodelay(true);
        // HAProxy's `rtime` runs from the request sent, connect excluded.
        let sent = tokio::time::Instant::now();
        backend.write_all(&head).await?;
        let mut reply = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut backend, &mut reply).await?;
        if reply.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed without a reply",
            ));
        }
        let elapsed_ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok((reply, elapsed_ms))
    };
    match tokio::time::timeout(BACKEND_TIMEOUT, exchange).await {
        Ok(Ok((reply, elapsed_ms))) => {
            pool.record_response(index, response_status(&reply), elapsed_ms);
            send_all(&mut client, &reply).await;
        }
        Ok(Err(err)) => {
            let reply = response("502 Bad Gateway", &format!("server {name}: {err}\n"));
            send_all(&mut client, reply.as_bytes()).await;
        }
        Err(_) => {
            let reply = response("504 Gateway Timeout", &format!("server {name}: no reply\n"));
            send_all(&mut client, reply.as_bytes()).await;
        }
    }
}

/// The status code of a response's status line, if it has one.
fn response_status(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

/// One runtime API command per connection, as HAProxy's non-interactive mode.
async fn admin_session(stream: TcpStream, pool: Arc<Pool>) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    let read = stream.read_line(&mut line);
    if !matches!(tokio::time::timeout(CLIENT_TIMEOUT, read).await, Ok(Ok(_))) {
        return;
    }
    let reply = pool.command(line.trim());
    send_all(stream.get_mut(), reply.as_bytes()).await;
}

async fn health_checks(pool: Arc<Pool>, index: usize, addr: SocketAddr, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ok = matches!(
            http_get(addr, "/healthz", CHECK_TIMEOUT).await,
            Ok((200, _))
        );
        pool.record_check(index, ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::balancer::AdminState;
    use crate::transport::haproxy::{parse_admin_state, parse_stat};

    fn pool() -> Pool {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Pool::new(
            "app",
            &[
                ("web-01".into(), addr),
                ("web-02".into(), addr),
                ("web-03".into(), addr),
            ],
        )
    }

    #[test]
    fn fleetroll_reads_the_runtime_api_replies() {
        let pool = pool();
        assert_eq!(pool.command("set server app/web-02 state drain"), "");
        assert_eq!(pool.command("set server app/web-03 state maint"), "");
        assert_eq!(
            pool.command("set server app/web-09 state drain"),
            "No such server.\n"
        );
        assert!(
            pool.command("set server app/web-01 state up")
                .contains("expects")
        );
        let picked = pool.pick().unwrap();
        assert_eq!(picked.1, "web-01");

        let rows = parse_stat(&pool.command("show stat app 4 -1"));
        let status: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.server.as_str(), r.status.as_str(), r.sessions))
            .collect();
        assert_eq!(
            status,
            [
                ("web-01", "UP", 1),
                ("web-02", "DRAIN", 0),
                ("web-03", "MAINT", 0)
            ]
        );

        let state = pool.command("show servers state app");
        assert_eq!(parse_admin_state(&state, "web-01"), Some(AdminState::Ready));
        assert_eq!(parse_admin_state(&state, "web-02"), Some(AdminState::Drain));
        assert_eq!(parse_admin_state(&state, "web-03"), Some(AdminState::Maint));
        assert_eq!(parse_admin_state(&state, "web-04"), None);
        assert_eq!(pool.command("help"), "Unknown command.\n");
    }

    #[test]
    fn round_robin_skips_drained_and_down_servers() {
        let pool = pool();
        let names: Vec<String> = (0..4).map(|_| pool.pick().unwrap().1).collect();
        assert_eq!(names, ["web-01", "web-02", "web-03", "web-01"]);
        pool.command("set server app/web-02 state drain");
        // Down only after FALL failed checks in a row.
        pool.record_check(2, false);
        assert_eq!(pool.pick().unwrap().1, "web-03");
        pool.record_check(2, false);
        assert_eq!(pool.pick().unwrap().1, "web-01");
        assert_eq!(pool.pick().unwrap().1, "web-01");
        assert!(
            pool.command("show stat app 4 -1")
                .contains("app,web-03,0,0,2,2,,2,0,0,,0,,0,0,0,0,DOWN,1,0,0,0,0,0,0,0\n")
        );
        pool.command("set server app/web-01 state maint");
        assert_eq!(pool.pick(), None);
        pool.record_check(2, true);
        pool.record_check(2, true);
        assert_eq!(pool.pick().unwrap().1, "web-03");
        pool.release(2);
    }

    #[test]
    fn show_stat_counts_responses_by_class_with_their_mean_time() {
        let pool = pool();
        for (status, ms) in [(Some(200), 4), (Some(500), 10), (Some(404), 1), (None, 1)] {
            pool.record_response(0, status, ms);
        }
        pool.record_response(1, Some(302), 7);
        let stat = pool.command("show stat app 4 -1");
        assert!(
            stat.contains("app,web-01,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,0,1,0,1,1,1,4\n"),
            "{stat}"
        );
        let rows = parse_stat(&stat);
        let counters: Vec<(&str, u64, u64, Option<u64>)> = rows
            .iter()
            .map(|r| {
                let c = r.counters;
                (r.server.as_str(), c.responses, c.errors, c.mean_ms)
            })
            .collect();
        assert_eq!(
            counters,
            [
                ("web-01", 4, 1, Some(4)),
                ("web-02", 1, 0, Some(7)),
                ("web-03", 0, 0, Some(0)),
            ]
        );
    }

    /// A plain mean over the first 512 responses, then HAProxy's sliding
    /// average: `avg += (v - avg) / 512` per response.
    #[test]
    fn rtime_slides_over_512_responses_once_it_has_them() {
        let pool = pool();
        let rtime = |pool: &Pool| {
            parse_stat(&pool.command("show stat app 4 -1"))[0]
                .counters
                .mean_ms
        };
        for ms in [10, 30].repeat(128) {
            pool.record_response(0, Some(200), ms);
        }
        assert_eq!(rtime(&pool), Some(20), "a plain mean of 256 responses");
        for _ in 0..256 {
            pool.record_response(0, Some(200), 40);
        }
        assert_eq!(rtime(&pool), Some(30), "a plain mean of 512 responses");
        let mut expected = 30.0_f64;
        for _ in 0..512 {
            pool.record_response(0, Some(200), 80);
            expected += (80.0 - expected) / 512.0;
        }
        // 80 - 50 (511/512)^512: about 61.6, not the plain mean's 55.
        assert_eq!(expected.round(), 62.0);
        assert_eq!(rtime(&pool), Some(62));
    }

    /// A request the balancer answers itself, because the server gave no
    /// answer, is no response of the server's: HAProxy's `hrsp_*` count
    /// what servers said.
    #[tokio::test]
    async fn a_request_no_server_answered_is_not_a_server_response() {
        let nobody = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        // Checks far apart: the server stays UP (it starts so) meanwhile.
        let balancer = Balancer::start(
            "app",
            &[("web-01".into(), nobody)],
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
        let reply = http_get(balancer.frontend_addr(), "/", Duration::from_secs(5)).await;
        assert_eq!(reply.map(|r| r.0), Ok(502));
        let mut admin = TcpStream::connect(balancer.admin_addr()).await.unwrap();
        admin.write_all(b"show stat app 4 -1\n").await.unwrap();
        let mut stat = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut admin, &mut stat)
            .await
            .unwrap();
        let rows = parse_stat(&stat);
        assert_eq!(rows.len(), 1, "{stat}");
        assert!(
            stat.contains(",web-01,0,0,0,1,,1,"),
            "sent to web-01: {stat}"
        );
        assert_eq!(rows[0].counters.responses, 0, "{stat}");
        assert_eq!(rows[0].counters.errors, 0, "{stat}");
    }
}
