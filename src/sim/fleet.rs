//! The whole simulated fleet: hosts, balancer, and the inventory and playbook
//! that point fleetroll at them; in the caller's runtime or on a thread of
//! its own.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use tokio::sync::oneshot;

use super::app::AppServer;
use super::balancer::Balancer;
use super::host::SimHost;
use super::ssh_server::{SshServer, random_ed25519};
use super::traffic::{Traffic, TrafficReport};
use crate::transport::ssh::known_hosts;

/// The balancer's backend name, in the inventory and the runtime API.
const BACKEND: &str = "app";
/// Clients sending traffic in a background fleet.
const TRAFFIC_CONCURRENCY: usize = 4;
/// The share, in percent, of its real requests that the bad release
/// (`SimSpec::bad_release`) fails.
pub const BAD_RELEASE_FAIL_PERCENT: u64 = 30;

/// The shape of a simulated fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSpec {
    pub zones: Vec<String>,
    pub hosts_per_zone: usize,
    /// The version every app starts with.
    pub version: String,
    /// How long `deploy` keeps an app stopped.
    pub step_time: Duration,
    /// How long a deployed app answers 503 before serving.
    pub warmup: Duration,
    /// The balancer's health check interval.
    pub check_interval: Duration,
    /// The playbook rolls out a bad release: its health check passes while
    /// it fails `BAD_RELEASE_FAIL_PERCENT`% of its real requests; the
    /// playbook's `[watch]` is there to catch it.
    pub bad_release: bool,
}

impl SimSpec {
    /// What `fleetroll demo` runs: 3 zones of 4 hosts.
    pub fn demo() -> Self {
        Self {
            zones: ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
                .map(String::from)
                .to_vec(),
            hosts_per_zone: 4,
            version: "1.0".to_owned(),
            step_time: Duration::from_secs(1),
            warmup: Duration::from_millis(1500),
            check_interval: Duration::from_millis(100),
            bad_release: false,
        }
    }
}

/// One host as the outside sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimHostInfo {
    pub name: String,
    pub zone: String,
    pub ssh_port: u16,
    pub app_port: u16,
    pub version: String,
}

#[derive(Debug)]
struct Node {
    host: SimHost,
    app: AppServer,
    ssh: SshServer,
}

/// A running simulated fleet and the directory holding its files. Stops,
/// and removes the directory, when dropped.
#[derive(Debug)]
pub struct SimFleet {
    dir: PathBuf,
    nodes: Vec<Node>,
    balancer: Balancer,
}

impl SimFleet {
    /// Starts every host and the balancer on the current runtime, and
    /// writes the files fleetroll needs to reach them.
    pub async fn start(spec: SimSpec) -> io::Result<SimFleet> {
        let client_key = random_ed25519()?;
        let mut nodes = Vec::new();
        for (z, zone) in spec.zones.iter().enumerate() {
            for i in 0..spec.hosts_per_zone {
                let name = format!("web-{:02}", z * spec.hosts_per_zone + i + 1);
                let host = SimHost::new(&name, zone, &spec.version, spec.step_time, spec.warmup);
                let app = AppServer::start(host.clone()).await?;
                let ssh = SshServer::start(host.clone(), client_key.public_key().clone()).await?;
                nodes.push(Node { host, app, ssh });
            }
        }
        let servers: Vec<(String, SocketAddr)> = nodes
            .iter()
            .map(|n| (n.host.name().to_owned(), n.app.addr()))
            .collect();
        let balancer = Balancer::start(BACKEND, &servers, spec.check_interval).await?;
        let fleet = SimFleet {
            dir: fresh_dir()?,
            nodes,
            balancer,
        };
        let key = client_key
            .to_openssh(LineEnding::LF)
            .map_err(io::Error::other)?;
        write_file(&fleet.dir.join("id_ed25519"), key.as_bytes(), 0o600)?;
        write_file(
            &fleet.known_hosts_path(),
            fleet.known_hosts()?.as_bytes(),
            0o644,
        )?;
        write_file(&fleet.inventory_path(), fleet.inventory().as_bytes(), 0o644)?;
        write_file(
            &fleet.playbook_path(),
            playbook(spec.bad_release).as_bytes(),
            0o644,
        )?;
        Ok(fleet)
    }

    /// Starts a fleet with live traffic on a thread with its own runtime, so
    /// that the caller's run cannot starve it (nor it the run).
    pub fn spawn_background(spec: SimSpec) -> io::Result<BackgroundFleet> {
        BackgroundFleet::spawn(spec)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }

    pub fn playbook_path(&self) -> PathBuf {
        self.dir.join("playbook.toml")
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn frontend_addr(&self) -> SocketAddr {
        self.balancer.frontend_addr()
    }

    /// The balancer's runtime API.
    pub fn admin_addr(&self) -> SocketAddr {
        self.balancer.admin_addr()
    }

    pub fn hosts(&self) -> Vec<SimHostInfo> {
        self.nodes
            .iter()
            .map(|n| SimHostInfo {
                name: n.host.name().to_owned(),
                zone: n.host.zone().to_owned(),
                ssh_port: n.ssh.addr().port(),
                app_port: n.app.addr().port(),
                version: n.host.version(),
            })
            .collect()
    }

    /// The simulated VM behind a host name.
    pub fn host(&self, name: &str) -> Option<&SimHost> {
        self.nodes
            .iter()
            .map(|n| &n.host)
            .find(|h| h.name() == name)
    }

    fn known_hosts(&self) -> io::Result<String> {
        let mut text = String::new();
        for node in &self.nodes {
            let line =
                known_hosts::format_entry("127.0.0.1", node.ssh.addr().port(), node.ssh.host_key())
                    .ok_or_else(|| io::Error::other("cannot encode a host key"))?;
            text.push_str(&line);
            text.push('\n');
        }
        Ok(text)
    }

    fn inventory(&self) -> String {
        let mut text = format!(
            "# A simulated fleet started in-process by `fleetroll demo`: each host is a\n\
             # real SSH server and a web app on 127.0.0.1, behind a drain-aware load\n\
             # balancer speaking HAProxy's runtime API. Paths are relative to this file.\n\
             \n\
             [defaults]\n\
             user = \"demo\"\n\
             identity_file = \"id_ed25519\"   # a key generated for this demo\n\
             known_hosts = \"known_hosts\"     # the simulated hosts' keys, pinned\n\
             balancer = \"lb\"\n\
             \n\
             [balancers.lb]\n\
             kind = \"haproxy\"\n\
             address = \"{}\"   # the runtime API\n\
             backend = \"{BACKEND}\"                # server names are the host names\n",
            self.admin_addr()
        );
        let mut zone = "";
        for node in &self.nodes {
            if node.host.zone() != zone {
                if !zone.is_empty() {
                    text.push_str("]\n");
                }
                zone = node.host.zone();
                let _ = write!(text, "\n[zones.{zone}]\nhosts = [\n");
            }
            let _ = writeln!(
                text,
                "  {{ name = \"{}\", address = \"127.0.0.1\", port = {}, vars = {{ app_port = \"{}\" }} }},",
                node.host.name(),
                node.ssh.addr().port(),
                node.app.addr().port()
            );
        }
        if !zone.is_empty() {
            text.push_str("]\n");
        }
        text
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        // Best effort: a leftover temporary directory is harmless.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The demo's playbook: the good release, or with `bad_release` the bad one
/// and a `[watch]` that judges each host on its real traffic.
fn playbook(bad_release: bool) -> String {
    if !bad_release {
        return format!(
            "{GOOD_INTRO}name = \"demo-upgrade\"\n{PLAYBOOK_BODY}{GOOD_DEPLOY}{PLAYBOOK_CHECKS}"
        );
    }
    let percent = BAD_RELEASE_FAIL_PERCENT;
    format!(
        "# Rolls out 2.0, a bad release: its health check passes, but it answers {percent}%\n\
         # of its real requests with HTTP 500. A canary host first, then a quarter of\n\
         # the fleet at a time, one zone at a time; [watch] judges each returned host\n\
         # on its real traffic, from the balancer's counters, before the run goes on.\n\
         name = \"demo-bad-release\"\n\
         {PLAYBOOK_BODY}\
         run = \"deploy --fail {percent}% {{vars.version}}\"   # --fail {percent}%: the simulated release's defect\n\
         {PLAYBOOK_CHECKS}{WATCH}"
    )
}

const GOOD_INTRO: &str = "\
# Upgrades the demo fleet's app to 2.0: a canary host first, then a quarter
# of the fleet at a time, one zone at a time. Each host leaves the balancer
# before it is touched and returns only once its probes pass.
";

const PLAYBOOK_BODY: &str = r#"
[vars]
version = "2.0"

[strategy]
batch = [1, "25%"]          # a canary of 1, then 25% of the fleet per batch
zones = "one-at-a-time"     # a batch never spans two zones
max_unavailable = "25%"     # never more than a quarter out of service
max_failed = 0              # halt on the first failure

[drain]
timeout = "10s"             # wait this long for in-flight requests to finish
settle = "200ms"

[[steps]]
name = "deploy"
"#;

const GOOD_DEPLOY: &str = r#"run = "deploy {vars.version}"   # the simulated hosts' shell knows `deploy`
"#;

const PLAYBOOK_CHECKS: &str = r#"timeout = "30s"
estimate = "1s"

[health]
interval = "200ms"
healthy_after = 3           # passing rounds in a row before traffic returns
timeout = "20s"

[[probes]]
http = "http://{address}:{vars.app_port}/healthz"
expect_body = "{vars.version}"  # the new version must be the one answering
"#;

/// The demo's traffic gives a host in service about 15 responses a second.
const WATCH: &str = r#"
[watch]
for = "5s"                  # watch each returned host's real traffic this long
min_requests = 20           # fewer responses: no verdict (the demo's traffic gives ~75)
# Regressed when its share of 5xx is above max_error_ratio (1%) and above
# baseline_factor (2) times that of the hosts the run has not touched.
"#;

/// A new private directory for this fleet's files.
fn fresh_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("fleetroll-demo-{}-{n}", std::process::id()));
    // Left over by an earlier process with the same pid: not ours to keep.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)
}

/// A fleet with live traffic, running on its own thread and runtime.
#[derive(Debug)]
pub struct BackgroundFleet {
    dir: PathBuf,
    inventory_path: PathBuf,
    playbook_path: PathBuf,
    frontend_addr: SocketAddr,
    admin_addr: SocketAddr,
    hosts: Vec<SimHostInfo>,
    /// The simulated VMs themselves, shared with the fleet's thread.
    sim_hosts: Vec<SimHost>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<TrafficReport>>,
}

/// What the fleet's thread sends back once it is up.
struct Started {
    dir: PathBuf,
    inventory_path: PathBuf,
    playbook_path: PathBuf,
    frontend_addr: SocketAddr,
    admin_addr: SocketAddr,
    hosts: Vec<SimHostInfo>,
    sim_hosts: Vec<SimHost>,
}

impl BackgroundFleet {
    fn spawn(spec: SimSpec) -> io::Result<Self> {
        let (started_tx, started_rx) = std::sync::mpsc::channel::<io::Result<Started>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fleetroll-sim".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fleetroll-sim")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = started_tx.send(Err(err));
                        return TrafficReport::default();
                    }
                };
                let report = runtime.block_on(async move {
                    let fleet = match SimFleet::start(spec).await {
                        Ok(fleet) => fleet,
                        Err(err) => {
                            let _ = started_tx.send(Err(err));
                            return TrafficReport::default();
                        }
                    };
                    let traffic = Traffic::start(fleet.frontend_addr(), TRAFFIC_CONCURRENCY);
                    let _ = started_tx.send(Ok(Started {
                        dir: fleet.dir().to_owned(),
                        inventory_path: fleet.inventory_path(),
                        playbook_path: fleet.playbook_path(),
                        frontend_addr: fleet.frontend_addr(),
                        admin_addr: fleet.admin_addr(),
                        hosts: fleet.hosts(),
                        sim_hosts: fleet.nodes.iter().map(|n| n.host.clone()).collect(),
                    }));
                    // A dropped handle means stop too.
                    let _ = stop_rx.await;
                    let report = traffic.stop().await;
                    drop(fleet);
                    report
                });
                // SSH sessions whose client has not left yet are cut here.
                runtime.shutdown_timeout(Duration::from_secs(1));
                report
            })?;
        match started_rx.recv() {
            Ok(Ok(started)) => Ok(Self {
                dir: started.dir,
                inventory_path: started.inventory_path,
                playbook_path: started.playbook_path,
                frontend_addr: started.frontend_addr,
                admin_addr: started.admin_addr,
                hosts: started.hosts,
                sim_hosts: started.sim_hosts,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "the simulated fleet's thread died while starting",
                ))
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn inventory_path(&self) -> &Path {
        &self.inventory_path
    }

    pub fn playbook_path(&self) -> &Path {
        &self.playbook_path
    }

    pub fn frontend_addr(&self) -> SocketAddr {
        self.frontend_addr
    }

    /// The balancer's runtime API.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The hosts as they were at start (versions included).
    pub fn hosts(&self) -> &[SimHostInfo] {
        &self.hosts
    }

    /// The simulated VM behind a host name, as it is now.
    pub fn host(&self, name: &str) -> Option<&SimHost> {
        self.sim_hosts.iter().find(|h| h.name() == name)
    }

    /// Every host's name and the version it runs now, in inventory order.
    pub fn versions(&self) -> Vec<(String, String)> {
        self.sim_hosts
            .iter()
            .map(|h| (h.name().to_owned(), h.version()))
            .collect()
    }

    /// Stops the traffic and the fleet, and reports what the traffic saw.
    pub fn stop(mut self) -> TrafficReport {
        self.shutdown()
    }

    fn shutdown(&mut self) -> TrafficReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(report)) => report,
            Some(Err(_)) => TrafficReport {
                failed: 1,
                failures: vec!["the simulated fleet's thread panicked".to_owned()],
                ..TrafficReport::default()
            },
            None => TrafficReport::default(),
        }
    }
}

impl Drop for BackgroundFleet {
    fn drop(&mut self) {
        self.shutdown();
    }
}
