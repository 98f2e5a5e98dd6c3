//! The event stream: what happened during a run, in order.
//!
//! One enum serves three readers: the journal (so `resume` and `status`
//! can replay a run), `--json` output (one object per line), and the human
//! reporter. Events carry names and figures, never secrets: no variable
//! values, no rendered commands, no key material.

use serde::{Deserialize, Serialize};

/// The phases a host goes through, as the SPEC names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    /// Checking `skip_if` and the balancers' view before anything is touched.
    Checking,
    Draining,
    Updating,
    Verifying,
    Undraining,
    /// Back in service; its real traffic is watched before it counts as
    /// updated (`[watch]`).
    Watching,
    Done,
    Skipped,
    Failed,
    RolledBack,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Checking => "checking",
            Phase::Draining => "draining",
            Phase::Updating => "updating",
            Phase::Verifying => "verifying",
            Phase::Undraining => "undraining",
            Phase::Watching => "watching",
            Phase::Done => "done",
            Phase::Skipped => "skipped",
            Phase::Failed => "failed",
            Phase::RolledBack => "rolled_back",
        }
    }
}

/// How a host ended; the failure budget counts every failing kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pending,
    Skipped,
    Updated,
    /// A step failed.
    Failed,
    /// SSH could not reach the host; nothing was touched.
    Unreachable,
    /// Probes never passed after the update.
    Unhealthy,
    /// A step or wait ran past its deadline.
    TimedOut,
    RolledBack,
    /// Passed its probes, then failed real requests while watched
    /// (`[watch]`): drained again.
    Regressed,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed
                | Outcome::Unreachable
                | Outcome::Unhealthy
                | Outcome::TimedOut
                | Outcome::Regressed
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Skipped => "skipped",
            Outcome::Updated => "updated",
            Outcome::Failed => "failed",
            Outcome::Unreachable => "unreachable",
            Outcome::Unhealthy => "unhealthy",
            Outcome::TimedOut => "timed_out",
            Outcome::RolledBack => "rolled_back",
            Outcome::Regressed => "regressed",
        }
    }

    pub const ALL: [Outcome; 9] = [
        Outcome::Pending,
        Outcome::Skipped,
        Outcome::Updated,
        Outcome::Failed,
        Outcome::Unreachable,
        Outcome::Unhealthy,
        Outcome::TimedOut,
        Outcome::RolledBack,
        Outcome::Regressed,
    ];
}

/// What a host's watch decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchVerdict {
    Passed,
    Regressed,
    /// Too few requests to judge: the host counts as updated.
    NotJudged,
}

/// How a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Halted,
    RolledBack,
    WindowClosed,
    Interrupted,
}

impl RunOutcome {
    pub fn label(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Halted => "halted",
            RunOutcome::RolledBack => "rolled_back",
            RunOutcome::WindowClosed => "window_closed",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

/// What `run` was started with, so that `resume` can start it again.
/// Variable values are not kept: they may be secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    pub inventory: String,
    pub playbook: String,
    pub var_names: Vec<String>,
    pub limit: Vec<String>,
    pub accept_new_host_keys: bool,
}

/// A planned batch as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBatch {
    pub index: usize,
    pub zones: Vec<String>,
    pub hosts: Vec<String>,
    /// Each host's zone, in the order of `hosts`; absent in older journals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_zones: Vec<String>,
}

/// What a run's steps were when it started: a SHA-256 over every step and
/// rollback step in order, and each step's name, kind and own digest (over
/// its name, kind, command templates and `only_if`, never variable values),
/// so that a change can be named. Timeouts, retries and estimates are left
/// out: raising a timeout to finish a run is not a different change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookFingerprint {
    pub sha256: String,
    pub steps: Vec<StepPrint>,
    pub rollback: Vec<StepPrint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPrint {
    pub name: String,
    /// `run`, `reboot` or `replace`.
    pub kind: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        playbook: String,
        hosts: usize,
        batches: usize,
        failure_budget: usize,
        settings: RunSettings,
        plan: Vec<PlannedBatch>,
        /// The playbook's steps, so that `resume` and `rollback` can refuse
        /// a playbook whose steps changed (the journal counts steps by
        /// position). Absent in journals older than fingerprints.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<PlaybookFingerprint>,
        /// Hosts allowed out of service at once (for the report's capacity
        /// chart). Absent in older journals.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_unavailable: Option<usize>,
        /// When the maintenance window closes, if the playbook has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_closes_at: Option<String>,
    },
    /// `resume` or `rollback` took over an interrupted or halted run.
    RunResumed {
        pending: usize,
        /// `fleetroll rollback`: from here on the run only undoes, and
        /// `resume` refuses it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rollback: bool,
    },
    BatchStarted {
        index: usize,
        zones: Vec<String>,
        hosts: Vec<String>,
    },
    HostPhase {
        host: String,
        phase: Phase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<Outcome>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Written before the host is drained from one balancer.
    Drain {
        host: String,
        balancer: String,
    },
    /// What a balancer needs to return the host after a restart, written
    /// right after the drain (opaque to everyone but that balancer).
    DrainMemory {
        host: String,
        balancer: String,
        memory: String,
    },
    /// Written once the host is back in one balancer and reported up.
    Undrained {
        host: String,
        balancer: String,
    },
    /// Written before a step runs (the journal's write-ahead record).
    StepStarted {
        host: String,
        step: String,
        index: usize,
        attempt: u32,
        /// A `[[rollback]]` step rather than a forward one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rollback: bool,
    },
    StepFinished {
        host: String,
        step: String,
        index: usize,
        exit_code: Option<i64>,
        duration_ms: u64,
        ok: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        output_tail: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rollback: bool,
    },
    /// A step whose `only_if` said no.
    StepSkipped {
        host: String,
        step: String,
    },
    Probe {
        host: String,
        probe: String,
        ok: bool,
        detail: String,
    },
    /// A returned host's real traffic over its watch (`[watch]`), against
    /// the baseline's over the same interval.
    HostWatch {
        host: String,
        /// "passed", "regressed" or "not_judged".
        verdict: WatchVerdict,
        /// Why, in words: "5xx 31.0% against 0.0%", "not judged: 12 requests".
        detail: String,
        seconds: u64,
        requests: u64,
        errors: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean_ms: Option<u64>,
        baseline_hosts: usize,
        baseline_requests: u64,
        baseline_errors: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline_mean_ms: Option<u64>,
    },
    Gate {
        name: String,
        ok: bool,
        detail: String,
        /// The batch after which the gate was checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<usize>,
    },
    BatchFinished {
        index: usize,
        ok: bool,
    },
    /// Bake time before the next batch.
    Pause {
        seconds: u64,
        next_batch: usize,
    },
    /// A warning worth reading in the morning (a drain that timed out, say).
    Warning {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        message: String,
    },
    RunFinished {
        outcome: RunOutcome,
        updated: usize,
        failed: usize,
        skipped: usize,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A `replace` step swapped the host's instance for a new one.
    Replaced {
        host: String,
        /// The `replace` step's index: the replacement is its effect, so the
        /// step counts as done even if the run dies before `step_finished`.
        index: usize,
        old_instance: String,
        new_instance: String,
        /// The zone the Auto Scaling group put the new instance in.
        zone: String,
    },
    /// `on_failure = "rollback"`: the failed batch's changed hosts are being
    /// rolled back (a resume finishes this first).
    RollbackStarted {
        batch: usize,
        hosts: Vec<String>,
    },
    /// Written before a `replace` step's first change to its Auto Scaling
    /// group, so that a resume neither raises capacity twice nor tries to
    /// terminate an instance that is already gone.
    Replacing {
        host: String,
        group: String,
        old_instance: String,
        /// The group's members before this host's change.
        members: Vec<String>,
        /// With `surge`: the desired capacity it raises the group to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        surge_desired: Option<u32>,
    },
    /// `asg_standby`: written before the instance enters Standby (`true`)
    /// and once it is back InService (`false`).
    Standby {
        host: String,
        standby: bool,
    },
    /// A later run took over this host, still drained, from this run.
    HandedOver {
        host: String,
        to_run: String,
    },
    /// `unlock --force` broke this run's lock.
    LockBroken {
        holder_pid: u32,
        holder_host: String,
    },
}

impl Event {
    /// The host an event is about, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            Event::HostPhase { host, .. }
            | Event::HostWatch { host, .. }
            | Event::Drain { host, .. }
            | Event::Undrained { host, .. }
            | Event::StepStarted { host, .. }
            | Event::StepFinished { host, .. }
            | Event::StepSkipped { host, .. }
            | Event::Probe { host, .. }
            | Event::HandedOver { host, .. }
            | Event::Replacing { host, .. }
            | Event::Standby { host, .. }
            | Event::Replaced { host, .. }
            | Event::DrainMemory { host, .. } => Some(host),
            Event::Warning { host, .. } => host.as_deref(),
            _ => None,
        }
    }
}

/// An event as written: with its time and run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// RFC 3339, UTC.
    pub ts: String,
    pub run_id: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Envelope {
    /// `event` of `run_id`, stamped now.
    pub fn now(run_id: &str, event: Event) -> Self {
        Self {
            ts: jiff::Timestamp::now().to_string(),
            run_id: run_id.to_owned(),
            event,
        }
    }
}

#[cfg(test)]
#[path = "events_docs_tests.rs"]
mod docs_tests;
