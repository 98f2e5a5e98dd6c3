//! The live view on a terminal, in the manner of cargo and nextest: one
//! line per finished host scrolls above a status area that shows the
//! current batch, counts per zone and per phase, the hosts in flight with
//! their phase and time in it, and the time left in the window.
//!
//! Pure: events and "now" in, lines out; `human` puts them on the screen.
//! Its size does not grow with the fleet: at 1,000 hosts the status area
//! is as tall as at 12.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use jiff::Timestamp;

use crate::events::{Envelope, Event, Outcome, Phase};

/// Hosts in flight listed by name; the rest are counted.
const IN_FLIGHT_ROWS: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct LiveView {
    run_id: String,
    batches: usize,
    /// Index and zones of the batch under way.
    batch: Option<(usize, Vec<String>)>,
    /// Per zone: hosts planned, hosts finished.
    zones: BTreeMap<String, (usize, usize)>,
    zone_of: BTreeMap<String, String>,
    /// Hosts started and not finished, in start order: phase and since when.
    in_flight: IndexMap<String, (Phase, Timestamp)>,
    started_at: BTreeMap<String, Timestamp>,
    outcomes: BTreeMap<&'static str, usize>,
    total: usize,
    window_closes: Option<Timestamp>,
    pause_until: Option<Timestamp>,
}

impl LiveView {
    /// Takes in one event; returns the line to print above the status
    /// area, if the event finished a host (or is otherwise worth a line).
    pub fn apply(&mut self, envelope: &Envelope) -> Option<String> {
        let at: Timestamp = envelope.ts.parse().unwrap_or_else(|_| Timestamp::now());
        match &envelope.event {
            Event::RunStarted {
                hosts,
                batches,
                plan,
                window_closes_at,
                ..
            } => {
                self.run_id.clone_from(&envelope.run_id);
                self.total = *hosts;
                self.batches = *batches;
                self.window_closes = window_closes_at.as_deref().and_then(|t| t.parse().ok());
                for batch in plan {
                    for (index, host) in batch.hosts.iter().enumerate() {
                        let zone = batch
                            .host_zones
                            .get(index)
                            .or(if batch.zones.len() == 1 {
                                batch.zones.first()
                            } else {
                                None
                            })
                            .cloned()
                            .unwrap_or_else(|| "-".to_owned());
                        self.zones.entry(zone.clone()).or_default().0 += 1;
                        self.zone_of.insert(host.clone(), zone);
                    }
                }
                None
            }
            Event::BatchStarted { index, zones, .. } => {
                self.batch = Some((*index, zones.clone()));
                self.pause_until = None;
                None
            }
            Event::Pause { seconds, .. } => {
                self.pause_until = Some(at + jiff::SignedDuration::from_secs(*seconds as i64));
                None
            }
            Event::HostPhase {
                host,
                phase,
                outcome,
                detail,
            } => match phase {
                Phase::Checking
                | Phase::Draining
                | Phase::Updating
                | Phase::Verifying
                | Phase::Undraining
                | Phase::Watching => {
                    self.started_at.entry(host.clone()).or_insert(at);
                    self.in_flight.insert(host.clone(), (*phase, at));
                    None
                }
                Phase::Done | Phase::Skipped | Phase::Failed | Phase::RolledBack => {
                    self.in_flight.shift_remove(host);
                    let outcome = outcome.unwrap_or(match phase {
                        Phase::Skipped => Outcome::Skipped,
                        Phase::Failed => Outcome::Failed,
                        Phase::RolledBack => Outcome::RolledBack,
                        _ => Outcome::Updated,
                    });
                    *self.outcomes.entry(outcome.label()).or_default() += 1;
                    let zone = self.zone_of.get(host).cloned().unwrap_or_default();
                    if let Some(counts) = self.zones.get_mut(&zone) {
                        counts.1 += 1;
                    }
                    let took = self
                        .started_at
                        .remove(host)
                        .map(|from| super::human_seconds(at.duration_since(from).as_secs_f64()))
                        .unwrap_or_default();
                    let mark = if outcome.is_failure() { "✗" } else { "✓" };
                    let mut line = format!(
                        "{mark} {host:<14} {zone:<12} {:<12} {took}",
                        outcome.label().replace('_', " ")
                    );
                    if let Some(detail) = detail.as_deref().filter(|_| outcome.is_failure()) {
                        line.push_str(&format!("\n    {detail}"));
                    }
                    Some(line)
                }
                Phase::Pending => None,
            },
            Event::StepFinished {
                host,
                step,
                exit_code,
                ok: false,
                output_tail,
                rollback: false,
                ..
            } => {
                let code = exit_code
                    .map(|c| format!(" with exit {c}"))
                    .unwrap_or_default();
                let mut line = format!("  {host}: step \"{step}\" failed{code}");
                for tail in output_tail
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    line.push_str(&format!("\n    | {tail}"));
                }
                Some(line)
            }
            Event::Gate {
                name, ok, detail, ..
            } => Some(format!(
                "gate {name} {}: {detail}",
                if *ok { "passed" } else { "FAILED" }
            )),
            Event::Warning { host, message } => Some(format!(
                "warning: {}{message}",
                host.as_deref()
                    .map(|h| format!("{h}: "))
                    .unwrap_or_default()
            )),
            Event::RollbackStarted { hosts, .. } => {
                Some(format!("rolling back {}", hosts.join(", ")))
            }
            _ => None,
        }
    }

    /// The status area at `now`, at most `width` columns wide.
    pub fn status(&self, now: Timestamp, width: usize) -> Vec<String> {
        let done: usize = self.outcomes.values().sum();
        let mut lines = Vec::new();
        let batch = match &self.batch {
            Some((index, zones)) => format!(
                "batch {}/{} ({})",
                index + 1,
                self.batches.max(index + 1),
                zones.join(", ")
            ),
            None => "starting".to_owned(),
        };
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(label, n)| format!("{n} {}", label.replace('_', " ")))
            .collect();
        let mut head = format!(
            "{batch} · {done}/{} done{} · {} in flight",
            self.total,
            if outcomes.is_empty() {
                String::new()
            } else {
                format!(" ({})", outcomes.join(", "))
            },
            self.in_flight.len()
        );
        if let Some(until) = self.pause_until.filter(|until| *until > now) {
            head.push_str(&format!(
                " · pausing, {} left",
                super::human_seconds(until.duration_since(now).as_secs_f64())
            ));
        }
        if let Some(closes) = self.window_closes {
            let left = closes.duration_since(now).as_secs_f64();
            head.push_str(&if left > 0.0 {
                format!(" · window closes in {}", super::human_seconds(left))
            } else {
                " · window closed".to_owned()
            });
        }
        lines.push(head);
        let zones: Vec<String> = self
            .zones
            .iter()
            .map(|(zone, (planned, finished))| format!("{zone} {finished}/{planned}"))
            .collect();
        lines.push(format!("  zones: {}", zones.join("  ")));
        let mut phases: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (phase, _) in self.in_flight.values() {
            *phases.entry(phase.label()).or_default() += 1;
        }
        if !phases.is_empty() {
            let counts: Vec<String> = [
                Phase::Checking,
                Phase::Draining,
                Phase::Updating,
                Phase::Verifying,
                Phase::Undraining,
            ]
            .iter()
            .filter_map(|phase| {
                phases
                    .get(phase.label())
                    .map(|n| format!("{} {n}", phase.label()))
            })
            .collect();
            lines.push(format!("  phases: {}", counts.join(" · ")));
        }
        for (host, (phase, since)) in self.in_flight.iter().take(IN_FLIGHT_ROWS) {
            let zone = self.zone_of.get(host).map_or("-", String::as_str);
            lines.push(format!(
                "  {host:<14} {zone:<12} {:<11} {}",
                phase.label(),
                super::human_seconds(now.duration_since(*since).as_secs_f64().max(0.0))
            ));
        }
        if self.in_flight.len() > IN_FLIGHT_ROWS {
            lines.push(format!(
                "  … and {} more in flight",
                self.in_flight.len() - IN_FLIGHT_ROWS
            ));
        }
        lines
            .into_iter()
            .map(|line| truncate(&line, width))
            .collect()
    }
}

fn truncate(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
