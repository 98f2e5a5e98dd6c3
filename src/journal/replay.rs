//! Replaying a journal into what is known about a run: a pure fold.

use indexmap::IndexMap;

use crate::events::{
    Envelope, Event, Outcome, Phase, PlannedBatch, PlaybookFingerprint, RunOutcome, RunSettings,
};

/// What the journal says about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub phase: Phase,
    pub outcome: Outcome,
    /// Balancers the host was drained from and not yet returned to.
    pub drained: Vec<String>,
    /// Steps that finished successfully, in order from the first.
    pub steps_done: usize,
    pub failed_step: Option<FailedStep>,
    pub detail: Option<String>,
    /// Milliseconds between the first drain and the last undrain.
    pub out_of_service_ms: u64,
    /// The instance a `replace` step put in this host's place.
    pub replaced_by: Option<String>,
    /// The Auto Scaling group it was replaced in.
    pub replaced_in: Option<String>,
    /// Per drained balancer, what it needs to return the host.
    pub drain_memory: Vec<(String, String)>,
    /// A replacement begun and not yet recorded as done.
    pub replacing: Option<Replacing>,
    /// In Standby in its Auto Scaling group (`asg_standby`).
    pub standby: bool,
    /// A forward step was started on it (it may have changed the host even
    /// if the run was killed before the step's end was recorded).
    pub step_started: bool,
    /// Its watch's verdict and why (`[watch]`).
    pub watch: Option<(crate::events::WatchVerdict, String)>,
    drained_at: Option<jiff::Timestamp>,
}

/// What a begun replacement recorded before changing its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacing {
    pub group: String,
    pub old_instance: String,
    pub members: Vec<String>,
    pub surge_desired: Option<u32>,
    /// With a surge: another surge of the group was recorded after this
    /// one by the same process, so this one's capacity change was made
    /// (a process's surges of one group take turns, each recorded and made
    /// before the next is recorded).
    pub surge_settled: bool,
    /// With a surge: the old instances of the group's other surges under
    /// way when this one was recorded; each that is terminated since
    /// lowered the desired capacity this one counted on by one.
    pub pending_olds: Vec<String>,
    /// The process of the run that recorded it.
    pub process: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStep {
    pub step: String,
    pub exit_code: Option<i64>,
    pub output_tail: String,
}

impl HostRecord {
    fn new() -> Self {
        Self {
            phase: Phase::Pending,
            outcome: Outcome::Pending,
            drained: Vec::new(),
            steps_done: 0,
            failed_step: None,
            detail: None,
            out_of_service_ms: 0,
            replaced_by: None,
            replaced_in: None,
            drain_memory: Vec::new(),
            replacing: None,
            standby: false,
            step_started: false,
            watch: None,
            drained_at: None,
        }
    }

    /// Whether this run may have changed the host: updated, or a forward
    /// step started on it, whether it ended, failed or was cut short by a
    /// kill (`rollback` undoes the interrupted host too).
    pub fn was_changed(&self) -> bool {
        self.outcome == Outcome::Updated
            || (self.outcome != Outcome::Skipped
                && self.outcome != Outcome::RolledBack
                && (self.step_started
                    || self.steps_done > 0
                    || self.failed_step.is_some()
                    || self.replaced_by.is_some()
                    || self.replacing.is_some()))
    }

    /// Whether `rollback` of the run has this host to undo: changed by
    /// it, and not rolled back yet.
    pub fn to_roll_back(&self) -> bool {
        self.was_changed() && self.outcome != Outcome::RolledBack
    }

    /// Drained by the run, which never changed the host (killed, or the
    /// host failed before its first step): `rollback` only returns it to
    /// service. (A failed host stays out for `run` and `resume`; a
    /// rollback undoes the run, its drains included: one left out made
    /// `rollback` exit 0 with a host out of service.)
    pub fn out_unchanged(&self) -> bool {
        !self.drained.is_empty() && !self.was_changed()
    }

    /// Milliseconds out of service up to `until`: the spells that ended,
    /// and the one still open while the host is drained (a failed host
    /// kept out counts until then, not as 0).
    pub fn out_of_service_ms_until(&self, until: Option<jiff::Timestamp>) -> u64 {
        let open = match (self.drained.is_empty(), self.drained_at, until) {
            (false, Some(start), Some(until)) => {
                u64::try_from(until.duration_since(start).as_millis().max(0)).unwrap_or(0)
            }
            _ => 0,
        };
        self.out_of_service_ms + open
    }

    /// Finished, one way or another; `resume` leaves it alone.
    pub fn is_settled(&self) -> bool {
        !matches!(self.outcome, Outcome::Pending)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub settings: Option<RunSettings>,
    pub playbook: String,
    pub plan: Vec<PlannedBatch>,
    pub failure_budget: usize,
    pub outcome: RunOutcome,
    pub reason: Option<String>,
    pub hosts: IndexMap<String, HostRecord>,
    /// Batch index → whether it passed, for batches that finished.
    pub batches: IndexMap<usize, bool>,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub lock_broken: bool,
    /// Per batch: gates that passed after it, and whether one failed.
    gates: IndexMap<usize, GateRound>,
    /// The hosts of a failed batch whose rollback began.
    pub rollback: Vec<String>,
    /// The playbook's steps when the run started (absent in old journals).
    pub fingerprint: Option<PlaybookFingerprint>,
    /// A `[[rollback]]` step was started: the journal holds rollback step
    /// positions, which a changed list of rollback steps would shift.
    pub rollback_steps_started: bool,
    /// `fleetroll rollback` took the run over: it is finished as far as
    /// `resume` goes, whether or not the rollback completed.
    pub rolled_back_by_command: bool,
    /// Which fleetroll process of the run the records come from: one more
    /// at each `run_started` and `run_resumed`.
    process: u32,
}

/// How a batch of the plan went, by its end record and its hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchVerdict {
    NotFinished,
    Ok,
    /// Its end record says it failed.
    Failed,
    /// It ended (perhaps after a resume, whose end record says ok), but
    /// this many of its hosts failed.
    HostsFailed(usize),
}

impl RunRecord {
    /// How `batch` went: not ok while any of its hosts failed, whatever a
    /// later process's end record of it says.
    pub fn batch_verdict(&self, batch: &PlannedBatch) -> BatchVerdict {
        let Some(ok) = self.batches.get(&batch.index) else {
            return BatchVerdict::NotFinished;
        };
        let failed = batch
            .hosts
            .iter()
            .filter(|name| {
                self.hosts
                    .get(*name)
                    .is_some_and(|host| host.outcome.is_failure())
            })
            .count();
        match (*ok, failed) {
            (false, _) => BatchVerdict::Failed,
            (true, 0) => BatchVerdict::Ok,
            (true, failed) => BatchVerdict::HostsFailed(failed),
        }
    }
}

/// The gates that passed after a batch since the last one failed there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct GateRound {
    passed: std::collections::BTreeSet<String>,
}

/// Folds journal records, oldest first, into a [`RunRecord`].
pub fn replay(run_id: &str, records: &[Envelope]) -> RunRecord {
    let mut run = RunRecord::new(run_id);
    for envelope in records {
        run.apply(envelope);
    }
    // A run with no end record was killed or is still going; the caller
    // tells which by looking at the lock.
    run
}

impl RunRecord {
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            settings: None,
            playbook: String::new(),
            plan: Vec::new(),
            failure_budget: 0,
            outcome: RunOutcome::Running,
            reason: None,
            hosts: IndexMap::new(),
            batches: IndexMap::new(),
            started: None,
            finished: None,
            lock_broken: false,
            gates: IndexMap::new(),
            rollback: Vec::new(),
            fingerprint: None,
            rollback_steps_started: false,
            rolled_back_by_command: false,
            process: 0,
        }
    }

    fn host_mut(&mut self, host: &str) -> &mut HostRecord {
        if !self.hosts.contains_key(host) {
            self.hosts.insert(host.to_owned(), HostRecord::new());
        }
        &mut self.hosts[host]
    }

    /// Applies one record; the live run and a replay share this fold.
    pub fn apply(&mut self, envelope: &Envelope) {
        let ts = || envelope.ts.parse::<jiff::Timestamp>().ok();
        match &envelope.event {
            Event::RunStarted {
                playbook,
                failure_budget,
                settings,
                plan,
                fingerprint,
                ..
            } => {
                self.process += 1;
                self.playbook = playbook.clone();
                self.fingerprint = fingerprint.clone();
                self.failure_budget = *failure_budget;
                self.settings = Some(settings.clone());
                self.plan = plan.clone();
                self.started = Some(envelope.ts.clone());
                for host in plan.iter().flat_map(|b| &b.hosts) {
                    self.host_mut(host);
                }
            }
            Event::RunResumed { rollback, .. } => {
                self.process += 1;
                self.rolled_back_by_command |= *rollback;
                self.outcome = RunOutcome::Running;
                self.reason = None;
                self.finished = None;
            }
            Event::HostPhase {
                host,
                phase,
                outcome,
                detail,
            } => {
                let record = self.host_mut(host);
                record.phase = *phase;
                if let Some(outcome) = outcome {
                    record.outcome = *outcome;
                }
                if detail.is_some() {
                    record.detail = detail.clone();
                }
            }
            Event::Drain { host, balancer } => {
                let record = self.host_mut(host);
                if !record.drained.contains(balancer) {
                    record.drained.push(balancer.clone());
                }
                if record.drained_at.is_none() {
                    record.drained_at = ts();
                }
            }
            Event::DrainMemory {
                host,
                balancer,
                memory,
            } => {
                let record = self.host_mut(host);
                record.drain_memory.retain(|(b, _)| b != balancer);
                record.drain_memory.push((balancer.clone(), memory.clone()));
            }
            Event::Undrained { host, balancer } => {
                let record = self.host_mut(host);
                record.drained.retain(|b| b != balancer);
                record.drain_memory.retain(|(b, _)| b != balancer);
                if record.drained.is_empty()
                    && let (Some(start), Some(end)) = (record.drained_at.take(), ts())
                {
                    let spent = end.duration_since(start).as_millis().max(0);
                    record.out_of_service_ms += u64::try_from(spent).unwrap_or(0);
                }
            }
            Event::StepFinished {
                host,
                step,
                index,
                exit_code,
                ok,
                output_tail,
                rollback,
                ..
            } => {
                let record = self.host_mut(host);
                // Rollback steps are numbered apart from the forward ones.
                if *ok && !*rollback && *index == record.steps_done {
                    record.steps_done += 1;
                } else if !*ok {
                    record.failed_step = Some(FailedStep {
                        step: step.clone(),
                        exit_code: *exit_code,
                        output_tail: output_tail.clone(),
                    });
                }
            }
            Event::StepSkipped { host, .. } => {
                let record = self.host_mut(host);
                record.steps_done += 1;
            }
            Event::BatchFinished { index, ok } => {
                self.batches.insert(*index, *ok);
            }
            Event::RunFinished {
                outcome, reason, ..
            } => {
                self.outcome = *outcome;
                self.reason = reason.clone();
                self.finished = Some(envelope.ts.clone());
            }
            Event::LockBroken { .. } => self.lock_broken = true,
            Event::Replaced {
                host,
                index,
                new_instance,
                ..
            } => {
                let record = self.host_mut(host);
                // The old instance is gone, and the step must never run
                // again, on the new one. The host stays drained: the new
                // instance is returned wherever the old one was (the new
                // target's registrations follow as `drain_memory`).
                record.replaced_by = Some(new_instance.clone());
                record.replaced_in = record.replacing.take().map(|r| r.group);
                record.drain_memory.clear();
                record.steps_done = record.steps_done.max(index + 1);
            }
            Event::HandedOver { host, to_run } => {
                let record = self.host_mut(host);
                record.drained.clear();
                record.detail = Some(format!("handed over to run {to_run}, still drained"));
            }
            Event::Gate {
                name,
                ok,
                batch: Some(batch),
                ..
            } => {
                let round = self.gates.entry(*batch).or_default();
                if *ok {
                    round.passed.insert(name.clone());
                } else {
                    // A failure means every gate is checked again.
                    round.passed.clear();
                }
            }
            Event::RollbackStarted { hosts, .. } => self.rollback = hosts.clone(),
            Event::Replacing {
                host,
                group,
                old_instance,
                members,
                surge_desired,
            } => {
                let mut pending_olds = Vec::new();
                if surge_desired.is_some() {
                    for (other, record) in &mut self.hosts {
                        if let Some(theirs) = record.replacing.as_mut().filter(|r| {
                            other != host && r.group == *group && r.surge_desired.is_some()
                        }) {
                            theirs.surge_settled |= theirs.process == self.process;
                            pending_olds.push(theirs.old_instance.clone());
                        }
                    }
                }
                self.host_mut(host).replacing = Some(Replacing {
                    group: group.clone(),
                    old_instance: old_instance.clone(),
                    members: members.clone(),
                    surge_desired: *surge_desired,
                    surge_settled: false,
                    pending_olds,
                    process: self.process,
                });
            }
            Event::Standby { host, standby } => {
                self.host_mut(host).standby = *standby;
            }
            Event::StepStarted { host, rollback, .. } => {
                self.rollback_steps_started |= *rollback;
                if !*rollback {
                    self.host_mut(host).step_started = true;
                }
            }
            Event::HostWatch {
                host,
                verdict,
                detail,
                ..
            } => {
                self.host_mut(host).watch = Some((*verdict, detail.clone()));
            }
            Event::BatchStarted { .. }
            | Event::Probe { .. }
            | Event::Gate { .. }
            | Event::Pause { .. }
            | Event::Warning { .. } => {}
        }
    }

    /// Whether all `gates` passed after `batch` in their latest round.
    pub fn gates_passed(&self, batch: usize, gates: usize) -> bool {
        gates == 0
            || self
                .gates
                .get(&batch)
                .is_some_and(|round| round.passed.len() >= gates)
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.hosts.values().filter(|h| h.outcome == outcome).count()
    }

    pub fn failures(&self) -> usize {
        self.hosts
            .values()
            .filter(|h| h.outcome.is_failure())
            .count()
    }

    /// Host → zone, from the recorded plan.
    pub fn zone_of(&self, host: &str) -> Option<&str> {
        self.plan.iter().find_map(|batch| {
            let position = batch.hosts.iter().position(|h| h == host)?;
            match batch.host_zones.get(position) {
                Some(zone) => Some(zone.as_str()),
                // Older journals: known only for a batch of one zone.
                None if batch.zones.len() == 1 => batch.zones.first().map(String::as_str),
                None => None,
            }
        })
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
