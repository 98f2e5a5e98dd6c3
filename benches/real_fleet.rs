//! fleetroll against a minimal shell controller, on one real fleet: 90 sshd
//! hosts in 3 zones behind one HAProxy, batches of 15, the same cycle
//! (skip_if, drain, wait for no sessions, settle, deploy, three passing
//! HTTP probes, ready, wait until UP). A benchmark, not a test: it prints
//! wall times and their ratio, and checks only that both did the work.
//!
//! `cargo bench --bench real_fleet` (as root, after `bash tests/setup.sh`).
//! `FLEETROLL_BENCH_ROUNDS=N` runs N rounds, each tool once per round,
//! alternating which goes first; `FLEETROLL_BENCH_PER_ZONE=N` (a multiple
//! of 5, 30 by default) sizes the zones.

mod common;
#[path = "../tests/fixture/mod.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the fixture serves several targets; the bench uses a subset"
)]
mod fixture;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fixture::{BalancerAccess, Fleet, FleetSpec, InventoryOptions};

const ZONES: usize = 3;
const BATCH: usize = 15;

fn main() {
    let setting = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let rounds = setting("FLEETROLL_BENCH_ROUNDS", 1);
    let per_zone = setting("FLEETROLL_BENCH_PER_ZONE", 30);
    assert!(
        per_zone > 0 && per_zone % (BATCH / ZONES) == 0,
        "FLEETROLL_BENCH_PER_ZONE must be a multiple of {}",
        BATCH / ZONES
    );
    let started = Instant::now();
    let fleet = Fleet::start(FleetSpec::new(ZONES, per_zone));
    println!(
        "fleet of {} hosts ready in {:.1?}",
        fleet.hosts().len(),
        started.elapsed()
    );
    let work = tempfile::tempdir().expect("a scratch directory");
    // Both reach HAProxy's runtime API over TCP: bash can, over /dev/tcp.
    fleet.write_inventory(
        &work.path().join("inventory.toml"),
        &InventoryOptions {
            balancer: BalancerAccess::Tcp,
            ..InventoryOptions::default()
        },
    );
    let hosts_file = work.path().join("hosts.txt");
    std::fs::write(&hosts_file, hosts_in_batch_order(&fleet, per_zone)).expect("write hosts.txt");

    let mut version = 1;
    let (mut fleetroll_total, mut shell_total) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        for fleetroll_turn in [round % 2 == 0, round % 2 == 1] {
            version += 1;
            let version = format!("{version}.0");
            if fleetroll_turn {
                let took = run_fleetroll(&fleet, work.path(), &version);
                println!("round {round}: fleetroll        {took:.2?}");
                fleetroll_total += took;
            } else {
                let took = run_shell(&fleet, &hosts_file, &version);
                println!("round {round}: shell controller {took:.2?}");
                shell_total += took;
            }
        }
    }
    let per_round = |total: Duration| total / u32::try_from(rounds).unwrap_or(1);
    println!(
        "mean over {rounds} round(s): fleetroll {:.2?}, shell controller {:.2?}, ratio fleetroll/shell {:.2}",
        per_round(fleetroll_total),
        per_round(shell_total),
        fleetroll_total.as_secs_f64() / shell_total.as_secs_f64()
    );
}

/// The hosts as fleetroll's `zones = "spread"` batches them: five of each
/// zone per batch, zone by zone, as `NAME ADDRESS SSH_PORT HOSTDIR APP_PORT`.
fn hosts_in_batch_order(fleet: &Fleet, per_zone: usize) -> String {
    let per_zone_in_batch = BATCH / ZONES;
    let mut lines = String::new();
    for batch in 0..per_zone / per_zone_in_batch {
        for zone in 0..ZONES {
            for i in 0..per_zone_in_batch {
                let host = &fleet.hosts()[zone * per_zone + batch * per_zone_in_batch + i];
                lines.push_str(&format!(
                    "{} {} {} {} {}\n",
                    host.name,
                    host.address,
                    host.ssh_port,
                    host.dir.display(),
                    host.app_port
                ));
            }
        }
    }
    lines
}

fn run_fleetroll(fleet: &Fleet, dir: &Path, version: &str) -> Duration {
    std::fs::write(dir.join("playbook.toml"), common::playbook(version, BATCH))
        .expect("write playbook.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetroll"));
    command
        .args([
            "run",
            "-i",
            "inventory.toml",
            "-p",
            "playbook.toml",
            "--json",
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .current_dir(dir)
        .env("NO_COLOR", "1");
    let started = Instant::now();
    let output = command.output().expect("run fleetroll");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "fleetroll failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    print_batch_times(&String::from_utf8_lossy(&output.stdout));
    check_all_at(fleet, version, "fleetroll");
    took
}

/// Each batch's time, from the `batch_started` and `batch_finished` events.
fn print_batch_times(events: &str) {
    let mut started = None;
    for line in events.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("one JSON event a line");
        let at = || {
            event["ts"]
                .as_str()
                .and_then(|ts| ts.parse::<jiff::Timestamp>().ok())
                .expect("a timestamp")
        };
        match event["event"].as_str() {
            Some("batch_started") => started = Some(at()),
            Some("batch_finished") => {
                if let Some(started) = started.take() {
                    let took = at().duration_since(started);
                    println!(
                        "  fleetroll: batch {} took {:.2} s",
                        event["index"].as_u64().unwrap_or(0) + 1,
                        took.as_secs_f64()
                    );
                }
            }
            _ => {}
        }
    }
}

fn run_shell(fleet: &Fleet, hosts_file: &Path, version: &str) -> Duration {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/shell_controller.sh");
    let mut command = Command::new("bash");
    command
        .arg(script)
        .arg(hosts_file)
        .arg(version)
        .arg(BATCH.to_string())
        .arg(fleet.client_key_path())
        .arg(fleet.known_hosts_path())
        .arg(fleet.appctl_path())
        .arg(fleet.haproxy_tcp().to_string());
    let took = timed(command, "the shell controller");
    check_all_at(fleet, version, "the shell controller");
    took
}

fn timed(mut command: Command, what: &str) -> Duration {
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for line in stdout.lines() {
        println!("  {what}: {line}");
    }
    took
}

/// Both tools must have done the whole job: every host on `version`, every
/// server back UP.
fn check_all_at(fleet: &Fleet, version: &str, what: &str) {
    for host in fleet.hosts() {
        assert_eq!(host.version(), version, "{what} left {} behind", host.name);
    }
    for server in fleet.server_states() {
        assert_eq!(
            server.status, "UP",
            "{what} left {} out of service",
            server.name
        );
    }
}
