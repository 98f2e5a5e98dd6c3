//! Drives the real dispatcher and host machines through one scenario: a
//! run, then resumes after each kill, signal or closed window, until the
//! chain ends; the world checks the promises at every operation, and the
//! end of the chain is checked here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::scenario::{Fault, MAX_RUNS, Scenario};
use super::world::{self, HostFaults, SimBalancer, SimConnector, World};
use crate::clock::Clock;
use crate::config::load::{LoadOptions, load_from_text};
use crate::config::source::SourceFile;
use crate::events::{Event, Outcome, RunOutcome, RunSettings};
use crate::exec::dispatcher::{Dispatcher, Limits, RunBatch, RunError, WindowGuard, Work};
use crate::exec::env::{Cadence, RunEnv, Transports};
use crate::exec::host_machine::Route;
use crate::journal::replay::{RunRecord, replay};
use crate::journal::store::{JournalWriter, read_run, run_path};
use crate::lock::{LockInfo, RunLock};
use crate::model::inventory::Host;
use crate::plan::batches::plan_batches;
use crate::plan::select::select;
use crate::transport::balancer::LoadBalancer;
use crate::transport::probe::Prober;

const RUN_ID: &str = "sim";

/// Building an HTTP client loads TLS roots; the simulation's probes are
/// commands, so one client serves every scenario.
static PROBER: std::sync::LazyLock<Prober> = std::sync::LazyLock::new(Prober::new);

/// Runs the scenario with `faults` in place of its own; `Err` says which
/// promise broke.
pub fn simulate(scenario: &Scenario, faults: &[Fault]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(chain(scenario, faults))
}

fn scratch() -> tempfile::TempDir {
    // fsync on tmpfs costs nothing; thousands of runs would wait on a disk.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a scratch directory")
}

async fn chain(scenario: &Scenario, faults: &[Fault]) -> Result<(), String> {
    let config = load_from_text(
        SourceFile::new("inventory.toml", scenario.inventory()),
        SourceFile::new("playbook.toml", scenario.playbook()),
        Path::new("."),
        &LoadOptions::default(),
    )
    .map_err(|d| format!("the scenario does not load: {}", d.render(false)))?;
    let Ok(plan) = plan_batches(
        &select(&config.inventory, &[]).map_err(|e| e.to_string())?,
        &config.playbook.strategy,
    ) else {
        // A strategy `validate` refuses: nothing to run.
        return Ok(());
    };
    let hosts: Vec<Host> = config.inventory.hosts().cloned().collect();
    let dir = scratch();
    let mut host_faults: HashMap<String, HostFaults> = HashMap::new();
    for fault in faults {
        if let Fault::Host { host, kind } = fault {
            kind.apply(host_faults.entry(host.clone()).or_default());
        }
    }
    let world = World::new(
        &hosts,
        host_faults,
        world::Caps {
            max_unavailable: plan.max_unavailable,
            zone_caps: plan
                .zone_caps
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        },
        run_path(dir.path(), RUN_ID),
        RUN_ID,
    );
    let balancer: Arc<dyn LoadBalancer> = Arc::new(SimBalancer {
        world: world.clone(),
    });
    let env = Arc::new(RunEnv {
        transports: Transports {
            connector: Arc::new(SimConnector {
                world: world.clone(),
                step_time: Duration::from_secs(5),
                warmup: Duration::from_secs(2),
            }),
            balancers: HashMap::from([("lb".to_owned(), balancer)]),
            prober: PROBER.clone(),
        },
        playbook: Arc::new(config.playbook.clone()),
        cadence: Cadence {
            balancer_poll: Duration::from_millis(200),
            up_timeout: Duration::from_secs(10),
            connect_attempts: 2,
        },
        needs_ssh: true,
        replacements: Arc::default(),
    });
    let batches = RunBatch::from_plan(&plan, &hosts.iter().collect::<Vec<_>>());
    let day: jiff::Timestamp = "2026-11-30T00:00:00Z".parse().expect("a timestamp");
    let mut ended = None;
    for run in 0..MAX_RUNS {
        let lock_path = dir.path().join("locks/sim.lock");
        // The holder before was killed or finished: its lock is broken.
        let _ = std::fs::remove_file(&lock_path);
        let now = jiff::Timestamp::now();
        let lock = crate::lock::FileLock::acquire(
            &lock_path,
            LockInfo {
                host: "sim".into(),
                pid: std::process::id(),
                run_id: format!("{RUN_ID}-{run}"),
                inventory: "sim".into(),
                since: now.to_string(),
                heartbeat: now.to_string(),
                lease_s: None,
            },
            now,
        )
        .map(RunLock::File)
        .map_err(|e| e.to_string())?;
        let record = if run == 0 {
            RunRecord::new(RUN_ID)
        } else {
            replay(
                RUN_ID,
                &read_run(dir.path(), RUN_ID).map_err(|e| e.to_string())?,
            )
        };
        let start_of_day = day
            .checked_add(jiff::SignedDuration::from_hours(24 * run as i64))
            .expect("in range");
        let offset = if faults.contains(&Fault::OutsideWindow { run }) {
            jiff::SignedDuration::from_mins(23 * 60 + 30)
        } else if faults.contains(&Fault::WindowCloses { run }) {
            jiff::SignedDuration::from_secs(23 * 3600 - 40)
        } else {
            jiff::SignedDuration::from_mins(1)
        };
        let window = config.playbook.window.clone().map(|window| WindowGuard {
            window,
            clock: Clock::following_tokio(start_of_day.checked_add(offset).expect("in range")),
            first_batch_estimate: Duration::from_secs(30),
        });
        let (signal_tx, signal_rx) = mpsc::unbounded_channel();
        let journal = JournalWriter::open(dir.path(), RUN_ID).map_err(|e| e.to_string())?;
        let disk_full = faults.iter().find_map(|fault| match *fault {
            Fault::DiskFull {
                run: r,
                lines,
                percent,
            } if r == run => Some((lines, percent)),
            _ => None,
        });
        let journal = match disk_full {
            Some((lines, percent)) => journal.full_after_lines(lines, percent),
            None => journal,
        };
        let mut dispatcher = Dispatcher::new(
            Arc::clone(&env),
            journal,
            record,
            lock,
            Clock::following_tokio(start_of_day.checked_add(offset).expect("in range")),
            Limits::of(&plan, config.playbook.strategy.pause),
            signal_rx,
        )
        .with_window(window);
        let first = if run == 0 {
            Event::RunStarted {
                playbook: "sim".into(),
                hosts: hosts.len(),
                batches: batches.len(),
                failure_budget: plan.failure_budget,
                settings: RunSettings {
                    inventory: "sim".into(),
                    playbook: "sim".into(),
                    var_names: Vec::new(),
                    limit: Vec::new(),
                    accept_new_host_keys: false,
                },
                plan: RunBatch::planned(&batches),
                fingerprint: None,
                max_unavailable: None,
                window_closes_at: None,
            }
        } else {
            Event::RunResumed {
                pending: 0,
                rollback: false,
            }
        };
        match dispatcher.emit(first) {
            Ok(()) => {}
            // The disk filled before the run's first record: nothing began.
            Err(_) if disk_full.is_some() => continue,
            Err(error) => return Err(error.to_string()),
        }
        let kill = schedule(&world, faults, run, signal_tx);
        let work = Work {
            route: Route::Roll,
            batches: batches.clone(),
            adopted: Vec::new(),
            resuming: run > 0,
        };
        let result = tokio::select! {
            biased;
            _ = kill => None,
            result = tokio::time::timeout(Duration::from_secs(7 * 24 * 3600), dispatcher.run(work)) => Some(result),
        };
        world.clear_triggers();
        let violations = world.violations();
        if !violations.is_empty() {
            return Err(format!("run {run}: {}", violations.join("; ")));
        }
        match result {
            // Killed: the lock and the journal stay as they are.
            None => {}
            Some(Err(_)) => return Err(format!("run {run} did not end within a simulated week")),
            // The disk filled: the run stopped; the next one finds room.
            Some(Ok(Err(RunError::Journal { .. }))) if disk_full.is_some() => {
                dispatcher.release();
            }
            Some(Ok(Err(error))) => return Err(format!("run {run}: {error}")),
            Some(Ok(Ok(finish))) => {
                let stranded = dispatcher
                    .record()
                    .hosts
                    .values()
                    .any(|h| !h.drained.is_empty() && !h.is_settled());
                dispatcher.release();
                // A host left out part-way is for the next resume to finish.
                if !stranded
                    && matches!(
                        finish.outcome,
                        RunOutcome::Succeeded | RunOutcome::Halted | RunOutcome::RolledBack
                    )
                {
                    ended = Some(finish.outcome);
                    break;
                }
            }
        }
    }
    if std::env::var_os("FLEETROLL_SIM_TRACE").is_some() {
        eprintln!("trace: {} operations", world.operations());
    }
    let Some(outcome) = ended else {
        return Err(format!("the run did not end in {MAX_RUNS} runs"));
    };
    let record = replay(
        RUN_ID,
        &read_run(dir.path(), RUN_ID).map_err(|e| e.to_string())?,
    );
    check_end(&world, &record, outcome)
}

/// Sets the run's timed faults on the world; returns the kill switch.
fn schedule(
    world: &World,
    faults: &[Fault],
    run: usize,
    signals: mpsc::UnboundedSender<&'static str>,
) -> impl std::future::Future<Output = ()> + use<> {
    let base = world.operations();
    let (kill_tx, mut kill_rx) = mpsc::unbounded_channel::<()>();
    let mut killing = false;
    for fault in faults {
        let (trigger, mut fired) = mpsc::unbounded_channel::<()>();
        match *fault {
            Fault::Outage { run: r, at, calls } if r == run => {
                world.at_operation(base + at, trigger);
                let world = world.clone();
                tokio::spawn(async move {
                    if fired.recv().await.is_some() {
                        world.balancer_outage(calls);
                    }
                });
            }
            Fault::Reload { run: r, at } if r == run => {
                world.at_operation(base + at, trigger);
                let world = world.clone();
                tokio::spawn(async move {
                    if fired.recv().await.is_some() {
                        world.balancer_reload();
                    }
                });
            }
            Fault::Signal { run: r, at } if r == run => {
                world.at_operation(base + at, trigger);
                let signals = signals.clone();
                tokio::spawn(async move {
                    if fired.recv().await.is_some() {
                        let _ = signals.send("SIGINT");
                    }
                });
            }
            Fault::OperatorDisables {
                run: r,
                at,
                ref host,
            } if r == run => {
                world.at_operation(base + at, trigger);
                let world = world.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    if fired.recv().await.is_some() {
                        world.operator_disables(&host);
                    }
                });
            }
            Fault::Kill { run: r, at } if r == run => {
                killing = true;
                world.at_operation(base + at, kill_tx.clone());
            }
            _ => {}
        }
    }
    // Keep the signal sender alive for the whole run (a closed channel is
    // not a signal).
    async move {
        let _signals = signals;
        if killing && kill_rx.recv().await.is_some() {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// At the end of a chain: every host updated, skipped or failed (or not
/// reached by a run that halted), and none left drained unless it failed
/// and is kept out on purpose.
fn check_end(world: &World, record: &RunRecord, outcome: RunOutcome) -> Result<(), String> {
    let mut problems = Vec::new();
    let drained = world.drained();
    // A step a kill left running ends by itself (the host's `timeout`),
    // but only while its host is out of service.
    for host in world.steps_running() {
        if !drained.contains(&host) && !world.operator_holds(&host) {
            problems.push(format!("a step still runs on {host}, which is in service"));
        }
    }
    for (name, host) in &record.hosts {
        let faults = world.faults(name);
        let kept_out = host.outcome.is_failure() && !host.drained.is_empty();
        if drained.contains(name) && !kept_out {
            problems.push(format!(
                "{name} left drained ({} / {})",
                host.phase.label(),
                host.outcome.label()
            ));
        }
        match host.outcome {
            Outcome::Pending if outcome == RunOutcome::Succeeded => {
                problems.push(format!("{name} still pending after a successful run"));
            }
            Outcome::Updated if !world.updated(name) => {
                problems.push(format!("{name} reported updated but was not"));
            }
            Outcome::Updated | Outcome::RolledBack if faults.operator_disabled => {
                problems.push(format!("{name}, disabled by an operator, was changed"));
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "after the chain ({}): {}",
            outcome.label(),
            problems.join("; ")
        ))
    }
}
