//! The simulated fleet driven through fleetroll's own transports: the files
//! it writes load, its SSH servers talk to the real client, its balancer
//! answers the real HAProxy client and really stops routing to a drained host;
//! and `demo --bad-release`'s rollout, stopped on its canary by `[watch]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::app::http_get;
use super::{SimFleet, SimSpec, Traffic};
use crate::app::rollout::{Kind, Rollout, acquire_lock, fresh_run_id, load_record};
use crate::app::{Exit, RunOptions};
use crate::cli::FileArgs;
use crate::clock::Clock;
use crate::config::load::{LoadOptions, load};
use crate::events::{Outcome, RunOutcome, WatchVerdict};
use crate::exec::watch::{Traffic as WatchTraffic, judge};
use crate::model::amount::Amount;
use crate::model::inventory::{HaproxyEndpoint, Host};
use crate::model::playbook::{StepAction, WatchPolicy};
use crate::state::Store;
use crate::transport::balancer::{AdminState, LoadBalancer, ServerCounters, Target};
use crate::transport::haproxy::{Haproxy, StatRow, parse_admin_state, parse_stat};
use crate::transport::ssh::{SshConnector, SshOptions};
use crate::transport::{Connector, ExitStatus, ShellError};

/// Three hosts in one zone, with short steps so tests stay quick.
fn small() -> SimSpec {
    SimSpec {
        zones: vec!["z1".to_owned()],
        hosts_per_zone: 3,
        version: "1.0".to_owned(),
        step_time: Duration::from_millis(300),
        warmup: Duration::from_millis(300),
        check_interval: Duration::from_millis(50),
        bad_release: false,
    }
}

fn load_hosts(fleet: &SimFleet) -> Vec<Host> {
    let config = load(
        &fleet.inventory_path(),
        &fleet.playbook_path(),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|diagnostics| panic!("the written files must load: {diagnostics:?}"));
    config.inventory.hosts().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_files_load_and_ssh_runs_commands() {
    let fleet = SimFleet::start(small()).await.unwrap();
    let hosts = load_hosts(&fleet);
    let info = fleet.hosts();
    assert_eq!(hosts.len(), 3);
    for (host, info) in hosts.iter().zip(&info) {
        assert_eq!(
            (host.name.as_str(), host.ssh.port),
            (info.name.as_str(), info.ssh_port)
        );
        assert_eq!(host.lb_server, host.name);
        assert_eq!(
            host.vars.get("app_port").map(String::as_str),
            Some(info.app_port.to_string().as_str())
        );
    }

    let connector = SshConnector::new(SshOptions::default(), fleet.dir(), None);
    for host in &hosts {
        let shell = connector.connect(host).await.unwrap();
        // Several commands, each on its own channel of one connection.
        let out = shell.exec("version", Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            (out.status, out.stdout_tail.as_str()),
            (ExitStatus::Code(0), "1.0\n")
        );
        let out = shell
            .exec("true && exit 3", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Code(3));
        let out = shell
            .exec("apt-get install x", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Code(127));
        assert!(
            out.stderr_tail.contains("sim: unknown command"),
            "{}",
            out.stderr_tail
        );
        shell.close().await;
    }

    // Only the generated key gets in.
    let mut stranger = hosts[0].clone();
    let other_key = fleet.dir().join("other_key");
    let key = super::ssh_server::random_ed25519().unwrap();
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    std::fs::write(&other_key, text.as_bytes()).unwrap();
    stranger.ssh.identity_files = vec![other_key];
    let refused = connector.connect(&stranger).await.unwrap_err();
    assert!(matches!(refused, ShellError::Auth { .. }), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_host_is_updated_without_failed_requests() {
    let fleet = SimFleet::start(small()).await.unwrap();
    let hosts = load_hosts(&fleet);
    let web02 = &hosts[1];
    let traffic = Traffic::start(fleet.frontend_addr(), 2);
    let lb = Haproxy::new(
        "lb",
        HaproxyEndpoint::Address(fleet.admin_addr().to_string()),
        "app",
    );
    let target = Target {
        host: web02,
        shell: None,
    };

    let pool = lb.pool().await.unwrap().unwrap();
    assert_eq!((pool.healthy, pool.total), (3, 3));
    lb.drain(target).await.unwrap();
    let status = lb.status(target).await.unwrap();
    assert_eq!(status.admin, AdminState::Drain);
    // In-flight requests finish quickly: the drain empties.
    let mut sessions = status.sessions;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sessions != Some(0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        sessions = lb.status(target).await.unwrap().sessions;
    }
    assert_eq!(sessions, Some(0));

    // Deploy while drained: the app is down for a while, which traffic
    // must not notice.
    let connector = SshConnector::new(SshOptions::default(), fleet.dir(), None);
    let shell = connector.connect(web02).await.unwrap();
    let out = shell
        .exec("deploy 2.0 && version", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(0), "{}", out.stderr_tail);
    assert!(out.stdout_tail.ends_with("2.0\n"), "{}", out.stdout_tail);
    shell.close().await;
    for _ in 0..10 {
        assert_eq!(
            http_get(fleet.frontend_addr(), "/", Duration::from_secs(5)).await,
            Ok((200, "1.0".to_owned())),
            "a drained host must get no traffic"
        );
    }
    assert_eq!(
        fleet.host("web-02").map(|h| h.version()).as_deref(),
        Some("2.0")
    );

    lb.undrain(target).await.unwrap();
    assert_eq!(lb.status(target).await.unwrap().admin, AdminState::Ready);
    // Warm-up plus two passing health checks; bounded generously, since a
    // loaded machine (a parallel build, CI) slows every step of it.
    let mut served = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let reply = http_get(fleet.frontend_addr(), "/", Duration::from_secs(5)).await;
        if reply == Ok((200, "2.0".to_owned())) {
            served = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        served.is_some(),
        "web-02 must serve 2.0 once back in the pool"
    );

    let report = traffic.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.ok > 0);
    assert!(
        report.by_version.contains_key("1.0"),
        "{:?}",
        report.by_version
    );
}

#[test]
fn a_background_fleet_serves_traffic_and_cleans_up() {
    let fleet = SimFleet::spawn_background(small()).unwrap();
    let dir = fleet.dir().to_owned();
    for file in [
        "inventory.toml",
        "playbook.toml",
        "id_ed25519",
        "known_hosts",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    assert_eq!(fleet.inventory_path(), dir.join("inventory.toml"));
    assert_eq!(fleet.hosts().len(), 3);
    std::thread::sleep(Duration::from_millis(300));
    let report = fleet.stop();
    assert!(report.ok > 0);
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(
        !dir.exists(),
        "the fleet's directory is removed when it stops"
    );
}

/// The small fleet, rolling the bad release.
fn small_bad() -> SimSpec {
    SimSpec {
        bad_release: true,
        ..small()
    }
}

/// One reading of the balancer's per-server counters by fleetroll's own
/// HAProxy client; a fresh client, so no reading is an earlier one's
/// snapshot.
async fn counters(fleet: &SimFleet) -> HashMap<String, ServerCounters> {
    let lb = Haproxy::new(
        "lb",
        HaproxyEndpoint::Address(fleet.admin_addr().to_string()),
        "app",
    );
    lb.counters()
        .await
        .unwrap()
        .expect("HAProxy keeps counters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_release_playbook_watches_and_halts_on_the_first_failure() {
    let fleet = SimFleet::start(small_bad()).await.unwrap();
    let config = load(
        &fleet.inventory_path(),
        &fleet.playbook_path(),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|diagnostics| panic!("the written files must load: {diagnostics:?}"));
    let playbook = &config.playbook;
    assert_eq!(
        playbook.watch,
        Some(WatchPolicy {
            duration: Duration::from_secs(5),
            min_requests: 20,
            ..WatchPolicy::default()
        })
    );
    assert_eq!(playbook.strategy.max_failed, Amount::Count(0));
    assert_eq!(playbook.steps.len(), 1);
    assert_eq!(
        run_of(&playbook.steps[0].action).as_deref(),
        Some("deploy --fail 30% {vars.version}")
    );
    // The good release's playbook has no [watch], and a good deploy.
    let good = SimFleet::start(small()).await.unwrap();
    let config = load(
        &good.inventory_path(),
        &good.playbook_path(),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|diagnostics| panic!("the written files must load: {diagnostics:?}"));
    assert_eq!(config.playbook.watch, None);
    assert_eq!(
        run_of(&config.playbook.steps[0].action).as_deref(),
        Some("deploy {vars.version}")
    );
}

fn run_of(action: &StepAction) -> Option<String> {
    match action {
        StepAction::Run(template) => Some(template.to_string()),
        _ => None,
    }
}

/// What `[watch]` reads: the balancer counts what each app answered,
/// fleetroll's HAProxy client reads it back, and the bad release's 500s
/// make its host regress against the untouched ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_counts_the_bad_releases_500s_and_watch_judges_them() {
    let fleet = SimFleet::start(small_bad()).await.unwrap();
    let web01 = fleet.host("web-01").unwrap();
    let (code, out, err) = web01.exec("deploy --fail 30% 2.0").await;
    assert_eq!(code, 0, "{out}{err}");
    // Warm-up, then RISE passing checks: wait for the balancer to route
    // to web-01 again, as the run does before it watches.
    let lb = Haproxy::new(
        "lb",
        HaproxyEndpoint::Address(fleet.admin_addr().to_string()),
        "app",
    );
    let hosts = load_hosts(&fleet);
    let target = Target {
        host: &hosts[0],
        shell: None,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while lb.status(target).await.unwrap().up != Some(true)
        || lb.pool().await.unwrap().map(|p| p.healthy) != Some(3)
    {
        assert!(std::time::Instant::now() < deadline, "web-01 never UP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its health check passes all along.
    let app = SocketAddr::from(([127, 0, 0, 1], fleet.hosts()[0].app_port));
    assert_eq!(
        http_get(app, "/healthz", Duration::from_secs(5)).await,
        Ok((200, "2.0".to_owned()))
    );

    let before = counters(&fleet).await;
    // One client, one request at a time: round robin gives each of the
    // three hosts 30, and the bad release fails 9 of its 30.
    let mut statuses = HashMap::<u16, u64>::new();
    for _ in 0..90 {
        let (status, _) = http_get(fleet.frontend_addr(), "/", Duration::from_secs(5))
            .await
            .unwrap();
        *statuses.entry(status).or_default() += 1;
    }
    assert_eq!(statuses, HashMap::from([(200, 81), (500, 9)]));
    let after = counters(&fleet).await;

    let traffic = |name: &str| WatchTraffic::between(&before[name], &after[name]);
    let host = traffic("web-01");
    assert_eq!((host.requests, host.errors), (30, 9), "{host:?}");
    assert!(host.mean_ms.is_some(), "rtime is read");
    let baseline = WatchTraffic::total(&[traffic("web-02"), traffic("web-03")]);
    assert_eq!(
        (baseline.requests, baseline.errors),
        (60, 0),
        "{baseline:?}"
    );
    let policy = WatchPolicy {
        min_requests: 20,
        ..WatchPolicy::default()
    };
    let (verdict, detail) = judge(&policy, &host, &baseline);
    assert_eq!(verdict, WatchVerdict::Regressed, "{detail}");
    assert!(
        detail.starts_with("5xx 30.0% of 30 requests, baseline 0.0% of 60"),
        "{detail}"
    );
}

/// `fleetroll demo --bad-release` as `run` runs it, on the small fleet
/// under live traffic: [watch] stops the release on the canary, which
/// ends regressed and drained, and no other host gets it.
#[test]
fn the_bad_release_is_stopped_on_the_canary_and_reaches_no_other_host() {
    let fleet = SimFleet::spawn_background(small_bad()).unwrap();
    let files = FileArgs {
        inventory: fleet.inventory_path().to_path_buf(),
        playbook: fleet.playbook_path().to_path_buf(),
        vars: Vec::new(),
        limit: Vec::new(),
    };
    let config = crate::app::load_config(&files, true, false).unwrap();
    let options = RunOptions {
        inventory: files.inventory.clone(),
        playbook: files.playbook.clone(),
        vars: Vec::new(),
        limit: Vec::new(),
        state: Store::Dir(fleet.dir().join("state")),
        json: false,
        quiet: true,
        verbose: false,
        terminal: false,
        accept_new_host_keys: false,
        metrics_file: None,
        clock: Clock::system(),
    };
    let plan = crate::app::make_plan(&config, &[]).unwrap();
    let names: Vec<&str> = config.inventory.hosts().map(|h| h.name.as_str()).collect();
    let canary: Vec<&str> = plan.batches[0]
        .hosts
        .iter()
        .map(|id| names[id.0 as usize])
        .collect();
    assert_eq!(canary, ["web-01"]);
    let rollout = Rollout {
        config: &config,
        options: &options,
        connector: Arc::new(SshConnector::new(SshOptions::default(), fleet.dir(), None)),
    };
    let run_id = fresh_run_id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let acquire = || {
        acquire_lock(
            &options.state,
            &options.inventory,
            &run_id,
            options.clock.now(),
        )
    };
    let exit = runtime
        .block_on(rollout.execute(&plan, run_id.clone(), acquire, Kind::Start))
        .unwrap();
    let record = load_record(&options.state, &run_id).unwrap();
    assert_eq!(exit, Exit::Halted, "{:?}", record.hosts);
    assert_eq!(record.outcome, RunOutcome::Halted);

    let web01 = &record.hosts["web-01"];
    assert_eq!(web01.outcome, Outcome::Regressed, "{web01:?}");
    assert_eq!(web01.drained, ["lb"], "web-01 stays drained: {web01:?}");
    let (verdict, detail) = web01.watch.clone().expect("web-01 was watched");
    assert_eq!(verdict, WatchVerdict::Regressed, "{detail}");
    for name in ["web-02", "web-03"] {
        if let Some(host) = record.hosts.get(name) {
            assert_eq!(host.outcome, Outcome::Pending, "{name}: {host:?}");
            assert!(!host.step_started, "{name}: {host:?}");
            assert!(host.drained.is_empty(), "{name}: {host:?}");
        }
    }
    assert_eq!(
        fleet.versions(),
        [
            ("web-01".to_owned(), "2.0".to_owned()),
            ("web-02".to_owned(), "1.0".to_owned()),
            ("web-03".to_owned(), "1.0".to_owned()),
        ]
    );
    let state = admin_command(fleet.admin_addr(), "show servers state app");
    assert_eq!(parse_admin_state(&state, "web-01"), Some(AdminState::Drain));
    assert_eq!(parse_admin_state(&state, "web-02"), Some(AdminState::Ready));
    assert_eq!(parse_admin_state(&state, "web-03"), Some(AdminState::Ready));

    // Drained, web-01 fails no more requests.
    let stat = parse_stat(&admin_command(fleet.admin_addr(), "show stat app 4 -1"));
    let errors = |stat: &[StatRow]| stat.iter().map(|r| r.counters.errors).sum::<u64>();
    let at_end = errors(&stat);
    assert!(
        at_end > 0,
        "the release failed requests before [watch] caught it"
    );
    std::thread::sleep(Duration::from_millis(300));
    let stat = parse_stat(&admin_command(fleet.admin_addr(), "show stat app 4 -1"));
    assert_eq!(errors(&stat), at_end);
    let report = fleet.stop();
    assert_eq!(report.failed, at_end, "{:?}", report.failures);
    assert!(
        report.failures.iter().all(|f| f.starts_with("HTTP 500")),
        "{:?}",
        report.failures
    );
}

/// One runtime API command over the admin socket, as `socat` would send it.
fn admin_command(admin: SocketAddr, command: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}
