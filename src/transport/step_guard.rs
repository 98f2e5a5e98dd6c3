//! A step that runs alone on its host, and stops there when its time is up.
//!
//! An `exec` channel without a PTY is not hung up when the client dies:
//! after a kill -9 of fleetroll, a client-side timeout or a cancelled
//! step, the remote command keeps running, and a resumed or retried step
//! would start beside it (two restarts fighting over one port). So every
//! step runs on the host under two guards that need only util-linux and
//! coreutils there:
//!
//! - `flock` on the host's lock file (`step_lock`), held by `flock` itself
//!   for the step's whole life (`-o`: a daemon the step starts does not
//!   inherit the lock). A second instance waits for the first, at most
//!   [`StepGuard::wait`], and then gives up with [`BUSY_EXIT`] rather than
//!   start beside it. One that waited says so on stderr when it gets the
//!   lock: if its controller died meanwhile, sshd has closed that pipe, the
//!   write kills it (SIGPIPE) and the step does not start after all;
//! - `timeout`, which stops the step on the host when its own timeout is
//!   up: TERM to the step's process group, KILL [`GRACE`] later.
//!
//! The step's process group id is written into the lock file, so that a
//! controller that cancels a step stops it on the host too
//! ([`StepGuard::stop`]).
//!
//! The guarded command is one fixed script, with the step and the bounds
//! as positional arguments: the demo's simulated hosts recognise it
//! ([`parse`]) and model the lock themselves.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::shell::{ExecOutput, ExitStatus, RemoteShell, ShellError};
use crate::model::template::shell_quote;

/// How long a step that ran past its timeout gets between TERM and KILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// The exit code of a step that never started: an earlier instance still
/// held the lock when the wait was over.
pub const BUSY_EXIT: u32 = 197;

/// The exit code of a step that never started: the host has no `flock`.
pub const NO_FLOCK_EXIT: u32 = 196;

/// The exit code of a step that never started: it reached the host after
/// its controller's lease ended ([`StepGuard::not_after`]).
pub const LATE_EXIT: u32 = 198;

/// The name `$0` takes in the guard's scripts (seen in `ps` on the host).
const NAME: &str = "fleetroll-step";

/// Runs `$5` under the lock `$1` (waiting at most `$2` seconds for it),
/// stopped after `$3` seconds (KILL `$4` seconds after TERM).
const SCRIPT: &str = r#"command -v flock >/dev/null 2>&1 || { echo "fleetroll: this host has no flock (util-linux), which keeps two instances of a step from running at once; install util-linux, or set step_lock = false for it in the inventory" >&2; exit 196; }
if [ -n "$6" ] && [ "$(date +%s)" -gt "$6" ]; then echo "fleetroll: this step reached the host after its controller's lease on the inventory ended (the controller was frozen, or this host's clock is ahead of it by more than the lease); not started" >&2; exit 198; fi
waited=
if ! flock -n "$1" true 2>/dev/null; then echo "fleetroll: an earlier instance of a step (left by an interrupted run, or started by another controller) still runs on this host; waiting for it, at most $2 s" >&2; waited=1; fi
flock -o -E 197 -w "$2" "$1" sh -c 'if [ -n "$5" ]; then echo "fleetroll: the earlier instance ended; starting" >&2 || exit 141; fi; echo $$ >"$1" && exec timeout -k "$2" "$3" sh -c "$4"' fleetroll-step "$1" "$4" "$3" "$5" "$waited"
rc=$?
if [ "$rc" -eq 197 ]; then echo "fleetroll: the earlier instance still runs after $2 s; this one was not started beside it" >&2; fi
exit "$rc""#;

/// Exits 0 if nothing holds the lock `$1`, 1 if a step holds it.
const BUSY_SCRIPT: &str =
    r#"command -v flock >/dev/null 2>&1 || exit 0; flock -n -E 1 "$1" true 2>/dev/null"#;

/// Sends TERM to the process group recorded in the lock file `$1`, if a
/// step still holds the lock (`timeout` sends KILL after its grace).
const STOP_SCRIPT: &str = r#"command -v flock >/dev/null 2>&1 || exit 0
pgid=$(cat "$1" 2>/dev/null) || exit 0
case "$pgid" in ''|*[!0-9]*) exit 0 ;; esac
flock -n "$1" true 2>/dev/null && exit 0
kill -TERM "-$pgid" 2>/dev/null
exit 0"#;

/// How one step is guarded on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepGuard {
    /// The lock file on the host.
    pub lock: String,
    /// The step's own timeout: the host stops it then.
    pub limit: Duration,
    /// How long the step waits for an earlier instance: one that started
    /// just before this one ends within its limit and grace.
    pub wait: Duration,
    /// The host's clock (Unix seconds) after which the step must not
    /// start: the end of its controller's lease when it sent the step. A
    /// controller frozen (SIGSTOP) between deciding and sending may have
    /// been taken over; its step must not start on a host another run
    /// owns now.
    pub not_after: Option<i64>,
}

/// What became of a guarded step, read from its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It ran; its exit code is its own.
    Ran,
    /// It ran past its timeout and the host stopped it.
    TimedOut,
    /// It never started: an earlier instance still held the lock.
    Busy,
    /// It never started: the host has no `flock`.
    NoFlock,
    /// It never started: it reached the host after its controller's lease.
    Late,
}

impl StepGuard {
    pub fn new(lock: &str, limit: Duration) -> Self {
        Self {
            lock: lock.to_owned(),
            limit,
            wait: limit + GRACE + Duration::from_secs(5),
            not_after: None,
        }
    }

    /// The command that runs `step` under the guard.
    pub fn wrap(&self, step: &str) -> String {
        format!(
            "sh -c {} {NAME} {} {} {} {} {} {}",
            shell_quote(SCRIPT),
            shell_quote(&self.lock),
            seconds(self.wait),
            seconds(self.limit),
            seconds(GRACE),
            shell_quote(step),
            self.not_after
                .map_or_else(|| "''".to_owned(), |at| at.to_string())
        )
    }

    /// A command that exits 1 while a step holds the lock, 0 otherwise.
    pub fn busy_check(&self) -> String {
        format!(
            "sh -c {} {NAME} {}",
            shell_quote(BUSY_SCRIPT),
            shell_quote(&self.lock)
        )
    }

    /// A command that stops the step holding the lock, if one does.
    pub fn stop(&self) -> String {
        format!(
            "sh -c {} {NAME} {}",
            shell_quote(STOP_SCRIPT),
            shell_quote(&self.lock)
        )
    }

    /// How long the client waits for the guarded command: the wait for
    /// the lock, the step, its grace, and some slack for the round trips.
    /// The host's own `timeout` ends the step first.
    pub fn client_bound(&self) -> Duration {
        self.wait + self.limit + GRACE + Duration::from_secs(10)
    }

    /// What the guarded command's exit says. `timeout` exits 124, or 137
    /// when it had to KILL; a step that exits so by itself before its
    /// limit is taken at its word.
    pub fn verdict(&self, code: Option<u32>, ran_for: Duration) -> Verdict {
        match code {
            Some(BUSY_EXIT) => Verdict::Busy,
            Some(NO_FLOCK_EXIT) => Verdict::NoFlock,
            Some(LATE_EXIT) => Verdict::Late,
            Some(124 | 137) if ran_for >= self.limit => Verdict::TimedOut,
            _ => Verdict::Ran,
        }
    }
}

/// How long the command that stops a cancelled step may take.
const STOP_BOUND: Duration = Duration::from_secs(15);

/// Runs `step` on `shell` under `guard`, and says what became of it. When
/// the run cancels the step, or the client's own bound passes first, the
/// step is stopped on the host before this returns the error: a step cut
/// short is not left running there.
pub async fn run_guarded(
    shell: &dyn RemoteShell,
    guard: &StepGuard,
    step: &str,
    cancel: &CancellationToken,
) -> Result<(ExecOutput, Verdict), ShellError> {
    let started = tokio::time::Instant::now();
    match shell
        .exec_until(&guard.wrap(step), guard.client_bound(), cancel)
        .await
    {
        Ok(output) => {
            let code = match output.status {
                ExitStatus::Code(code) => Some(code),
                ExitStatus::Signal(_) => None,
            };
            let verdict = guard.verdict(code, started.elapsed());
            Ok((output, verdict))
        }
        Err(error @ (ShellError::Cancelled | ShellError::Timeout { .. })) => {
            // Best effort, bounded, and not cancellable: the run is being
            // cut short, which is exactly when the step must not live on.
            if let Err(stop_error) = shell.exec(&guard.stop(), STOP_BOUND).await {
                tracing::warn!("could not stop the cut-short step on the host: {stop_error}");
            }
            Err(error)
        }
        Err(error) => Err(error),
    }
}

/// A guarded step as [`StepGuard::wrap`] wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded {
    pub lock: String,
    pub wait: Duration,
    pub limit: Duration,
    pub step: String,
}

/// Recognises a command [`StepGuard::wrap`] wrote (for simulated hosts).
pub fn parse(command: &str) -> Option<Guarded> {
    let words = shlex::split(command)?;
    match words.as_slice() {
        [
            sh,
            c,
            script,
            name,
            lock,
            wait,
            limit,
            _grace,
            step,
            _not_after,
        ] if sh == "sh" && c == "-c" && script == SCRIPT && name == NAME => Some(Guarded {
            lock: lock.clone(),
            wait: Duration::try_from_secs_f64(wait.parse().ok()?).ok()?,
            limit: Duration::try_from_secs_f64(limit.parse().ok()?).ok()?,
            step: step.clone(),
        }),
        _ => None,
    }
}

/// The guard's other commands, as [`StepGuard::busy_check`] and
/// [`StepGuard::stop`] wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Busy { lock: String },
    Stop { lock: String },
}

/// Recognises a busy check or a stop (for simulated hosts).
pub fn parse_query(command: &str) -> Option<Query> {
    let words = shlex::split(command)?;
    match words.as_slice() {
        [sh, c, script, name, lock] if sh == "sh" && c == "-c" && name == NAME => {
            match script.as_str() {
                BUSY_SCRIPT => Some(Query::Busy { lock: lock.clone() }),
                STOP_SCRIPT => Some(Query::Stop { lock: lock.clone() }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Seconds as `flock -w` and `timeout` take them.
fn seconds(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

#[cfg(test)]
#[path = "step_guard_tests.rs"]
mod tests;
