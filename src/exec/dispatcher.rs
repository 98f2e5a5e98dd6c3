//! The dispatcher: one loop that owns the run's state.
//!
//! It starts host tasks batch by batch within the caps, receives their
//! events, writes them to the journal (one fsync for every group of events
//! that arrived together, and before any task acts on them), hands them to
//! the reporters, and decides: next host, next batch, halt, or stop. Host
//! tasks never see run state; they only send events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::env::RunEnv;
use super::host_task::{HostReport, StartFrom, return_host, roll_back_host, roll_host};
use super::messages::{HostMessage, Reporter};
use crate::clock::Clock;
use crate::events::{Envelope, Event, Outcome, Phase, RunOutcome};
use crate::journal::replay::HostRecord;
use crate::journal::replay::RunRecord;
use crate::journal::store::{JournalError, JournalWriter};
use crate::lock::{HEARTBEAT_EVERY, RunLock};
use crate::model::inventory::Host;
use crate::model::playbook::{OnFailure, Window};
use crate::plan::window::{WindowState, fits, window_state};

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

    /// No caps, no budget: for returning hosts to service.
    pub fn unlimited() -> Self {
        Self {
            max_unavailable: usize::MAX,
            zone_caps: HashMap::new(),
            failure_budget: usize::MAX,
            zone_failure_budgets: HashMap::new(),
            pause: Duration::ZERO,
        }
    }
}

/// How the run ended, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub outcome: RunOutcome,
    pub reason: Option<String>,
}

pub struct Dispatcher {
    pub env: Arc<RunEnv>,
    pub run_id: String,
    pub journal: JournalWriter,
    pub record: RunRecord,
    pub sinks: Vec<Box<dyn EventSink>>,
    pub lock: RunLock,
    pub limits: Limits,
    pub signals: mpsc::UnboundedReceiver<&'static str>,
    pub started: Instant,
    /// Host → zone, for the per-zone caps and budgets.
    pub zone_of: HashMap<String, String>,
    /// The maintenance window, when the playbook has one.
    pub window: Option<WindowGuard>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// While hosts are out: how often balancers are checked for lost state.
const BALANCER_WATCH_EVERY: Duration = Duration::from_secs(2);

/// Forward (the update) or backward (the `[[rollback]]` steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Rollback,
}

/// The maintenance window the run must keep to.
#[derive(Debug, Clone)]
pub struct WindowGuard {
    pub window: Window,
    pub clock: Clock,
    /// The plan's estimate of one batch, until batches have been timed.
    pub first_batch_estimate: Duration,
}

/// What the batch loop carries from batch to batch.
struct LoopState {
    tx: mpsc::UnboundedSender<HostMessage>,
    rx: mpsc::UnboundedReceiver<HostMessage>,
    cancel: CancellationToken,
    stopping: Stopping,
    halted: Option<String>,
    window_closed: Option<String>,
    batch_durations: Vec<Duration>,
    heartbeat: tokio::time::Interval,
    /// How often balancers are asked whether they lost state (a reload).
    balancer_watch: tokio::time::Interval,
    /// Every host of the run by name, for the balancers' checks.
    hosts: HashMap<String, Host>,
}

/// "sat 2026-11-28 02:00 Europe/Berlin".
fn describe_instant(at: jiff::Timestamp, timezone: &str) -> String {
    match jiff::tz::TimeZone::get(timezone) {
        Ok(tz) => at.to_zoned(tz).strftime("%a %Y-%m-%d %H:%M %Z").to_string(),
        Err(_) => at.to_string(),
    }
}

/// What the loop is doing about stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    No,
    /// First signal: start no new host, let in-flight ones finish.
    Graceful,
    /// Second signal: cancel in-flight steps, still return hosts.
    Now,
}

impl Dispatcher {
    /// A dispatcher for `run_id`, continuing `record` (a fresh one for a new run).
    pub fn new(
        env: Arc<RunEnv>,
        journal: JournalWriter,
        record: RunRecord,
        lock: RunLock,
        limits: Limits,
        signals: mpsc::UnboundedReceiver<&'static str>,
    ) -> Self {
        Self {
            env,
            run_id: record.run_id.clone(),
            journal,
            record,
            sinks: Vec::new(),
            lock,
            limits,
            signals,
            started: Instant::now(),
            zone_of: HashMap::new(),
            window: None,
        }
    }

    /// Appends, fsyncs and reports one event the dispatcher itself produces.
    pub fn emit(&mut self, event: Event) -> Result<(), JournalError> {
        let envelope = self.envelope(event);
        self.journal.append(&envelope)?;
        self.journal.sync()?;
        self.deliver(&envelope);
        Ok(())
    }

    fn envelope(&self, event: Event) -> Envelope {
        Envelope {
            ts: jiff::Timestamp::now().to_string(),
            run_id: self.run_id.clone(),
            event,
        }
    }

    fn deliver(&mut self, envelope: &Envelope) {
        self.record.apply(envelope);
        for sink in &mut self.sinks {
            sink.event(envelope, &self.record);
        }
    }

    /// Writes a group of host messages with one fsync, then releases the
    /// tasks waiting on them.
    fn commit(&mut self, messages: Vec<HostMessage>) -> Result<(), JournalError> {
        let mut envelopes = Vec::with_capacity(messages.len());
        for message in &messages {
            let envelope = self.envelope(message.event.clone());
            self.journal.append(&envelope)?;
            envelopes.push(envelope);
        }
        self.journal.sync()?;
        for (envelope, message) in envelopes.iter().zip(messages) {
            self.deliver(envelope);
            if let Some(ack) = message.ack {
                let _ = ack.send(());
            }
        }
        Ok(())
    }

    /// Commits `first` (if any) and every message already waiting behind it.
    fn commit_waiting(
        &mut self,
        first: Option<HostMessage>,
        rx: &mut mpsc::UnboundedReceiver<HostMessage>,
    ) -> Result<(), JournalError> {
        let mut group: Vec<HostMessage> = first.into_iter().collect();
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        self.commit(group)
    }

    fn failures_in_zone(&self, zone: &str) -> usize {
        self.record
            .hosts
            .iter()
            .filter(|(name, host)| {
                host.outcome.is_failure() && self.zone_of.get(*name).is_some_and(|z| z == zone)
            })
            .count()
    }

    /// Hosts out of service because they failed and stay drained.
    fn failed_out(&self) -> Vec<&str> {
        self.record
            .hosts
            .iter()
            .filter(|(_, host)| host.outcome.is_failure() && !host.drained.is_empty())
            .map(|(name, _)| name.as_str())
            .collect()
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

    /// Returns every host an interrupted run left drained (and that did not
    /// fail) to service, all at once, before anything else happens.
    pub async fn recover(&mut self, hosts: Vec<Host>) -> Result<(), JournalError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<HostMessage>();
        let cancel = CancellationToken::new();
        let mut tasks: JoinSet<HostReport> = JoinSet::new();
        for host in hosts {
            let Some(record) = self.record.hosts.get(&host.name) else {
                continue;
            };
            if record.drained.is_empty() || record.is_settled() {
                continue;
            }
            let start = StartFrom {
                drained: record.drained.clone(),
                memory: record.drain_memory.clone(),
                steps_done: record.steps_done,
            };
            tasks.spawn(return_host(
                Arc::clone(&self.env),
                host,
                start,
                Reporter::new(tx.clone()),
                cancel.child_token(),
            ));
        }
        drop(tx);
        while !tasks.is_empty() {
            tokio::select! {
                Some(first) = rx.recv() => self.commit_waiting(Some(first), &mut rx)?,
                Some(_) = tasks.join_next() => self.commit_waiting(None, &mut rx)?,
            }
        }
        Ok(())
    }

    /// Runs the batches forward; returns how the run ended.
    pub async fn run(&mut self, batches: Vec<RunBatch>) -> Result<Finish, JournalError> {
        self.drive(batches, Mode::Forward).await
    }

    /// Rolls back the given hosts, batch by batch, in the order given.
    pub async fn roll_back(&mut self, batches: Vec<RunBatch>) -> Result<Finish, JournalError> {
        self.drive(batches, Mode::Rollback).await
    }

    async fn drive(&mut self, batches: Vec<RunBatch>, mode: Mode) -> Result<Finish, JournalError> {
        for batch in &batches {
            for host in &batch.hosts {
                self.zone_of.insert(host.name.clone(), host.zone.clone());
            }
        }
        let (tx, rx) = mpsc::unbounded_channel::<HostMessage>();
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = LoopState {
            tx,
            rx,
            cancel: CancellationToken::new(),
            stopping: Stopping::No,
            halted: if mode == Mode::Forward {
                self.budget_spent()
            } else {
                None
            },
            window_closed: None,
            batch_durations: Vec::new(),
            heartbeat,
            balancer_watch: tokio::time::interval(BALANCER_WATCH_EVERY),
            hosts: batches
                .iter()
                .flat_map(|batch| &batch.hosts)
                .map(|host| (host.name.clone(), host.clone()))
                .collect(),
        };
        let batch_count = batches.len();
        let mut rolled_back = false;
        for (position, batch) in batches.into_iter().enumerate() {
            if state.stopping != Stopping::No
                || state.halted.is_some()
                || state.window_closed.is_some()
            {
                break;
            }
            let closes_at = match mode {
                Mode::Forward => match self.window_allows(batch.index, &mut state) {
                    Some(closes_at) => closes_at,
                    None => break,
                },
                Mode::Rollback => None,
            };
            let batch_hosts = batch.hosts.clone();
            let started = Instant::now();
            let ran = self.run_batch(batch, mode, closes_at, &mut state).await?;
            if !ran {
                continue;
            }
            state.batch_durations.push(started.elapsed());
            let last = position + 1 == batch_count;
            if mode == Mode::Forward
                && state.halted.is_none()
                && state.stopping == Stopping::No
                && !last
            {
                self.check_gates(&mut state).await?;
            }
            if mode == Mode::Forward
                && state.halted.is_some()
                && self.env.playbook.strategy.on_failure == OnFailure::Rollback
            {
                self.roll_back_batch(batch_hosts, &mut state).await?;
                rolled_back = true;
                break;
            }
            if !last
                && state.stopping == Stopping::No
                && state.halted.is_none()
                && !self.limits.pause.is_zero()
            {
                self.emit(Event::Pause {
                    seconds: self.limits.pause.as_secs(),
                    next_batch: position + 1,
                })?;
                tokio::select! {
                    () = tokio::time::sleep(self.limits.pause) => {}
                    Some(signal) = self.signals.recv() => {
                        self.emit(Event::Warning { host: None, message: format!("{signal}: stopping before the next batch") })?;
                        state.stopping = Stopping::Graceful;
                    }
                }
            }
        }
        let finish = if rolled_back {
            Finish {
                outcome: RunOutcome::RolledBack,
                reason: state
                    .halted
                    .map(|r| format!("{r}; the batch was rolled back")),
            }
        } else if let Some(reason) = state.halted {
            Finish {
                outcome: RunOutcome::Halted,
                reason: Some(reason),
            }
        } else if let Some(reason) = state.window_closed {
            Finish {
                outcome: RunOutcome::WindowClosed,
                reason: Some(format!(
                    "{reason}; `fleetroll resume` continues in the next window"
                )),
            }
        } else if state.stopping != Stopping::No {
            Finish {
                outcome: RunOutcome::Interrupted,
                reason: Some("stopped by a signal; `fleetroll resume` continues".to_owned()),
            }
        } else if mode == Mode::Rollback {
            Finish {
                outcome: RunOutcome::RolledBack,
                reason: None,
            }
        } else {
            Finish {
                outcome: RunOutcome::Succeeded,
                reason: None,
            }
        };
        self.finish(&finish)?;
        Ok(finish)
    }

    /// Before a batch: is the window open, and will the batch fit in it?
    /// Returns `None` to stop (the reason is in `state`), else the closing time.
    fn window_allows(
        &mut self,
        index: usize,
        state: &mut LoopState,
    ) -> Option<Option<jiff::Timestamp>> {
        let Some(guard) = &self.window else {
            return Some(None);
        };
        let now = guard.clock.now();
        match window_state(&guard.window, now) {
            Err(error) => {
                state.window_closed = Some(error.to_string());
                None
            }
            Ok(WindowState::Closed { opens_at, .. }) => {
                state.window_closed = Some(format!(
                    "the maintenance window is closed (it opens {})",
                    describe_instant(opens_at, &guard.window.timezone)
                ));
                None
            }
            Ok(WindowState::Open { closes_at }) => {
                // The durations seen so far in this run say best how long a
                // batch takes; before the first, the plan's estimate.
                let expected = if state.batch_durations.is_empty() {
                    guard.first_batch_estimate
                } else {
                    state.batch_durations.iter().sum::<Duration>()
                        / state.batch_durations.len() as u32
                };
                if fits(closes_at, now, expected) {
                    Some(Some(closes_at))
                } else {
                    state.window_closed = Some(format!(
                        "batch {} is expected to take {}, but the window closes at {}",
                        index + 1,
                        crate::model::duration::human_duration(expected),
                        describe_instant(closes_at, &guard.window.timezone)
                    ));
                    None
                }
            }
        }
    }

    /// Runs the gates in order; the first that fails halts the run.
    async fn check_gates(&mut self, state: &mut LoopState) -> Result<(), JournalError> {
        let gates = self.env.playbook.gates.clone();
        if gates.is_empty() {
            return Ok(());
        }
        let http = crate::transport::gate::gate_client();
        for gate in &gates {
            let result = crate::transport::gate::check_gate(gate, &http).await;
            self.emit(Event::Gate {
                name: gate.name.clone(),
                ok: result.ok,
                detail: result.detail.clone(),
            })?;
            if !result.ok {
                state.halted = Some(format!("gate {} failed: {}", gate.name, result.detail));
                break;
            }
        }
        Ok(())
    }

    /// `on_failure = "rollback"`: the batch that failed goes back to the old
    /// version, host by host within the caps, then the run halts.
    async fn roll_back_batch(
        &mut self,
        hosts: Vec<Host>,
        state: &mut LoopState,
    ) -> Result<(), JournalError> {
        let changed: Vec<Host> = hosts
            .into_iter()
            .filter(|host| {
                self.record
                    .hosts
                    .get(&host.name)
                    .is_some_and(HostRecord::was_changed)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        self.emit(Event::Warning {
            host: None,
            message: format!("rolling back {} hosts of the failed batch", changed.len()),
        })?;
        let batch = RunBatch {
            index: usize::MAX,
            zones: Vec::new(),
            hosts: changed,
        };
        let budget = std::mem::replace(&mut self.limits.failure_budget, usize::MAX);
        let zone_budgets = std::mem::take(&mut self.limits.zone_failure_budgets);
        self.run_batch(batch, Mode::Rollback, None, state).await?;
        self.limits.failure_budget = budget;
        self.limits.zone_failure_budgets = zone_budgets;
        Ok(())
    }

    /// Runs one batch's hosts within the caps; false if it had nothing to do.
    async fn run_batch(
        &mut self,
        batch: RunBatch,
        mode: Mode,
        closes_at: Option<jiff::Timestamp>,
        state: &mut LoopState,
    ) -> Result<bool, JournalError> {
        let mut queue: Vec<Host> = batch
            .hosts
            .into_iter()
            .filter(|h| {
                let record = self.record.hosts.get(&h.name);
                match mode {
                    Mode::Forward => !record.is_some_and(|r| r.is_settled()),
                    Mode::Rollback => record.is_none_or(|r| r.outcome != Outcome::RolledBack),
                }
            })
            .collect();
        if queue.is_empty() {
            return Ok(false);
        }
        if batch.index != usize::MAX {
            self.emit(Event::BatchStarted {
                index: batch.index,
                zones: batch.zones.clone(),
                hosts: queue.iter().map(|h| h.name.clone()).collect(),
            })?;
        }
        queue.reverse(); // pop() takes hosts in plan order
        let mut tasks: JoinSet<HostReport> = JoinSet::new();
        let mut in_flight: HashMap<String, String> = HashMap::new(); // host → zone
        let mut batch_ok = true;
        loop {
            // Start every host the caps (and the window) allow.
            while state.stopping == Stopping::No
                && (state.halted.is_none() || mode == Mode::Rollback)
            {
                let Some(host) = queue.last() else { break };
                if let (Some(closes_at), Some(guard)) = (closes_at, &self.window)
                    && guard.clock.now() >= closes_at
                {
                    state.window_closed =
                        Some("the maintenance window closed during the batch".to_owned());
                    break;
                }
                let failed_out = self.failed_out();
                let out_total = in_flight.len() + failed_out.len();
                let zone_out = in_flight.values().filter(|z| **z == host.zone).count()
                    + failed_out
                        .iter()
                        .filter(|h| self.zone_of.get(**h) == Some(&host.zone))
                        .count();
                let zone_cap = self
                    .limits
                    .zone_caps
                    .get(&host.zone)
                    .copied()
                    .unwrap_or(usize::MAX);
                if out_total >= self.limits.max_unavailable || zone_out >= zone_cap {
                    if in_flight.is_empty() {
                        state.halted = Some(format!(
                            "{} failed hosts stay out of service, which leaves no room under max_unavailable ({}) or the zone cap for {}",
                            failed_out.len(),
                            self.limits.max_unavailable,
                            host.zone
                        ));
                    }
                    break;
                }
                let host = queue.pop().expect("checked above");
                let start = self
                    .record
                    .hosts
                    .get(&host.name)
                    .map(|r| StartFrom {
                        drained: r.drained.clone(),
                        memory: r.drain_memory.clone(),
                        steps_done: r.steps_done,
                    })
                    .unwrap_or_default();
                in_flight.insert(host.name.clone(), host.zone.clone());
                let env = Arc::clone(&self.env);
                let reporter = Reporter::new(state.tx.clone());
                let cancel = state.cancel.child_token();
                match mode {
                    Mode::Forward => tasks.spawn(roll_host(env, host, start, reporter, cancel)),
                    Mode::Rollback => {
                        tasks.spawn(roll_back_host(env, host, start, reporter, cancel))
                    }
                };
            }
            if tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(first) = state.rx.recv() => self.commit_waiting(Some(first), &mut state.rx)?,
                Some(joined) = tasks.join_next() => {
                    // Everything the task sent is already queued; take it first.
                    self.commit_waiting(None, &mut state.rx)?;
                    let report = match joined {
                        Ok(report) => report,
                        Err(error) => {
                            // A panicking task is a bug; halt rather than guess.
                            state.halted = Some(format!("a host task failed: {error}"));
                            batch_ok = false;
                            continue;
                        }
                    };
                    in_flight.remove(&report.host);
                    if report.outcome.is_failure() {
                        batch_ok = false;
                        if state.halted.is_none() {
                            state.halted = self.budget_spent();
                        }
                    }
                }
                Some(signal) = self.signals.recv() => {
                    state.stopping = match state.stopping {
                        Stopping::No => {
                            self.emit(Event::Warning { host: None, message: format!("{signal}: finishing in-flight hosts, then stopping; send it again to cancel them") })?;
                            Stopping::Graceful
                        }
                        _ => {
                            self.emit(Event::Warning { host: None, message: format!("{signal} again: cancelling in-flight steps; hosts are returned to service") })?;
                            state.cancel.cancel();
                            Stopping::Now
                        }
                    };
                }
                _ = state.balancer_watch.tick() => {
                    // After a second signal, cancelled hosts go back into
                    // service without an undraining phase: leave them be.
                    if !state.cancel.is_cancelled() {
                        self.reassert_drains(&state.hosts).await?;
                    }
                }
                _ = state.heartbeat.tick() => {
                    if let Err(error) = self.lock.heartbeat(jiff::Timestamp::now()) {
                        self.emit(Event::Warning { host: None, message: error.to_string() })?;
                    }
                }
            }
        }
        if batch.index != usize::MAX {
            let unfinished = !queue.is_empty();
            self.emit(Event::BatchFinished {
                index: batch.index,
                ok: batch_ok && !unfinished,
            })?;
        }
        Ok(true)
    }

    /// Asks every balancer to re-apply the drains it lost (a HAProxy
    /// reload), naming the hosts the record says are drained from it and
    /// not on their way back. Hosts still draining wait for the next
    /// check: their drain may not have reached the balancer yet.
    async fn reassert_drains(&mut self, hosts: &HashMap<String, Host>) -> Result<(), JournalError> {
        let balancers: Vec<_> = self.env.transports.balancers.values().cloned().collect();
        for balancer in balancers {
            let drained: Vec<Host> = self
                .record
                .hosts
                .iter()
                .filter(|(_, record)| {
                    record.drained.iter().any(|b| b == balancer.name())
                        && !matches!(record.phase, Phase::Draining | Phase::Undraining)
                })
                .filter_map(|(name, _)| hosts.get(name).cloned())
                .collect();
            if drained.is_empty() {
                continue;
            }
            let messages = match balancer.reassert_drains(&drained).await {
                Ok(messages) => messages,
                Err(error) => vec![format!(
                    "cannot check balancer {} for lost drains: {error}",
                    balancer.name()
                )],
            };
            for message in messages {
                self.emit(Event::Warning {
                    host: None,
                    message,
                })?;
            }
        }
        Ok(())
    }

    pub fn finish(&mut self, finish: &Finish) -> Result<(), JournalError> {
        let record = &self.record;
        let event = Event::RunFinished {
            outcome: finish.outcome,
            updated: record.count(Outcome::Updated),
            failed: record.failures(),
            skipped: record.count(Outcome::Skipped),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            reason: finish.reason.clone(),
        };
        self.emit(event)
    }
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
mod tests;
