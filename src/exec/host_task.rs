//! One host's way through a run: check, drain, update, verify, return.
//!
//! The task owns its host's state and reports every phase; the dispatcher
//! owns the run. Before each mutating action (drain, step, undrain) the
//! task records it and waits until the record is on disk, so a kill at any
//! point leaves a journal that tells what may have happened.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

mod asg;
mod reboot;
mod watch;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use super::env::RunEnv;
use super::host_machine::{self as machine, Action, Observation, Route, State};
use super::messages::{Closed, Reporter};
use super::retry;
use crate::events::{Event, Outcome, Phase};
use crate::model::inventory::Host;
use crate::model::playbook::{Probe, ProbeKind, Step, StepAction};
use crate::model::template::Quoting;
use crate::transport::balancer::{AdminState, LoadBalancer, Target};
use crate::transport::shell::{RemoteShell, ShellError};
use crate::transport::step_guard::{StepGuard, Verdict, run_guarded};

/// Where a host starts, from the journal.
#[derive(Debug, Clone)]
pub struct HostStart {
    pub route: Route,
    /// Balancers the host is out of, by fleetroll.
    pub drained: Vec<String>,
    /// What those balancers need to return it (from the journal).
    pub memory: Vec<(String, String)>,
    /// Forward steps already finished.
    pub steps_done: usize,
    /// Its return to service had begun.
    pub returning: bool,
    /// This run touched it before.
    pub resumed: bool,
    /// A replacement this run began before an interruption.
    pub replacing: Option<crate::journal::replay::Replacing>,
    /// In Standby by this run (`asg_standby`).
    pub standby: bool,
    /// Its watch had begun: only the watch is left.
    pub watching: bool,
    /// Its watch found it regressed: only the drain is left.
    pub regressed: bool,
    /// `[watch]`'s baseline: the balancer server names of the hosts its
    /// traffic is compared with.
    pub baseline: Arc<[String]>,
}

/// How the host ended, as the dispatcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    pub outcome: Outcome,
}

/// Why the host's journey stopped early.
enum Stop {
    /// The host ended with this outcome; the detail says why.
    Outcome(Outcome, String),
    /// The run is being cancelled; return the host to service and stop.
    Cancelled,
    /// The dispatcher is gone.
    Closed,
}

impl From<Closed> for Stop {
    fn from(_: Closed) -> Self {
        Stop::Closed
    }
}

struct HostTask {
    env: Arc<RunEnv>,
    host: Host,
    reporter: Reporter,
    cancel: CancellationToken,
    shell: Option<Arc<dyn RemoteShell>>,
    drained: Vec<String>,
    /// The probes this task runs (rollback drops `expect_body`).
    probes: Vec<Probe>,
    /// Running `[[rollback]]` steps instead of the forward ones.
    rollback: bool,
    /// With `asg_standby`: the group and instance put in Standby.
    standby: Option<asg::Standby>,
    /// This run put the instance in Standby (the journal says so): only
    /// then does it take it out again.
    standby_ours: bool,
    /// A replacement begun before an interruption, from the journal.
    replacing: Option<crate::journal::replay::Replacing>,
    /// A step of an earlier process may still run on the host (a resumed
    /// host, or one being rolled back): look before the first step.
    may_find_step: bool,
    /// A step may still run on the host: one an earlier process left, or
    /// one of this task's that was cut short and may not have been
    /// stopped. Such a host is not returned to service until it ends.
    step_may_run: bool,
    /// `[watch]`'s baseline servers.
    baseline: Arc<[String]>,
}

/// Drives one host through the host machine; never panics on the outside
/// world's errors. Every phase is recorded before it is acted on.
pub async fn drive(
    env: Arc<RunEnv>,
    host: Host,
    start: HostStart,
    reporter: Reporter,
    cancel: CancellationToken,
) -> HostReport {
    let rollback = start.route == Route::RollBack;
    let steps_total = if rollback {
        env.playbook.rollback.len()
    } else {
        env.playbook.steps.len()
    };
    let machine = machine::Start {
        route: start.route,
        steps_total,
        steps_done: start.steps_done,
        drained: !start.drained.is_empty(),
        returning: start.returning,
        resumed: start.resumed,
        needs_ssh: env.needs_ssh,
        watch: env.playbook.watch.is_some(),
        watching: start.watching,
        regressed: start.regressed,
    };
    let mut task = HostTask::new(env, host, start.drained, reporter, cancel, rollback);
    task.restore_memory(&start.memory);
    task.replacing = start.replacing;
    task.baseline = start.baseline;
    task.may_find_step = start.resumed || rollback;
    task.step_may_run = task.may_find_step;
    if start.standby {
        // Put there by this run before an interruption: it must come back.
        task.standby = task.standby_group().await;
        task.standby_ours = true;
    }
    let mut state = State::Begin;
    let mut observation = Observation::Started;
    let mut recorded = None;
    loop {
        let (next, action) = machine::next(&machine, &state, observation);
        state = next;
        if let Action::End(ending) = action {
            let recorded = task
                .phase(ending.phase, Some(ending.outcome), ending.detail.clone())
                .await;
            let outcome = if recorded.is_ok() {
                ending.outcome
            } else {
                Outcome::Pending
            };
            return task.finish(outcome).await;
        }
        let phase = state.phase();
        if recorded != Some(phase) {
            let detail = (machine.route == Route::RollBack && phase == Phase::Checking)
                .then(|| "rolling back".to_owned());
            if task.phase(phase, None, detail).await.is_err() {
                return task.finish(Outcome::Pending).await;
            }
            recorded = Some(phase);
        }
        let result = task.perform(&action).await;
        observation = match result {
            Ok(observation) => observation,
            Err(Stop::Outcome(outcome, detail)) => Observation::Failed(outcome, detail),
            Err(Stop::Cancelled) => {
                // The cut-short action is over; what follows (one probe
                // round, the return) must run to its own bounds.
                task.cancel = CancellationToken::new();
                Observation::Cancelled
            }
            Err(Stop::Closed) => return task.finish(Outcome::Pending).await,
        };
    }
}

impl HostTask {
    fn new(
        env: Arc<RunEnv>,
        host: Host,
        drained: Vec<String>,
        reporter: Reporter,
        cancel: CancellationToken,
        rollback: bool,
    ) -> Self {
        let probes = env
            .playbook
            .probes
            .iter()
            .map(|probe| {
                let mut probe = probe.clone();
                // After a rollback the old version answers: expected bodies
                // usually name the new one, so they are not checked then.
                if rollback && let ProbeKind::Http { expect_body, .. } = &mut probe.kind {
                    *expect_body = None;
                }
                probe
            })
            .collect();
        Self {
            env,
            host,
            reporter,
            cancel,
            shell: None,
            drained,
            probes,
            rollback,
            standby: None,
            standby_ours: false,
            replacing: None,
            may_find_step: false,
            step_may_run: false,
            baseline: Arc::from([]),
        }
    }

    /// Closes the session and says how the host ended.
    async fn finish(self, outcome: Outcome) -> HostReport {
        if let Some(shell) = &self.shell {
            shell.close().await;
        }
        HostReport {
            host: self.host.name.clone(),
            outcome,
        }
    }

    fn name(&self) -> String {
        self.host.name.clone()
    }

    async fn phase(
        &self,
        phase: Phase,
        outcome: Option<Outcome>,
        detail: Option<String>,
    ) -> Result<(), Stop> {
        self.reporter
            .record(Event::HostPhase {
                host: self.name(),
                phase,
                outcome,
                detail,
            })
            .await?;
        Ok(())
    }

    fn balancers(&self) -> Vec<Arc<dyn LoadBalancer>> {
        self.host
            .balancers
            .iter()
            .filter_map(|name| self.env.transports.balancers.get(name).cloned())
            .collect()
    }

    /// Records, durably, that a step is about to run (write-ahead).
    async fn step_started(&self, index: usize, step: &Step, attempt: u32) -> Result<(), Stop> {
        self.reporter
            .record(Event::StepStarted {
                host: self.name(),
                step: step.name.clone(),
                index,
                attempt,
                rollback: self.rollback,
            })
            .await?;
        Ok(())
    }

    /// Records how a step ended.
    async fn step_finished(
        &self,
        index: usize,
        step: &Step,
        exit_code: Option<i64>,
        duration: Duration,
        ok: bool,
        output_tail: String,
    ) -> Result<(), Stop> {
        self.reporter
            .record(Event::StepFinished {
                host: self.name(),
                step: step.name.clone(),
                index,
                exit_code,
                duration_ms: millis(duration),
                ok,
                output_tail,
                rollback: self.rollback,
            })
            .await?;
        Ok(())
    }

    /// Gives balancers back what they journaled when they drained the host.
    fn restore_memory(&self, memory: &[(String, String)]) {
        for (name, text) in memory {
            if let Some(balancer) = self.env.transports.balancers.get(name) {
                balancer.restore_memory(text);
            }
        }
    }

    fn target(&self) -> Target<'_> {
        Target {
            host: &self.host,
            shell: self.shell.as_ref(),
        }
    }

    fn render(&self, template: &crate::model::template::Template) -> Result<String, Stop> {
        template
            .render(&self.host.template_context(), Quoting::Shell)
            .map_err(|error| Stop::Outcome(Outcome::Failed, error.to_string()))
    }

    /// Performs one action of the host machine.
    async fn perform(&mut self, action: &Action) -> Result<Observation, Stop> {
        match action {
            Action::Connect => self.connect().await.map(|()| Observation::Done),
            Action::CheckSkipIf => Ok(match self.check_skip_if().await? {
                Some(reason) => Observation::Skip(reason),
                None => Observation::Done,
            }),
            Action::CheckOperator => Ok(match self.disabled_by_operator().await? {
                Some(reason) => Observation::Skip(reason),
                None => Observation::Done,
            }),
            Action::Drain => {
                self.drain_all().await?;
                if !self.rollback {
                    // While in Standby the group does not replace the
                    // instance for failing health checks (a reboot, say).
                    if self.standby.is_none() {
                        self.standby = self.standby_group().await;
                    }
                    self.set_standby(true).await?;
                }
                Ok(Observation::Done)
            }
            Action::RunStep { index } => {
                self.still_out().await?;
                let steps = if self.rollback {
                    &self.env.playbook.rollback
                } else {
                    &self.env.playbook.steps
                };
                let step = steps[*index].clone();
                self.run_step(*index, &step).await?;
                Ok(Observation::Done)
            }
            Action::Verify => self.verify().await.map(|()| Observation::Done),
            Action::ProbeOnce => {
                let mut failure = String::new();
                Ok(if self.probe_round(&mut failure).await? {
                    Observation::Done
                } else {
                    Observation::NotHealthy(failure)
                })
            }
            Action::Undrain => {
                self.keep_out_while_a_step_runs().await?;
                self.set_standby(false).await?;
                Ok(match self.undrain_all().await? {
                    Some(note) => Observation::Released(note),
                    None => Observation::Done,
                })
            }
            Action::Watch => self.watch().await,
            Action::End(_) => Ok(Observation::Done),
        }
    }

    /// Connects with a few bounded, jittered retries: a host that is down
    /// for a moment is not yet unreachable.
    async fn connect(&mut self) -> Result<(), Stop> {
        if self.replacing.is_some() {
            // Resuming a replacement: its next step replaces this instance,
            // which the interrupted run may have terminated already. The
            // replacement connects to the new instance once it has one.
            return Ok(());
        }
        let mut backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.env.cadence.connect_attempts.saturating_sub(1))
            .build();
        loop {
            let attempt = tokio::select! {
                result = self.env.transports.connector.connect(&self.host) => result,
                () = self.cancel.cancelled() => return Err(Stop::Cancelled),
            };
            match attempt {
                Ok(shell) => {
                    self.shell = Some(shell);
                    return Ok(());
                }
                Err(error) if error.retryable() => match backoff.next() {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(Stop::Outcome(Outcome::Unreachable, error.to_string())),
                },
                Err(error) => return Err(Stop::Outcome(Outcome::Unreachable, error.to_string())),
            }
        }
    }

    fn shell(&self) -> Result<&Arc<dyn RemoteShell>, Stop> {
        self.shell
            .as_ref()
            .ok_or_else(|| Stop::Outcome(Outcome::Unreachable, "not connected".to_owned()))
    }

    /// `skip_if` over SSH: exit 0 means the host is already done.
    async fn check_skip_if(&self) -> Result<Option<String>, Stop> {
        let Some(template) = &self.env.playbook.strategy.skip_if else {
            return Ok(None);
        };
        let command = self.render(template)?;
        let output = self
            .exec(&command, Duration::from_secs(60))
            .await
            .map_err(|error| self.failure(&error, "skip_if"))?;
        Ok(output
            .status
            .success()
            .then(|| "skip_if: already done".to_owned()))
    }

    /// A server an operator put in maintenance or drain stays as it is.
    async fn disabled_by_operator(&self) -> Result<Option<String>, Stop> {
        for balancer in self.balancers() {
            let status = retry::balancer(|| balancer.status(self.target()))
                .await
                .map_err(balancer_failure)?;
            let state = match status.admin {
                AdminState::Maint => "maintenance",
                AdminState::Drain => "drain",
                AdminState::Ready | AdminState::Unknown => continue,
            };
            return Ok(Some(format!(
                "disabled in balancer {} ({state}) before the run; left as it was",
                balancer.name()
            )));
        }
        if !self.rollback {
            return self.in_operators_standby().await;
        }
        Ok(None)
    }

    async fn drain_all(&mut self) -> Result<(), Stop> {
        let policy = self.env.playbook.drain;
        for balancer in self.balancers() {
            if self.drained_from(&balancer) {
                // The journal says drained, but the balancer decides: a
                // kill while the host was being returned, or a balancer
                // that forgot (a reload), leaves it in service. Make it so
                // again before any step runs on it.
                self.ensure_out(&balancer, true).await?;
                continue;
            }
            // An operator's maintenance is out of service already, and
            // theirs: a drain would replace it (HAProxy keeps one admin
            // state), and a later return would lift it. Not ours to take.
            if self.admin(&balancer).await? == AdminState::Maint {
                continue;
            }
            self.reporter
                .record(Event::Drain {
                    host: self.name(),
                    balancer: balancer.name().to_owned(),
                })
                .await?;
            self.drained.push(balancer.name().to_owned());
            retry::balancer(|| balancer.drain(self.target()))
                .await
                .map_err(balancer_failure)?;
            self.record_drain_memory(&balancer).await?;
        }
        // Wait until the balancers report no open connections, bounded by
        // [drain].timeout (or the balancer's own drain bound, if shorter);
        // past it, go on and say so.
        for balancer in self.balancers() {
            let bound = balancer
                .drain_bound(self.target())
                .await
                .map_or(policy.timeout, |b| b.min(policy.timeout));
            let deadline = Instant::now() + bound;
            loop {
                let status = retry::balancer(|| balancer.status(self.target()))
                    .await
                    .map_err(balancer_failure)?;
                match status.sessions {
                    None | Some(0) => break,
                    Some(open) if Instant::now() >= deadline => {
                        self.reporter.note(Event::Warning {
                            host: Some(self.name()),
                            message: format!(
                                "balancer {}: {open} connections still open after {:?}; going on",
                                balancer.name(),
                                bound
                            ),
                        });
                        break;
                    }
                    Some(_) => self.pause(self.env.cadence.balancer_poll).await?,
                }
            }
        }
        // Behind no balancer nothing was drained: no request is in flight
        // because of a drain, so there is nothing to settle.
        if self.host.balancers.is_empty() {
            return Ok(());
        }
        self.pause(policy.settle).await
    }

    /// Journals what `balancer` needs to return the host after a restart
    /// (an ELBv2 `discover` balancer's registrations), if anything.
    async fn record_drain_memory(&self, balancer: &Arc<dyn LoadBalancer>) -> Result<(), Stop> {
        if let Some(memory) = balancer.drain_memory(&self.host) {
            self.reporter
                .record(Event::DrainMemory {
                    host: self.name(),
                    balancer: balancer.name().to_owned(),
                    memory,
                })
                .await?;
        }
        Ok(())
    }

    /// Right before a step: every balancer the host was drained from must
    /// still have it out. One that forgot (a HAProxy reload since the
    /// drain) gets the drain again; the balancers' watch would repair it
    /// too, but seconds after the step began.
    async fn still_out(&self) -> Result<(), Stop> {
        for balancer in self.balancers() {
            if self.drained_from(&balancer) {
                self.ensure_out(&balancer, false).await?;
            }
        }
        Ok(())
    }

    /// Drains again where the journal says the host is out but the
    /// balancer shows it in service. With `doubt`, a balancer that cannot
    /// tell (a command balancer without `status`) is drained again too. A
    /// server an operator put in maintenance is out already and stays so.
    async fn ensure_out(&self, balancer: &Arc<dyn LoadBalancer>, doubt: bool) -> Result<(), Stop> {
        let admin = self.admin(balancer).await?;
        if admin == AdminState::Ready || (doubt && admin == AdminState::Unknown) {
            retry::balancer(|| balancer.drain(self.target()))
                .await
                .map_err(balancer_failure)?;
        }
        Ok(())
    }

    /// The host's admin state in `balancer`, read with retries.
    async fn admin(&self, balancer: &Arc<dyn LoadBalancer>) -> Result<AdminState, Stop> {
        retry::balancer(|| balancer.status(self.target()))
            .await
            .map(|status| status.admin)
            .map_err(balancer_failure)
    }

    /// Whether fleetroll has the host out of `balancer` (the journal says).
    fn drained_from(&self, balancer: &Arc<dyn LoadBalancer>) -> bool {
        self.drained.iter().any(|b| b == balancer.name())
    }

    async fn run_step(&mut self, index: usize, step: &Step) -> Result<(), Stop> {
        if let Some(only_if) = &step.only_if {
            let command = self.render(only_if)?;
            let output = self
                .exec(&command, Duration::from_secs(60))
                .await
                .map_err(|error| self.failure(&error, &format!("{}: only_if", step.name)))?;
            if !output.status.success() {
                self.reporter
                    .record(Event::StepSkipped {
                        host: self.name(),
                        step: step.name.clone(),
                    })
                    .await?;
                return Ok(());
            }
        }
        let command = match &step.action {
            StepAction::Run(template) => self.render(template)?,
            StepAction::Reboot {
                command,
                boot_id_file,
            } => return self.reboot(index, step, command, boot_id_file).await,
            StepAction::ReplaceAsg { surge } => return self.replace(index, step, *surge).await,
        };
        let mut backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(30))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(step.retries as usize)
            .build();
        let mut guard = self
            .host
            .ssh
            .step_lock
            .as_deref()
            .map(|lock| StepGuard::new(lock, step.timeout));
        if let Some(guard) = &guard
            && std::mem::take(&mut self.may_find_step)
        {
            self.say_if_a_step_still_runs(guard, step).await;
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.step_started(index, step, attempt).await?;
            let started = Instant::now();
            let result = match &mut guard {
                Some(guard) => {
                    // Sent now, the step must start within what is left of
                    // the lease, by the host's clock.
                    // (Whole seconds on the host: one more for the rounding.)
                    let left = i64::try_from(self.reporter.lease_left().as_secs())
                        .unwrap_or(i64::MAX)
                        .saturating_add(1);
                    guard.not_after = Some(jiff::Timestamp::now().as_second().saturating_add(left));
                    let shell = self
                        .shell()
                        .map_err(|_| Stop::Outcome(Outcome::Unreachable, "not connected".into()))?;
                    let result = run_guarded(shell.as_ref(), guard, &command, &self.cancel).await;
                    // Ended under the lock (which waited for any earlier
                    // instance), or stopped by the host's own `timeout`:
                    // nothing runs. Cut short or cut off: it may.
                    self.step_may_run = match &result {
                        Ok((_, Verdict::Ran | Verdict::TimedOut)) => false,
                        Ok((_, Verdict::Busy)) | Err(_) => true,
                        Ok((_, Verdict::NoFlock | Verdict::Late)) => self.step_may_run,
                    };
                    result
                }
                None => self
                    .exec(&command, step.timeout)
                    .await
                    .map(|output| (output, Verdict::Ran)),
            };
            if self.cancel.is_cancelled() {
                // Cut short by a second signal: not a failure of the host.
                return Err(Stop::Cancelled);
            }
            let duration = started.elapsed();
            let (ok, exit_code, output_tail, failure) = match &result {
                Ok((output, verdict)) => (
                    output.status.success(),
                    Some(output.status.code()),
                    tail(&output.stdout_tail, &output.stderr_tail),
                    guarded_failure(&step.name, output, *verdict, guard.as_ref()),
                ),
                Err(error) => (
                    false,
                    None,
                    String::new(),
                    (shell_outcome(error), format!("{}: {error}", step.name)),
                ),
            };
            self.step_finished(index, step, exit_code, duration, ok, output_tail)
                .await?;
            if ok {
                return Ok(());
            }
            let never_started = matches!(
                result,
                Ok((_, Verdict::Busy | Verdict::NoFlock | Verdict::Late))
            );
            if never_started
                || matches!(
                    result,
                    Err(ShellError::Disconnected { .. } | ShellError::Unreachable { .. })
                )
            {
                return Err(Stop::Outcome(failure.0, failure.1));
            }
            match backoff.next() {
                Some(delay) => self.pause(delay).await?,
                None => return Err(Stop::Outcome(failure.0, failure.1)),
            }
        }
    }

    /// Says so, before the first step on a host an earlier process may
    /// have left a step running on (a kill does not stop a remote command):
    /// the step will wait for it, bounded, rather than start beside it.
    async fn say_if_a_step_still_runs(&self, guard: &StepGuard, step: &Step) {
        // Unknown: the guarded step still waits if it must.
        if self.a_step_holds_the_lock(guard).await == Some(true) {
            self.reporter.note(Event::Warning {
                host: Some(self.name()),
                message: format!(
                    "an earlier instance of a step (left by an interrupted run, or another \
                     controller's) still runs on {}; `{}` waits for it, at most {}s, and does \
                     not start beside it",
                    self.host.name,
                    step.name,
                    guard.wait.as_secs()
                ),
            });
        }
    }

    /// Whether a step holds the host's step lock; `None` if the host could
    /// not be asked.
    async fn a_step_holds_the_lock(&self, guard: &StepGuard) -> Option<bool> {
        let output = self
            .exec(&guard.busy_check(), Duration::from_secs(30))
            .await
            .ok()?;
        Some(output.status.code() == 1)
    }

    /// A host on which a step may still run (left by a killed process, or
    /// cut short here without being stopped) goes back to service only once
    /// the host says no step holds its lock; while one does, the host stays
    /// out, recorded as drained, for the next run to finish.
    async fn keep_out_while_a_step_runs(&self) -> Result<(), Stop> {
        if !self.step_may_run {
            return Ok(());
        }
        let Some(lock) = self.host.ssh.step_lock.as_deref() else {
            return Ok(());
        };
        let guard = StepGuard::new(lock, Duration::ZERO);
        match self.a_step_holds_the_lock(&guard).await {
            Some(true) => {
                self.reporter.note(Event::Warning {
                    host: Some(self.name()),
                    message: format!(
                        "a step left by an interrupted run still runs on {}: it stays out of \
                         service until that step ends (`fleetroll resume` returns it then)",
                        self.host.name
                    ),
                });
                Err(Stop::Closed)
            }
            _ => Ok(()),
        }
    }

    /// One round of every probe, reported; true if all passed.
    async fn probe_round(&self, last_failure: &mut String) -> Result<bool, Stop> {
        let playbook = &self.env.playbook;
        // A probe may take longer than the interval between rounds (an SSH
        // command on a busy host): give it 5 s at least, never more than
        // the health timeout.
        let per_probe = playbook
            .health
            .interval
            .max(Duration::from_secs(5))
            .min(playbook.health.timeout);
        let checks = self.probes.iter().map(|probe| {
            self.env
                .transports
                .prober
                .check(probe, &self.host, self.shell.as_ref(), per_probe)
        });
        let results = tokio::select! {
            results = futures_util::future::join_all(checks) => results,
            () = self.cancel.cancelled() => return Err(Stop::Cancelled),
        };
        let mut all_ok = true;
        for (probe, result) in self.probes.iter().zip(results) {
            if !result.ok {
                all_ok = false;
                *last_failure = format!("{}: {}", probe.name, result.detail);
            }
            self.reporter.note(Event::Probe {
                host: self.name(),
                probe: probe.name.clone(),
                ok: result.ok,
                detail: result.detail,
            });
        }
        Ok(all_ok)
    }

    /// Probes until `healthy_after` consecutive rounds pass, or time runs out.
    async fn verify(&self) -> Result<(), Stop> {
        let playbook = &self.env.playbook;
        if self.probes.is_empty() {
            return Ok(());
        }
        let health = playbook.health;
        let deadline = Instant::now() + health.timeout;
        let mut passing = 0u32;
        let mut last_failure = String::new();
        loop {
            let round_started = Instant::now();
            let all_ok = self.probe_round(&mut last_failure).await?;
            passing = if all_ok { passing + 1 } else { 0 };
            if passing >= health.healthy_after {
                return Ok(());
            }
            let next = round_started + health.interval;
            if next >= deadline {
                return Err(Stop::Outcome(
                    Outcome::Unhealthy,
                    format!(
                        "not healthy within {:?}: {}",
                        health.timeout,
                        if last_failure.is_empty() {
                            "probes did not pass in a row"
                        } else {
                            &last_failure
                        }
                    ),
                ));
            }
            self.pause(next.saturating_duration_since(Instant::now()))
                .await?;
        }
    }

    /// Returns the host to every balancer it was drained from and waits
    /// until each reports it up; a balancer where an operator disabled the
    /// host meanwhile keeps it as they set it, and the note says so.
    async fn undrain_all(&mut self) -> Result<Option<String>, Stop> {
        let mut released = Vec::new();
        for balancer in self.balancers() {
            if !self.drained_from(&balancer) {
                continue;
            }
            let operator = retry::balancer(|| balancer.disabled_by_operator(self.target()))
                .await
                .map_err(balancer_failure)?;
            if let Some(state) = operator {
                // The operator's disable replaced fleetroll's drain: the
                // host is theirs now, and stays as they left it.
                self.drain_ended(&balancer).await?;
                let note = format!(
                    "an operator put it in {state} in balancer {} while fleetroll had it drained: \
                     left in {state}, fleetroll's drain released",
                    balancer.name()
                );
                self.reporter.note(Event::Warning {
                    host: Some(self.name()),
                    message: note.clone(),
                });
                released.push(note);
                continue;
            }
            retry::balancer(|| balancer.undrain(self.target()))
                .await
                .map_err(balancer_failure)?;
            // Back in the balancer: journaled now, so that a host that then
            // fails its health check is not taken for one still drained.
            self.drain_ended(&balancer).await?;
            let bound = match self.env.playbook.drain.return_timeout {
                Some(bound) => bound,
                None => balancer
                    .return_bound(self.target())
                    .await
                    .unwrap_or(self.env.cadence.up_timeout),
            };
            let deadline = Instant::now() + bound;
            loop {
                let status = retry::balancer(|| balancer.status(self.target()))
                    .await
                    .map_err(balancer_failure)?;
                if status.up != Some(false) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Stop::Outcome(
                        Outcome::Unhealthy,
                        format!(
                            "balancer {} does not report the host up within {bound:?} of its \
                             return (`[drain] return_timeout`)",
                            balancer.name(),
                        ),
                    ));
                }
                // Not cancellable: a host is never left half-returned.
                tokio::time::sleep(self.env.cadence.balancer_poll).await;
            }
        }
        Ok((!released.is_empty()).then(|| released.join("; ")))
    }

    /// Fleetroll holds no drain of the host in `balancer` any more (it
    /// returned it, or an operator took it over): said so in the journal.
    async fn drain_ended(&mut self, balancer: &Arc<dyn LoadBalancer>) -> Result<(), Stop> {
        self.drained.retain(|b| b != balancer.name());
        self.reporter
            .record(Event::Undrained {
                host: self.name(),
                balancer: balancer.name().to_owned(),
            })
            .await?;
        Ok(())
    }

    async fn exec(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<crate::transport::shell::ExecOutput, ShellError> {
        let shell = self
            .shell()
            .map_err(|_| ShellError::Other("not connected".to_owned()))?;
        shell.exec_until(command, timeout, &self.cancel).await
    }

    /// What a command's error means: cancelled by the run, or a host failure.
    fn failure(&self, error: &ShellError, what: &str) -> Stop {
        if self.cancel.is_cancelled() {
            Stop::Cancelled
        } else {
            Stop::Outcome(shell_outcome(error), format!("{what}: {error}"))
        }
    }

    /// Sleeps, unless the run is cancelled first.
    async fn pause(&self, duration: Duration) -> Result<(), Stop> {
        if duration.is_zero() {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.cancel.cancelled() => Err(Stop::Cancelled),
        }
    }
}

/// How a step that exited (or never started) failed, in the guard's words.
fn guarded_failure(
    name: &str,
    output: &crate::transport::shell::ExecOutput,
    verdict: Verdict,
    guard: Option<&StepGuard>,
) -> (Outcome, String) {
    let code = output.status.code();
    match (verdict, guard) {
        (Verdict::TimedOut, Some(guard)) => (
            Outcome::TimedOut,
            format!(
                "{name}: timed out after {:?}; stopped on the host",
                guard.limit
            ),
        ),
        (Verdict::Busy, Some(guard)) => (
            Outcome::Failed,
            format!(
                "{name}: an earlier instance still ran on the host after {}s; not started beside it",
                guard.wait.as_secs()
            ),
        ),
        (Verdict::Late, _) => (
            Outcome::Failed,
            format!(
                "{name}: reached the host after this fleetroll's lease on the inventory ended \
                 (it was frozen, or the host's clock runs ahead by more than the lease); not started"
            ),
        ),
        (Verdict::NoFlock, _) => (
            Outcome::Failed,
            format!(
                "{name}: the host has no flock (util-linux); install it, or set step_lock = false for the host"
            ),
        ),
        _ => (Outcome::Failed, format!("{name}: exit {code}")),
    }
}

/// A balancer that stayed unreachable through its retries, or refused.
fn balancer_failure(error: crate::transport::balancer::BalancerError) -> Stop {
    Stop::Outcome(Outcome::Failed, error.to_string())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn shell_outcome(error: &ShellError) -> Outcome {
    match error {
        ShellError::Timeout { .. } => Outcome::TimedOut,
        ShellError::Unreachable { .. }
        | ShellError::HostKeyUnknown { .. }
        | ShellError::HostKeyChanged { .. }
        | ShellError::HostKeyRevoked { .. }
        | ShellError::HostCertificateRefused { .. }
        | ShellError::Auth { .. } => Outcome::Unreachable,
        ShellError::Disconnected { .. } | ShellError::Cancelled | ShellError::Other(_) => {
            Outcome::Failed
        }
    }
}

/// The last lines of a step's output, stderr first when it has anything.
fn tail(stdout: &str, stderr: &str) -> String {
    const KEEP: usize = 1024;
    let mut text = String::new();
    for part in [stdout.trim_end(), stderr.trim_end()] {
        if !part.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(part);
        }
    }
    if text.len() <= KEEP {
        return text;
    }
    let mut start = text.len() - KEEP;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}
