//! The simulated outside world: hosts behind one balancer, with faults, and
//! an observer that checks the promises at every operation.
//!
//! Every call the run makes into the world (connect, a command, a balancer
//! call) is one operation: it is counted (a kill or a signal is scheduled
//! at an operation number), and the promises are checked against what the
//! journal on disk says at that moment, read by the world's own tail of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Seek};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::events::{Envelope, Outcome};
use crate::journal::replay::RunRecord;
use crate::model::inventory::Host;
use crate::transport::balancer::{
    AdminState, BalancerError, LoadBalancer, PoolStatus, ServerCounters, ServerStatus, Target,
};
use crate::transport::shell::{Connector, ExecOutput, ExitStatus, RemoteShell, ShellError};
use crate::transport::step_guard;

/// How one simulated host misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostFaults {
    pub unreachable: bool,
    /// `deploy` exits 1.
    pub failing_step: bool,
    /// `deploy` never returns (until its timeout).
    pub hanging_step: bool,
    /// Never healthy after its update.
    pub unhealthy: bool,
    /// An operator disabled it in the balancer before the run.
    pub operator_disabled: bool,
    /// The balancer does not know it (a permanent balancer error).
    pub unknown_to_balancer: bool,
    /// fleetroll's task for it panics at its first probe.
    pub task_panics: bool,
    /// Updated, it fails half its real requests (its probes pass).
    pub bad_release: bool,
}

/// The caps the observer holds the run to.
#[derive(Debug, Clone)]
pub struct Caps {
    pub max_unavailable: usize,
    pub zone_caps: HashMap<String, usize>,
}

#[derive(Debug)]
struct State {
    zone_of: HashMap<String, String>,
    faults: HashMap<String, HostFaults>,
    /// Drained by fleetroll, as the balancer sees it.
    drained: BTreeSet<String>,
    /// Updated hosts (their last `deploy` finished).
    version: HashMap<String, u32>,
    /// A rollback of the run has begun.
    undoing: bool,
    ready_at: HashMap<String, Instant>,
    /// Balancer calls still to fail as unreachable.
    balancer_outage: u32,
    /// The next drain or undrain takes effect, and its answer is lost.
    lose_next_answer: bool,
    /// Behaves like an ELBv2 target group: a drained host keeps its
    /// connections (`draining`) for a while, a returned one reads `initial`
    /// for a while before `healthy`.
    target_group: bool,
    draining_until: HashMap<String, Instant>,
    initial_until: HashMap<String, Instant>,
    operations: u64,
    /// Operation numbers at which to fire the scheduled triggers.
    triggers: BTreeMap<u64, tokio::sync::mpsc::UnboundedSender<()>>,
    caps: Caps,
    journal: JournalTail,
    violations: Vec<String>,
    /// Disabled by an operator during the run (MAINT), and the operation
    /// at which they did it.
    operator: HashMap<String, u64>,
    /// The operation of fleetroll's latest look at each host's admin state.
    looked: HashMap<String, u64>,
    /// Drains the balancer forgot (a reload), and the operation it did.
    lost: HashMap<String, u64>,
    /// Step processes running on each host, as its process table shows
    /// them: a kill of fleetroll does not end them.
    running: HashMap<String, usize>,
    /// The process holding each host's step lock, and how to stop it.
    lock_holder: HashMap<String, (u64, tokio::task::AbortHandle)>,
    next_pid: u64,
    /// Every host's responses through the balancer so far: real traffic,
    /// 50 requests a second to each host in service.
    served: HashMap<String, ServerCounters>,
    traffic_until: Instant,
}

/// The world, shared by the fakes.
#[derive(Debug, Clone)]
pub struct World {
    state: Arc<Mutex<State>>,
}

/// The world's own reading of the journal: complete lines only, from where
/// it last stopped.
#[derive(Debug)]
struct JournalTail {
    path: PathBuf,
    offset: u64,
    record: RunRecord,
}

impl JournalTail {
    fn refresh(&mut self) -> &RunRecord {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return &self.record;
        };
        if file.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return &self.record;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if !line.ends_with('\n') {
                break;
            }
            self.offset += line.len() as u64;
            if let Ok(envelope) = serde_json::from_str::<Envelope>(&line) {
                self.record.apply(&envelope);
            }
            line.clear();
        }
        &self.record
    }
}

impl World {
    pub fn new(
        hosts: &[Host],
        faults: HashMap<String, HostFaults>,
        caps: Caps,
        journal: PathBuf,
        run_id: &str,
    ) -> Self {
        let state = State {
            zone_of: hosts
                .iter()
                .map(|h| (h.name.clone(), h.zone.clone()))
                .collect(),
            faults,
            drained: BTreeSet::new(),
            version: HashMap::new(),
            undoing: false,
            ready_at: HashMap::new(),
            balancer_outage: 0,
            lose_next_answer: false,
            target_group: false,
            draining_until: HashMap::new(),
            initial_until: HashMap::new(),
            operations: 0,
            triggers: BTreeMap::new(),
            caps,
            journal: JournalTail {
                path: journal,
                offset: 0,
                record: RunRecord::new(run_id),
            },
            violations: Vec::new(),
            operator: HashMap::new(),
            looked: HashMap::new(),
            lost: HashMap::new(),
            running: HashMap::new(),
            lock_holder: HashMap::new(),
            next_pid: 0,
            served: HashMap::new(),
            traffic_until: Instant::now(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fires `trigger` when the world has seen `operation` operations.
    pub fn at_operation(&self, operation: u64, trigger: tokio::sync::mpsc::UnboundedSender<()>) {
        self.lock().triggers.insert(operation, trigger);
    }

    /// Drops the triggers of a run that ended.
    pub fn clear_triggers(&self) {
        self.lock().triggers.clear();
    }

    pub fn operations(&self) -> u64 {
        self.lock().operations
    }

    /// The next `calls` balancer calls fail as unreachable.
    pub fn balancer_outage(&self, calls: u32) {
        self.lock().balancer_outage = calls;
    }

    /// The next drain or undrain takes effect, then its answer is lost
    /// (the caller sees the balancer unreachable).
    pub fn lose_next_answer(&self) {
        self.lock().lose_next_answer = true;
    }

    /// The balancer keeps drained hosts `draining` and returned ones
    /// `initial` for a while, as an ELBv2 target group does.
    pub fn behave_like_a_target_group(&self) {
        self.lock().target_group = true;
    }

    /// The balancer forgets every runtime state (a HAProxy reload).
    pub fn balancer_reload(&self) {
        let mut state = self.lock();
        let now = state.operations;
        let forgotten = std::mem::take(&mut state.drained);
        for host in forgotten {
            state.lost.insert(host, now);
        }
    }

    /// An operator puts `host` in maintenance now.
    pub fn operator_disables(&self, host: &str) {
        let mut state = self.lock();
        let now = state.operations;
        state.operator.entry(host.to_owned()).or_insert(now);
        // As HAProxy's `set server … state maint`: MAINT replaces DRAIN.
        state.drained.remove(host);
    }

    /// Whether an operator disabled `host`, before the run or during it.
    fn disabled(state: &State, host: &str) -> bool {
        state.operator.contains_key(host)
            || state.faults.get(host).is_some_and(|f| f.operator_disabled)
    }

    /// Hosts with step processes still running (orphans of a kill).
    pub fn steps_running(&self) -> Vec<String> {
        let state = self.lock();
        state
            .running
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// Whether an operator holds `host` out of service now.
    pub fn operator_holds(&self, host: &str) -> bool {
        Self::disabled(&self.lock(), host)
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Hosts out of the balancer by fleetroll now.
    pub fn drained(&self) -> BTreeSet<String> {
        self.lock().drained.clone()
    }

    /// `fleetroll rollback` of the run begins: no forward step may start
    /// from now on.
    pub fn begin_undo(&self) {
        self.lock().undoing = true;
    }

    pub fn updated(&self, host: &str) -> bool {
        self.lock().version.get(host).is_some_and(|v| *v > 0)
    }

    /// Whether `host` serves real traffic now, and not because the
    /// balancer forgot fleetroll's drain (a reload) after the run's last
    /// look, which no run can see once it has ended.
    pub fn in_service(&self, host: &str) -> bool {
        let state = self.lock();
        !state.drained.contains(host)
            && !Self::disabled(&state, host)
            && !state.lost.contains_key(host)
    }

    pub fn faults(&self, host: &str) -> HostFaults {
        self.lock().faults.get(host).copied().unwrap_or_default()
    }

    /// Counts one operation and fires what is due.
    fn operation(state: &mut State) {
        state.operations += 1;
        let due: Vec<u64> = state
            .triggers
            .range(..=state.operations)
            .map(|(at, _)| *at)
            .collect();
        for at in due {
            if let Some(trigger) = state.triggers.remove(&at) {
                let _ = trigger.send(());
            }
        }
    }

    fn violation(state: &mut State, message: String) {
        if state.violations.len() < 20 {
            state.violations.push(message);
        }
    }

    /// The traffic every host in service served since the last look: a
    /// host on a bad release fails half of it.
    fn serve_traffic(state: &mut State) {
        let now = Instant::now();
        let requests = u64::try_from((now - state.traffic_until).as_millis() / 20).unwrap_or(0);
        state.traffic_until = now;
        let hosts: Vec<String> = state.zone_of.keys().cloned().collect();
        for host in hosts {
            if state.drained.contains(&host) || Self::disabled(state, &host) {
                continue;
            }
            let bad = state.faults.get(&host).is_some_and(|f| f.bad_release)
                && state.version.get(&host).is_some_and(|v| *v > 0);
            let counters = state.served.entry(host).or_default();
            counters.responses += requests;
            if bad {
                counters.errors += requests / 2;
            }
        }
    }

    /// Hosts the journal says regressed and that were not rolled back
    /// since: fleetroll drains them again at once, caps or not.
    fn regressed(state: &mut State) -> BTreeSet<String> {
        state
            .journal
            .refresh()
            .hosts
            .iter()
            .filter(|(_, r)| {
                matches!(r.watch, Some((crate::events::WatchVerdict::Regressed, _)))
                    && r.outcome != Outcome::RolledBack
            })
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// Never more hosts out than the caps, counting every fleetroll drain
    /// but those of regressed hosts (out at once, failing real requests).
    fn check_caps(state: &mut State) {
        let regressed = Self::regressed(state);
        let out = state.drained.difference(&regressed).count();
        if out > state.caps.max_unavailable {
            let message = format!(
                "{out} hosts out ({:?}), max_unavailable is {}",
                state.drained, state.caps.max_unavailable
            );
            Self::violation(state, message);
        }
        let mut per_zone: HashMap<&str, usize> = HashMap::new();
        for host in state.drained.difference(&regressed) {
            if let Some(zone) = state.zone_of.get(host) {
                *per_zone.entry(zone).or_default() += 1;
            }
        }
        let mut over = Vec::new();
        for (zone, count) in per_zone {
            if let Some(cap) = state.caps.zone_caps.get(zone)
                && count > *cap
            {
                over.push(format!(
                    "{count} hosts out in zone {zone}, its cap is {cap}"
                ));
            }
        }
        for message in over {
            Self::violation(state, message);
        }
    }
}

/// A step running on a simulated host, as its process table would show it.
struct StepProcess {
    world: World,
    host: String,
    guard: Option<step_guard::Guarded>,
    /// How long it runs; `None`: it hangs until something stops it.
    run_for: Option<Duration>,
    fails: bool,
    warmup: Duration,
    /// A rollback step: it puts the old version back.
    rollback: bool,
}

/// Undoes a process's marks on the host when it ends, however it ends
/// (an abort by [`step_guard::Query::Stop`] included).
struct ProcessMarks {
    world: World,
    host: String,
    pid: u64,
    running: bool,
}

impl Drop for ProcessMarks {
    fn drop(&mut self) {
        let mut state = self.world.lock();
        if self.running
            && let Some(count) = state.running.get_mut(&self.host)
        {
            *count -= 1;
        }
        if state
            .lock_holder
            .get(&self.host)
            .is_some_and(|(pid, _)| *pid == self.pid)
        {
            state.lock_holder.remove(&self.host);
        }
    }
}

impl World {
    /// Starts `process` on its host; its exit code goes to `done`.
    fn spawn_step(&self, process: StepProcess, done: tokio::sync::oneshot::Sender<u32>) -> u64 {
        let pid = {
            let mut state = self.lock();
            state.next_pid += 1;
            state.next_pid
        };
        let (abort_tx, abort_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let Ok(abort) = abort_rx.await else { return };
            let code = process.run(pid, abort, &done).await;
            let _ = done.send(code);
        });
        let _ = abort_tx.send(task.abort_handle());
        pid
    }
}

impl StepProcess {
    async fn run(
        self,
        pid: u64,
        abort: tokio::task::AbortHandle,
        client: &tokio::sync::oneshot::Sender<u32>,
    ) -> u32 {
        let mut marks = ProcessMarks {
            world: self.world.clone(),
            host: self.host.clone(),
            pid,
            running: false,
        };
        if let Some(guard) = &self.guard {
            // `flock -w`: wait for the lock, bounded.
            let deadline = Instant::now() + guard.wait;
            let mut waited = false;
            loop {
                {
                    let mut state = self.world.lock();
                    if !state.lock_holder.contains_key(&self.host) {
                        state
                            .lock_holder
                            .insert(self.host.clone(), (pid, abort.clone()));
                        break;
                    }
                }
                if Instant::now() >= deadline {
                    return step_guard::BUSY_EXIT;
                }
                waited = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The guard says it starts after a wait; with its controller
            // gone, that write to a closed pipe ends it (SIGPIPE).
            if waited && client.is_closed() {
                return 141;
            }
        }
        {
            let mut state = self.world.lock();
            let host = &self.host;
            let count = state.running.entry(host.clone()).or_default();
            *count += 1;
            let count = *count;
            marks.running = true;
            if count > 1 {
                World::violation(
                    &mut state,
                    format!("{host}: {count} instances of the step run at once"),
                );
            }
            // In service: a violation unless the balancer forgot the drain
            // after fleetroll's last look (a reload in the instant between
            // that look and the step, which no balancer API can close).
            let raced = state
                .lost
                .get(host)
                .is_some_and(|lost| state.looked.get(host).is_none_or(|looked| lost >= looked));
            if !state.drained.contains(host) && !World::disabled(&state, host) && !raced {
                World::violation(
                    &mut state,
                    format!("{host}: a step started while the host was in service"),
                );
            }
        }
        let limit = self.guard.as_ref().map(|g| g.limit);
        match (self.run_for, limit) {
            // `timeout` stops it on the host.
            (None, Some(limit)) => {
                tokio::time::sleep(limit).await;
                return 124;
            }
            (Some(run_for), Some(limit)) if run_for > limit => {
                tokio::time::sleep(limit).await;
                return 124;
            }
            (None, None) => std::future::pending::<()>().await,
            (Some(run_for), _) => tokio::time::sleep(run_for).await,
        }
        if self.fails {
            return 1;
        }
        let mut state = self.world.lock();
        if self.rollback {
            state.version.insert(self.host.clone(), 0);
        } else {
            *state.version.entry(self.host.clone()).or_default() += 1;
        }
        let ready = Instant::now() + self.warmup;
        state.ready_at.insert(self.host.clone(), ready);
        drop(state);
        drop(marks);
        0
    }
}

/// How long a target-group-like balancer keeps a drained host's
/// connections, and calls a returned host `initial`.
const TARGET_GROUP_DRAINING: Duration = Duration::from_secs(3);
const TARGET_GROUP_INITIAL: Duration = Duration::from_secs(4);

#[derive(Debug)]
pub struct SimBalancer {
    pub world: World,
}

impl SimBalancer {
    /// One call into the balancer's API: counted, and failed while an
    /// outage lasts.
    fn api_call(state: &mut State) -> Result<(), BalancerError> {
        World::operation(state);
        if state.balancer_outage > 0 {
            state.balancer_outage -= 1;
            return Err(BalancerError::Unreachable {
                balancer: "lb".into(),
                reason: "simulated outage".into(),
            });
        }
        Ok(())
    }

    /// The answer of a drain or undrain that took effect: lost once after
    /// [`World::lose_next_answer`].
    fn answer(state: &mut State) -> Result<(), BalancerError> {
        if std::mem::take(&mut state.lose_next_answer) {
            return Err(BalancerError::Unreachable {
                balancer: "lb".into(),
                reason: "the answer was lost".into(),
            });
        }
        Ok(())
    }

    fn call(&self, host: &Host) -> Result<(), BalancerError> {
        let mut state = self.world.lock();
        Self::api_call(&mut state)?;
        if state
            .faults
            .get(&host.name)
            .is_some_and(|f| f.unknown_to_balancer)
        {
            return Err(BalancerError::UnknownServer {
                balancer: "lb".into(),
                backend: "app".into(),
                server: host.name.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl LoadBalancer for SimBalancer {
    fn name(&self) -> &str {
        "lb"
    }

    async fn status(&self, target: Target<'_>) -> Result<ServerStatus, BalancerError> {
        self.call(target.host)?;
        let mut state = self.world.lock();
        let now = state.operations;
        state.looked.insert(target.host.name.clone(), now);
        let operator = World::disabled(&state, &target.host.name);
        let admin = if operator {
            AdminState::Maint
        } else if state.drained.contains(&target.host.name) {
            AdminState::Drain
        } else {
            AdminState::Ready
        };
        let now = Instant::now();
        let host = &target.host.name;
        let draining = state
            .draining_until
            .get(host)
            .is_some_and(|until| now < *until);
        let initial = state
            .initial_until
            .get(host)
            .is_some_and(|until| now < *until);
        Ok(ServerStatus {
            admin,
            up: Some(!initial),
            sessions: Some(u64::from(draining)),
        })
    }

    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.call(target.host)?;
        let mut state = self.world.lock();
        let host = &target.host.name;
        let recorded = state
            .journal
            .refresh()
            .hosts
            .get(host)
            .is_some_and(|r| r.drained.iter().any(|b| b == "lb"));
        if !recorded {
            World::violation(
                &mut state,
                format!("{host} drained without a durable record of it"),
            );
        }
        if state.faults.get(host).is_some_and(|f| f.operator_disabled) {
            World::violation(
                &mut state,
                format!("{host}, disabled by an operator, was drained"),
            );
        }
        // HAProxy's `state drain` replaces MAINT. An operator's disable
        // fleetroll could have seen must not be; one set since its last
        // look is a race the balancer's API gives no way to close.
        if let Some(at) = state.operator.remove(host)
            && state.looked.get(host).is_some_and(|looked| at < *looked)
        {
            World::violation(
                &mut state,
                format!("{host}, disabled by an operator during the run, was drained"),
            );
        }
        World::serve_traffic(&mut state);
        state.lost.remove(host);
        state.drained.insert(host.clone());
        World::check_caps(&mut state);
        if state.target_group {
            state.initial_until.remove(host);
            state
                .draining_until
                .entry(host.clone())
                .or_insert_with(|| Instant::now() + TARGET_GROUP_DRAINING);
        }
        Self::answer(&mut state)
    }

    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.call(target.host)?;
        let mut state = self.world.lock();
        let host = &target.host.name;
        // HAProxy's `state ready` lifts MAINT too. An operator's disable
        // set after fleetroll's last look is a race no balancer API lets
        // a client close; one it could have seen must never be lifted.
        let seen = state.looked.get(host).copied();
        let lifted = state.faults.get(host).is_some_and(|f| f.operator_disabled)
            || state
                .operator
                .get(host)
                .is_some_and(|at| seen.is_some_and(|looked| *at < looked));
        if lifted {
            World::violation(
                &mut state,
                format!("{host}, disabled by an operator, was enabled"),
            );
        }
        if state.running.get(host).is_some_and(|count| *count > 0) {
            World::violation(
                &mut state,
                format!("{host} returned to service while a step still runs on it"),
            );
        }
        // A regressed host goes back only once rolled back.
        let rolling_back =
            state.undoing || state.journal.refresh().rollback.iter().any(|h| h == host);
        if !rolling_back && World::regressed(&mut state).contains(host) {
            World::violation(
                &mut state,
                format!("{host}, regressed, was returned to service"),
            );
        }
        World::serve_traffic(&mut state);
        state.operator.remove(host);
        let returned = state.drained.remove(host);
        if state.target_group {
            state.draining_until.remove(host);
            if returned {
                state
                    .initial_until
                    .insert(host.clone(), Instant::now() + TARGET_GROUP_INITIAL);
            }
        }
        Self::answer(&mut state)
    }

    async fn pool(&self) -> Result<Option<PoolStatus>, BalancerError> {
        let mut state = self.world.lock();
        World::operation(&mut state);
        let total = state.zone_of.len();
        let out = state
            .zone_of
            .keys()
            .filter(|host| state.drained.contains(*host) || World::disabled(&state, host))
            .count();
        Ok(Some(PoolStatus {
            healthy: total.saturating_sub(out),
            total,
        }))
    }

    async fn counters(&self) -> Result<Option<HashMap<String, ServerCounters>>, BalancerError> {
        let mut state = self.world.lock();
        Self::api_call(&mut state)?;
        World::serve_traffic(&mut state);
        Ok(Some(state.served.clone()))
    }

    async fn reassert_drains(&self, drained: &[Host]) -> Result<Vec<String>, BalancerError> {
        // A real balancer's check takes round trips: hosts the run returns
        // meanwhile must not be re-drained by it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut state = self.world.lock();
        World::operation(&mut state);
        let mut lost = Vec::new();
        // As HAProxy's: only a server back at Ready lost its drain; one in
        // MAINT is the operator's.
        for host in drained {
            if World::disabled(&state, &host.name) {
                continue;
            }
            state.lost.remove(&host.name);
            if state.drained.insert(host.name.clone()) {
                // A re-applied drain is a drain: its record must be durable.
                let recorded = state
                    .journal
                    .refresh()
                    .hosts
                    .get(&host.name)
                    .is_some_and(|r| r.drained.iter().any(|b| b == "lb"));
                if !recorded {
                    let name = host.name.clone();
                    World::violation(
                        &mut state,
                        format!("{name} re-drained without a durable record of its drain"),
                    );
                }
                lost.push(host.name.clone());
            }
        }
        World::check_caps(&mut state);
        Ok(if lost.is_empty() {
            Vec::new()
        } else {
            vec![format!("lb lost the drain of {}", lost.join(", "))]
        })
    }
}

#[derive(Debug)]
pub struct SimConnector {
    pub world: World,
    /// How long a step takes.
    pub step_time: Duration,
    /// How long a host takes to warm up after its step.
    pub warmup: Duration,
}

#[async_trait]
impl Connector for SimConnector {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn RemoteShell>, ShellError> {
        let mut state = self.world.lock();
        World::operation(&mut state);
        if state.faults.get(&host.name).is_some_and(|f| f.unreachable) {
            return Err(ShellError::Unreachable {
                host: host.name.clone(),
                reason: "simulated".into(),
            });
        }
        Ok(Arc::new(SimShell {
            world: self.world.clone(),
            host: host.name.clone(),
            step_time: self.step_time,
            warmup: self.warmup,
        }))
    }
}

#[derive(Debug)]
struct SimShell {
    world: World,
    host: String,
    step_time: Duration,
    warmup: Duration,
}

fn output(code: u32) -> ExecOutput {
    ExecOutput {
        status: ExitStatus::Code(code),
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        duration: Duration::ZERO,
    }
}

#[async_trait]
impl RemoteShell for SimShell {
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, ShellError> {
        if let Some(query) = step_guard::parse_query(command) {
            let mut state = self.world.lock();
            World::operation(&mut state);
            return Ok(output(match query {
                step_guard::Query::Busy { .. } => {
                    u32::from(state.lock_holder.contains_key(&self.host))
                }
                step_guard::Query::Stop { .. } => {
                    if let Some((_, process)) = state.lock_holder.get(&self.host) {
                        process.abort();
                    }
                    0
                }
            }));
        }
        let guarded = step_guard::parse(command);
        let command = guarded.as_ref().map_or(command, |g| g.step.as_str());
        let faults = {
            let mut state = self.world.lock();
            World::operation(&mut state);
            let faults = state.faults.get(&self.host).copied().unwrap_or_default();
            if command.starts_with("deploy") && state.undoing {
                let host = self.host.clone();
                World::violation(
                    &mut state,
                    format!("{host}: a forward step of a rolled-back run started"),
                );
            }
            if command.starts_with("deploy") {
                let done = state
                    .journal
                    .refresh()
                    .hosts
                    .get(&self.host)
                    .is_some_and(|r| r.outcome == Outcome::Updated);
                if done {
                    let host = self.host.clone();
                    World::violation(&mut state, format!("{host}: step run again after done"));
                }
            }
            faults
        };
        let rollback = command == "rollback";
        if command.starts_with("deploy") || rollback {
            // The step is a process on the host: it outlives this call if
            // fleetroll stops waiting (a kill, a client-side timeout).
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let process = StepProcess {
                world: self.world.clone(),
                host: self.host.clone(),
                guard: guarded,
                run_for: if rollback {
                    Some(Duration::from_secs(1))
                } else {
                    (!faults.hanging_step).then_some(self.step_time)
                },
                fails: !rollback && faults.failing_step,
                warmup: self.warmup,
                rollback,
            };
            let pid = self.world.spawn_step(process, done_tx);
            return match tokio::time::timeout(timeout, done_rx).await {
                Ok(Ok(code)) => Ok(output(code)),
                Ok(Err(_)) => Err(ShellError::Disconnected {
                    host: self.host.clone(),
                    reason: format!("step process {pid} was stopped"),
                }),
                Err(_) => Err(ShellError::Timeout {
                    host: self.host.clone(),
                    after: timeout,
                }),
            };
        }
        if command == "healthy" {
            // Not under the world's lock: a panic must not poison it.
            assert!(
                !faults.task_panics,
                "simulated bug: the host task of {} panics",
                self.host
            );
            let state = self.world.lock();
            let warm = state
                .ready_at
                .get(&self.host)
                .is_none_or(|at| Instant::now() >= *at);
            let healthy = warm && !(faults.unhealthy && state.version.contains_key(&self.host));
            return Ok(output(u32::from(!healthy)));
        }

        Ok(output(127))
    }

    async fn close(&self) {}
}
