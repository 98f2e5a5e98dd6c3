//! Human output on stderr: progress bars on a terminal, plain timestamped
//! lines otherwise (cron mail and CI logs stay readable).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Envelope, Event, Phase};
use crate::exec::dispatcher::EventSink;
use crate::journal::replay::RunRecord;

#[derive(Debug)]
pub struct HumanSink {
    verbose: bool,
    bars: Option<Bars>,
    /// Print on stderr; otherwise the lines only reach `--log-file`.
    to_stderr: bool,
}

#[derive(Debug)]
struct Bars {
    multi: MultiProgress,
    current: Option<ProgressBar>,
    /// The countdown shown during a pause between batches.
    pause: Option<ProgressBar>,
}

impl HumanSink {
    /// `terminal`: draw bars; otherwise print one line per event.
    pub fn new(terminal: bool, verbose: bool) -> Self {
        Self {
            verbose,
            bars: terminal.then(|| Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                current: None,
                pause: None,
            }),
            to_stderr: true,
        }
    }

    /// For `-q`: the same lines, for the log file only.
    pub fn log_only(verbose: bool) -> Self {
        Self {
            verbose,
            bars: None,
            to_stderr: false,
        }
    }

    fn line(&self, ts: &str, text: &str) {
        tracing::info!(target: crate::logging::EVENTS, "{text}");
        if !self.to_stderr {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.multi.println(text);
            }
            None => eprintln!("{} {text}", short_time(ts)),
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
        match &envelope.event {
            Event::RunStarted {
                playbook,
                hosts,
                batches,
                failure_budget,
                ..
            } => self.line(
                ts,
                &format!(
                    "run {} started: {playbook}, {hosts} hosts in {batches} batches, failure budget {failure_budget}",
                    envelope.run_id
                ),
            ),
            Event::RunResumed { pending } => {
                self.line(ts, &format!("run {} resumed: {pending} hosts to go", envelope.run_id));
            }
            Event::BatchStarted { index, zones, hosts } => {
                if let Some(pause) = self.bars.as_mut().and_then(|b| b.pause.take()) {
                    pause.finish_and_clear();
                }
                let text = format!(
                    "batch {}/{} started: {} ({} hosts)",
                    index + 1,
                    record.plan.len().max(index + 1),
                    zones.join(","),
                    hosts.len()
                );
                self.line(ts, &text);
                if let Some(bars) = &mut self.bars {
                    let bar = bars.multi.add(ProgressBar::new(hosts.len() as u64));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("batch {}", index + 1));
                    bar.set_message(zones.join(","));
                    bars.current = Some(bar);
                }
            }
            Event::HostPhase {
                host,
                phase,
                outcome,
                detail,
            } => {
                let finished = matches!(phase, Phase::Done | Phase::Failed | Phase::Skipped);
                {
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
                if finished
                    && let Some(bar) = self.bars.as_ref().and_then(|b| b.current.as_ref())
                {
                    bar.inc(1);
                }
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
                if !ok || self.verbose || self.bars.is_none() {
                    self.line(ts, &text);
                }
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
            Event::Gate {
                name, ok, detail, ..
            } => {
                let verdict = if *ok { "passed" } else { "FAILED" };
                self.line(ts, &format!("gate {name} {verdict}: {detail}"));
            }
            Event::BatchFinished { index, ok } => {
                if let Some(bar) = self.bars.as_mut().and_then(|b| b.current.take()) {
                    bar.finish();
                }
                let verdict = if *ok { "finished" } else { "finished with failures" };
                self.line(ts, &format!("batch {} {verdict}", index + 1));
            }
            Event::Warning { host, message } => {
                let who = host.as_deref().map(|h| format!("{h} ")).unwrap_or_default();
                self.line(ts, &format!("{who}warning: {message}"));
            }
            Event::RunFinished { outcome, reason, .. } => {
                let reason = reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                self.line(ts, &format!("run {} {}{reason}", envelope.run_id, outcome.label()));
            }
            // For the journal only: what a balancer needs after a restart.
            Event::DrainMemory { .. } => {}
            Event::Pause { seconds, next_batch } if self.bars.is_some() => {
                if let Some(bars) = &mut self.bars {
                    // A countdown: the bar fills as the pause runs out.
                    let bar = bars.multi.add(ProgressBar::new(*seconds));
                    bar.set_style(
                        ProgressStyle::with_template("pausing before batch {prefix}: {eta} left [{bar:30}]")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar.set_prefix((next_batch + 1).to_string());
                    let ticker = bar.clone();
                    std::thread::spawn(move || {
                        while !ticker.is_finished() && ticker.position() < ticker.length().unwrap_or(0) {
                            std::thread::sleep(std::time::Duration::from_secs(1));
                            ticker.inc(1);
                        }
                        ticker.finish_and_clear();
                    });
                    bars.pause = Some(bar);
                }
            }
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
                self.line(ts, &format!("{host} replaced: {old_instance} -> {new_instance} in {zone}"));
            }
            Event::HandedOver { host, to_run } => {
                self.line(ts, &format!("{host} handed over to run {to_run}, still drained"));
            }
            Event::Replacing { .. } | Event::Standby { .. } => {}
            Event::RollbackStarted { hosts, .. } => {
                self.line(ts, &format!("rolling back {}", hosts.join(", ")));
            }
            Event::LockBroken { holder_pid, holder_host } => {
                self.line(ts, &format!("lock of pid {holder_pid} on {holder_host} broken"));
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
