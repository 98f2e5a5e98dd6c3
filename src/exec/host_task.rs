//! One host's way through a run: check, drain, update, verify, return.
//!
//! The task owns its host's state and reports every phase; the dispatcher
//! owns the run. Before each mutating action (drain, step, undrain) the
//! task records it and waits until the record is on disk, so a kill at any
//! point leaves a journal that tells what may have happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod asg;
mod reboot;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use super::env::RunEnv;
use super::messages::{Closed, Reporter};
use crate::events::{Event, Outcome, Phase};
use crate::model::inventory::Host;
use crate::model::playbook::{Probe, ProbeKind, Step, StepAction};
use crate::model::template::Quoting;
use crate::transport::balancer::{AdminState, LoadBalancer, Target};
use crate::transport::shell::{RemoteShell, ShellError};

/// Instances already taken as some host's replacement in this process.
static CLAIMED_INSTANCES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Where a host starts: fresh, or part-way through after a resume.
#[derive(Debug, Clone, Default)]
pub struct StartFrom {
    /// Balancers the host is already drained from (by this run).
    pub drained: Vec<String>,
    /// What those balancers need to return it (from the journal).
    pub memory: Vec<(String, String)>,
    /// Steps already finished.
    pub steps_done: usize,
}

/// How the host ended, as the dispatcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    pub outcome: Outcome,
    /// Still out of its balancers (a failed host stays drained).
    pub out_of_service: bool,
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
}

/// Rolls one host; never panics on the outside world's errors.
pub async fn roll_host(
    env: Arc<RunEnv>,
    host: Host,
    start: StartFrom,
    reporter: Reporter,
    cancel: CancellationToken,
) -> HostReport {
    let mut task = HostTask::new(env, host, start.drained, reporter, cancel, false);
    task.restore_memory(&start.memory);
    let result = task.journey(start.steps_done).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(Stop::Outcome(outcome, detail)) => {
            task.record_failure(outcome, detail).await;
            outcome
        }
        Err(Stop::Cancelled) => {
            // A second signal: return the host to service even part-way,
            // as promised; resume will update it again.
            let _ = task.undrain_all().await;
            let _ = task
                .reporter
                .record(Event::HostPhase {
                    host: task.host.name.clone(),
                    phase: Phase::Pending,
                    outcome: None,
                    detail: Some("interrupted; returned to service".to_owned()),
                })
                .await;
            Outcome::Pending
        }
        Err(Stop::Closed) => Outcome::Pending,
    };
    task.finish(outcome).await
}

/// After an interruption: a host left drained goes back into service if one
/// round of probes passes. It is then `Updated` if its steps had all
/// finished, and `Pending` (to be updated again) otherwise. A host that is
/// not healthy is not failed: its update may simply not have finished. It
/// stays drained and `Pending`, and its batch finishes it as usual.
pub async fn return_host(
    env: Arc<RunEnv>,
    host: Host,
    start: StartFrom,
    reporter: Reporter,
    cancel: CancellationToken,
) -> HostReport {
    let steps_total = env.playbook.steps.len();
    let mut task = HostTask::new(env, host, start.drained, reporter, cancel, false);
    task.restore_memory(&start.memory);
    let result: Result<Outcome, Stop> = async {
        task.connect().await?;
        if !task.healthy_now().await? {
            task.phase(
                Phase::Pending,
                None,
                Some("left drained by an interrupted run and not healthy yet; its batch will finish it".to_owned()),
            )
            .await?;
            return Ok(Outcome::Pending);
        }
        task.phase(Phase::Undraining, None, Some("left drained by an interrupted run; healthy".to_owned()))
            .await?;
        task.undrain_all().await?;
        if start.steps_done >= steps_total {
            task.phase(Phase::Done, Some(Outcome::Updated), None).await?;
            Ok(Outcome::Updated)
        } else {
            task.phase(
                Phase::Pending,
                None,
                Some("returned to service; its update will run again".to_owned()),
            )
            .await?;
            Ok(Outcome::Pending)
        }
    }
    .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        // Unreachable now, or a balancer error: leave it to its batch.
        Err(Stop::Outcome(..) | Stop::Cancelled | Stop::Closed) => Outcome::Pending,
    };
    task.finish(outcome).await
}

/// Undoes a host's update with the playbook's `[[rollback]]` steps, under
/// the same discipline: drain, steps, probes, return. The probes' expected
/// bodies are not checked, since they usually name the new version.
pub async fn roll_back_host(
    env: Arc<RunEnv>,
    host: Host,
    start: StartFrom,
    reporter: Reporter,
    cancel: CancellationToken,
) -> HostReport {
    let mut task = HostTask::new(env, host, start.drained, reporter, cancel, true);
    task.restore_memory(&start.memory);
    let result: Result<Outcome, Stop> = async {
        task.phase(Phase::Checking, None, Some("rolling back".to_owned()))
            .await?;
        task.connect().await?;
        task.phase(Phase::Draining, None, None).await?;
        task.drain_all().await?;
        task.phase(Phase::Updating, None, Some("rollback steps".to_owned()))
            .await?;
        let steps = task.env.playbook.rollback.clone();
        for (index, step) in steps.iter().enumerate() {
            task.run_step(index, step).await?;
        }
        task.phase(Phase::Verifying, None, None).await?;
        task.verify().await?;
        task.phase(Phase::Undraining, None, None).await?;
        task.undrain_all().await?;
        task.phase(Phase::RolledBack, Some(Outcome::RolledBack), None)
            .await?;
        Ok(Outcome::RolledBack)
    }
    .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(Stop::Outcome(outcome, detail)) => {
            task.record_failure(outcome, format!("rollback failed: {detail}"))
                .await;
            outcome
        }
        Err(Stop::Cancelled) => {
            let _ = task.undrain_all().await;
            Outcome::Pending
        }
        Err(Stop::Closed) => Outcome::Pending,
    };
    task.finish(outcome).await
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
            out_of_service: !self.drained.is_empty(),
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

    /// Records that the host ended failed (it stays where it is).
    async fn record_failure(&self, outcome: Outcome, detail: String) {
        let _ = self
            .reporter
            .record(Event::HostPhase {
                host: self.name(),
                phase: Phase::Failed,
                outcome: Some(outcome),
                detail: Some(detail),
            })
            .await;
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

    async fn journey(&mut self, steps_done: usize) -> Result<Outcome, Stop> {
        let resumed = !self.drained.is_empty() || steps_done > 0;
        self.phase(Phase::Checking, None, None).await?;
        // A playbook that only replaces instances never needs SSH; the
        // others connect first, so an unreachable host is never drained.
        if self.env.needs_ssh {
            self.connect().await?;
        }
        if !resumed {
            if let Some(skip) = self.check_skip_if().await? {
                self.phase(Phase::Skipped, Some(Outcome::Skipped), Some(skip))
                    .await?;
                return Ok(Outcome::Skipped);
            }
            if let Some(reason) = self.disabled_by_operator().await? {
                self.phase(Phase::Skipped, Some(Outcome::Skipped), Some(reason))
                    .await?;
                return Ok(Outcome::Skipped);
            }
            self.wait_for_capacity().await?;
        }
        self.phase(Phase::Draining, None, None).await?;
        self.drain_all().await?;
        self.phase(Phase::Updating, None, None).await?;
        let standby = self.standby_group().await;
        // While in Standby the group does not replace the instance for
        // failing health checks during the update (a reboot, say).
        self.set_standby(standby.as_ref(), true).await?;
        let steps = self.env.playbook.steps.clone();
        for (index, step) in steps.iter().enumerate().skip(steps_done) {
            self.run_step(index, step).await?;
        }
        self.phase(Phase::Verifying, None, None).await?;
        self.verify().await?;
        self.set_standby(standby.as_ref(), false).await?;
        self.phase(Phase::Undraining, None, None).await?;
        self.undrain_all().await?;
        self.phase(Phase::Done, Some(Outcome::Updated), None)
            .await?;
        Ok(Outcome::Updated)
    }

    /// Connects with a few bounded, jittered retries: a host that is down
    /// for a moment is not yet unreachable.
    async fn connect(&mut self) -> Result<(), Stop> {
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
            let status = balancer
                .status(self.target())
                .await
                .map_err(|error| Stop::Outcome(Outcome::Failed, error.to_string()))?;
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
        Ok(None)
    }

    /// `min_healthy`: wait, bounded, until every balancer reports enough of
    /// its pool healthy to take this host out.
    async fn wait_for_capacity(&self) -> Result<(), Stop> {
        let Some(floor) = self.env.playbook.strategy.min_healthy else {
            return Ok(());
        };
        let deadline = Instant::now() + self.env.playbook.drain.timeout;
        for balancer in self.balancers() {
            loop {
                let pool = balancer
                    .pool()
                    .await
                    .map_err(|error| Stop::Outcome(Outcome::Failed, error.to_string()))?;
                let Some(pool) = pool else { break };
                let required = floor.floor_of(pool.total);
                // Draining this host must leave at least `required` healthy.
                if pool.healthy > required {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Stop::Outcome(
                        Outcome::TimedOut,
                        format!(
                            "balancer {}: {} of {} healthy; min_healthy {floor} needs {required} left after the drain",
                            balancer.name(),
                            pool.healthy,
                            pool.total
                        ),
                    ));
                }
                self.pause(self.env.cadence.balancer_poll).await?;
            }
        }
        Ok(())
    }

    async fn drain_all(&mut self) -> Result<(), Stop> {
        let policy = self.env.playbook.drain;
        for balancer in self.balancers() {
            if self.drained.iter().any(|b| b == balancer.name()) {
                continue;
            }
            self.reporter
                .record(Event::Drain {
                    host: self.name(),
                    balancer: balancer.name().to_owned(),
                })
                .await?;
            self.drained.push(balancer.name().to_owned());
            balancer
                .drain(self.target())
                .await
                .map_err(|error| Stop::Outcome(Outcome::Failed, error.to_string()))?;
            if let Some(memory) = balancer.drain_memory(&self.host) {
                self.reporter
                    .record(Event::DrainMemory {
                        host: self.name(),
                        balancer: balancer.name().to_owned(),
                        memory,
                    })
                    .await?;
            }
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
                let status = balancer
                    .status(self.target())
                    .await
                    .map_err(|error| Stop::Outcome(Outcome::Failed, error.to_string()))?;
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
        self.pause(policy.settle).await
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
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.step_started(index, step, attempt).await?;
            let started = Instant::now();
            let result = self.exec(&command, step.timeout).await;
            if self.cancel.is_cancelled() {
                // Cut short by a second signal: not a failure of the host.
                return Err(Stop::Cancelled);
            }
            let duration = started.elapsed();
            let (ok, exit_code, output_tail, failure) = match &result {
                Ok(output) => (
                    output.status.success(),
                    Some(output.status.code()),
                    tail(&output.stdout_tail, &output.stderr_tail),
                    (
                        Outcome::Failed,
                        format!("{}: exit {}", step.name, output.status.code()),
                    ),
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
            if matches!(
                result,
                Err(ShellError::Disconnected { .. } | ShellError::Unreachable { .. })
            ) {
                return Err(Stop::Outcome(failure.0, failure.1));
            }
            match backoff.next() {
                Some(delay) => self.pause(delay).await?,
                None => return Err(Stop::Outcome(failure.0, failure.1)),
            }
        }
    }

    /// One round of every probe, reported; true if all passed.
    async fn probe_round(&self, last_failure: &mut String) -> Result<bool, Stop> {
        let playbook = &self.env.playbook;
        let per_probe = playbook
            .health
            .interval
            .max(Duration::from_millis(500))
            .min(Duration::from_secs(10));
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

    async fn healthy_now(&self) -> Result<bool, Stop> {
        self.probe_round(&mut String::new()).await
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
    /// until each reports it up.
    async fn undrain_all(&mut self) -> Result<(), Stop> {
        for balancer in self.balancers() {
            if !self.drained.iter().any(|b| b == balancer.name()) {
                continue;
            }
            balancer
                .undrain(self.target())
                .await
                .map_err(|error| Stop::Outcome(Outcome::Failed, error.to_string()))?;
            let deadline = Instant::now() + self.env.cadence.up_timeout;
            loop {
                let status = balancer
                    .status(self.target())
                    .await
                    .map_err(|error| Stop::Outcome(Outcome::Failed, error.to_string()))?;
                if status.up != Some(false) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Stop::Outcome(
                        Outcome::Unhealthy,
                        format!(
                            "balancer {} does not report the host up within {:?}",
                            balancer.name(),
                            self.env.cadence.up_timeout
                        ),
                    ));
                }
                // Not cancellable: a host is never left half-returned.
                tokio::time::sleep(self.env.cadence.balancer_poll).await;
            }
            self.drained.retain(|b| b != balancer.name());
            self.reporter
                .record(Event::Undrained {
                    host: self.name(),
                    balancer: balancer.name().to_owned(),
                })
                .await?;
        }
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
        tokio::select! {
            result = shell.exec(command, timeout) => result,
            () = self.cancel.cancelled() => Err(ShellError::Other("cancelled".to_owned())),
        }
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
        | ShellError::Auth { .. } => Outcome::Unreachable,
        ShellError::Disconnected { .. } | ShellError::Other(_) => Outcome::Failed,
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
