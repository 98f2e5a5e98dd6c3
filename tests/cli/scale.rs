//! `fleetroll run` at fleet scale: 90 real sshd hosts behind one real
//! HAProxy, batches of 15 (issue 8, item 6).
//!
//! HAProxy's stats socket takes few connections at once: a client that
//! opens one per host per poll gets EAGAIN ("Resource temporarily
//! unavailable") on connect as soon as a batch polls together. This test
//! guards the shared observer and the bounded command pool of
//! `transport::haproxy`.

use std::sync::Arc;
use std::time::Instant;

use fleetroll::model::inventory::{HaproxyEndpoint, Host, SshSettings};
use fleetroll::transport::balancer::{AdminState, LoadBalancer, Target};
use fleetroll::transport::haproxy::Haproxy;

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::rollout::{Workdir, assert_all_in_service};

/// The rollout tests' deploy (drain, `appctl deploy`, probe, undrain) in
/// batches of 15 spread over the zones, with an HTTP probe only and
/// timeouts that tolerate a loaded machine: what is under test is the
/// balancer's API, not how fast 90 hosts restart on two cores.
const PLAYBOOK: &str = r#"name = "deploy"

[vars]
version = "2.0"

[strategy]
batch = [15]
max_unavailable = 15
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
"#;

#[test]
fn ninety_hosts_in_batches_of_fifteen_share_one_haproxy_api() {
    let started = Instant::now();
    let fleet = Fleet::start(FleetSpec::new(3, 30));
    let fleet_ready = started.elapsed();
    let work = Workdir::new(&fleet, &InventoryOptions::default(), PLAYBOOK);
    let run_started = Instant::now();
    let run = work.run(&["--json"]);
    let run_took = run_started.elapsed();
    eprintln!("90-host fleet ready in {fleet_ready:?}; fleetroll run took {run_took:?}");

    // Neither the events nor the human output mention a balancer API that
    // could not be reached (the symptom of issue 8).
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains("cannot reach its API"),
            "the balancer API was unreachable during the run:\n{text}"
        );
    }
    assert_eq!(run.code, 0, "{}", run.stderr);
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
    assert_eq!(finished["updated"], 90, "{finished}");
    let batches: Vec<usize> = events
        .iter()
        .filter(|e| e["event"] == "batch_started")
        .map(|e| e["hosts"].as_array().expect("hosts").len())
        .collect();
    assert_eq!(batches, [15; 6], "six batches of fifteen");

    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
        assert_eq!(
            host.deploys(),
            ["deploy 2.0"],
            "{} deployed once",
            host.name
        );
    }
    let servers = fleet.server_states();
    assert_eq!(servers.len(), 90);
    assert_all_in_service(&fleet, &[]);

    every_host_polls_the_real_stats_socket_at_the_same_instant(&fleet);
}

/// The worst case for the stats socket, made certain: all 90 hosts ask
/// for their status at the same instant, through one client. HAProxy 2.6
/// answers EAGAIN to a burst of about 12 simultaneous connects; the client
/// must answer every one of them from shared reads.
fn every_host_polls_the_real_stats_socket_at_the_same_instant(fleet: &Fleet) {
    let lb = Arc::new(Haproxy::new(
        "web",
        HaproxyEndpoint::Socket(fleet.haproxy_socket().to_owned()),
        "app",
    ));
    let hosts: Vec<Host> = fleet
        .hosts()
        .iter()
        .map(|h| balancer_host(&h.name))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let statuses = runtime.block_on(async {
        // Every task waits for all the others before it asks.
        let start = Arc::new(tokio::sync::Barrier::new(hosts.len()));
        let polls: Vec<_> = hosts
            .iter()
            .cloned()
            .map(|host| {
                let (lb, start) = (Arc::clone(&lb), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    let target = Target {
                        host: &host,
                        shell: None,
                    };
                    (host.name.clone(), lb.status(target).await)
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for poll in polls {
            statuses.push(poll.await.expect("a status task"));
        }
        statuses
    });
    for (name, status) in statuses {
        let status = status.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(status.admin, AdminState::Ready, "{name}");
        assert_eq!(status.up, Some(true), "{name}");
    }
}

/// A host as the balancer client sees it: only its server name matters.
fn balancer_host(name: &str) -> Host {
    Host {
        name: name.to_owned(),
        address: "127.0.0.1".to_owned(),
        zone: "zone-a".to_owned(),
        ssh: SshSettings {
            user: "root".to_owned(),
            port: 22,
            ..SshSettings::default()
        },
        balancers: vec!["web".to_owned()],
        lb_server: name.to_owned(),
        target_id: None,
        vars: Default::default(),
        aws: None,
    }
}
