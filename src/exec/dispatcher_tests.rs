//! The dispatcher over in-memory hosts: caps, budgets, signals.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::*;
use crate::config::load::{LoadOptions, load_from_text};
use crate::config::source::SourceFile;
use crate::events::Outcome;
use crate::exec::env::{Cadence, RunEnv, Transports};
use crate::journal::replay::RunRecord;
use crate::journal::store::JournalWriter;
use crate::lock::{LockInfo, RunLock};
use crate::plan::batches::plan_batches;
use crate::plan::select::select;
use crate::transport::fake::{FakeBehaviour, FakeFleet};
use crate::transport::probe::Prober;

/// A fleet of `zones` × `per_zone` fake hosts named `{zone}{n}`: a0, a1, b0…
fn inventory(zones: &[&str], per_zone: usize) -> String {
    let mut text = String::from(
        "[defaults]\nbalancer = \"lb\"\n[balancers.lb]\nkind = \"command\"\ndrain = \"true\"\nundrain = \"true\"\n",
    );
    for zone in zones {
        text.push_str(&format!("[zones.{zone}]\nhosts = [\n"));
        for n in 0..per_zone {
            text.push_str(&format!(
                "  {{ name = \"{zone}{n}\", address = \"127.0.0.1\" }},\n"
            ));
        }
        text.push_str("]\n");
    }
    text
}

fn playbook(strategy: &str) -> String {
    format!(
        "name = \"t\"\n[strategy]\n{strategy}\n[drain]\nsettle = \"0s\"\n\
         [[steps]]\nname = \"deploy\"\nrun = \"deploy\"\ntimeout = \"30s\"\n\
         [health]\ninterval = \"20ms\"\nhealthy_after = 1\ntimeout = \"2s\"\n\
         [[probes]]\ncommand = \"healthy\"\n"
    )
}

/// The inventory's lock in the state directory `dir`, taken for run "r".
fn test_lock(dir: &Path) -> RunLock {
    let now = jiff::Timestamp::now();
    crate::lock::FileLock::acquire(
        &dir.join("locks/t.lock"),
        LockInfo {
            host: "test".into(),
            pid: std::process::id(),
            run_id: "r".into(),
            inventory: "t".into(),
            since: now.to_string(),
            heartbeat: now.to_string(),
            lease_s: None,
        },
        now,
    )
    .map(RunLock::File)
    .unwrap()
}

struct Harness {
    dispatcher: Dispatcher,
    batches: Vec<RunBatch>,
    signals: mpsc::UnboundedSender<&'static str>,
    _state: tempfile::TempDir,
}

fn harness(inventory: &str, playbook: &str, fleet: &FakeFleet) -> Harness {
    harness_with(inventory, playbook, fleet, |balancer| balancer)
}

type Balancer = Arc<dyn crate::transport::balancer::LoadBalancer>;

/// [`harness`] whose balancer is `wrap` of the fleet's.
fn harness_with(
    inventory: &str,
    playbook: &str,
    fleet: &FakeFleet,
    wrap: impl FnOnce(Balancer) -> Balancer,
) -> Harness {
    let config = load_from_text(
        SourceFile::new("inventory.toml", inventory),
        SourceFile::new("playbook.toml", playbook),
        Path::new("."),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let plan = plan_batches(
        &select(&config.inventory, &[]).unwrap(),
        &config.playbook.strategy,
    )
    .unwrap();
    let hosts: Vec<&Host> = config.inventory.hosts().collect();
    let batches = RunBatch::from_plan(&plan, &hosts);
    let state = tempfile::tempdir().unwrap();
    let lock = test_lock(state.path());
    let mut balancers: HashMap<String, Arc<dyn crate::transport::balancer::LoadBalancer>> =
        HashMap::new();
    balancers.insert("lb".into(), wrap(fleet.balancer("lb")));
    let env = Arc::new(RunEnv {
        transports: Transports {
            connector: fleet.connector(),
            balancers,
            prober: Prober::new(),
        },
        playbook: Arc::new(config.playbook.clone()),
        cadence: Cadence {
            balancer_poll: Duration::from_millis(10),
            up_timeout: Duration::from_secs(2),
            connect_attempts: 1,
        },
        needs_ssh: true,
        replacements: Default::default(),
    });
    let (signals, receiver) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher::new(
        env,
        JournalWriter::open(state.path(), "r").unwrap(),
        RunRecord::new("r"),
        lock,
        Clock::system(),
        Limits::of(&plan, Duration::ZERO),
        receiver,
    );
    Harness {
        dispatcher,
        batches,
        signals,
        _state: state,
    }
}

fn work(batches: Vec<RunBatch>) -> Work {
    Work {
        route: crate::exec::host_machine::Route::Roll,
        batches,
        adopted: Vec::new(),
        others: Vec::new(),
        resuming: false,
    }
}

fn quick() -> FakeBehaviour {
    FakeBehaviour {
        step_time: Duration::from_millis(20),
        ..FakeBehaviour::default()
    }
}

#[tokio::test]
async fn failed_hosts_that_stay_drained_count_against_max_unavailable() {
    let fleet = FakeFleet::new(quick());
    fleet.set(
        "a0",
        FakeBehaviour {
            fail_step: true,
            ..quick()
        },
    );
    let mut h = harness(
        &inventory(&["a"], 6),
        &playbook("batch = [2]\nmax_unavailable = 2\nmax_failed = 5"),
        &fleet,
    );
    let finish = h.dispatcher.run(work(h.batches)).await.unwrap();
    // a0 failed and stays out; with it, never more than 2 hosts were out.
    assert_eq!(fleet.drained(), ["a0"]);
    assert!(
        fleet.max_drained() <= 2,
        "{} out at once",
        fleet.max_drained()
    );
    assert_eq!(h.dispatcher.record().count(Outcome::Updated), 5);
    assert_eq!(h.dispatcher.record().hosts["a0"].outcome, Outcome::Failed);
    assert_eq!(finish.outcome, RunOutcome::Succeeded);
}

#[tokio::test]
async fn a_cap_filled_by_failed_hosts_halts_instead_of_waiting_forever() {
    let fleet = FakeFleet::new(quick());
    fleet.set(
        "a0",
        FakeBehaviour {
            fail_step: true,
            ..quick()
        },
    );
    let mut h = harness(
        &inventory(&["a"], 3),
        &playbook("batch = [1]\nmax_unavailable = 1\nmax_failed = 3"),
        &fleet,
    );
    let finish = h.dispatcher.run(work(h.batches)).await.unwrap();
    assert_eq!(finish.outcome, RunOutcome::Halted);
    assert!(finish.reason.unwrap().contains("max_unavailable"));
    assert_eq!(fleet.deploys("a1"), 0);
}

#[tokio::test]
async fn the_failure_budget_counts_every_kind_of_failure() {
    let fleet = FakeFleet::new(quick());
    fleet.set(
        "a0",
        FakeBehaviour {
            unreachable: true,
            ..quick()
        },
    );
    fleet.set(
        "a1",
        FakeBehaviour {
            fail_step: true,
            ..quick()
        },
    );
    let mut h = harness(
        &inventory(&["a"], 5),
        &playbook("batch = [1]\nmax_failed = 1"),
        &fleet,
    );
    let finish = h.dispatcher.run(work(h.batches)).await.unwrap();
    // One failure is tolerated; the second (of another kind) halts.
    assert_eq!(finish.outcome, RunOutcome::Halted);
    assert_eq!(
        h.dispatcher.record().hosts["a0"].outcome,
        Outcome::Unreachable
    );
    assert_eq!(h.dispatcher.record().hosts["a1"].outcome, Outcome::Failed);
    assert_eq!(fleet.deploys("a2"), 0);
    // The unreachable host was never drained; the failed one stays drained.
    assert_eq!(fleet.drained(), ["a1"]);
}

#[tokio::test]
async fn a_zone_that_spends_its_budget_halts_the_run() {
    let fleet = FakeFleet::new(quick());
    fleet.set(
        "a1",
        FakeBehaviour {
            fail_step: true,
            ..quick()
        },
    );
    let mut h = harness(
        &inventory(&["a", "b"], 3),
        &playbook("batch = [1]\nmax_failed = 10\nmax_failed_per_zone = 0"),
        &fleet,
    );
    let finish = h.dispatcher.run(work(h.batches)).await.unwrap();
    assert_eq!(finish.outcome, RunOutcome::Halted);
    assert!(finish.reason.unwrap().contains("zone a"));
    for untouched in ["a2", "b0", "b1", "b2"] {
        assert_eq!(fleet.deploys(untouched), 0, "{untouched}");
    }
}

#[tokio::test]
async fn a_second_signal_cancels_steps_and_still_returns_hosts() {
    let slow = FakeBehaviour {
        step_time: Duration::from_secs(20),
        ..FakeBehaviour::default()
    };
    let fleet = FakeFleet::new(slow);
    let mut h = harness(&inventory(&["a"], 4), &playbook("batch = [2]"), &fleet);
    let signals = h.signals.clone();
    let watcher = fleet.clone();
    tokio::spawn(async move {
        // Once both hosts of the first batch are drained, signal twice.
        while watcher.drained().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        signals.send("SIGINT").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        signals.send("SIGINT").unwrap();
    });
    let started = Instant::now();
    let finish = h.dispatcher.run(work(h.batches)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelled steps must not run to the end"
    );
    assert_eq!(finish.outcome, RunOutcome::Interrupted);
    assert!(
        fleet.drained().is_empty(),
        "hosts left drained: {:?}",
        fleet.drained()
    );
    assert_eq!(fleet.deploys("a2"), 0);
    assert_eq!(h.dispatcher.record().hosts["a0"].outcome, Outcome::Pending);
}

/// A full disk mid-run: the run stops starting hosts, cuts steps short,
/// returns the healthy hosts it had out, releases the lock, and says so.
#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_be_written_stops_the_run_and_returns_hosts() {
    let fleet = FakeFleet::new(FakeBehaviour {
        step_time: Duration::from_secs(5),
        ..FakeBehaviour::default()
    });
    let h = harness(&inventory(&["a"], 6), &playbook("batch = [2]"), &fleet);
    let lock_path = h._state.path().join("locks/t.lock");
    let journal = JournalWriter::open(h._state.path(), "r2")
        .unwrap()
        .full_after(12);
    let (_signals, receiver) = mpsc::unbounded_channel();
    let mut dispatcher = Dispatcher::new(
        Arc::clone(&h.dispatcher.env),
        journal,
        RunRecord::new("r2"),
        {
            h.dispatcher.heartbeat.release();
            test_lock(h._state.path())
        },
        Clock::system(),
        h.dispatcher.limits.clone(),
        receiver,
    );
    let error = dispatcher.run(work(h.batches)).await.unwrap_err();
    let RunError::Journal { source, .. } = &error else {
        panic!("a full disk is not a takeover: {error}");
    };
    assert!(source.to_string().contains("No space left"), "{error}");
    assert!(fleet.deploys("a0") >= 1, "the run had started");
    assert!(
        fleet.drained().is_empty(),
        "healthy hosts go back: {:?}",
        fleet.drained()
    );
    assert_eq!(fleet.deploys("a5"), 0, "no host starts after the fault");
    dispatcher.release();
    assert!(!lock_path.exists(), "the lock is released");
}

/// Issue 17: a journal write that fails takes the whole group with it, and
/// no host may act on a record of that group: whatever the moment the disk
/// fills, every host the balancer ever drained has its drain on disk.
#[tokio::test(start_paused = true)]
async fn no_host_is_drained_without_a_durable_record_whenever_the_disk_fills() {
    for room in 0..40 {
        let fleet = FakeFleet::new(FakeBehaviour {
            step_time: Duration::from_secs(5),
            ..FakeBehaviour::default()
        });
        let h = harness(&inventory(&["a"], 6), &playbook("batch = [3]"), &fleet);
        let journal = JournalWriter::open(h._state.path(), "r3")
            .unwrap()
            .full_after(room);
        let (_signals, receiver) = mpsc::unbounded_channel();
        let mut dispatcher = Dispatcher::new(
            Arc::clone(&h.dispatcher.env),
            journal,
            RunRecord::new("r3"),
            {
                h.dispatcher.heartbeat.release();
                test_lock(h._state.path())
            },
            Clock::system(),
            h.dispatcher.limits.clone(),
            receiver,
        );
        let _ = dispatcher.run(work(h.batches)).await;
        dispatcher.release();
        let on_disk = crate::journal::store::read_run(h._state.path(), "r3").unwrap();
        let recorded = crate::journal::replay::replay("r3", &on_disk);
        for host in fleet.ever_drained() {
            let drain_on_disk = on_disk
                .iter()
                .any(|e| matches!(&e.event, Event::Drain { host: h, .. } if *h == host));
            assert!(
                drain_on_disk,
                "room for {room} records: {host} was drained with no record on disk \
                 (journal: {:?})",
                recorded.hosts.get(&host)
            );
        }
    }
}

/// Issue 17: a kill between a host's last `undrained` record and its end
/// record. The host is updated and back in service; `resume` finishes it
/// (a probe round) without draining it again.
#[tokio::test(start_paused = true)]
async fn a_host_killed_after_its_return_is_finished_without_a_new_drain() {
    let fleet = FakeFleet::new(quick());
    let h = harness(&inventory(&["a"], 2), &playbook("batch = [1]"), &fleet);
    let mut record = RunRecord::new("r4");
    let events = [
        Event::HostPhase {
            host: "a0".into(),
            phase: Phase::Draining,
            outcome: None,
            detail: None,
        },
        Event::Drain {
            host: "a0".into(),
            balancer: "lb".into(),
        },
        Event::StepFinished {
            host: "a0".into(),
            step: "deploy".into(),
            index: 0,
            exit_code: Some(0),
            duration_ms: 20,
            ok: true,
            output_tail: String::new(),
            rollback: false,
        },
        Event::HostPhase {
            host: "a0".into(),
            phase: Phase::Undraining,
            outcome: None,
            detail: None,
        },
        Event::Undrained {
            host: "a0".into(),
            balancer: "lb".into(),
        },
    ];
    for event in events {
        record.apply(&Envelope::now("r4", event));
    }
    let (_signals, receiver) = mpsc::unbounded_channel();
    let mut dispatcher = Dispatcher::new(
        Arc::clone(&h.dispatcher.env),
        JournalWriter::open(h._state.path(), "r4").unwrap(),
        record,
        {
            h.dispatcher.heartbeat.release();
            test_lock(h._state.path())
        },
        Clock::system(),
        h.dispatcher.limits.clone(),
        receiver,
    );
    let mut resumed = work(h.batches);
    resumed.resuming = true;
    dispatcher.run(resumed).await.unwrap();
    assert_eq!(
        fleet.ever_drained(),
        ["a1"],
        "a0 was drained again although it was done and in service"
    );
    assert_eq!(fleet.deploys("a0"), 0);
    assert_eq!(dispatcher.record().hosts["a0"].outcome, Outcome::Updated);
    dispatcher.release();
}

/// Issue 17: Ctrl-Z (SIGTSTP) does not suspend or stop the run (a
/// suspended holder's heartbeat would stop): the run goes on to the end.
#[tokio::test(start_paused = true)]
async fn sigtstp_neither_stops_nor_suspends_the_run() {
    let fleet = FakeFleet::new(FakeBehaviour {
        step_time: Duration::from_secs(5),
        ..FakeBehaviour::default()
    });
    let mut h = harness(&inventory(&["a"], 4), &playbook("batch = [2]"), &fleet);
    let signals = h.signals.clone();
    let watcher = fleet.clone();
    tokio::spawn(async move {
        while watcher.drained().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        signals.send(crate::exec::signals::SUSPEND).unwrap();
    });
    let finish = h.dispatcher.run(work(h.batches)).await.unwrap();
    assert_eq!(finish.outcome, RunOutcome::Succeeded);
    for host in ["a0", "a1", "a2", "a3"] {
        assert_eq!(fleet.deploys(host), 1, "{host}");
    }
    assert!(fleet.drained().is_empty(), "{:?}", fleet.drained());
}

/// A balancer whose drain check (the watch the loop runs every few seconds
/// while hosts are out) hangs for `hang`, and whose pool read (for
/// `min_healthy`) for `pool_hang`, as an API that black-holes requests
/// would; everything else is the fleet's.
#[derive(Debug)]
struct HangingWatch {
    inner: Balancer,
    hang: Duration,
    pool_hang: Duration,
    /// The first pool read panics (a bug in a balancer's client).
    pool_panics: bool,
    pool_reads: std::sync::atomic::AtomicUsize,
    /// Whether a drain came before any pool read had succeeded.
    drained_unread: std::sync::atomic::AtomicBool,
}

impl HangingWatch {
    fn new(inner: Balancer, hang: Duration, pool_hang: Duration) -> Self {
        Self {
            inner,
            hang,
            pool_hang,
            pool_panics: false,
            pool_reads: std::sync::atomic::AtomicUsize::new(0),
            drained_unread: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[async_trait::async_trait]
impl crate::transport::balancer::LoadBalancer for HangingWatch {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn status(
        &self,
        target: crate::transport::balancer::Target<'_>,
    ) -> Result<crate::transport::balancer::ServerStatus, crate::transport::balancer::BalancerError>
    {
        self.inner.status(target).await
    }
    async fn drain(
        &self,
        target: crate::transport::balancer::Target<'_>,
    ) -> Result<(), crate::transport::balancer::BalancerError> {
        use std::sync::atomic::Ordering;
        if self.pool_reads.load(Ordering::SeqCst) == usize::from(self.pool_panics) {
            self.drained_unread.store(true, Ordering::SeqCst);
        }
        self.inner.drain(target).await
    }
    async fn undrain(
        &self,
        target: crate::transport::balancer::Target<'_>,
    ) -> Result<(), crate::transport::balancer::BalancerError> {
        self.inner.undrain(target).await
    }
    async fn pool(
        &self,
    ) -> Result<
        Option<crate::transport::balancer::PoolStatus>,
        crate::transport::balancer::BalancerError,
    > {
        tokio::time::sleep(self.pool_hang).await;
        let earlier = self
            .pool_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(
            !(self.pool_panics && earlier == 0),
            "a bug in the pool read"
        );
        self.inner.pool().await
    }
    async fn reassert_drains(
        &self,
        _drained: &[Host],
    ) -> Result<Vec<String>, crate::transport::balancer::BalancerError> {
        tokio::time::sleep(self.hang).await;
        Ok(Vec::new())
    }
}

/// Issue 17: the loop may wait on the outside world (here a drain check
/// that hangs for 200 s, past the lock's 90 s lease); the lock's heartbeat
/// must not wait with it, or the live run's lease runs out: its hosts would
/// stop acting, and another machine could take the run over.
#[tokio::test(start_paused = true)]
async fn a_loop_waiting_on_a_balancer_keeps_its_lock_alive() {
    let fleet = FakeFleet::new(FakeBehaviour {
        step_time: Duration::from_secs(20),
        ..FakeBehaviour::default()
    });
    let h = harness_with(
        &inventory(&["a"], 2),
        &playbook("batch = [1]"),
        &fleet,
        |inner| {
            Arc::new(HangingWatch::new(
                inner,
                Duration::from_secs(200),
                Duration::ZERO,
            ))
        },
    );
    let mut dispatcher = h.dispatcher;
    let finish = dispatcher.run(work(h.batches)).await.unwrap();
    assert_eq!(finish.outcome, RunOutcome::Succeeded, "{finish:?}");
    assert_eq!(fleet.deploys("a0"), 1);
    assert_eq!(fleet.deploys("a1"), 1);
    assert!(fleet.drained().is_empty(), "{:?}", fleet.drained());
    assert!(dispatcher.release(), "the lock was still this run's");
}

/// How a run's end is told, from its stop reasons alone: the strongest
/// wins, whatever order they came in.
#[test]
fn the_strongest_stop_reason_tells_how_the_run_ended() {
    use crate::exec::host_machine::Route;
    let all = Stops {
        signal: Stopping::Graceful,
        halted: Some("2 hosts failed".into()),
        lock_lost: Some("lock lost".into()),
        window_closed: Some("window closed".into()),
    };
    let outcome = |stops: &Stops, route, rolled_back| stops.finish(route, rolled_back).outcome;
    assert_eq!(outcome(&all, Route::Roll, true), RunOutcome::RolledBack);
    assert_eq!(outcome(&all, Route::Roll, false), RunOutcome::Halted);
    let no_halt = Stops {
        halted: None,
        ..all.clone()
    };
    assert_eq!(
        no_halt.finish(Route::Roll, false).reason.as_deref(),
        Some("lock lost")
    );
    let window = Stops {
        lock_lost: None,
        ..no_halt.clone()
    };
    assert_eq!(
        outcome(&window, Route::Roll, false),
        RunOutcome::WindowClosed
    );
    let signal = Stops {
        window_closed: None,
        ..window.clone()
    };
    assert_eq!(
        outcome(&signal, Route::Roll, false),
        RunOutcome::Interrupted
    );
    let none = Stops::default();
    assert_eq!(outcome(&none, Route::Roll, false), RunOutcome::Succeeded);
    assert_eq!(
        outcome(&none, Route::RollBack, false),
        RunOutcome::RolledBack
    );
    // Halted, a failed batch is still rolled back; nothing else starts.
    let halted = Stops {
        halted: Some("1 host failed".into()),
        ..Stops::default()
    };
    assert!(!halted.may_start_new(Route::Roll));
    assert!(halted.may_start_new(Route::RollBack));
    let halted_and_closed = Stops {
        window_closed: Some("window closed".into()),
        ..halted
    };
    assert!(!halted_and_closed.may_start_new(Route::RollBack));
    assert!(none.may_start_new(Route::Roll));
}

/// Issue 17: the pools' health (for `min_healthy`) is read beside the loop:
/// while a read hangs (200 s here), the loop still hears a signal and
/// stops the run at once, instead of after the read.
#[tokio::test(start_paused = true)]
async fn a_signal_is_heard_while_a_pool_read_hangs() {
    let fleet = FakeFleet::new(quick());
    let h = harness_with(
        &inventory(&["a"], 2),
        &playbook("batch = [1]\nmin_healthy = \"10%\""),
        &fleet,
        |inner| {
            Arc::new(HangingWatch::new(
                inner,
                Duration::ZERO,
                Duration::from_secs(200),
            ))
        },
    );
    let signals = h.signals.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = signals.send("SIGINT");
    });
    let mut dispatcher = h.dispatcher;
    let started = tokio::time::Instant::now();
    let finish = dispatcher.run(work(h.batches)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(finish.outcome, RunOutcome::Interrupted, "{finish:?}");
    assert!(
        took < Duration::from_secs(60),
        "the run waited {took:?} for the read"
    );
    assert_eq!(fleet.deploys("a0"), 0);
    assert!(dispatcher.release());
}

/// A pool read that fails as a task (a panic in a balancer's client) leaves
/// the pools it was to read unknown, which admits nobody on them until a
/// read succeeds: `min_healthy` is never skipped for a round.
#[tokio::test(start_paused = true)]
async fn a_pool_read_that_panics_admits_nobody_until_a_read_succeeds() {
    let fleet = FakeFleet::new(quick());
    let watched = std::sync::Mutex::new(None);
    let h = harness_with(
        &inventory(&["a"], 2),
        &playbook("batch = [1]\nmin_healthy = \"10%\""),
        &fleet,
        |inner| {
            let balancer = Arc::new(HangingWatch {
                pool_panics: true,
                ..HangingWatch::new(inner, Duration::ZERO, Duration::ZERO)
            });
            *watched.lock().unwrap() = Some(Arc::clone(&balancer));
            balancer
        },
    );
    let balancer = watched.lock().unwrap().take().unwrap();
    let mut dispatcher = h.dispatcher;
    let finish = dispatcher.run(work(h.batches)).await.unwrap();
    assert_eq!(finish.outcome, RunOutcome::Succeeded, "{finish:?}");
    assert!(
        !balancer
            .drained_unread
            .load(std::sync::atomic::Ordering::SeqCst),
        "a host was drained before the pool's health was known"
    );
    assert!(
        balancer
            .pool_reads
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    );
    assert_eq!(fleet.deploys("a0"), 1);
    assert_eq!(fleet.deploys("a1"), 1);
    assert!(dispatcher.release());
}
