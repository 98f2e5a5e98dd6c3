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
    if scenario.target_group {
        world.behave_like_a_target_group();
    }
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
    let chain = Chain {
        faults,
        config: &config,
        plan: &plan,
        hosts: &hosts,
        batches: &batches,
        env: &env,
        world: &world,
        dir: dir.path(),
        day: "2026-11-30T00:00:00Z".parse().expect("a timestamp"),
    };
    let mut ended = None;
    let mut killed = false;
    for run in 0..MAX_RUNS {
        match chain.one(run, Mode::Forward).await? {
            Next::Over(outcome) => {
                ended = Some(outcome);
                break;
            }
            // The operator rolls back instead of resuming.
            Next::Killed if scenario.undo_after_kill => {
                killed = true;
                break;
            }
            Next::Killed | Next::Again => {}
        }
    }
    if std::env::var_os("FLEETROLL_SIM_TRACE").is_some() {
        eprintln!("trace: {} operations", world.operations());
    }
    if !killed {
        let Some(outcome) = ended else {
            return Err(format!("the run did not end in {MAX_RUNS} runs"));
        };
        dump_journal(dir.path());
        let record = replay(
            RUN_ID,
            &read_run(dir.path(), RUN_ID).map_err(|e| e.to_string())?,
        );
        check_end(&world, &record, outcome, scenario.watch)?;
        check_exit(&world, &record, outcome, false)?;
    }
    if !scenario.undo {
        return Ok(());
    }
    // `fleetroll rollback RUN_ID`, killed and run again as the faults say.
    world.begin_undo();
    let mut undone = None;
    for run in 0..MAX_RUNS {
        if let Next::Over(outcome) = chain.one(run, Mode::Undo).await? {
            undone = Some(outcome);
            break;
        }
    }
    dump_journal(dir.path());
    let Some(outcome) = undone else {
        return Err(format!("the rollback did not end in {MAX_RUNS} runs"));
    };
    let record = replay(
        RUN_ID,
        &read_run(dir.path(), RUN_ID).map_err(|e| e.to_string())?,
    );
    check_end(&world, &record, outcome, scenario.watch)?;
    check_exit(&world, &record, outcome, true)?;
    check_undone(&world, &record)
}

/// `FLEETROLL_SIM_DUMP=1`: the journal's events at the end of each chain.
fn dump_journal(dir: &Path) {
    if std::env::var_os("FLEETROLL_SIM_DUMP").is_none() {
        return;
    }
    for e in read_run(dir, RUN_ID).unwrap_or_default() {
        eprintln!("{}", serde_json::to_string(&e.event).unwrap_or_default());
    }
}

/// How one process of a chain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The chain is over.
    Over(RunOutcome),
    /// kill -9.
    Killed,
    /// Stopped otherwise, or a host left out part-way: another follows.
    Again,
}

/// Forward (`run`, then `resume`) or `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Undo,
}

/// Fault run numbers of the rollback's processes start here.
pub const UNDO_RUNS: usize = 10;

/// What every process of a chain shares.
struct Chain<'a> {
    faults: &'a [Fault],
    config: &'a crate::config::load::Config,
    plan: &'a crate::plan::batches::Plan,
    hosts: &'a [Host],
    batches: &'a [RunBatch],
    env: &'a Arc<RunEnv>,
    world: &'a World,
    dir: &'a Path,
    day: jiff::Timestamp,
}

impl Chain<'_> {
    /// One fleetroll process of the chain: `Some` with how the chain ended
    /// once it has, `None` when another process must follow (killed,
    /// stopped, a host left out part-way).
    async fn one(&self, run: usize, mode: Mode) -> Result<Next, String> {
        let (config, plan, faults, world) = (self.config, self.plan, self.faults, self.world);
        let fault_run = match mode {
            Mode::Forward => run,
            Mode::Undo => UNDO_RUNS + run,
        };
        let lock_path = self.dir.join("locks/sim.lock");
        // The holder before was killed or finished: its lock is broken.
        let _ = std::fs::remove_file(&lock_path);
        let now = jiff::Timestamp::now();
        let lock = crate::lock::FileLock::acquire(
            &lock_path,
            LockInfo {
                host: "sim".into(),
                pid: std::process::id(),
                run_id: format!("{RUN_ID}-{fault_run}"),
                inventory: "sim".into(),
                since: now.to_string(),
                heartbeat: now.to_string(),
                lease_s: None,
            },
            now,
        )
        .map(RunLock::File)
        .map_err(|e| e.to_string())?;
        let record = if run == 0 && mode == Mode::Forward {
            RunRecord::new(RUN_ID)
        } else {
            replay(
                RUN_ID,
                &read_run(self.dir, RUN_ID).map_err(|e| e.to_string())?,
            )
        };
        if !(run == 0 && mode == Mode::Forward) && record.settings.is_none() {
            // The run's first record never reached the disk (it was full),
            // so nothing was begun: `resume` and `rollback` refuse such a
            // run ("no start record"), and the chain is over.
            return Ok(Next::Over(RunOutcome::Interrupted));
        }
        let batches: Vec<RunBatch> = match mode {
            Mode::Forward => self.batches.to_vec(),
            // As `rollback` plans it: newest batch first, only the hosts the
            // run changed and that are not rolled back yet.
            Mode::Undo => self
                .batches
                .iter()
                .rev()
                .map(|batch| RunBatch {
                    hosts: batch
                        .hosts
                        .iter()
                        .filter(|host| {
                            record
                                .hosts
                                .get(&host.name)
                                .is_some_and(|h| h.to_roll_back())
                        })
                        .cloned()
                        .collect(),
                    ..batch.clone()
                })
                .filter(|batch| !batch.hosts.is_empty())
                .collect(),
        };
        let others: Vec<Host> = match mode {
            Mode::Forward => Vec::new(),
            Mode::Undo => self
                .hosts
                .iter()
                .filter(|h| record.hosts.get(&h.name).is_some_and(|r| r.out_unchanged()))
                .cloned()
                .collect(),
        };
        let drained_unchanged = !others.is_empty();
        if mode == Mode::Undo && batches.is_empty() && !drained_unchanged {
            return Ok(Next::Over(RunOutcome::RolledBack));
        }
        let start_of_day = self
            .day
            .checked_add(jiff::SignedDuration::from_hours(24 * fault_run as i64))
            .expect("in range");
        let offset = if faults.contains(&Fault::OutsideWindow { run: fault_run }) {
            jiff::SignedDuration::from_mins(23 * 60 + 30)
        } else if faults.contains(&Fault::WindowCloses { run: fault_run }) {
            jiff::SignedDuration::from_secs(23 * 3600 - 40)
        } else {
            jiff::SignedDuration::from_mins(1)
        };
        // A rollback keeps to no window (as `rollback` does).
        let window = config
            .playbook
            .window
            .clone()
            .filter(|_| mode == Mode::Forward)
            .map(|window| WindowGuard {
                window,
                clock: Clock::following_tokio(start_of_day.checked_add(offset).expect("in range")),
                first_batch_estimate: Duration::from_secs(30),
            });
        let (signal_tx, signal_rx) = mpsc::unbounded_channel();
        let journal = JournalWriter::open(self.dir, RUN_ID).map_err(|e| e.to_string())?;
        let disk_full = faults.iter().find_map(|fault| match *fault {
            Fault::DiskFull {
                run: r,
                lines,
                percent,
            } if r == fault_run => Some((lines, percent)),
            _ => None,
        });
        let journal = match disk_full {
            Some((lines, percent)) => journal.full_after_lines(lines, percent),
            None => journal,
        };
        let mut dispatcher = Dispatcher::new(
            Arc::clone(self.env),
            journal,
            record,
            lock,
            Clock::following_tokio(start_of_day.checked_add(offset).expect("in range")),
            Limits::of(plan, config.playbook.strategy.pause),
            signal_rx,
        )
        .with_window(window);
        let first = match mode {
            Mode::Forward if run == 0 => Event::RunStarted {
                playbook: "sim".into(),
                hosts: self.hosts.len(),
                batches: self.batches.len(),
                failure_budget: plan.failure_budget,
                settings: RunSettings {
                    inventory: "sim".into(),
                    playbook: "sim".into(),
                    var_names: Vec::new(),
                    limit: Vec::new(),
                    accept_new_host_keys: false,
                },
                plan: RunBatch::planned(self.batches),
                fingerprint: None,
                max_unavailable: None,
                window_closes_at: None,
            },
            Mode::Forward => Event::RunResumed {
                pending: 0,
                rollback: false,
            },
            Mode::Undo => Event::RunResumed {
                pending: batches.iter().map(|b| b.hosts.len()).sum(),
                rollback: true,
            },
        };
        match dispatcher.emit(first) {
            Ok(()) => {}
            // The disk filled before the run's first record: nothing began.
            Err(_) if disk_full.is_some() => return Ok(Next::Again),
            Err(error) => return Err(error.to_string()),
        }
        let kill = schedule(world, faults, fault_run, signal_tx);
        let work = Work {
            route: match mode {
                Mode::Forward => Route::Roll,
                Mode::Undo => Route::RollBack,
            },
            batches,
            adopted: Vec::new(),
            others,
            resuming: run > 0 || mode == Mode::Undo,
        };
        let result = tokio::select! {
            biased;
            _ = kill => None,
            result = tokio::time::timeout(Duration::from_secs(7 * 24 * 3600), dispatcher.run(work)) => Some(result),
        };
        world.clear_triggers();
        let violations = world.violations();
        if !violations.is_empty() {
            return Err(format!("{mode:?} run {run}: {}", violations.join("; ")));
        }
        match result {
            // Killed: the lock and the journal stay as they are.
            None => Ok(Next::Killed),
            Some(Err(_)) => Err(format!(
                "{mode:?} run {run} did not end within a simulated week"
            )),
            // The disk filled: the run stopped; the next one finds room.
            Some(Ok(Err(RunError::Journal { .. }))) if disk_full.is_some() => {
                dispatcher.release();
                Ok(Next::Again)
            }
            Some(Ok(Err(error))) => Err(format!("{mode:?} run {run}: {error}")),
            Some(Ok(Ok(finish))) => {
                let stranded = dispatcher
                    .record()
                    .hosts
                    .values()
                    .any(|h| !h.drained.is_empty() && !h.is_settled());
                dispatcher.release();
                // A host left out part-way is for the next process to finish.
                let over = !stranded
                    && matches!(
                        finish.outcome,
                        RunOutcome::Succeeded | RunOutcome::Halted | RunOutcome::RolledBack
                    );
                Ok(if over {
                    Next::Over(finish.outcome)
                } else {
                    Next::Again
                })
            }
        }
    }
}

/// The exit code the command would give agrees with the world: 0 only
/// when no host is out of service and, for `run`, every host it selected
/// is on the new version (or was skipped).
fn check_exit(
    world: &World,
    record: &RunRecord,
    outcome: RunOutcome,
    rolling_back: bool,
) -> Result<(), String> {
    let finish = crate::exec::dispatcher::Finish {
        outcome,
        reason: None,
    };
    if crate::app::rollout::exit_for(&finish, record, rolling_back) != crate::app::Exit::Success {
        return Ok(());
    }
    let drained = world.drained();
    let mut problems: Vec<String> = drained
        .iter()
        .map(|host| format!("{host} is out of service"))
        .collect();
    if !rolling_back {
        for name in record.plan.iter().flat_map(|batch| &batch.hosts) {
            let skipped = record
                .hosts
                .get(name)
                .is_some_and(|h| h.outcome == Outcome::Skipped);
            if !skipped && !world.updated(name) {
                problems.push(format!("{name} is not on the new version"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "exit 0 ({}) but {}",
            outcome.label(),
            problems.join("; ")
        ))
    }
}

/// After `rollback`: every host it reports rolled back is on the old
/// version again.
fn check_undone(world: &World, record: &RunRecord) -> Result<(), String> {
    let problems: Vec<String> = record
        .hosts
        .iter()
        .filter(|(name, host)| host.outcome == Outcome::RolledBack && world.updated(name))
        .map(|(name, _)| format!("{name} reported rolled back but still runs the new version"))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("after the rollback: {}", problems.join("; ")))
    }
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
            Fault::LostAnswer { run: r, at } if r == run => {
                world.at_operation(base + at, trigger);
                let world = world.clone();
                tokio::spawn(async move {
                    if fired.recv().await.is_some() {
                        world.lose_next_answer();
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
fn check_end(
    world: &World,
    record: &RunRecord,
    outcome: RunOutcome,
    watching: bool,
) -> Result<(), String> {
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
            Outcome::Regressed if world.in_service(name) => {
                problems.push(format!("{name} regressed, yet is in service"));
            }
            _ => {}
        }
        // With [watch], a host counts as updated only after a watch that
        // did not find it regressed (a kill during its watch resumes it);
        // one an operator holds out serves nothing to watch.
        if watching && host.outcome == Outcome::Updated && !world.operator_holds(name) {
            match &host.watch {
                None => problems.push(format!("{name} updated without a watch")),
                Some((crate::events::WatchVerdict::Regressed, _)) => {
                    problems.push(format!("{name} updated although it regressed"));
                }
                Some(_) => {}
            }
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
