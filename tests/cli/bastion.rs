//! Issue 18: 40 hosts reached through one real OpenSSH bastion that keeps
//! OpenSSH's default limits (`MaxStartups 10:30:100`: past 10 connections
//! not yet logged in, new ones start being dropped; `MaxSessions 10`),
//! 40 ms away each way, in batches of 20.
//!
//! Twenty hosts connecting at once through the bastion, each with its own
//! login to it, would go past MaxStartups; fleetroll shares one
//! authenticated connection per jump chain and opens each host's tunnel as
//! a `direct-tcpip` channel of it, so the bastion sees one connection, one
//! login and one tunnel per host connection. `benches/bastion.rs` times the
//! same fleet through the bastion against direct.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::fixture::{Fleet, FleetSpec, InventoryOptions, LatencyProxy};
use crate::promises::poll;
use crate::rollout::{Workdir, assert_all_in_service};

/// The delay each way between the controller and the bastion.
const DELAY: Duration = Duration::from_millis(40);

/// The rollout tests' deploy (drain, `appctl deploy`, probe, undrain) in
/// batches of 20 spread over the two zones, with a command probe too, so
/// that every host runs several commands through the bastion; timeouts
/// tolerate 20 apps restarting at once on two cores.
const PLAYBOOK: &str = r#"name = "deploy"

[vars]
version = "2.0"

[strategy]
batch = [20]
max_unavailable = 20
zones = "spread"
max_failed = 0
skip_if = "test \"$({vars.appctl} {vars.dir} version)\" = {vars.version}"

[drain]
timeout = "10s"
settle = "100ms"

[[steps]]
name = "deploy"
run = "{vars.appctl} {vars.dir} deploy {vars.version} 200"
timeout = "60s"

[health]
interval = "200ms"
healthy_after = 3
timeout = "60s"

[[probes]]
http = "http://{address}:{vars.app_port}/healthz"
expect_body = "{vars.version}"

[[probes]]
command = "test \"$({vars.appctl} {vars.dir} version)\" = {vars.version}"
"#;

#[test]
fn forty_hosts_behind_a_bastion_with_default_limits_40_ms_away_roll_over_one_login() {
    let fleet = Fleet::start(FleetSpec {
        bastion: true,
        ..FleetSpec::new(2, 20)
    });
    let bastion = fleet.bastion();
    let IpAddr::V4(bastion_ip) = bastion.address().ip() else {
        panic!("an IPv4 bastion: {}", bastion.address())
    };
    let link = LatencyProxy::start(bastion_ip, bastion.address(), DELAY);
    let work = Workdir::new(
        &fleet,
        &InventoryOptions {
            jump: Some(link.address()),
            ..InventoryOptions::default()
        },
        PLAYBOOK,
    );
    let before = bastion.counts();
    let started = Instant::now();
    let run = work.run(&["--json"]);
    let took = started.elapsed();
    // fleetroll says goodbye to the bastion as it ends; the bastion logs
    // it once the message has crossed the link.
    let goodbye = poll(Duration::from_secs(10), || {
        bastion.log_text().contains("fleetroll done").then_some(())
    })
    .is_some();
    let counts = bastion.counts().since(before);
    let log = bastion.log_text();
    let figures = format!(
        "the bastion accepted {} TCP connection(s) and {} login(s) and opened {} tunnel(s); \
         {} line(s) about MaxStartups; the link to it carried {} connection(s); the run took {took:.2?}",
        counts.connections,
        counts.logins,
        counts.tunnels,
        counts.dropped,
        link.accepted()
    );
    eprintln!("{figures}");

    assert_eq!(
        run.code, 0,
        "{figures}\n{}\n{}\n{log}",
        run.stderr, run.stdout
    );
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let finished = events
        .iter()
        .find(|e| e["event"] == "run_finished")
        .expect("a run_finished event");
    assert_eq!(finished["outcome"], "succeeded", "{finished}");
    assert_eq!(finished["updated"], 40, "{finished}");
    let batches: Vec<usize> = events
        .iter()
        .filter(|e| e["event"] == "batch_started")
        .map(|e| e["hosts"].as_array().expect("hosts").len())
        .collect();
    assert_eq!(batches, [20, 20], "two batches of twenty");
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
        assert_eq!(
            host.deploys(),
            ["deploy 2.0"],
            "{} deployed once",
            host.name
        );
    }
    assert_eq!(fleet.server_states().len(), 40);
    assert_all_in_service(&fleet, &[]);

    // Every host was reached through the bastion, dialled through the link.
    assert!(link.accepted() > 0, "{figures}");
    for host in fleet.hosts() {
        let ssh = SocketAddr::from((host.address, host.ssh_port));
        assert!(
            bastion.tunnelled_to(ssh),
            "no tunnel to {} ({ssh}) in the bastion's log; {figures}\n{log}",
            host.name
        );
    }
    assert!(
        counts.tunnels >= 40,
        "{figures}: fewer tunnels than hosts\n{log}"
    );
    // ...over one login, with nothing dropped past MaxStartups.
    assert_eq!(counts.logins, 1, "{figures}\n{log}");
    assert_eq!(counts.dropped, 0, "{figures}\n{log}");
    for refusal in ["MaxStartups", "drop connection"] {
        assert!(!log.contains(refusal), "{figures}\n{log}");
    }
    assert!(
        goodbye,
        "the bastion never saw the goodbye; {figures}\n{log}"
    );
}
