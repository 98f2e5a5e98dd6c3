//! `[watch]` (issue 19) over real sshd hosts behind a real HAProxy, under
//! traffic: a release whose health check passes while its real requests
//! fail is stopped on the first host by HAProxy's own counters.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{Fleet, FleetSpec, InventoryOptions, Traffic};
use crate::promises::{EVENT_WITHIN, Live, RUN_JSON};
use crate::rollout::{Workdir, playbook};

/// A release that answers `flaky`% of real requests with 500 (its health
/// check passes), one host per batch, halting on the first failure.
fn flaky_release(flaky: u32, watch: &str) -> String {
    let mut text = playbook(
        &format!(" && echo {flaky} > {{vars.dir}}/FLAKY"),
        "batch = [1]\nmax_failed = 0",
    );
    text.push_str(watch);
    text
}

const WATCH: &str = "\n[watch]\nfor = \"4s\"\nmin_requests = 20\n";

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// How many requests failed through the balancer in `after` once the run
/// ended, and in all.
struct Failures {
    during_and_after: u64,
    after_the_run: u64,
}

/// Runs `work`'s rollout under traffic; the traffic goes on for `after`
/// once the run ended.
fn rollout_under_traffic(
    fleet: &Fleet,
    work: &Workdir,
    after: Duration,
) -> (crate::support::Output, Failures) {
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let run = work.run(&["--json"]);
    let at_end = traffic.snapshot();
    std::thread::sleep(after);
    let report = traffic.stop();
    eprintln!("{report}");
    (
        run,
        Failures {
            during_and_after: report.failed,
            after_the_run: report.failed - at_end.failed,
        },
    )
}

#[test]
fn a_release_failing_real_requests_is_stopped_on_the_first_host() {
    let after = Duration::from_secs(3);
    let watched_fleet = Fleet::start(FleetSpec::new(1, 4));
    let watched = Workdir::new(
        &watched_fleet,
        &InventoryOptions::default(),
        &flaky_release(30, WATCH),
    );
    let (run, with_watch) = rollout_under_traffic(&watched_fleet, &watched, after);
    eprintln!("with [watch]:\n{}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let events = events(&run.stdout);
    let watch = events
        .iter()
        .find(|e| e["event"] == "host_watch")
        .expect("a host_watch event");
    assert_eq!(watch["host"], "web-01", "{watch}");
    assert_eq!(watch["verdict"], "regressed", "{watch}");
    assert!(watch["errors"].as_u64().unwrap() > 0, "{watch}");
    assert_eq!(watch["baseline_hosts"], 3, "{watch}");
    assert_eq!(watch["baseline_errors"], 0, "{watch}");
    let ended = events
        .iter()
        .rev()
        .find(|e| e["event"] == "host_phase" && e["host"] == "web-01")
        .unwrap();
    assert_eq!(ended["outcome"], "regressed", "{ended}");
    // Drained again and left out; nobody else was touched.
    assert!(
        !watched_fleet
            .server_state("web-01")
            .status
            .starts_with("UP"),
        "the regressed host is still in service"
    );
    for host in &watched_fleet.hosts()[1..] {
        assert!(host.deploys().is_empty(), "{} was deployed", host.name);
    }
    assert!(
        run.stderr.contains("web-01 watch REGRESSED"),
        "{}",
        run.stderr
    );
    assert_eq!(
        with_watch.after_the_run, 0,
        "requests still failed once the regressed host was out"
    );

    // The same rollout without [watch]: every host gets the bad release,
    // and the fleet goes on failing requests.
    let blind_fleet = Fleet::start(FleetSpec::new(1, 4));
    let blind = Workdir::new(
        &blind_fleet,
        &InventoryOptions::default(),
        &flaky_release(30, ""),
    );
    let (run, without_watch) = rollout_under_traffic(&blind_fleet, &blind, after);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for host in blind_fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
    }
    eprintln!(
        "failed requests through HAProxy, during the run and {after:?} after: with [watch] {} ({} after), without {} ({} after)",
        with_watch.during_and_after,
        with_watch.after_the_run,
        without_watch.during_and_after,
        without_watch.after_the_run
    );
    assert!(without_watch.after_the_run > 0);
    assert!(without_watch.during_and_after > with_watch.during_and_after);
}

/// A healthy release with `[watch]`: every host is watched, passes, and
/// counts as updated.
#[test]
fn a_healthy_release_passes_its_watch_on_every_host() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &flaky_release(
            0,
            "\n[watch]\nfor = \"2s\"\nmin_requests = 5\nmax_latency_factor = 1.5\n",
        ),
    );
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let run = work.run(&["--json"]);
    let report = traffic.stop();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report.failed, 0, "{report}");
    let verdicts: Vec<(String, String)> = events(&run.stdout)
        .iter()
        .filter(|e| e["event"] == "host_watch")
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_owned(),
                e["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("web-01".to_owned(), "passed".to_owned()),
            ("web-02".to_owned(), "passed".to_owned()),
            ("web-03".to_owned(), "passed".to_owned()),
        ]
    );
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
    }
    crate::rollout::assert_all_in_service(&fleet, &[]);
}

/// A release twice as slow as the hosts it replaces (40 ms against 20 ms
/// a request), healthy otherwise, is caught with `max_latency_factor`:
/// the window's mean is recovered from HAProxy's sliding `rtime`.
#[test]
fn a_release_twice_as_slow_is_caught_with_max_latency_factor() {
    let fleet = Fleet::start(FleetSpec::new(1, 4));
    for host in fleet.hosts() {
        std::fs::write(host.dir.join("SLOW"), "20").unwrap();
    }
    let mut book = playbook(
        " && echo 40 > {vars.dir}/SLOW",
        "batch = [1]\nmax_failed = 0",
    );
    book.push_str("\n[watch]\nfor = \"4s\"\nmin_requests = 20\nmax_latency_factor = 1.5\n");
    let work = Workdir::new(&fleet, &InventoryOptions::default(), &book);
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let run = work.run(&["--json"]);
    drop(traffic);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let watch = events(&run.stdout)
        .into_iter()
        .find(|e| e["event"] == "host_watch")
        .expect("a host_watch event");
    eprintln!("{watch}");
    assert_eq!(watch["host"], "web-01", "{watch}");
    assert_eq!(watch["verdict"], "regressed", "{watch}");
    assert_eq!(watch["errors"], 0, "{watch}");
    let (mean, baseline) = (
        watch["mean_ms"].as_u64().unwrap(),
        watch["baseline_mean_ms"].as_u64().unwrap(),
    );
    assert!((30..=60).contains(&mean), "{watch}");
    assert!((15..=30).contains(&baseline), "{watch}");
    for host in &fleet.hosts()[1..] {
        assert!(host.deploys().is_empty(), "{} was deployed", host.name);
    }
}

/// A playbook whose release fails 30% of real requests, with rollback
/// steps that restore the previous version.
fn flaky_release_with_rollback(strategy: &str, watch_for: &str) -> String {
    format!(
        r#"name = "deploy"

[vars]
version = "2.0"
previous = "1.0"

[strategy]
{strategy}

[drain]
settle = "100ms"

[[steps]]
name = "deploy"
run = "{{vars.appctl}} {{vars.dir}} deploy {{vars.version}} 200 && echo 30 > {{vars.dir}}/FLAKY"

[[rollback]]
name = "deploy previous"
run = "rm -f {{vars.dir}}/FLAKY && {{vars.appctl}} {{vars.dir}} deploy {{vars.previous}} 200"

[health]
interval = "100ms"
healthy_after = 2
timeout = "8s"

[[probes]]
http = "http://{{address}}:{{vars.app_port}}/healthz"
expect_body = "{{vars.version}}"

[watch]
for = "{watch_for}"
min_requests = 20
"#
    )
}

/// With `on_failure = "rollback"`, a regressed host's rollback steps run:
/// it goes back to the old version and into service, and nobody else is
/// touched.
#[test]
fn a_regressed_host_is_rolled_back_with_on_failure_rollback() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &flaky_release_with_rollback("batch = [1]\non_failure = \"rollback\"", "3s"),
    );
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let run = work.run(&["--json"]);
    drop(traffic);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let events = events(&run.stdout);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "host_watch" && e["verdict"] == "regressed"),
        "{}",
        run.stderr
    );
    let last = events
        .iter()
        .rev()
        .find(|e| e["event"] == "host_phase" && e["host"] == "web-01")
        .unwrap();
    assert_eq!(last["outcome"], "rolled_back", "{last}");
    assert_eq!(fleet.host("web-01").version(), "1.0");
    assert!(!fleet.host("web-01").dir.join("FLAKY").exists());
    for host in &fleet.hosts()[1..] {
        assert!(host.deploys().is_empty(), "{} was deployed", host.name);
    }
    crate::rollout::assert_all_in_service(&fleet, &[]);
}

/// Killed (-9) while web-01 is watched: `resume` watches it again (it does
/// not drain it or run its step again) and, the release being bad, drains
/// it then; the journal has both watches.
#[test]
fn a_kill_during_a_watch_is_resumed_by_watching_again() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &flaky_release_with_rollback("batch = [1]", "4s"),
    );
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let mut run = Live::start(work.command(RUN_JSON), work.path().join("run.stderr"));
    run.until("web-01 watched", EVENT_WITHIN, |e| {
        e["event"] == "host_phase" && e["host"] == "web-01" && e["phase"] == "watching"
    });
    run.kill_9();
    assert!(
        fleet.server_state("web-01").status.starts_with("UP"),
        "web-01 is in service while watched"
    );
    let resumed = work.fleetroll(&["resume", "--json"]);
    drop(traffic);
    assert_eq!(resumed.code, 1, "{}", resumed.stderr);
    let events = events(&resumed.stdout);
    let web01: Vec<String> = events
        .iter()
        .filter(|e| e["host"] == "web-01")
        .filter_map(|e| match e["event"].as_str()? {
            "host_phase" => Some(e["phase"].as_str()?.to_owned()),
            "host_watch" => Some(format!("watch {}", e["verdict"].as_str()?)),
            "step_started" => Some("step".to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        web01,
        [
            "checking",
            "watching",
            "watch regressed",
            "draining",
            "failed"
        ],
        "{}",
        resumed.stderr
    );
    assert_eq!(fleet.host("web-01").deploys().len(), 1);
    assert!(!fleet.server_state("web-01").status.starts_with("UP"));
    for host in &fleet.hosts()[1..] {
        assert!(host.deploys().is_empty(), "{} was deployed", host.name);
    }
}
