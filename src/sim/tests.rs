//! The simulated fleet driven through fleetroll's own transports: the files
//! it writes load, its SSH servers talk to the real client, its balancer
//! answers the real HAProxy client and really stops routing to a drained host.

use std::time::Duration;

use super::app::http_get;
use super::{SimFleet, SimSpec, Traffic};
use crate::config::load::{LoadOptions, load};
use crate::model::inventory::{HaproxyEndpoint, Host};
use crate::transport::balancer::{AdminState, LoadBalancer, Target};
use crate::transport::haproxy::Haproxy;
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
