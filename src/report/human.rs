//! Human output on stderr: on a terminal, a live view (one line per
//! finished host above a status area, see `live`); otherwise plain
//! timestamped lines, one per event (cron mail and CI logs stay readable).
//! The plain lines also go to `--log-file` in both cases.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::live::LiveView;
use crate::events::{Envelope, Event, WatchVerdict};
use crate::exec::dispatcher::EventSink;
use crate::journal::replay::RunRecord;

#[derive(Debug)]
pub struct HumanSink {
    verbose: bool,
    live: Option<Live>,
    /// Print on stderr; otherwise the lines only reach `--log-file`.
    to_stderr: bool,
}

/// The terminal's live view: lines printed above a status area that a
/// ticker redraws twice a second (elapsed times move on their own).
#[derive(Debug)]
struct Live {
    multi: MultiProgress,
    status: ProgressBar,
    view: Arc<Mutex<LiveView>>,
}

impl Live {
    fn start() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let view = Arc::new(Mutex::new(LiveView::default()));
        let (ticker, shared) = (status.clone(), Arc::clone(&view));
        std::thread::spawn(move || {
            while !ticker.is_finished() {
                let lines = shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .status(jiff::Timestamp::now(), terminal_width());
                ticker.set_message(lines.join("\n"));
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Self {
            multi,
            status,
            view,
        }
    }
}

/// Columns of the terminal on stderr; 100 when it cannot be told.
fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|columns| *columns > 20)
        .unwrap_or(100)
}

impl HumanSink {
    /// `terminal`: the live view; otherwise one line per event.
    pub fn new(terminal: bool, verbose: bool) -> Self {
        Self {
            verbose,
            live: terminal.then(Live::start),
            to_stderr: true,
        }
    }

    /// For `-q`: the same lines, for the log file only.
    pub fn log_only(verbose: bool) -> Self {
        Self {
            verbose,
            live: None,
            to_stderr: false,
        }
    }

    /// A plain line: to the log file, and to stderr unless the live view
    /// draws the terminal.
    fn line(&self, ts: &str, text: &str) {
        tracing::info!(target: crate::logging::EVENTS, "{text}");
        if self.to_stderr && self.live.is_none() {
            eprintln!("{} {text}", short_time(ts));
        }
    }

    /// A line the live view prints above its status area too.
    fn headline(&self, ts: &str, text: &str) {
        self.line(ts, text);
        if let Some(live) = &self.live {
            let _ = live.multi.println(text);
        }
    }
}

/// `2026-11-22T01:40:02.123Z` → `2026-11-22T01:40:02Z`: seconds are enough.
fn short_time(ts: &str) -> String {
    match ts.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => ts.to_owned(),
    }
}

impl EventSink for HumanSink {
    fn event(&mut self, envelope: &Envelope, record: &RunRecord) {
        let ts = &envelope.ts;
        if let Some(live) = &self.live {
            // Only the fold here, on the dispatcher's path: the ticker
            // redraws the status area twice a second.
            let line = live
                .view
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(envelope);
            if let Some(text) = line {
                let _ = live.multi.println(text);
            }
        }
        match &envelope.event {
            Event::RunStarted {
                playbook,
                hosts,
                batches,
                failure_budget,
                ..
            } => self.headline(
                ts,
                &format!(
                    "run {} started: {playbook}, {hosts} hosts in {batches} batches, failure budget {failure_budget}",
                    envelope.run_id
                ),
            ),
            Event::RunResumed {
                pending,
                rollback: false,
            } => {
                self.headline(ts, &format!("run {} resumed: {pending} hosts to go", envelope.run_id));
            }
            Event::RunResumed {
                pending,
                rollback: true,
            } => {
                self.headline(
                    ts,
                    &format!("run {}: rolling back {pending} hosts", envelope.run_id),
                );
            }
            Event::BatchStarted { index, zones, hosts } => {
                let text = format!(
                    "batch {}/{} started: {} ({} host{})",
                    index + 1,
                    record.plan.len().max(index + 1),
                    zones.join(","),
                    hosts.len(),
                    if hosts.len() == 1 { "" } else { "s" }
                );
                self.headline(ts, &text);
            }
            Event::HostPhase {
                host,
                phase,
                outcome,
                detail,
            } => {
                let mut text = format!("{host} {}", phase.label());
                if let Some(outcome) = outcome
                    && outcome.label() != phase.label()
                {
                    text.push_str(&format!(" ({})", outcome.label()));
                }
                if let Some(detail) = detail {
                    text.push_str(": ");
                    text.push_str(detail);
                }
                self.line(ts, &text);
            }
            Event::StepFinished {
                host,
                step,
                exit_code,
                duration_ms,
                ok,
                output_tail,
                ..
            } => {
                let status = match (ok, exit_code) {
                    (true, _) => "ok".to_owned(),
                    (false, Some(code)) => format!("FAILED with exit {code}"),
                    (false, None) => "FAILED".to_owned(),
                };
                let mut text = format!("{host} step \"{step}\" {status} in {:.1}s", *duration_ms as f64 / 1000.0);
                if !ok && !output_tail.is_empty() {
                    for line in output_tail.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev() {
                        text.push_str("\n    | ");
                        text.push_str(line);
                    }
                }
                self.line(ts, &text);
            }
            Event::StepSkipped { host, step } => {
                self.line(ts, &format!("{host} step \"{step}\" skipped: only_if said no"));
            }
            Event::Probe { host, probe, ok, detail } => {
                if self.verbose {
                    let verdict = if *ok { "ok" } else { "failing" };
                    self.line(ts, &format!("{host} probe {probe} {verdict}: {detail}"));
                }
            }
            Event::HostWatch {
                host,
                verdict,
                detail,
                ..
            } => {
                let verdict = match verdict {
                    WatchVerdict::Passed => "passed",
                    WatchVerdict::Regressed => "REGRESSED",
                    WatchVerdict::NotJudged => "not judged",
                };
                self.line(ts, &format!("{host} watch {verdict}: {detail}"));
            }
            Event::Gate {
                name, ok, detail, ..
            } => {
                let verdict = if *ok { "passed" } else { "FAILED" };
                self.line(ts, &format!("gate {name} {verdict}: {detail}"));
            }
            Event::BatchFinished { index, ok } => {
                let verdict = if *ok { "finished" } else { "finished with failures" };
                self.line(ts, &format!("batch {} {verdict}", index + 1));
            }
            Event::Warning { host, message } => {
                let who = host.as_deref().map(|h| format!("{h} ")).unwrap_or_default();
                self.line(ts, &format!("{who}warning: {message}"));
            }
            Event::RunFinished { outcome, reason, .. } => {
                if let Some(live) = &self.live {
                    live.status.finish_and_clear();
                }
                // On a terminal the summary that follows says it.
                let reason = reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                self.line(ts, &format!("run {} {}{reason}", envelope.run_id, outcome.label()));
            }
            // For the journal only: what a balancer needs after a restart.
            Event::DrainMemory { .. } => {}
            Event::Pause { seconds, next_batch } => {
                let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(*seconds as i64);
                self.line(
                    ts,
                    &format!(
                        "pausing {seconds}s before batch {} (until {})",
                        next_batch + 1,
                        short_time(&until.to_string())
                    ),
                );
            }
            Event::Replaced {
                host,
                old_instance,
                new_instance,
                zone,
                ..
            } => {
                self.headline(ts, &format!("{host} replaced: {old_instance} -> {new_instance} in {zone}"));
            }
            Event::HandedOver { host, to_run } => {
                self.headline(ts, &format!("{host} handed over to run {to_run}, still drained"));
            }
            Event::Replacing { .. } | Event::Standby { .. } => {}
            Event::RollbackStarted { hosts, .. } => {
                self.line(ts, &format!("rolling back {}", hosts.join(", ")));
            }
            Event::LockBroken { holder_pid, holder_host } => {
                self.headline(ts, &format!("lock of pid {holder_pid} on {holder_host} broken"));
            }
            Event::Drain { host, balancer } => {
                if self.verbose {
                    self.line(ts, &format!("{host} drain from {balancer}"));
                }
            }
            Event::Undrained { host, balancer } => {
                if self.verbose {
                    self.line(ts, &format!("{host} back in {balancer}"));
                }
            }
            Event::StepStarted { host, step, attempt, .. } => {
                if self.verbose || *attempt > 1 {
                    let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    self.line(ts, &format!("{host} step \"{step}\" started{again}"));
                }
            }
        }
    }
}
