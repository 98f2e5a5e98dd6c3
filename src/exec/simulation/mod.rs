//! A deterministic simulation of whole runs under faults: the real
//! dispatcher and host machines over an in-memory world with paused time,
//! thousands of random scenarios, the promises checked after every
//! operation. `FLEETROLL_SIM_SEEDS=N` runs N seeds (default 2000), spread
//! over the cores; `FLEETROLL_SIM_SEED=S` runs one;
//! `FLEETROLL_SIM_UNGUARDED=1` runs steps without the host's step lock;
//! `FLEETROLL_SIM_TRACE=1` prints each chain's count of world operations
//! (the same seed must give the same count in every process: nothing may
//! depend on the wall clock, record lengths included, or on hash order).

mod run;
mod scenario;
mod world;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use run::simulate;
use scenario::{Fault, Scenario};

/// The shortest list of the scenario's faults that still breaks a promise:
/// faults are dropped one at a time while the failure persists.
fn shrink(scenario: &Scenario) -> (Vec<Fault>, String) {
    let mut faults = scenario.faults.clone();
    let mut failure = match simulate(scenario, &faults) {
        Err(failure) => failure,
        Ok(()) => return (faults, "passed on a second try: not deterministic".into()),
    };
    let mut index = 0;
    while index < faults.len() {
        let mut fewer = faults.clone();
        fewer.remove(index);
        match simulate(scenario, &fewer) {
            Err(still) => {
                faults = fewer;
                failure = still;
            }
            Ok(()) => index += 1,
        }
    }
    (faults, failure)
}

#[test]
fn every_promise_holds_under_random_faults() {
    let seeds: Vec<u64> = match std::env::var("FLEETROLL_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("FLEETROLL_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("FLEETROLL_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(2000u64);
            (0..count).collect()
        }
    };
    let started = std::time::Instant::now();
    let failures = failures(&seeds);
    if let Some((seed, failure)) = failures.first().cloned() {
        let some: Vec<String> = failures
            .iter()
            .take(20)
            .map(|(s, _)| s.to_string())
            .collect();
        eprintln!(
            "simulation: {} of {} seeds broke a promise (first: {})",
            failures.len(),
            seeds.len(),
            some.join(", ")
        );
        let scenario = Scenario::generate(seed);
        let (faults, shrunk) = shrink(&scenario);
        panic!(
            "seed {seed} broke a promise: {failure}\n\
             fleet {:?}, strategy:\n{}\n\
             shortest fault list: {faults:?}\n  which fails with: {shrunk}\n\
             rerun with FLEETROLL_SIM_SEED={seed}",
            scenario.zones, scenario.strategy
        );
    }
    eprintln!(
        "simulation: {} seeds in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Simulates every seed, on as many threads as there are cores (each
/// scenario has its own runtime, paused clock and scratch directory, so
/// they share nothing); the seeds that broke a promise, lowest first, and
/// how.
fn failures(seeds: &[u64]) -> Vec<(u64, String)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(seeds.len()) {
            scope.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let scenario = Scenario::generate(seed);
                    if let Err(failure) = simulate(&scenario, &scenario.faults) {
                        failures.lock().unwrap().push((seed, failure));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    failures
}
