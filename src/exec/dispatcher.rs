//! The dispatcher: the one loop that owns a run.
//!
//! Every run-level phase (taking over hosts an earlier run left drained,
//! returning them, batches, gates, pauses, rolling back a failed batch,
//! finishing) is driven from here, and every wait goes through one
//! `select!` ([`Dispatcher::wait`]) over host messages, finished host
//! tasks, signals, the lock's heartbeat (beaten by a task of its own,
//! [`super::heartbeat`], so that no wait of the loop delays it), the
//! balancer watch (a task too; returns of the hosts it may re-drain wait
//! for it), a timer and a gate task. Host messages are group-committed to the journal (one fsync
//! per group, before any task acts on them) and then handed to the
//! reporters. Host tasks never see run state; admission is a pure function
//! of who is out ([`super::admission`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::admission::{self, Blocked, Candidate, Caps, Occupancy, Pool};
use super::env::RunEnv;
use super::heartbeat::{Beat, Heartbeat};
use super::host_machine::Route;
use super::host_task::{HostReport, HostStart, drive};
use super::messages::{HostMessage, LeaseClock, Reporter};
use super::retry;
use crate::clock::Clock;
use crate::events::{Envelope, Event, Outcome, Phase, RunOutcome, WatchVerdict};
use crate::journal::replay::RunRecord;
use crate::journal::store::{JournalError, JournalWriter};
use crate::lock::RunLock;
use crate::model::inventory::Host;
use crate::model::playbook::{OnFailure, Window};
use crate::plan::window::{WindowState, fits, window_state};
use crate::transport::balancer::{LoadBalancer, PoolStatus};
use crate::transport::gate::GateResult;

/// Receives every event after it is durable; decides nothing.
pub trait EventSink: Send {
    fn event(&mut self, envelope: &Envelope, record: &RunRecord);
}

/// A batch to run, hosts resolved.
#[derive(Debug, Clone)]
pub struct RunBatch {
    pub index: usize,
    pub zones: Vec<String>,
    pub hosts: Vec<Host>,
}

impl RunBatch {
    /// The plan's batches, with hosts resolved from the inventory's hosts
    /// (in inventory order, as the plan numbers them).
    pub fn from_plan(plan: &crate::plan::batches::Plan, hosts: &[&Host]) -> Vec<RunBatch> {
        plan.batches
            .iter()
            .map(|batch| RunBatch {
                index: batch.index,
                zones: batch.zones.clone(),
                hosts: batch
                    .hosts
                    .iter()
                    .map(|id| hosts[id.0 as usize].clone())
                    .collect(),
            })
            .collect()
    }

    /// The batches as `run_started` records them.
    pub fn planned(batches: &[RunBatch]) -> Vec<crate::events::PlannedBatch> {
        batches
            .iter()
            .map(|batch| crate::events::PlannedBatch {
                index: batch.index,
                zones: batch.zones.clone(),
                hosts: batch.hosts.iter().map(|h| h.name.clone()).collect(),
                host_zones: batch.hosts.iter().map(|h| h.zone.clone()).collect(),
            })
            .collect()
    }
}

/// The limits the dispatcher enforces while running.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_unavailable: usize,
    /// Per zone: hosts allowed out of service at once.
    pub zone_caps: HashMap<String, usize>,
    pub failure_budget: usize,
    /// Per zone: failures tolerated.
    pub zone_failure_budgets: HashMap<String, usize>,
    pub pause: Duration,
}

impl Limits {
    /// The plan's caps and budgets, with the strategy's pause.
    pub fn of(plan: &crate::plan::batches::Plan, pause: Duration) -> Self {
        Self {
            max_unavailable: plan.max_unavailable,
            zone_caps: plan
                .zone_caps
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            failure_budget: plan.failure_budget,
            zone_failure_budgets: plan
                .zone_failure_budgets
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            pause,
        }
    }
}

/// How the run ended, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub outcome: RunOutcome,
    pub reason: Option<String>,
}

/// The maintenance window the run must keep to.
#[derive(Debug, Clone)]
pub struct WindowGuard {
    pub window: Window,
    pub clock: Clock,
    /// The plan's estimate of one batch, until batches have been timed.
    pub first_batch_estimate: Duration,
}

/// A host an earlier run of this inventory left drained: this run takes
/// its drain over (recorded here first, then handed over there).
#[derive(Debug)]
pub struct Adopted {
    pub host: Host,
    pub drained: Vec<String>,
    pub memory: Vec<(String, String)>,
    /// The earlier run's journal, to record the hand-over in.
    pub from: JournalWriter,
    /// The host is in this run's batches; otherwise it is only returned.
    pub selected: bool,
}

/// What the run is to do.
#[derive(Debug)]
pub struct Work {
    /// Forward (`Roll`) or `RollBack`.
    pub route: Route,
    pub batches: Vec<RunBatch>,
    pub adopted: Vec<Adopted>,
    /// Hosts outside the batches the run may have to return: when it is
    /// rolled back, those it drained and never changed.
    pub others: Vec<Host>,
    /// A resume: before the first batch with work, the gates after the
    /// batch before it are checked again unless they passed.
    pub resuming: bool,
}

/// A run-level fault that ended the run early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{source}; fleetroll stopped starting hosts and returned the healthy ones it had out{kept}{}",
        lock_note(*.released)
    )]
    Journal {
        source: JournalError,
        /// ", except: web-01, web-02", or empty.
        kept: String,
        /// Whether the lock was released (set once it was tried).
        released: bool,
    },
    /// Another fleetroll took the run over: whatever this one had out is
    /// the new holder's now (its journal says so), so this one let go of
    /// it untouched.
    #[error(
        "{source}; fleetroll stopped and left the hosts it was working on ({hosts}) to the run that took over"
    )]
    Fenced { source: JournalError, hosts: String },
}

fn lock_note(released: bool) -> &'static str {
    if released {
        "; the lock was released"
    } else {
        "; the lock could not be released: it is stale once its heartbeat is older than its lease"
    }
}

impl RunError {
    /// Records whether the run's lock was released after the error.
    pub fn with_lock_released(mut self, was_released: bool) -> Self {
        if let RunError::Journal { released, .. } = &mut self {
            *released = was_released;
        }
        self
    }
}

/// What the loop is doing about stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stopping {
    #[default]
    No,
    /// First signal: start no new host, let in-flight ones finish.
    Graceful,
    /// Second signal (or a broken journal): cut steps short, still return hosts.
    Now,
}

/// Why the run starts no more hosts: each reason as first given. How they
/// rank is decided in one place, [`Stops::finish`]; a broken journal,
/// which ends the run with an error instead, is kept apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stops {
    signal: Stopping,
    /// The failure budget is spent (or a task failed): only a rollback of
    /// the failed batch still starts hosts.
    halted: Option<String>,
    /// The lock is no longer this run's.
    lock_lost: Option<String>,
    /// The maintenance window closed, or the next batch would not fit in it.
    window_closed: Option<String>,
}

impl Stops {
    /// Whether a host that is not out yet may be started on `route`.
    fn may_start_new(&self, route: Route) -> bool {
        self.signal == Stopping::No
            && (self.halted.is_none() || route == Route::RollBack)
            && self.window_closed.is_none()
            && self.lock_lost.is_none()
    }

    /// How the run ended, told by its strongest reason: a rollback of a
    /// failed batch, then a halt, a lost lock, a closed window, a signal.
    fn finish(&self, route: Route, rolled_back: bool) -> Finish {
        let (outcome, reason) = if rolled_back {
            (
                RunOutcome::RolledBack,
                self.halted
                    .clone()
                    .map(|r| format!("{r}; the batch was rolled back")),
            )
        } else if let Some(reason) = self.halted.as_ref().or(self.lock_lost.as_ref()) {
            (RunOutcome::Halted, Some(reason.clone()))
        } else if let Some(reason) = &self.window_closed {
            (
                RunOutcome::WindowClosed,
                Some(format!(
                    "{reason}; `fleetroll resume` continues in the next window"
                )),
            )
        } else if self.signal != Stopping::No {
            (
                RunOutcome::Interrupted,
                Some("stopped by a signal; `fleetroll resume` continues".to_owned()),
            )
        } else if route == Route::RollBack {
            (RunOutcome::RolledBack, None)
        } else {
            (RunOutcome::Succeeded, None)
        };
        Finish { outcome, reason }
    }
}

/// What woke the loop.
enum Woke {
    Ended(Result<HostReport, JoinError>),
    Signal,
    Timer,
    Gate(Result<Vec<(String, GateResult)>, JoinError>),
    /// The pools' health was read (kept for the next admission round).
    Pools,
}

/// While hosts are out: how often balancers are checked for lost drains.
const BALANCER_WATCH_EVERY: Duration = Duration::from_secs(2);

pub struct Dispatcher {
    env: Arc<RunEnv>,
    run_id: String,
    journal: JournalWriter,
    record: RunRecord,
    sinks: Vec<Box<dyn EventSink>>,
    heartbeat: Heartbeat,
    /// What the heartbeat task found.
    beats: mpsc::UnboundedReceiver<Beat>,
    limits: Limits,
    signals: mpsc::UnboundedReceiver<&'static str>,
    started: Instant,
    window: Option<WindowGuard>,
    /// Every host this run may drive, by name.
    hosts: HashMap<String, Host>,
    occupancy: Occupancy,
    /// Hosts whose task runs, with their route.
    in_flight: HashMap<String, Route>,
    tasks: JoinSet<HostReport>,
    /// How long host tasks may act without a fresh heartbeat.
    lease: Arc<LeaseClock>,
    /// Which host each task drives, to name the host of a task that panics.
    task_hosts: HashMap<tokio::task::Id, String>,
    tx: mpsc::UnboundedSender<HostMessage>,
    rx: mpsc::UnboundedReceiver<HostMessage>,
    cancel: CancellationToken,
    stops: Stops,
    /// The window's end for the batch running now.
    closes_at: Option<jiff::Timestamp>,
    journal_broken: Option<JournalError>,
    watch: tokio::time::Interval,
    /// The balancer watch under way, as a task: the loop never waits on it.
    watching: Option<Watch>,
    /// For `min_healthy`: the pools' health being read, as a task, and
    /// what the last read found, for the next admission round.
    pool_read: Option<PoolRead>,
    /// The hosts of the batch being run (not `[watch]`'s baseline).
    batch_hosts: std::collections::HashSet<String>,
    /// `[watch]`'s baselines of this batch, by the hosts' balancers.
    batch_baselines: HashMap<Vec<String>, Arc<[String]>>,
    /// Once the journal broke, the drains it holds: a drain whose record
    /// failed to be written was never done, and must not be re-applied.
    durable_drains: Option<HashMap<String, Vec<String>>>,
    pools_read: Option<PoolReads>,
    batch_durations: Vec<Duration>,
}

/// What each balancer reported of its pool (`None`: it cannot tell), or
/// why it could not be read.
type PoolReads = Vec<(String, Result<Option<PoolStatus>, String>)>;

/// A read of the pools' health, run beside the loop.
struct PoolRead {
    /// The balancers read: if the task fails, each reads as unknown.
    names: Vec<String>,
    task: JoinHandle<PoolReads>,
}

/// A check of the balancers for lost drains, run beside the loop.
struct Watch {
    task: JoinHandle<Vec<String>>,
    /// The hosts it may re-drain: their return is not acknowledged (so
    /// they stay out) until it is over, or it could re-drain a host that
    /// just went back.
    hosts: std::collections::HashSet<String>,
    /// Acknowledgements of those hosts' `undraining` records, held back.
    held: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// "sat 2026-11-28 02:00 Europe/Berlin".
fn describe_instant(at: jiff::Timestamp, timezone: &str) -> String {
    match jiff::tz::TimeZone::get(timezone) {
        Ok(tz) => at.to_zoned(tz).strftime("%a %Y-%m-%d %H:%M %Z").to_string(),
        Err(_) => at.to_string(),
    }
}

impl Dispatcher {
    /// A dispatcher for the run `record` describes (a fresh one for a new
    /// run), holding `lock` from now until it is released.
    pub fn new(
        env: Arc<RunEnv>,
        mut journal: JournalWriter,
        record: RunRecord,
        lock: RunLock,
        clock: Clock,
        limits: Limits,
        signals: mpsc::UnboundedReceiver<&'static str>,
    ) -> Self {
        if let RunLock::File(lock) = &lock {
            journal.fence_with(Arc::new(lock.fence()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let every = lock.heartbeat_every();
        let lease = Arc::new(LeaseClock::new(
            lock.info().lease().saturating_sub(every).max(every),
        ));
        let (heartbeat, beats) = Heartbeat::start(lock, Arc::clone(&lease), clock);
        let mut watch = tokio::time::interval(BALANCER_WATCH_EVERY);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            lease,
            env,
            run_id: record.run_id.clone(),
            journal,
            record,
            sinks: Vec::new(),
            heartbeat,
            beats,
            limits,
            signals,
            started: Instant::now(),
            window: None,
            hosts: HashMap::new(),
            occupancy: Occupancy::default(),
            in_flight: HashMap::new(),
            tasks: JoinSet::new(),
            task_hosts: HashMap::new(),
            tx,
            rx,
            cancel: CancellationToken::new(),
            stops: Stops::default(),
            closes_at: None,
            journal_broken: None,
            watch,
            watching: None,
            pool_read: None,
            batch_hosts: std::collections::HashSet::new(),
            batch_baselines: HashMap::new(),
            durable_drains: None,
            pools_read: None,
            batch_durations: Vec::new(),
        }
    }

    pub fn with_sinks(mut self, sinks: Vec<Box<dyn EventSink>>) -> Self {
        self.sinks = sinks;
        self
    }

    pub fn with_window(mut self, window: Option<WindowGuard>) -> Self {
        self.window = window;
        self
    }

    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the run's hold on the inventory; whether the lock was released.
    pub fn release(self) -> bool {
        self.heartbeat.release()
    }

    /// Appends, fsyncs and reports one event the run itself produces.
    /// Records one event, durably, and hands it to the reporters.
    pub fn emit(&mut self, event: Event) -> Result<(), JournalError> {
        let envelope = self.envelope(event);
        if self.journal_broken.is_none() {
            self.journal.append(&envelope)?;
            self.journal.sync()?;
        }
        self.deliver(&envelope);
        Ok(())
    }

    /// Records an event of the run's own (not a host's); a journal that
    /// cannot take it breaks the run, as a host's record would, so that
    /// nothing new starts on a journal that no longer tells what happened.
    fn note(&mut self, event: Event) {
        if let Err(error) = self.emit(event) {
            self.break_journal(error);
        }
    }

    fn envelope(&self, event: Event) -> Envelope {
        Envelope::now(&self.run_id, event)
    }

    fn deliver(&mut self, envelope: &Envelope) {
        self.record.apply(envelope);
        match &envelope.event {
            Event::Drain { host, .. } => {
                let zone = self.zone_of(host);
                self.occupancy.hold(host, &zone);
            }
            // A watched host is in service: the caps count it so.
            Event::HostPhase {
                host,
                phase: Phase::Watching,
                ..
            } if self
                .record
                .hosts
                .get(host)
                .is_some_and(|r| r.drained.is_empty()) =>
            {
                self.occupancy.release(host);
            }
            _ => {}
        }
        for sink in &mut self.sinks {
            sink.event(envelope, &self.record);
        }
    }

    fn zone_of(&self, host: &str) -> String {
        self.hosts
            .get(host)
            .map(|h| h.zone.clone())
            .or_else(|| self.record.zone_of(host).map(str::to_owned))
            .unwrap_or_default()
    }

    /// Writes a group of host messages with one fsync, then releases the
    /// tasks waiting on them. A journal that cannot be written stops the
    /// run: no host starts, in-flight steps are cut short, and hosts may
    /// still go back to service (which needs no record to be safe: resume
    /// finds them drained in the journal and verifies them again).
    fn commit(&mut self, messages: Vec<HostMessage>) {
        let (envelopes, acks): (Vec<Envelope>, Vec<_>) = messages
            .into_iter()
            .map(|message| (self.envelope(message.event), message.ack))
            .unzip();
        if self.journal_broken.is_none() {
            let written = envelopes
                .iter()
                .try_for_each(|envelope| self.journal.append(envelope))
                .and_then(|()| self.journal.sync());
            if let Err(error) = written {
                self.break_journal(error);
            }
        }
        let fenced = self.fenced();
        let broken = self.journal_broken.is_some();
        for (envelope, ack) in envelopes.iter().zip(acks) {
            self.deliver(envelope);
            // A fenced run acts on nothing more: a host task waiting for
            // its record finds the run closed and stops where it is. With
            // a broken journal, nothing is begun without its record (a
            // drain, a step, a change to an Auto Scaling group); returns
            // to service still go on.
            if let Some(ack) = ack
                && !fenced
                && !(broken && is_write_ahead(&envelope.event))
            {
                match (&mut self.watching, &envelope.event) {
                    (
                        Some(watch),
                        Event::HostPhase {
                            host,
                            phase: Phase::Undraining,
                            ..
                        },
                    ) if watch.hosts.contains(host) => watch.held.push(ack),
                    _ => {
                        let _ = ack.send(());
                    }
                }
            }
        }
    }

    /// Another fleetroll continued this run's journal: the hosts are its.
    fn fenced(&self) -> bool {
        matches!(self.journal_broken, Some(JournalError::Fenced { .. }))
    }

    fn break_journal(&mut self, error: JournalError) {
        // The first fault decides (a fenced journal stays fenced: a later
        // write error must not turn "leave the hosts to the run that took
        // over" into "return them").
        if self.journal_broken.is_some() {
            return;
        }
        let warning = Envelope::now(
            &self.run_id,
            Event::Warning {
                host: None,
                message: if matches!(error, JournalError::Fenced { .. }) {
                    format!(
                        "{error}: starting no more hosts, cutting steps short, leaving the hosts it has out to the run that took over"
                    )
                } else {
                    format!(
                        "{error}: starting no more hosts, cutting steps short, returning healthy hosts to service"
                    )
                },
            },
        );
        self.journal_broken = Some(error);
        // What the journal holds from now on: records delivered after the
        // break never reached it.
        self.durable_drains = Some(
            self.record
                .hosts
                .iter()
                .map(|(host, record)| (host.clone(), record.drained.clone()))
                .collect(),
        );
        self.stops.signal = Stopping::Now;
        self.cancel.cancel();
        for sink in &mut self.sinks {
            sink.event(&warning, &self.record);
        }
    }

    /// Commits `first` (if any) and every message already waiting behind it.
    fn commit_waiting(&mut self, first: Option<HostMessage>) {
        let mut group: Vec<HostMessage> = first.into_iter().collect();
        while let Ok(more) = self.rx.try_recv() {
            group.push(more);
        }
        if !group.is_empty() {
            self.commit(group);
        }
    }

    /// The one wait of the run: returns on a finished host task, a signal,
    /// the timer, or the gate task; commits host messages, beats the lock's
    /// heartbeat and watches balancers meanwhile.
    async fn wait(
        &mut self,
        timer: Option<tokio::time::Instant>,
        mut gate: Option<&mut JoinHandle<Vec<(String, GateResult)>>>,
    ) -> Woke {
        loop {
            let sleep = async {
                match timer {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let gate_done = async {
                match gate.as_deref_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            let watching = !self.occupancy.is_empty() && self.watching.is_none();
            let pools_read = async {
                match self.pool_read.as_mut() {
                    Some(read) => (&mut read.task).await,
                    None => std::future::pending().await,
                }
            };
            let watched = async {
                match self.watching.as_mut() {
                    Some(watch) => (&mut watch.task).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: the same inputs are taken in the same order every
            // time, which keeps the simulation deterministic.
            tokio::select! {
                biased;
                Some(first) = self.rx.recv() => self.commit_waiting(Some(first)),
                Some(joined) = self.tasks.join_next_with_id() => {
                    // Everything the task sent is already queued; take it first.
                    self.commit_waiting(None);
                    if let Ok((id, _)) = &joined {
                        self.task_hosts.remove(id);
                    }
                    return Woke::Ended(joined.map(|(_, report)| report));
                }
                Some(signal) = self.signals.recv() => {
                    self.on_signal(signal);
                    return Woke::Signal;
                }
                Some(beat) = self.beats.recv() => self.on_beat(beat),
                _ = self.watch.tick(), if watching => self.start_watch(),
                result = watched => self.watch_ended(result),
                result = pools_read => {
                    self.pools_ended(result);
                    return Woke::Pools;
                }
                () = sleep => return Woke::Timer,
                result = gate_done => return Woke::Gate(result),
            }
        }
    }

    fn warn(&mut self, message: String) {
        // A journal that cannot take a warning will not take the next
        // record either: stop now rather than wait for it (each failed
        // write of a bucket's journal takes its retries' time).
        self.note(Event::Warning {
            host: None,
            message,
        });
    }

    fn on_signal(&mut self, signal: &str) {
        if signal == crate::exec::signals::SUSPEND {
            self.warn(format!(
                "{signal} ignored: a suspended fleetroll stops beating its lock's heartbeat while it \
                 has hosts out; Ctrl-C stops it gracefully"
            ));
            return;
        }
        match self.stops.signal {
            Stopping::No => {
                self.stops.signal = Stopping::Graceful;
                self.warn(format!(
                    "{signal}: finishing in-flight hosts, then stopping; send it again to cut their steps short"
                ));
            }
            Stopping::Graceful | Stopping::Now => {
                self.stops.signal = Stopping::Now;
                self.cancel.cancel();
                self.warn(format!(
                    "{signal} again: cutting steps short; hosts that pass a probe round go back to service"
                ));
            }
        }
    }

    /// A lock that is no longer ours stops the run.
    fn on_beat(&mut self, beat: Beat) {
        match beat {
            Beat::Lost(error) => {
                if self.stops.lock_lost.is_none() {
                    self.stops.lock_lost = Some(error.clone());
                    self.warn(format!("{error}; starting no more hosts"));
                }
            }
            Beat::Failed(error) => self.warn(error),
        }
    }

    /// Has every balancer re-apply the drains the journal says fleetroll
    /// holds (a HAProxy reload forgets them), hosts being returned excepted:
    /// as a task, whose findings come back to the loop
    /// ([`Dispatcher::watch_ended`]).
    fn start_watch(&mut self) {
        if self.fenced() || self.stops.lock_lost.is_some() || !self.lease.holds() {
            // The drains are the new holder's to keep (or to have lifted).
            // A lease that ran out (this process was frozen past it) may
            // have been taken over: the heartbeat task is about to say so,
            // and until a heartbeat lands again nothing is re-drained.
            return;
        }
        let mut balancers: Vec<_> = self
            .env
            .transports
            .balancers
            .iter()
            .map(|(name, balancer)| (name.clone(), Arc::clone(balancer)))
            .collect();
        balancers.sort_by(|a, b| a.0.cmp(&b.0));
        let mut checks = Vec::new();
        let mut hosts = std::collections::HashSet::new();
        for (name, balancer) in balancers {
            let mut drained: Vec<Host> = self
                .occupancy
                .hosts()
                .filter_map(|host| {
                    let record = self.record.hosts.get(host)?;
                    let durable = self.durable_drains.as_ref().is_none_or(|durable| {
                        durable
                            .get(host)
                            .is_some_and(|drained| drained.contains(&name))
                    });
                    (durable && record.drained.contains(&name) && record.phase != Phase::Undraining)
                        .then(|| self.hosts.get(host).cloned())?
                })
                .collect();
            if drained.is_empty() {
                continue;
            }
            drained.sort_by(|a, b| a.name.cmp(&b.name));
            hosts.extend(drained.iter().map(|h| h.name.clone()));
            checks.push((name, balancer, drained));
        }
        if checks.is_empty() {
            return;
        }
        // A drain re-applied writes no record, so the journal's fence does
        // not stop it: the lock is checked first, or a holder that lost it
        // (frozen, then broken and taken over) would drain a host the run
        // that took over has returned. (The turn is not held across the
        // balancer's round trips: the journal's writes need it.)
        if let Some(fence) = self.journal.fence()
            && fence.turn().is_err()
        {
            return;
        }
        let task = tokio::spawn(async move {
            let mut warnings = Vec::new();
            for (name, balancer, drained) in checks {
                match balancer.reassert_drains(&drained).await {
                    Ok(repaired) => warnings.extend(repaired),
                    Err(error) => warnings.push(format!(
                        "cannot check balancer {name} for lost drains: {error}"
                    )),
                }
            }
            warnings
        });
        self.watching = Some(Watch {
            task,
            hosts,
            held: Vec::new(),
        });
    }

    /// The balancer watch is over: the returns it held back go on.
    fn watch_ended(&mut self, result: Result<Vec<String>, JoinError>) {
        let Some(watch) = self.watching.take() else {
            return;
        };
        for ack in watch.held {
            let _ = ack.send(());
        }
        match result {
            Ok(warnings) => {
                for message in warnings {
                    self.warn(message);
                }
            }
            Err(error) => self.warn(format!("the balancer watch failed: {error}")),
        }
    }

    /// Runs the work to its end and records how it ended.
    pub async fn run(&mut self, mut work: Work) -> Result<Finish, RunError> {
        for batch in &work.batches {
            for host in &batch.hosts {
                self.hosts.insert(host.name.clone(), host.clone());
            }
        }
        for host in &work.others {
            self.hosts.insert(host.name.clone(), host.clone());
        }
        for adopted in &work.adopted {
            self.hosts
                .insert(adopted.host.name.clone(), adopted.host.clone());
        }
        // Whatever the journal says is out, is out.
        let out: Vec<(String, String)> = self
            .record
            .hosts
            .iter()
            .filter(|(_, record)| !record.drained.is_empty())
            .map(|(name, _)| (name.clone(), self.zone_of(name)))
            .collect();
        for (host, zone) in out {
            self.occupancy.hold(&host, &zone);
        }
        let mut returns = self.adopt(std::mem::take(&mut work.adopted));
        returns.extend(self.forgotten(work.route));
        if !returns.is_empty() {
            let batch = RunBatch {
                index: usize::MAX,
                zones: Vec::new(),
                hosts: returns,
            };
            self.run_batch(&batch, Route::Return).await;
        }
        if work.route == Route::Roll {
            // A run halted for its failure budget stays halted when
            // resumed: it only finishes the hosts it has out.
            self.stops.halted = self.budget_spent();
        }
        let finish = self.run_batches(&work).await;
        if let Some(watch) = self.watching.take() {
            // Every host task has ended: no return waits on it any more,
            // and no drain it could still re-apply is of a host in service.
            watch.task.abort();
        }
        if let Some(read) = self.pool_read.take() {
            read.task.abort();
        }
        if let Some(source) = self.journal_broken.take() {
            if matches!(source, JournalError::Fenced { .. }) {
                let hosts: Vec<&str> = self.occupancy.hosts().collect();
                let hosts = if hosts.is_empty() {
                    "none".to_owned()
                } else {
                    hosts.join(", ")
                };
                return Err(RunError::Fenced { source, hosts });
            }
            let kept: Vec<&str> = self.occupancy.hosts().collect();
            let kept = if kept.is_empty() {
                String::new()
            } else {
                format!(", except: {}", kept.join(", "))
            };
            return Err(RunError::Journal {
                source,
                kept,
                released: false,
            });
        }
        let event = Event::RunFinished {
            outcome: finish.outcome,
            updated: self.record.count(Outcome::Updated),
            failed: self.record.failures(),
            skipped: self.record.count(Outcome::Skipped),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            reason: finish.reason.clone(),
        };
        if let Err(source) = self.emit(event) {
            return Err(RunError::Journal {
                source,
                kept: String::new(),
                released: false,
            });
        }
        Ok(finish)
    }

    /// Hosts the journal says are out that no phase of this run would pick
    /// up (they ended, yet are drained, and no rollback of theirs is
    /// pending; or, when the run is being rolled back, it drained them and
    /// was killed before it changed them): they are only returned to
    /// service.
    fn forgotten(&self, route: Route) -> Vec<Host> {
        let mut hosts: Vec<Host> = self
            .record
            .hosts
            .iter()
            .filter(|(name, r)| {
                !self.record.rollback.contains(name)
                    && ((!r.drained.is_empty() && r.is_settled() && !r.outcome.is_failure())
                        || (route == Route::RollBack && r.out_unchanged()))
            })
            .filter_map(|(name, _)| self.hosts.get(name).cloned())
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        hosts
    }

    /// Takes over hosts an earlier run left drained: recorded here first
    /// (so they are never anybody's but fleetroll's), then handed over in
    /// the earlier run's journal. Returns those this run only returns.
    fn adopt(&mut self, adopted: Vec<Adopted>) -> Vec<Host> {
        let mut returns = Vec::new();
        let mut by_run: Vec<(String, Vec<&str>)> = Vec::new();
        for adopted in &adopted {
            let run = adopted.from.run_id().to_owned();
            match by_run.iter_mut().find(|(r, _)| *r == run) {
                Some((_, hosts)) => hosts.push(&adopted.host.name),
                None => by_run.push((run, vec![&adopted.host.name])),
            }
        }
        let notes: Vec<String> = by_run
            .into_iter()
            .map(|(run, hosts)| {
                format!(
                    "run {run} left {} out of service; this run takes them over and returns them to service first",
                    hosts.join(", ")
                )
            })
            .collect();
        for note in notes {
            self.warn(note);
        }
        for mut adopted in adopted {
            let name = adopted.host.name.clone();
            for balancer in &adopted.drained {
                self.note(Event::Drain {
                    host: name.clone(),
                    balancer: balancer.clone(),
                });
            }
            for (balancer, memory) in &adopted.memory {
                self.note(Event::DrainMemory {
                    host: name.clone(),
                    balancer: balancer.clone(),
                    memory: memory.clone(),
                });
            }
            if self.journal_broken.is_some() {
                break;
            }
            let handed = Envelope::now(
                adopted.from.run_id(),
                Event::HandedOver {
                    host: name.clone(),
                    to_run: self.run_id.clone(),
                },
            );
            if let Err(error) = adopted
                .from
                .append(&handed)
                .and_then(|()| adopted.from.sync())
            {
                self.warn(format!(
                    "cannot record in run {} that {name} was taken over: {error}",
                    adopted.from.run_id()
                ));
            }
            if !adopted.selected {
                returns.push(adopted.host);
            }
        }
        returns
    }

    /// May hosts that are not out yet start?
    fn may_start_new(&self, route: Route) -> bool {
        self.stops.may_start_new(route) && self.journal_broken.is_none()
    }

    async fn run_batches(&mut self, work: &Work) -> Finish {
        let batch_count = work.batches.len();
        let mut rolled_back = false;
        if work.route == Route::Roll && !self.record.rollback.is_empty() {
            // A rollback of a failed batch was under way: finish it first,
            // and halt as it would have.
            let hosts: Vec<Host> = self
                .record
                .rollback
                .iter()
                .filter_map(|name| self.hosts.get(name).cloned())
                .collect();
            let batch = RunBatch {
                index: usize::MAX,
                zones: Vec::new(),
                hosts,
            };
            self.stops
                .halted
                .get_or_insert_with(|| "a failed batch was being rolled back".to_owned());
            self.roll_back_batch(&batch).await;
            rolled_back = true;
        }
        let mut gates_rechecked = !work.resuming;
        for (position, batch) in work.batches.iter().enumerate() {
            if work.route == Route::Roll && self.may_start_new(work.route) {
                self.closes_at = self.window_allows(batch.index);
            }
            if !gates_rechecked && self.has_work(batch, work.route) {
                gates_rechecked = true;
                if position > 0 && self.may_start_new(work.route) {
                    let previous = work.batches[position - 1].index;
                    let gates = self.env.playbook.gates.len();
                    if !self.record.gates_passed(previous, gates) {
                        self.check_gates(previous).await;
                    }
                }
            }
            let started = Instant::now();
            if !self.run_batch(batch, work.route).await {
                continue;
            }
            self.batch_durations.push(started.elapsed());
            let last = position + 1 == batch_count;
            if work.route == Route::Roll && self.may_start_new(work.route) && !last {
                self.check_gates(batch.index).await;
            }
            if work.route == Route::Roll
                && self.stops.halted.is_some()
                && self.env.playbook.strategy.on_failure == OnFailure::Rollback
                && !rolled_back
            {
                self.roll_back_batch(batch).await;
                rolled_back = true;
            }
            if !last && self.may_start_new(work.route) && !self.limits.pause.is_zero() {
                self.pause(position + 1).await;
            }
        }
        self.finish(work.route, rolled_back)
    }

    fn finish(&mut self, route: Route, rolled_back: bool) -> Finish {
        self.stops.finish(route, rolled_back)
    }

    fn has_work(&self, batch: &RunBatch, route: Route) -> bool {
        batch.hosts.iter().any(|host| self.wants(host, route))
    }

    /// Whether `host` still has something to do on this route.
    fn wants(&self, host: &Host, route: Route) -> bool {
        let record = self.record.hosts.get(&host.name);
        match route {
            Route::Roll => !record.is_some_and(|r| r.is_settled()),
            Route::RollBack => record.is_none_or(|r| r.outcome != Outcome::RolledBack),
            Route::Return => record.is_some_and(|r| !r.drained.is_empty()),
        }
    }

    /// Bake time before the next batch; a signal cuts it short.
    async fn pause(&mut self, next_batch: usize) {
        self.note(Event::Pause {
            seconds: self.limits.pause.as_secs(),
            next_batch,
        });
        let until = tokio::time::Instant::now() + self.limits.pause;
        loop {
            match self.wait(Some(until), None).await {
                Woke::Timer => return,
                Woke::Signal if self.stops.signal != Stopping::No => return,
                Woke::Signal | Woke::Ended(_) | Woke::Gate(_) | Woke::Pools => {}
            }
        }
    }

    /// Before a batch: is the window open, and will the batch fit in it?
    /// Returns the window's end, if there is a window; sets `window_closed`
    /// when the batch may not start.
    fn window_allows(&mut self, index: usize) -> Option<jiff::Timestamp> {
        let guard = self.window.as_ref()?;
        let now = guard.clock.now();
        match window_state(&guard.window, now) {
            Err(error) => {
                self.stops.window_closed = Some(error.to_string());
                None
            }
            Ok(WindowState::Closed { opens_at, .. }) => {
                self.stops.window_closed = Some(format!(
                    "the maintenance window is closed (it opens {})",
                    describe_instant(opens_at, &guard.window.timezone)
                ));
                None
            }
            Ok(WindowState::Open { closes_at }) => {
                // The durations seen so far in this run say best how long a
                // batch takes; before the first, the plan's estimate.
                let expected = if self.batch_durations.is_empty() {
                    guard.first_batch_estimate
                } else {
                    self.batch_durations.iter().sum::<Duration>()
                        / self.batch_durations.len() as u32
                };
                if !fits(closes_at, now, expected) {
                    self.stops.window_closed = Some(format!(
                        "batch {} is expected to take {}, but the window closes at {}",
                        index + 1,
                        crate::model::duration::human_duration(expected),
                        describe_instant(closes_at, &guard.window.timezone)
                    ));
                }
                Some(closes_at)
            }
        }
    }

    /// Runs the gates in order, in a task the loop waits on; the first that
    /// fails halts the run.
    async fn check_gates(&mut self, after_batch: usize) {
        let gates = self.env.playbook.gates.clone();
        if gates.is_empty() {
            return;
        }
        let mut task = tokio::spawn(async move {
            let http = crate::transport::gate::gate_client();
            let mut results = Vec::new();
            for gate in &gates {
                let result = crate::transport::gate::check_gate(gate, &http).await;
                let ok = result.ok;
                results.push((gate.name.clone(), result));
                if !ok {
                    break;
                }
            }
            results
        });
        let results = loop {
            match self.wait(None, Some(&mut task)).await {
                Woke::Gate(results) => break results,
                Woke::Signal | Woke::Timer | Woke::Ended(_) | Woke::Pools => {}
            }
        };
        let results = match results {
            Ok(results) => results,
            Err(error) => {
                self.stops.halted = Some(format!("the gate check failed: {error}"));
                return;
            }
        };
        for (name, result) in results {
            self.note(Event::Gate {
                name: name.clone(),
                ok: result.ok,
                detail: result.detail.clone(),
                batch: Some(after_batch),
            });
            if !result.ok {
                self.stops.halted = Some(format!("gate {name} failed: {}", result.detail));
            }
        }
    }

    /// `on_failure = "rollback"`: the batch that failed goes back to the old
    /// version (its failed hosts first: they hold their slots), then the
    /// run halts.
    async fn roll_back_batch(&mut self, batch: &RunBatch) {
        let (mut out, mut rest): (Vec<Host>, Vec<Host>) = batch
            .hosts
            .iter()
            .filter(|host| {
                self.record.hosts.get(&host.name).is_some_and(|r| {
                    r.was_changed() || (r.outcome == Outcome::Pending && !r.drained.is_empty())
                })
            })
            .cloned()
            .partition(|host| self.occupancy.holds(&host.name));
        if out.is_empty() && rest.is_empty() {
            return;
        }
        out.append(&mut rest);
        self.warn(format!(
            "rolling back {} hosts of the failed batch",
            out.len()
        ));
        self.note(Event::RollbackStarted {
            batch: batch.index,
            hosts: out.iter().map(|h| h.name.clone()).collect(),
        });
        let rollback = RunBatch {
            index: usize::MAX,
            zones: Vec::new(),
            hosts: out,
        };
        self.run_batch(&rollback, Route::RollBack).await;
    }

    /// Runs one batch's hosts within the caps; false if it had nothing to do.
    /// When no new host may start (a signal, a halt, the window), hosts of
    /// the batch that are out already still run, so none is left drained.
    async fn run_batch(&mut self, batch: &RunBatch, route: Route) -> bool {
        self.batch_hosts = batch.hosts.iter().map(|h| h.name.clone()).collect();
        self.batch_baselines.clear();
        let mut queue: VecDeque<Host> = batch
            .hosts
            .iter()
            .filter(|host| self.wants(host, route))
            .filter(|host| self.may_start_new(route) || self.occupancy.holds(&host.name))
            .cloned()
            .collect();
        if queue.is_empty() {
            return false;
        }
        let numbered = batch.index != usize::MAX;
        if numbered {
            self.note(Event::BatchStarted {
                index: batch.index,
                zones: batch.zones.clone(),
                hosts: queue.iter().map(|h| h.name.clone()).collect(),
            });
        }
        let mut ok = true;
        let mut floor_deadline: Option<tokio::time::Instant> = None;
        loop {
            let blocked = self.start_hosts(&mut queue, route);
            // The pools' health is being read for admission: wait for it
            // (the floor's deadline, if one runs, keeps running).
            let reading = self.pool_read.is_some() && self.may_start_new(route);
            let mut timer = None;
            if let Some(detail) = blocked.as_ref().and_then(Blocked::floor_detail)
                && self.may_start_new(route)
            {
                // Wait, bounded by [drain].timeout, for the pool to recover.
                let now = tokio::time::Instant::now();
                let deadline =
                    *floor_deadline.get_or_insert_with(|| now + self.env.playbook.drain.timeout);
                if now >= deadline {
                    if let Some(host) = queue.pop_front() {
                        ok = false;
                        self.fail_unstarted(&host, Outcome::TimedOut, detail);
                    }
                    floor_deadline = None;
                    continue;
                }
                timer = Some(
                    now + self
                        .env
                        .cadence
                        .balancer_poll
                        .max(Duration::from_millis(50)),
                );
            } else if !reading {
                floor_deadline = None;
            }
            if self.in_flight.is_empty() && timer.is_none() && !reading {
                if let (Some(Blocked::Cap { zone }), true) = (&blocked, self.may_start_new(route)) {
                    let kept = self.occupancy.total();
                    self.stops.halted = Some(format!(
                        "{kept} failed hosts stay out of service, which leaves no room under max_unavailable ({}) or the cap of zone {zone}",
                        self.limits.max_unavailable
                    ));
                }
                break;
            }
            match self.wait(timer, None).await {
                Woke::Ended(joined) => {
                    if !self.host_ended(joined, route) {
                        ok = false;
                    }
                }
                Woke::Signal | Woke::Timer | Woke::Gate(_) | Woke::Pools => {}
            }
            if queue.is_empty() && self.in_flight.is_empty() {
                break;
            }
        }
        if numbered {
            self.note(Event::BatchFinished {
                index: batch.index,
                ok: ok && queue.is_empty(),
            });
        }
        true
    }

    /// Starts every queued host admission allows; returns why the next one
    /// waits, if it does. With `min_healthy`, each round of admission
    /// first has the pools' health read beside the loop ([`Self::read_pools`])
    /// and starts nobody until it is in.
    fn start_hosts(&mut self, queue: &mut VecDeque<Host>, route: Route) -> Option<Blocked> {
        if queue.is_empty() {
            return None;
        }
        if let (Some(closes_at), Some(guard)) = (self.closes_at, &self.window)
            && route == Route::Roll
            && self.stops.window_closed.is_none()
            && guard.clock.now() >= closes_at
        {
            self.stops.window_closed =
                Some("the maintenance window closed during the batch".to_owned());
        }
        let may_start_new = self.may_start_new(route);
        let caps = Caps {
            max_unavailable: self.limits.max_unavailable,
            zone_caps: self.limits.zone_caps.clone(),
            min_healthy: self.env.playbook.strategy.min_healthy,
        };
        let pools = if may_start_new && caps.min_healthy.is_some() {
            match self.pools_read.take() {
                Some(read) => self.pools(read),
                None => {
                    // Read beside the loop; admission waits for it.
                    self.read_pools(queue);
                    return None;
                }
            }
        } else {
            HashMap::new()
        };
        let admitted = {
            let candidates: Vec<Candidate<'_>> = queue
                .iter()
                .map(|host| Candidate {
                    host: &host.name,
                    zone: &host.zone,
                    balancers: &host.balancers,
                })
                .collect();
            if may_start_new {
                admission::admit(&self.occupancy, &caps, &candidates, &pools)
            } else {
                // Only hosts already out go on: they must not stay out.
                admission::Admitted {
                    start: (0..candidates.len())
                        .filter(|&i| self.occupancy.holds(candidates[i].host))
                        .collect(),
                    blocked: None,
                }
            }
        };
        for index in admitted.start.iter().rev() {
            if let Some(host) = queue.remove(*index) {
                self.start(host, route);
            }
        }
        if !may_start_new {
            queue.clear();
        }
        admitted.blocked
    }

    /// Reads, as a task, what each balancer of the queued hosts reports of
    /// its pool (one read at a time).
    fn read_pools(&mut self, queue: &VecDeque<Host>) {
        if self.pool_read.is_some() {
            return;
        }
        let mut names: Vec<&String> = queue.iter().flat_map(|h| &h.balancers).collect();
        names.sort();
        names.dedup();
        let balancers: Vec<(String, Arc<dyn LoadBalancer>)> = names
            .into_iter()
            .filter_map(|name| {
                let balancer = self.env.transports.balancers.get(name)?;
                Some((name.clone(), Arc::clone(balancer)))
            })
            .collect();
        let names = balancers.iter().map(|(name, _)| name.clone()).collect();
        let task = tokio::spawn(async move {
            let mut reads = Vec::new();
            for (name, balancer) in balancers {
                let read = retry::balancer(|| balancer.pool())
                    .await
                    .map_err(|error| error.to_string());
                reads.push((name, read));
            }
            reads
        });
        self.pool_read = Some(PoolRead { names, task });
    }

    /// The pools' health is in, for the next admission round.
    /// A read that failed as a task leaves every pool it was to read
    /// unknown, which admits nobody on them.
    fn pools_ended(&mut self, result: Result<PoolReads, JoinError>) {
        let names = self
            .pool_read
            .take()
            .map(|read| read.names)
            .unwrap_or_default();
        self.pools_read = Some(result.unwrap_or_else(|error| {
            names
                .into_iter()
                .map(|name| (name, Err(format!("the pool read failed: {error}"))))
                .collect()
        }));
    }

    /// The pools as read, with the drains admitted on each that it may
    /// not show yet.
    fn pools(&mut self, read: PoolReads) -> HashMap<String, Pool> {
        let mut pools = HashMap::new();
        for (name, result) in read {
            let pending = self
                .in_flight
                .keys()
                .filter(|host| {
                    self.hosts
                        .get(*host)
                        .is_some_and(|h| h.balancers.contains(&name))
                        && self
                            .record
                            .hosts
                            .get(*host)
                            .is_none_or(|r| !r.drained.contains(&name))
                })
                .count();
            match result {
                Ok(Some(pool)) => {
                    pools.insert(name, Pool::read(pool.healthy, pool.total, pending));
                }
                Ok(None) => {}
                Err(error) => {
                    self.warn(format!("min_healthy: {error}"));
                    pools.insert(name, Pool::unknown());
                }
            }
        }
        pools
    }

    fn start(&mut self, host: Host, route: Route) {
        let record = self.record.hosts.get(&host.name);
        let drained = record.map(|r| r.drained.clone()).unwrap_or_default();
        let steps_done = match route {
            Route::Roll | Route::Return => record.map_or(0, |r| r.steps_done),
            Route::RollBack => 0,
        };
        let start = HostStart {
            route,
            memory: record.map(|r| r.drain_memory.clone()).unwrap_or_default(),
            steps_done,
            // Its return had begun: finish it, whether or not every
            // balancer's `undrained` was recorded before an interruption
            // (one that was is back in service and is not drained again).
            returning: route == Route::Roll && record.is_some_and(|r| r.phase == Phase::Undraining),
            resumed: !drained.is_empty() || steps_done > 0,
            replacing: record.and_then(|r| r.replacing.clone()),
            standby: record.is_some_and(|r| r.standby),
            watching: route == Route::Roll && record.is_some_and(|r| r.phase == Phase::Watching),
            regressed: route == Route::Roll
                && record.is_some_and(|r| matches!(r.watch, Some((WatchVerdict::Regressed, _)))),
            baseline: self.watch_baseline(&host),
            drained,
        };
        self.occupancy.hold(&host.name, &host.zone);
        self.in_flight.insert(host.name.clone(), route);
        let host_name = host.name.clone();
        let handle = self.tasks.spawn(drive(
            Arc::clone(&self.env),
            host,
            start,
            Reporter::new(self.tx.clone(), Arc::clone(&self.lease)),
            self.cancel.child_token(),
        ));
        self.task_hosts.insert(handle.id(), host_name);
    }

    /// `[watch]`'s baseline for `host`: the hosts sharing one of its
    /// balancers that this run has not touched and will not touch in this
    /// batch; when none is left, the updated hosts that passed their watch.
    /// The untouched hosts cannot change while a batch runs (only its own
    /// hosts move), so they are worked out once per batch for each set of
    /// balancers and shared by the hosts that have them.
    fn watch_baseline(&mut self, host: &Host) -> Arc<[String]> {
        if self.env.playbook.watch.is_none() {
            return Arc::from([]);
        }
        let untouched = match self.batch_baselines.get(&host.balancers) {
            Some(known) => Arc::clone(known),
            None => {
                let untouched: Arc<[String]> = peers(&self.hosts, host)
                    .filter(|other| {
                        !self.batch_hosts.contains(&other.name)
                            && !self.in_flight.contains_key(&other.name)
                            && self.record.hosts.get(&other.name).is_none_or(|r| {
                                r.phase == Phase::Pending
                                    && r.outcome == Outcome::Pending
                                    && !r.step_started
                                    && r.drained.is_empty()
                            })
                    })
                    .map(|other| other.lb_server.clone())
                    .collect();
                self.batch_baselines
                    .insert(host.balancers.clone(), Arc::clone(&untouched));
                untouched
            }
        };
        if !untouched.is_empty() {
            return untouched;
        }
        peers(&self.hosts, host)
            .filter(|other| {
                self.record.hosts.get(&other.name).is_some_and(|r| {
                    r.outcome == Outcome::Updated
                        && matches!(r.watch, Some((WatchVerdict::Passed, _)))
                })
            })
            .map(|other| other.lb_server.clone())
            .collect()
    }

    /// A host that could not start (the healthy floor never allowed it).
    fn fail_unstarted(&mut self, host: &Host, outcome: Outcome, detail: String) {
        self.note(Event::HostPhase {
            host: host.name.clone(),
            phase: Phase::Failed,
            outcome: Some(outcome),
            detail: Some(detail),
        });
        self.after_failure(Route::Roll);
    }

    /// Bookkeeping when a host task ends; false if the host failed.
    fn host_ended(&mut self, joined: Result<HostReport, JoinError>, route: Route) -> bool {
        let report = match joined {
            Ok(report) => report,
            Err(error) => {
                // A panicking task is a bug; halt rather than guess. Its
                // host is no longer in flight (the batch must end), but it
                // stays counted out while the journal says it is drained,
                // and it is reported failed, so the next run finishes it.
                let host = self.task_hosts.remove(&error.id());
                self.stops.halted = Some(format!(
                    "the task of host {} failed (a bug in fleetroll): {error}",
                    host.as_deref().unwrap_or("?")
                ));
                if let Some(host) = host {
                    self.task_over(&host);
                    self.note(Event::HostPhase {
                        host,
                        phase: Phase::Failed,
                        outcome: Some(Outcome::Failed),
                        detail: Some(format!("fleetroll's task for this host failed: {error}")),
                    });
                }
                return false;
            }
        };
        self.task_over(&report.host);
        if report.outcome.is_failure() {
            self.after_failure(route);
            return false;
        }
        true
    }

    /// `host`'s task ended: it is no longer in flight, and no longer out
    /// unless the journal says it is still drained somewhere.
    fn task_over(&mut self, host: &str) {
        self.in_flight.remove(host);
        let out = self
            .record
            .hosts
            .get(host)
            .is_some_and(|r| !r.drained.is_empty());
        if !out {
            self.occupancy.release(host);
        }
    }

    fn after_failure(&mut self, route: Route) {
        if route == Route::Roll && self.stops.halted.is_none() {
            self.stops.halted = self.budget_spent();
        }
    }

    fn failures_in_zone(&self, zone: &str) -> usize {
        self.record
            .hosts
            .iter()
            .filter(|(name, host)| host.outcome.is_failure() && self.zone_of(name) == zone)
            .count()
    }

    /// Why the failure budget is spent, if it is.
    fn budget_spent(&self) -> Option<String> {
        let failures = self.record.failures();
        if failures > self.limits.failure_budget {
            return Some(format!(
                "{failures} hosts failed; the failure budget tolerates {}",
                self.limits.failure_budget
            ));
        }
        for (zone, budget) in &self.limits.zone_failure_budgets {
            let failed = self.failures_in_zone(zone);
            if failed > *budget {
                return Some(format!(
                    "{failed} hosts failed in zone {zone}; max_failed_per_zone tolerates {budget}"
                ));
            }
        }
        None
    }
}

/// A record written before the action it names, which must not happen
/// unless the record is durable.
fn is_write_ahead(event: &Event) -> bool {
    matches!(
        event,
        Event::Drain { .. }
            | Event::StepStarted { .. }
            | Event::Replacing { .. }
            | Event::Standby { standby: true, .. }
    )
}

/// The other hosts sharing a balancer with `host`.
fn peers<'a>(hosts: &'a HashMap<String, Host>, host: &'a Host) -> impl Iterator<Item = &'a Host> {
    hosts.values().filter(move |other| {
        other.name != host.name && other.balancers.iter().any(|b| host.balancers.contains(b))
    })
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
mod tests;
