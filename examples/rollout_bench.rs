//! Measures the dispatcher's overhead: rolls N simulated hosts with fixed
//! step and warm-up times and compares the wall time with the floor the
//! plan implies.
//!
//! ```text
//! cargo run --release --example rollout_bench            # N = 10, 100, 1000, 10000
//! cargo run --release --example rollout_bench -- 500     # one N
//! FLEETROLL_BENCH_REPORT=run.html cargo run --release --example rollout_bench -- 1000
//! FLEETROLL_BENCH_LIVE=1 cargo run --release --example rollout_bench -- 1000   # in a terminal
//! ```
//!
//! `FLEETROLL_BENCH_LIVE=1` draws the run's live view on stderr, as `run`
//! does on a terminal (the figures then include drawing it).
//!
//! Hosts are in-process fakes behind fleetroll's own traits (a shell whose
//! `deploy` takes the step time, a `healthy` command that passes once the
//! warm-up is over, a balancer that drains at once), so what is measured is
//! fleetroll itself: the dispatcher, host tasks, the journal (fsynced, on
//! disk) and the lock. Each N runs in its own process so that its peak
//! memory (VmHWM) is its own.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetroll::config::load::{LoadOptions, load_from_text};
use fleetroll::config::source::SourceFile;
use fleetroll::events::{Event, RunSettings};
use fleetroll::exec::dispatcher::{Dispatcher, Limits, RunBatch, Work};
use fleetroll::exec::env::{Cadence, RunEnv, Transports};
use fleetroll::exec::host_machine::Route;
use fleetroll::journal::replay::RunRecord;
use fleetroll::journal::store::JournalWriter;
use fleetroll::lock::{LockInfo, RunLock};
use fleetroll::model::inventory::Host;
use fleetroll::plan::batches::plan_batches;
use fleetroll::plan::select::select;
use fleetroll::transport::balancer::LoadBalancer;
use fleetroll::transport::fake::{FakeBehaviour, FakeFleet};
use fleetroll::transport::probe::Prober;

const STEP: Duration = Duration::from_secs(1);
const WARMUP: Duration = Duration::from_secs(1);
const SETTLE: Duration = Duration::from_millis(200);
const INTERVAL: Duration = Duration::from_millis(200);
const HEALTHY_AFTER: u32 = 3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(n) = args.first() {
        let n: usize = n.parse().expect("N must be a number");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        println!("{}", runtime.block_on(bench(n)));
        return;
    }
    println!(
        "floor = batches × (settle {} ms + step {} ms + warm-up {} ms + healthy_after {} × interval {} ms)",
        SETTLE.as_millis(),
        STEP.as_millis(),
        WARMUP.as_millis(),
        HEALTHY_AFTER,
        INTERVAL.as_millis()
    );
    println!(
        "tight floor = the same with (healthy_after - 1) × interval: the first passing round lands as the warm-up ends"
    );
    println!(
        "{:>6} {:>8} {:>9} {:>9} {:>9} {:>12} {:>10} {:>8}",
        "N", "batches", "wall s", "floor s", "overhead", "tight floor", "overhead", "peak MB"
    );
    let me = std::env::current_exe().expect("own path");
    for n in [10, 100, 1000, 10_000] {
        let output = std::process::Command::new(&me)
            .arg(n.to_string())
            .output()
            .expect("run one N");
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

fn inventory(n: usize) -> String {
    let zones = if n <= 10 { 2 } else { 10 };
    let mut out = String::from(
        "[defaults]\nbalancer = \"lb\"\n\n[balancers.lb]\nkind = \"command\"\ndrain = \"true\"\nundrain = \"true\"\n",
    );
    let per_zone = n.div_ceil(zones);
    for zone in 0..zones {
        let _ = write!(out, "\n[zones.zone-{zone:02}]\nhosts = [\n");
        for index in zone * per_zone..((zone + 1) * per_zone).min(n) {
            let _ = writeln!(
                out,
                "  {{ name = \"h{index:04}\", address = \"127.0.0.1\" }},"
            );
        }
        out.push_str("]\n");
    }
    out
}

fn playbook() -> String {
    format!(
        r#"name = "bench"
[strategy]
batch = ["10%"]
zones = "spread"
[drain]
settle = "{}ms"
[[steps]]
run = "deploy 2.0"
[health]
interval = "{}ms"
healthy_after = {HEALTHY_AFTER}
timeout = "60s"
[[probes]]
command = "healthy"
"#,
        SETTLE.as_millis(),
        INTERVAL.as_millis()
    )
}

async fn bench(n: usize) -> String {
    let config = load_from_text(
        SourceFile::new("inventory.toml", inventory(n)),
        SourceFile::new("playbook.toml", playbook()),
        Path::new("."),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let input = select(&config.inventory, &[]).expect("select");
    let plan = plan_batches(&input, &config.playbook.strategy).expect("plan");
    let hosts: Vec<&Host> = config.inventory.hosts().collect();
    let fleet = FakeFleet::new(FakeBehaviour {
        step_time: STEP,
        warmup: WARMUP,
        ..FakeBehaviour::default()
    });
    let state = std::env::temp_dir().join(format!("fleetroll-bench-{}", std::process::id()));
    let run_id = format!("bench-{n}");
    let now = jiff::Timestamp::now();
    let lock = fleetroll::lock::FileLock::acquire(
        &state.join("locks/bench.lock"),
        LockInfo {
            host: "bench".into(),
            pid: std::process::id(),
            run_id: run_id.clone(),
            inventory: "bench".into(),
            since: now.to_string(),
            heartbeat: now.to_string(),
            lease_s: None,
        },
        now,
    )
    .map(RunLock::File)
    .expect("lock");
    let mut balancers: HashMap<String, Arc<dyn LoadBalancer>> = HashMap::new();
    balancers.insert("lb".into(), fleet.balancer("lb"));
    let env = Arc::new(RunEnv {
        transports: Transports {
            connector: fleet.connector(),
            balancers,
            prober: Prober::new(),
        },
        playbook: Arc::new(config.playbook.clone()),
        cadence: Cadence::default(),
        needs_ssh: true,
        replacements: Default::default(),
    });
    let batches: Vec<RunBatch> = RunBatch::from_plan(&plan, &hosts);
    let mut dispatcher = Dispatcher::new(
        env,
        JournalWriter::open(&state, &run_id).expect("journal"),
        RunRecord::new(&run_id),
        lock,
        fleetroll::clock::Clock::system(),
        Limits::of(&plan, Duration::ZERO),
        tokio::sync::mpsc::unbounded_channel().1,
    );
    if std::env::var_os("FLEETROLL_BENCH_LIVE").is_some() {
        dispatcher = dispatcher.with_sinks(vec![Box::new(
            fleetroll::report::human::HumanSink::new(true, false),
        )]);
    }
    let started = Instant::now();
    dispatcher
        .emit(Event::RunStarted {
            playbook: "bench".into(),
            hosts: n,
            batches: batches.len(),
            failure_budget: 0,
            settings: RunSettings {
                inventory: "bench".into(),
                playbook: "bench".into(),
                var_names: vec![],
                limit: vec![],
                accept_new_host_keys: false,
            },
            plan: RunBatch::planned(&batches),
            fingerprint: None,
            max_unavailable: None,
            window_closes_at: None,
        })
        .expect("journal");
    let finish = dispatcher
        .run(Work {
            route: Route::Roll,
            batches: batches.clone(),
            adopted: Vec::new(),
            others: Vec::new(),
            resuming: false,
        })
        .await
        .expect("run");
    let wall = started.elapsed();
    assert_eq!(
        dispatcher
            .record()
            .count(fleetroll::events::Outcome::Updated),
        n,
        "every host updated ({finish:?})"
    );
    dispatcher.release();
    // FLEETROLL_BENCH_REPORT=FILE: the run's HTML report, to look at a
    // large run (its journal is gone once the bench ends).
    if let Some(path) = std::env::var_os("FLEETROLL_BENCH_REPORT") {
        let records = fleetroll::journal::store::read_run(&state, &run_id).expect("journal");
        let page = fleetroll::report::html::render(&fleetroll::report::timeline::timeline(
            &run_id,
            &records,
            fleetroll::events::RunOutcome::Succeeded,
        ));
        std::fs::write(&path, page).expect("write the report");
    }
    let _ = std::fs::remove_dir_all(&state);
    let floor = (SETTLE + STEP + WARMUP + INTERVAL * HEALTHY_AFTER) * batches.len() as u32;
    let tight = (SETTLE + STEP + WARMUP + INTERVAL * (HEALTHY_AFTER - 1)) * batches.len() as u32;
    let over =
        |floor: Duration| (wall.as_secs_f64() - floor.as_secs_f64()) / floor.as_secs_f64() * 100.0;
    format!(
        "{n:>6} {:>8} {:>9.2} {:>9.2} {:>8.1}% {:>12.2} {:>9.1}% {:>8.1}",
        batches.len(),
        wall.as_secs_f64(),
        floor.as_secs_f64(),
        over(floor),
        tight.as_secs_f64(),
        over(tight),
        peak_rss_mb()
    )
}

/// Peak resident memory of this process, from /proc.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
