//! One host's way through a run, as a pure state machine.
//!
//! [`next`] takes the host's state and what the last action observed, and
//! returns the next state and the action to perform; the driver
//! (`host_task`) performs actions and reports observations, and nothing
//! here does I/O. Rolling a host, finishing one an interrupted run left
//! part-way, returning one to service, and rolling one back are start
//! states of this one machine, so every way through shares the same rules:
//!
//! - nothing is drained before the host is reachable and checked;
//! - a host that fails after its drain stays out and is reported failed;
//! - a second signal cuts steps short, but a host is returned to service
//!   only after a probe round passes, and a returning host is never
//!   interrupted;
//! - a host whose return had begun is verified and returned, never drained
//!   again.

use crate::events::{Outcome, Phase};

/// Why the host is being driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Update it: the playbook's steps.
    Roll,
    /// Only return it to service if healthy (left drained by an earlier run
    /// and not part of this one).
    Return,
    /// Undo its update: the `[[rollback]]` steps.
    RollBack,
}

/// What the journal says about the host when the driver starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub route: Route,
    /// Steps of this route: forward steps, or rollback steps.
    pub steps_total: usize,
    /// Steps already finished (forward route only).
    pub steps_done: usize,
    /// Out of at least one balancer already, by fleetroll.
    pub drained: bool,
    /// Its return to service had begun (recorded as `undraining`).
    pub returning: bool,
    /// This run touched it before (a resume): `skip_if` and the operator
    /// check were passed then, and a drain of ours is not an operator's.
    pub resumed: bool,
    /// The playbook runs anything over SSH at all.
    pub needs_ssh: bool,
    /// `[watch]`: an updated host's traffic is watched once it is back.
    pub watch: bool,
    /// Its watch had begun (recorded as `watching`): it is back in
    /// service, and only the watch is left.
    pub watching: bool,
    /// Its watch found it regressed before an interruption: only the
    /// drain that follows is left.
    pub regressed: bool,
}

/// Where the host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Begin,
    Connecting,
    CheckingSkip,
    CheckingOperator,
    Draining,
    /// Running step `index` of the route.
    Stepping {
        index: usize,
    },
    Verifying,
    /// A second signal cut the update short: one probe round decides
    /// whether the host can go back.
    Interrupted,
    /// Returning to service; ends as `then` once back.
    Undraining {
        then: Ending,
    },
    /// Back in service, its real traffic watched; ends as `then` unless it
    /// regresses.
    Watching {
        then: Ending,
    },
    /// Its watch found it failing real requests: drained again.
    Regressed {
        detail: String,
    },
    Ended(Ending),
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Connect,
    CheckSkipIf,
    CheckOperator,
    /// Drain from every balancer not drained yet, wait until drained, settle.
    Drain,
    RunStep {
        index: usize,
    },
    /// Probe until `healthy_after` rounds in a row pass, bounded.
    Verify,
    /// One probe round.
    ProbeOnce,
    /// Return to every balancer and wait until each reports the host up.
    Undrain,
    /// Watch the host's real traffic for `[watch] for`, and judge it.
    Watch,
    /// Record the ending and stop.
    End(Ending),
}

/// What the last action found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The driver is starting.
    Started,
    Done,
    /// `skip_if` passed or an operator disabled the host: leave it.
    Skip(String),
    /// One probe round failed.
    NotHealthy(String),
    /// The action failed for good (after its own retries).
    Failed(Outcome, String),
    /// A second signal cut the action short.
    Cancelled,
    /// The return found the host disabled by an operator in a balancer:
    /// fleetroll's drain is released, the host left as the operator set it.
    Released(String),
    /// Its watch found it failing real requests: why.
    Regressed(String),
    /// Its watch could not judge it (too few requests, counters not read):
    /// it counts as updated, and the ending says why.
    NotJudged(String),
}

/// How the host ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub outcome: Outcome,
    pub phase: Phase,
    pub detail: Option<String>,
}

impl Ending {
    fn new(outcome: Outcome, phase: Phase, detail: Option<String>) -> Self {
        Self {
            outcome,
            phase,
            detail,
        }
    }
}

impl State {
    /// The phase the SPEC's events name for this state.
    pub fn phase(&self) -> Phase {
        match self {
            State::Begin | State::Connecting | State::CheckingSkip | State::CheckingOperator => {
                Phase::Checking
            }
            State::Draining | State::Regressed { .. } => Phase::Draining,
            State::Stepping { .. } => Phase::Updating,
            State::Verifying | State::Interrupted => Phase::Verifying,
            State::Undraining { .. } => Phase::Undraining,
            State::Watching { .. } => Phase::Watching,
            State::Ended(ending) => ending.phase,
        }
    }
}

/// The one transition function.
pub fn next(start: &Start, state: &State, observation: Observation) -> (State, Action) {
    match observation {
        Observation::Failed(outcome, detail) => return fail(start, outcome, detail),
        Observation::Cancelled => return cancelled(start, state),
        Observation::Started | Observation::Done | Observation::Skip(_) => {}
        Observation::NotHealthy(detail) => return not_healthy(start, state, detail),
        Observation::Released(note) => return released(start, state, note),
        Observation::Regressed(detail) => return regressed(start, state, detail),
        Observation::NotJudged(note) => return not_judged(start, state, note),
    }
    match (state, observation) {
        (State::Begin, _) => begin(start),
        (State::Connecting, _) => after_connect(start),
        (State::CheckingSkip, Observation::Skip(reason))
        | (State::CheckingOperator, Observation::Skip(reason)) => end(Ending::new(
            Outcome::Skipped,
            Phase::Skipped,
            Some(reason),
        )),
        (State::CheckingSkip, _) => (State::CheckingOperator, Action::CheckOperator),
        (State::CheckingOperator, _) => (State::Draining, Action::Drain),
        (State::Draining, _) => first_step(start),
        (State::Stepping { index }, _) => step_or_verify(start, index + 1),
        (State::Verifying, _) => undrain(returned(start)),
        (State::Interrupted, _) if start.route == Route::Return => undrain(returned(start)),
        (State::Interrupted, _) => undrain(Ending::new(
            Outcome::Pending,
            Phase::Pending,
            Some("interrupted part-way; healthy, returned to service; `fleetroll resume` finishes it".to_owned()),
        )),
        (State::Undraining { then }, _) => watch_or_end(start, then.clone()),
        (State::Watching { then }, _) => end(then.clone()),
        (State::Regressed { detail }, _) => end(Ending::new(
            Outcome::Regressed,
            Phase::Failed,
            Some(detail.clone()),
        )),
        (State::Ended(ending), _) => end(ending.clone()),
    }
}

fn begin(start: &Start) -> (State, Action) {
    if start.needs_ssh || start.route != Route::Roll {
        (State::Connecting, Action::Connect)
    } else {
        after_connect(start)
    }
}

fn after_connect(start: &Start) -> (State, Action) {
    match start.route {
        // Judged regressed before an interruption: it goes out, whatever
        // the journal says of its balancers.
        Route::Roll if start.regressed => (
            State::Regressed {
                detail: "regressed in its watch before an interruption".to_owned(),
            },
            Action::Drain,
        ),
        // Back in service after every step: only its watch is left.
        Route::Roll if start.watching && start.steps_done >= start.steps_total => {
            watch_or_end(start, returned(start))
        }
        Route::Return => (State::Interrupted, Action::ProbeOnce),
        Route::RollBack => (State::Draining, Action::Drain),
        // A return that began after every step (not one after a second
        // signal cut the steps short) only needs to be finished.
        Route::Roll if start.returning && start.steps_done >= start.steps_total => {
            (State::Verifying, Action::Verify)
        }
        Route::Roll if start.resumed || start.drained => (State::Draining, Action::Drain),
        Route::Roll if start.needs_ssh => (State::CheckingSkip, Action::CheckSkipIf),
        Route::Roll => (State::CheckingOperator, Action::CheckOperator),
    }
}

fn first_step(start: &Start) -> (State, Action) {
    let from = if start.route == Route::Roll {
        start.steps_done
    } else {
        0
    };
    step_or_verify(start, from)
}

fn step_or_verify(start: &Start, index: usize) -> (State, Action) {
    if index < start.steps_total {
        (State::Stepping { index }, Action::RunStep { index })
    } else {
        (State::Verifying, Action::Verify)
    }
}

/// An updated host, back in service, is watched first with `[watch]`.
fn watch_or_end(start: &Start, then: Ending) -> (State, Action) {
    if start.watch && start.route == Route::Roll && then.outcome == Outcome::Updated {
        (State::Watching { then }, Action::Watch)
    } else {
        end(then)
    }
}

/// A watch without a verdict: the host counts as what it was going to,
/// and says so.
fn not_judged(start: &Start, state: &State, note: String) -> (State, Action) {
    match state {
        State::Watching { then } => {
            let mut ending = then.clone();
            ending.detail = Some(note);
            end(ending)
        }
        _ => next(start, state, Observation::Done),
    }
}

/// A watched host failing real requests goes out again at once.
fn regressed(start: &Start, state: &State, detail: String) -> (State, Action) {
    match state {
        State::Watching { .. } => (State::Regressed { detail }, Action::Drain),
        // Only a watch judges traffic; anywhere else it changes nothing.
        _ => next(start, state, Observation::Done),
    }
}

fn undrain(then: Ending) -> (State, Action) {
    (State::Undraining { then }, Action::Undrain)
}

fn end(ending: Ending) -> (State, Action) {
    (State::Ended(ending.clone()), Action::End(ending))
}

/// The host is back in service: how it ends depends on why it was driven.
fn returned(start: &Start) -> Ending {
    match start.route {
        Route::Roll => Ending::new(Outcome::Updated, Phase::Done, None),
        Route::RollBack => Ending::new(Outcome::RolledBack, Phase::RolledBack, None),
        Route::Return if start.steps_done >= start.steps_total => Ending::new(
            Outcome::Updated,
            Phase::Done,
            Some("left out of service by an earlier run; healthy, returned to service".to_owned()),
        ),
        Route::Return => Ending::new(
            Outcome::Pending,
            Phase::Pending,
            Some("left out of service by an earlier run; healthy, returned to service".to_owned()),
        ),
    }
}

fn fail(start: &Start, outcome: Outcome, detail: String) -> (State, Action) {
    let detail = if start.route == Route::RollBack {
        format!("rollback failed: {detail}")
    } else {
        detail
    };
    if start.route == Route::Return {
        // Not part of this run's update: it stays as the earlier run left it.
        return end(Ending::new(
            Outcome::Pending,
            Phase::Pending,
            Some(format!("left out of service by an earlier run: {detail}")),
        ));
    }
    end(Ending::new(outcome, Phase::Failed, Some(detail)))
}

fn not_healthy(start: &Start, state: &State, detail: String) -> (State, Action) {
    match (start.route, state) {
        (Route::Return, _) => end(Ending::new(
            Outcome::Pending,
            Phase::Pending,
            Some(format!(
                "left out of service by an earlier run and not healthy ({detail}); kept out of service"
            )),
        )),
        (_, State::Interrupted) => end(Ending::new(
            Outcome::Pending,
            Phase::Pending,
            Some(format!(
                "interrupted part-way and not healthy ({detail}); kept out of service, `fleetroll resume` finishes it"
            )),
        )),
        // Verify reports a failure as Failed(Unhealthy); a stray round
        // result elsewhere means the host is not fit to return.
        _ => fail(start, Outcome::Unhealthy, detail),
    }
}

/// The return is over, but an operator holds the host out: the ending
/// says so instead of "returned to service".
fn released(start: &Start, state: &State, note: String) -> (State, Action) {
    match state {
        State::Undraining { then } => {
            let mut ending = then.clone();
            ending.detail = Some(match ending.detail.as_deref() {
                Some(detail) => format!(
                    "{}; {note}",
                    detail.replace("; healthy, returned to service", "; healthy")
                ),
                None => note,
            });
            end(ending)
        }
        // Only a return releases a drain; anywhere else it changes nothing.
        _ => next(start, state, Observation::Done),
    }
}

/// A second signal: stop what can be stopped, and return the host only if
/// it proves healthy.
fn cancelled(start: &Start, state: &State) -> (State, Action) {
    match state {
        State::Begin | State::Connecting | State::CheckingSkip | State::CheckingOperator
            if !start.drained =>
        {
            end(Ending::new(
                Outcome::Pending,
                Phase::Pending,
                Some("interrupted before anything was touched".to_owned()),
            ))
        }
        // A return is never cut short.
        State::Undraining { then } => undrain(then.clone()),
        // In service already: the watch is left for `resume`.
        State::Watching { .. } => end(Ending::new(
            Outcome::Pending,
            Phase::Watching,
            Some(
                "its watch was cut short; in service, `fleetroll resume` watches it again"
                    .to_owned(),
            ),
        )),
        // Failing real requests: it goes out, signal or not.
        State::Regressed { detail } => (
            State::Regressed {
                detail: detail.clone(),
            },
            Action::Drain,
        ),
        State::Ended(ending) => end(ending.clone()),
        _ => (State::Interrupted, Action::ProbeOnce),
    }
}

#[cfg(test)]
#[path = "host_machine_tests.rs"]
mod tests;
