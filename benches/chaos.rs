//! A chaos run, not a test: 12 real sshd hosts behind a real HAProxy under
//! live traffic; `fleetroll run` is killed with SIGKILL at random moments
//! and `resume`d after each kill (the resumes are killed too), then a last
//! `resume` finishes the run. Checked against what the world saw: every
//! host on the new version, none left out of HAProxy, no request failed,
//! and no host ran two instances of its step at once.
//!
//! `cargo bench --bench chaos` (as root, after `bash tests/setup.sh`).
//! `FLEETROLL_CHAOS_ROUNDS=N` (default 3) rounds, `FLEETROLL_CHAOS_KILLS=N`
//! (default 8) kills per round, `FLEETROLL_CHAOS_SEED=S` the first round's
//! seed (each round takes the next).

#[path = "../tests/fixture/mod.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the fixture serves several targets; the bench uses a subset"
)]
mod fixture;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture::{Fleet, FleetSpec, InventoryOptions, Traffic};

const ZONES: usize = 3;
const PER_ZONE: usize = 4;

fn main() {
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let rounds = setting("FLEETROLL_CHAOS_ROUNDS", 3);
    let kills = setting("FLEETROLL_CHAOS_KILLS", 8);
    let seed = setting("FLEETROLL_CHAOS_SEED", 1);
    let mut clean = 0;
    for round in 0..rounds {
        let seed = seed + round;
        match chaos_round(seed, kills) {
            Ok(summary) => {
                clean += 1;
                println!("round {} (seed {seed}): ok: {summary}", round + 1);
            }
            Err(problem) => println!("round {} (seed {seed}): FAILED: {problem}", round + 1),
        }
    }
    println!("chaos: {clean} of {rounds} rounds clean");
    assert_eq!(clean, rounds, "a chaos round broke a promise");
}

/// SplitMix64: the same seed gives the same kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Milliseconds in `low..=high`.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }
}

fn chaos_round(seed: u64, kills: u64) -> Result<String, String> {
    let mut rng = Rng(seed);
    let fleet = Fleet::start(FleetSpec::new(ZONES, PER_ZONE));
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    fleet.write_inventory(
        &work.path().join("inventory.toml"),
        &InventoryOptions::default(),
    );
    std::fs::write(work.path().join("playbook.toml"), PLAYBOOK).map_err(|e| e.to_string())?;
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let started = Instant::now();
    let mut killed = 0;
    let mut attempts = 0;
    while killed < kills {
        attempts += 1;
        if attempts > kills * 4 {
            return Err(format!("only {killed} kills landed in {attempts} tries"));
        }
        let verb: &[&str] = if attempts == 1 { &RUN } else { &["resume"] };
        let mut child = fleetroll(work.path(), verb)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(rng.millis(300, 3000));
        if child.try_wait().map_err(|e| e.to_string())?.is_none() {
            child.kill().map_err(|e| e.to_string())?;
            killed += 1;
        }
        child.wait().map_err(|e| e.to_string())?;
    }
    let last = fleetroll(work.path(), &["resume"])
        .output()
        .map_err(|e| e.to_string())?;
    let report = traffic.stop();
    let elapsed = started.elapsed();
    let mut problems = Vec::new();
    let mut step_runs = 0;
    if last.status.code() != Some(0) {
        problems.push(format!(
            "the last resume exited {:?}: {}",
            last.status.code(),
            String::from_utf8_lossy(&last.stderr)
        ));
    }
    for host in fleet.hosts() {
        if host.version() != "2.0" {
            problems.push(format!("{} is at {}", host.name, host.version()));
        }
        let log = std::fs::read_to_string(host.dir.join("steps.log")).unwrap_or_default();
        step_runs += log.lines().filter(|l| *l == "start").count();
        if log
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["start", "start"])
        {
            problems.push(format!("{} ran two steps at once: {log:?}", host.name));
        }
    }
    let out: Vec<String> = fleet
        .server_states()
        .into_iter()
        .filter(|s| !s.status.starts_with("UP"))
        .map(|s| format!("{} {}", s.name, s.status))
        .collect();
    if !out.is_empty() {
        problems.push(format!("out of service: {}", out.join(", ")));
    }
    if report.failed > 0 {
        problems.push(format!(
            "{} of {} requests failed: {:?}",
            report.failed,
            report.ok + report.failed,
            report.failures
        ));
    }
    if problems.is_empty() {
        Ok(format!(
            "{killed} kills in {attempts} starts, {step_runs} step runs, {} hosts updated, none out, \
             {} requests, 0 failed, {:.1?}",
            fleet.hosts().len(),
            report.ok,
            elapsed
        ))
    } else {
        Err(problems.join("; "))
    }
}

const RUN: [&str; 5] = ["run", "-i", "inventory.toml", "-p", "playbook.toml"];

fn fleetroll(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetroll"));
    command
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("-q")
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The deploy logs its start and end on the host (with its output kept
/// there, so that a step a kill orphaned runs to its end as a real one
/// does) and takes about a second: kills land in steps often.
const PLAYBOOK: &str = r#"name = "deploy"

[vars]
version = "2.0"

[strategy]
batch = [2]
max_unavailable = 2
zones = "spread"
max_failed = 0
skip_if = "test \"$({vars.appctl} {vars.dir} version)\" = {vars.version}"

[drain]
timeout = "10s"
settle = "100ms"

[[steps]]
name = "deploy"
run = "exec >>{vars.dir}/step.out 2>&1; echo start >>{vars.dir}/steps.log; sleep 0.5; {vars.appctl} {vars.dir} deploy {vars.version} 300; echo end >>{vars.dir}/steps.log"
timeout = "60s"

[health]
interval = "200ms"
healthy_after = 3
timeout = "60s"

[[probes]]
http = "http://{address}:{vars.app_port}/healthz"
expect_body = "{vars.version}"
"#;
