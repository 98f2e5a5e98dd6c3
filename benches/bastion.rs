//! Issue 18, timed: 40 real sshd hosts (2 zones of 20) behind one HAProxy,
//! rolled in batches of 20, once through one real OpenSSH bastion with
//! OpenSSH's default limits (`MaxStartups 10:30:100`, `MaxSessions 10`),
//! 40 ms away each way, and once directly, each host 40 ms away each way
//! (a latency proxy in front of each sshd). A benchmark, not a test: it
//! prints wall times, their means and ratio, and what the bastion's log
//! shows for each run (TCP connections, logins, tunnels, MaxStartups lines).
//!
//! `cargo bench --bench bastion` (as root, after `bash tests/setup.sh`).
//! `FLEETROLL_BENCH_ROUNDS=N` (default 3) runs N rounds, each way once per
//! round, alternating which goes first. `FLEETROLL_BIN=/path/to/fleetroll`
//! times another build (an older commit, say) instead of this one; a run
//! that fails is reported and left out of the means.

mod common;
#[path = "../tests/fixture/mod.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the fixture serves several targets; the bench uses a subset"
)]
mod fixture;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fixture::{Bastion, BastionCounts, Fleet, FleetSpec, InventoryOptions, LatencyProxy};

const ZONES: usize = 2;
const PER_ZONE: usize = 20;
const BATCH: usize = 20;
/// The delay each way between the controller and what it dials.
const DELAY: Duration = Duration::from_millis(40);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Bastion,
    Direct,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::Bastion => "through the bastion",
            Way::Direct => "direct             ",
        }
    }
}

fn main() {
    let rounds: usize = std::env::var("FLEETROLL_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let binary = std::env::var_os("FLEETROLL_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_fleetroll")),
        PathBuf::from,
    );
    println!("fleetroll binary: {}", binary.display());
    let started = Instant::now();
    let fleet = Fleet::start(FleetSpec {
        bastion: true,
        ..FleetSpec::new(ZONES, PER_ZONE)
    });
    println!(
        "fleet of {} hosts and a bastion ready in {:.1?}",
        fleet.hosts().len(),
        started.elapsed()
    );
    let bastion = fleet.bastion();
    let ip = |address: SocketAddr| match address.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => panic!("not IPv4: {ip}"),
    };
    // The link to the bastion, and one to each host, each on the address
    // of what it fronts.
    let link = LatencyProxy::start(ip(bastion.address()), bastion.address(), DELAY);
    let links: Vec<LatencyProxy> = fleet
        .hosts()
        .iter()
        .map(|h| LatencyProxy::start(h.address, SocketAddr::from((h.address, h.ssh_port)), DELAY))
        .collect();
    println!(
        "{DELAY:?} each way to the bastion (via {}) and to each host; batches of {BATCH}; \
         {rounds} round(s)",
        link.address()
    );
    let through = workdir(
        &fleet,
        &InventoryOptions {
            jump: Some(link.address()),
            ..InventoryOptions::default()
        },
    );
    let direct = workdir(
        &fleet,
        &InventoryOptions {
            ssh_via: fleet
                .hosts()
                .iter()
                .zip(&links)
                .map(|(h, l)| (h.name.clone(), l.address()))
                .collect(),
            ..InventoryOptions::default()
        },
    );

    let mut version = 1;
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut failures = 0;
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Way::Bastion, Way::Direct]
        } else {
            [Way::Direct, Way::Bastion]
        };
        for way in order {
            version += 1;
            let version = format!("{version}.0");
            let dir = match way {
                Way::Bastion => through.path(),
                Way::Direct => direct.path(),
            };
            let before = bastion.counts();
            let outcome = run(&binary, &fleet, dir, &version);
            let seen = bastion.counts().since(before);
            match outcome {
                Ok((took, batches)) => {
                    println!(
                        "round {round}: {} {took:>8.2?} (batches {})   bastion: {}",
                        way.label(),
                        batches
                            .iter()
                            .map(|b| format!("{:.2}s", b.as_secs_f64()))
                            .collect::<Vec<_>>()
                            .join(" + "),
                        describe(seen)
                    );
                    times[way as usize].push(took);
                }
                Err(why) => {
                    failures += 1;
                    println!(
                        "round {round}: {} FAILED     bastion: {}\n{why}",
                        way.label(),
                        describe(seen)
                    );
                }
            }
        }
    }
    let mean = |runs: &[Duration]| {
        u32::try_from(runs.len())
            .ok()
            .filter(|&n| n > 0)
            .map(|n| runs.iter().sum::<Duration>() / n)
    };
    match (mean(&times[0]), mean(&times[1])) {
        (Some(through), Some(direct)) => println!(
            "mean over {} and {} run(s): through the bastion {through:.2?}, direct {direct:.2?}, \
             ratio bastion/direct {:.2}",
            times[0].len(),
            times[1].len(),
            through.as_secs_f64() / direct.as_secs_f64()
        ),
        (through, direct) => println!(
            "no ratio: through the bastion {through:.2?}, direct {direct:.2?} (a way without a successful run)"
        ),
    }
    if failures > 0 {
        println!("{failures} run(s) failed");
    }
    print_bastion_totals(bastion);
    drop(links);
    drop(link);
}

fn describe(seen: BastionCounts) -> String {
    format!(
        "{} TCP connection(s), {} login(s), {} tunnel(s), {} MaxStartups line(s)",
        seen.connections, seen.logins, seen.tunnels, seen.dropped
    )
}

fn print_bastion_totals(bastion: &Bastion) {
    let log = bastion.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("debug")
                && (l.contains("error") || l.contains("fatal") || l.contains("maxstartups"))
        })
        .collect();
    println!(
        "bastion log over the whole bench: {}; {} error/fatal/MaxStartups line(s){}",
        describe(bastion.counts()),
        errors.len(),
        errors
            .iter()
            .take(10)
            .map(|l| format!("\n  {l}"))
            .collect::<String>()
    );
}

/// A scratch directory with `inventory.toml` written with `options`; each
/// run writes its playbook there and keeps its state in `state/`.
fn workdir(fleet: &Fleet, options: &InventoryOptions) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a scratch directory");
    fleet.write_inventory(&dir.path().join("inventory.toml"), options);
    dir
}

/// Runs `binary` to roll the fleet to `version`; its wall time and each
/// batch's, or why it failed (its exit, the end of its stderr, hosts left
/// behind).
fn run(
    binary: &Path,
    fleet: &Fleet,
    dir: &Path,
    version: &str,
) -> Result<(Duration, Vec<Duration>), String> {
    std::fs::write(dir.join("playbook.toml"), common::playbook(version, BATCH))
        .expect("write playbook.toml");
    let mut command = Command::new(binary);
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
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    let took = started.elapsed();
    let mut problems = Vec::new();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        problems.push(format!(
            "fleetroll exited with {}; its stderr ends:\n  {}",
            output.status,
            lines[lines.len().saturating_sub(15)..].join("\n  ")
        ));
    }
    let behind: Vec<&str> = fleet
        .hosts()
        .iter()
        .filter(|h| h.version() != version)
        .map(|h| h.name.as_str())
        .collect();
    if !behind.is_empty() {
        problems.push(format!("not at {version}: {}", behind.join(" ")));
    }
    let out: Vec<String> = fleet
        .server_states()
        .into_iter()
        .filter(|s| s.status != "UP")
        .map(|s| format!("{} {}", s.name, s.status))
        .collect();
    if !out.is_empty() {
        problems.push(format!("out of service: {}", out.join(", ")));
    }
    if problems.is_empty() {
        Ok((took, batch_times(&String::from_utf8_lossy(&output.stdout))))
    } else {
        Err(problems.join("\n"))
    }
}

/// Each batch's time, from the `batch_started` and `batch_finished` events.
fn batch_times(events: &str) -> Vec<Duration> {
    let mut started = None;
    let mut times = Vec::new();
    for line in events.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let at = event["ts"]
            .as_str()
            .and_then(|ts| ts.parse::<jiff::Timestamp>().ok());
        match (event["event"].as_str(), at) {
            (Some("batch_started"), Some(at)) => started = Some(at),
            (Some("batch_finished"), Some(at)) => {
                if let Some(started) = started.take() {
                    let took = at.duration_since(started);
                    times.push(Duration::try_from(took).unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    times
}
