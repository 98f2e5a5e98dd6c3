//! Issue 19, timed: what `[watch]` costs on a healthy release, and what it
//! saves on a bad one. 12 real sshd hosts (2 zones of 6) behind one real
//! HAProxy, rolled in batches of 3 under traffic (4 clients through
//! HAProxy), once with `[watch] for = "5s"` and once without, alternating
//! which goes first each round. A benchmark, not a test: it prints wall
//! times, the cost per batch against `for`, and for a release that answers
//! 30% of real requests with 500 (its health check passes), the failed
//! requests through HAProxy during the rollout and 5 s after it.
//!
//! `cargo bench --bench watch` (as root, after `bash tests/setup.sh`).
//! `FLEETROLL_BENCH_ROUNDS=N` (default 2).

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

use fixture::{Fleet, FleetSpec, InventoryOptions, Traffic};

const BATCH: usize = 3;
const WATCH_FOR: Duration = Duration::from_secs(5);

fn watch_section() -> String {
    format!(
        "\n[watch]\nfor = \"{}s\"\nmin_requests = 20\n",
        WATCH_FOR.as_secs()
    )
}

/// The shared playbook, its deploy step followed by `extra`.
fn playbook(version: &str, extra: &str, watch: bool) -> String {
    let text = common::playbook(version, BATCH).replace(" 200\"\n", &format!(" 200{extra}\"\n"));
    if watch { text + &watch_section() } else { text }
}

fn workdir(fleet: &Fleet) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a work directory");
    fleet.write_inventory(
        &dir.path().join("inventory.toml"),
        &InventoryOptions::default(),
    );
    dir
}

/// Runs the rollout in `dir` under traffic; its wall time, exit code, and
/// the requests that failed during it and in the 5 s after it.
fn run(fleet: &Fleet, dir: &Path, playbook: &str) -> (Duration, i32, u64, u64) {
    std::fs::write(dir.join("playbook.toml"), playbook).unwrap();
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_fleetroll"))
        .args([
            "run",
            "-i",
            "inventory.toml",
            "-p",
            "playbook.toml",
            "--state-dir",
            "state",
        ])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run fleetroll");
    let took = started.elapsed();
    let during = traffic.snapshot().failed;
    std::thread::sleep(Duration::from_secs(5));
    let all = traffic.stop().failed;
    let code = output.status.code().unwrap_or(-1);
    if code != 0 && !playbook.contains("FLAKY") {
        println!("{}", String::from_utf8_lossy(&output.stderr));
    }
    (took, code, during, all - during)
}

fn main() {
    let rounds: usize = std::env::var("FLEETROLL_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let fleet = Fleet::start(FleetSpec::new(2, 6));
    let batches = fleet.hosts().len().div_ceil(BATCH);
    println!(
        "{} hosts, {batches} batches of {BATCH}, traffic of 4 clients through HAProxy; [watch] for = {WATCH_FOR:?}",
        fleet.hosts().len()
    );
    let with_dir = workdir(&fleet);
    let without_dir = workdir(&fleet);
    let mut version = 1;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for watch in order {
            version += 1;
            let dir = if watch {
                with_dir.path()
            } else {
                without_dir.path()
            };
            let (took, code, failed, _) =
                run(&fleet, dir, &playbook(&format!("{version}.0"), "", watch));
            println!(
                "round {round}: healthy release {} [watch]: {took:.2?}, exit {code}, {failed} failed requests",
                if watch { "with   " } else { "without" }
            );
            if code == 0 {
                if watch {
                    with.push(took)
                } else {
                    without.push(took)
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
    if let (Some(with), Some(without)) = (mean(&with), mean(&without)) {
        let per_batch = (with.as_secs_f64() - without.as_secs_f64()) / batches as f64;
        println!(
            "healthy release: with [watch] {with:.2?}, without {without:.2?}: {per_batch:.2}s more per batch, `for` is {:.0}s",
            WATCH_FOR.as_secs_f64()
        );
    }
    // The bad release: 30% of real requests fail, the health check passes.
    for watch in [true, false] {
        let fleet = Fleet::start(FleetSpec::new(2, 6));
        let dir = workdir(&fleet);
        let bad = playbook("9.0", " && echo 30 > {vars.dir}/FLAKY", watch);
        let (took, code, during, after) = run(&fleet, dir.path(), &bad);
        let updated = fleet
            .hosts()
            .iter()
            .filter(|h| h.version() == "9.0")
            .count();
        println!(
            "bad release {} [watch]: {took:.2?}, exit {code}, {updated} hosts got it, failed requests: {during} during the rollout, {after} in the 5 s after",
            if watch { "with   " } else { "without" }
        );
    }
}
