//! `fleetroll history`: deployment metrics over every run of an inventory,
//! folded from the journals alone (pure: journals in, figures out).
//!
//! Definitions, per playbook and overall:
//! - deployment success rate: succeeded runs over runs that ended (a run
//!   still going is not counted);
//! - step failure rate: steps that failed over steps that finished (rollback
//!   steps not included);
//! - time to deploy: from a succeeded run's start to its end, resumes and
//!   the time between them included (what the people waiting saw);
//! - rollback frequency: runs that rolled something back over runs that
//!   ended; time to roll back: from the rollback's start to the end of the
//!   run (or the next attempt's end);
//! - time out of service: per host a run drained, from its first drain to
//!   its return.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::events::{Envelope, Event, Outcome, RunOutcome};
use crate::journal::replay::RunRecord;
use crate::report::metrics::escape_label;

/// What one run contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    pub run_id: String,
    pub playbook: String,
    pub outcome: RunOutcome,
    pub started: Option<Timestamp>,
    /// Start to end, for a run that ended.
    pub duration: Option<Duration>,
    pub steps: usize,
    pub failed_steps: usize,
    pub rolled_back: bool,
    /// From the first rollback's start to the run's end after it.
    pub rollback_duration: Option<Duration>,
    pub hosts: BTreeMap<&'static str, usize>,
    /// Per host that was out of service, how long.
    pub out_of_service: Vec<Duration>,
}

/// What one run's journal says; `record` is its replay, `outcome` the
/// caller's reading of it (a run without an end record is running or
/// interrupted, which only its lock tells: see `status`).
pub fn facts(record: &RunRecord, records: &[Envelope], outcome: RunOutcome) -> RunFacts {
    let time = |envelope: &Envelope| envelope.ts.parse::<Timestamp>().ok();
    let started = records
        .iter()
        .find(|e| matches!(e.event, Event::RunStarted { .. }))
        .and_then(time);
    let finished = records
        .iter()
        .rev()
        .find(|e| matches!(e.event, Event::RunFinished { .. }))
        .and_then(time);
    let (mut steps, mut failed_steps) = (0, 0);
    let mut rollback_started = None;
    let mut rollback_duration = None;
    for envelope in records {
        match &envelope.event {
            Event::StepFinished {
                ok,
                rollback: false,
                ..
            } => {
                steps += 1;
                failed_steps += usize::from(!ok);
            }
            Event::RollbackStarted { .. } if rollback_started.is_none() => {
                rollback_started = time(envelope);
            }
            Event::RunFinished { .. } if rollback_duration.is_none() => {
                if let (Some(start), Some(end)) = (rollback_started, time(envelope)) {
                    rollback_duration = Some(elapsed(start, end));
                }
            }
            _ => {}
        }
    }
    let mut hosts = BTreeMap::new();
    for host in record.hosts.values() {
        *hosts.entry(host.outcome.label()).or_insert(0) += 1;
    }
    RunFacts {
        run_id: record.run_id.clone(),
        playbook: record.playbook.clone(),
        outcome,
        started,
        duration: started.zip(finished).map(|(s, f)| elapsed(s, f)),
        steps,
        failed_steps,
        rolled_back: rollback_started.is_some() || outcome == RunOutcome::RolledBack,
        rollback_duration,
        hosts,
        out_of_service: record
            .hosts
            .values()
            .filter(|host| host.out_of_service_ms > 0)
            .map(|host| Duration::from_millis(host.out_of_service_ms))
            .collect(),
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    to.duration_since(from).unsigned_abs()
}

/// The figures of a set of runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub runs: usize,
    /// Runs that ended (every run but those still going).
    pub ended: usize,
    /// Runs by outcome label; every outcome listed, zeros included.
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Succeeded over ended runs; `None` when no run ended.
    pub success_rate: Option<f64>,
    pub steps: usize,
    pub failed_steps: usize,
    pub step_failure_rate: Option<f64>,
    /// Time to deploy of succeeded runs, in seconds.
    pub deploy_median_s: Option<f64>,
    pub deploy_p95_s: Option<f64>,
    pub rollbacks: usize,
    pub rollback_rate: Option<f64>,
    pub rollback_mean_s: Option<f64>,
    /// Hosts by outcome, summed over runs.
    pub hosts: BTreeMap<&'static str, usize>,
    /// Runs in which a `[watch]` found a host regressed.
    pub runs_with_regressions: usize,
    pub out_of_service_mean_s: Option<f64>,
}

/// Every run outcome, so that each is listed even when no run had it.
const RUN_OUTCOMES: [RunOutcome; 6] = [
    RunOutcome::Succeeded,
    RunOutcome::Halted,
    RunOutcome::RolledBack,
    RunOutcome::WindowClosed,
    RunOutcome::Interrupted,
    RunOutcome::Running,
];

/// Every final host outcome, so that each is listed even at zero.
const HOST_OUTCOMES: [Outcome; 8] = [
    Outcome::Updated,
    Outcome::Skipped,
    Outcome::Failed,
    Outcome::Unreachable,
    Outcome::Unhealthy,
    Outcome::TimedOut,
    Outcome::RolledBack,
    Outcome::Regressed,
];

impl Figures {
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a RunFacts>) -> Self {
        let runs: Vec<&RunFacts> = runs.into_iter().collect();
        let mut outcomes: BTreeMap<&'static str, usize> =
            RUN_OUTCOMES.iter().map(|o| (o.label(), 0)).collect();
        let mut hosts: BTreeMap<&'static str, usize> =
            HOST_OUTCOMES.iter().map(|o| (o.label(), 0)).collect();
        for run in &runs {
            *outcomes.entry(run.outcome.label()).or_insert(0) += 1;
            for (label, count) in &run.hosts {
                *hosts.entry(label).or_insert(0) += count;
            }
        }
        let ended: Vec<&&RunFacts> = runs
            .iter()
            .filter(|run| run.outcome != RunOutcome::Running)
            .collect();
        let succeeded = outcomes[RunOutcome::Succeeded.label()];
        let steps: usize = runs.iter().map(|run| run.steps).sum();
        let failed_steps: usize = runs.iter().map(|run| run.failed_steps).sum();
        let mut deploys: Vec<f64> = runs
            .iter()
            .filter(|run| run.outcome == RunOutcome::Succeeded)
            .filter_map(|run| run.duration)
            .map(|d| d.as_secs_f64())
            .collect();
        deploys.sort_by(f64::total_cmp);
        let rollbacks = ended.iter().filter(|run| run.rolled_back).count();
        let rollback_times: Vec<f64> = runs
            .iter()
            .filter_map(|run| run.rollback_duration)
            .map(|d| d.as_secs_f64())
            .collect();
        let out_of_service: Vec<f64> = runs
            .iter()
            .flat_map(|run| &run.out_of_service)
            .map(Duration::as_secs_f64)
            .collect();
        Figures {
            runs: runs.len(),
            ended: ended.len(),
            outcomes,
            success_rate: ratio(succeeded, ended.len()),
            steps,
            failed_steps,
            step_failure_rate: ratio(failed_steps, steps),
            deploy_median_s: quantile(&deploys, 0.5),
            deploy_p95_s: quantile(&deploys, 0.95),
            rollbacks,
            rollback_rate: ratio(rollbacks, ended.len()),
            rollback_mean_s: mean(&rollback_times),
            hosts,
            runs_with_regressions: runs
                .iter()
                .filter(|run| {
                    run.hosts
                        .get(Outcome::Regressed.label())
                        .is_some_and(|n| *n > 0)
                })
                .count(),
            out_of_service_mean_s: mean(&out_of_service),
        }
    }
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The whole history: overall and per playbook, with what was skipped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub overall: Figures,
    pub playbooks: BTreeMap<String, Figures>,
    /// Journals that could not be read: run id and why.
    pub unreadable: Vec<(String, String)>,
    /// Runs of other inventories in the same state directory.
    pub other_inventories: usize,
}

impl History {
    pub fn of(
        runs: &[RunFacts],
        unreadable: Vec<(String, String)>,
        other_inventories: usize,
    ) -> Self {
        let mut by_playbook: BTreeMap<String, Vec<&RunFacts>> = BTreeMap::new();
        for run in runs {
            by_playbook
                .entry(run.playbook.clone())
                .or_default()
                .push(run);
        }
        History {
            overall: Figures::of(runs),
            playbooks: by_playbook
                .into_iter()
                .map(|(playbook, runs)| (playbook, Figures::of(runs)))
                .collect(),
            unreadable,
            other_inventories,
        }
    }

    /// The report for a terminal or cron mail.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (playbook, figures) in &self.playbooks {
            out.push_str(&render_figures(&format!("playbook {playbook}"), figures));
            out.push('\n');
        }
        out.push_str(&render_figures("overall", &self.overall));
        if self.other_inventories > 0 {
            out.push_str(&format!(
                "\n{} runs of other inventories in the same state directory were left out\n",
                self.other_inventories
            ));
        }
        for (run_id, why) in &self.unreadable {
            out.push_str(&format!("skipped run {run_id}: {why}\n"));
        }
        out
    }

    /// The figures as Prometheus gauges (text format 0.0.4), per playbook
    /// and overall (`playbook=""`), for node_exporter's textfile collector.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let all = std::iter::once(("", &self.overall))
            .chain(self.playbooks.iter().map(|(p, f)| (p.as_str(), f)))
            .collect::<Vec<_>>();
        let mut gauge = |name: &str, help: &str, samples: Vec<(String, f64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for (labels, value) in samples {
                out.push_str(&format!("{name}{{{labels}}} {value}\n"));
            }
        };
        let per_playbook = |value: &dyn Fn(&Figures) -> Option<f64>| {
            all.iter()
                .filter_map(|(playbook, figures)| {
                    value(figures).map(|v| (format!("playbook=\"{}\"", escape_label(playbook)), v))
                })
                .collect::<Vec<_>>()
        };
        gauge(
            "fleetroll_history_runs",
            "Runs recorded in the journals, by outcome.",
            all.iter()
                .flat_map(|(playbook, figures)| {
                    figures.outcomes.iter().map(move |(outcome, count)| {
                        (
                            format!(
                                "playbook=\"{}\",outcome=\"{outcome}\"",
                                escape_label(playbook)
                            ),
                            *count as f64,
                        )
                    })
                })
                .collect(),
        );
        gauge(
            "fleetroll_history_success_ratio",
            "Succeeded runs over runs that ended.",
            per_playbook(&|f| f.success_rate),
        );
        gauge(
            "fleetroll_history_step_failure_ratio",
            "Failed steps over finished steps.",
            per_playbook(&|f| f.step_failure_rate),
        );
        gauge(
            "fleetroll_history_deploy_seconds",
            "Time to deploy of succeeded runs, start to end.",
            all.iter()
                .flat_map(|(playbook, figures)| {
                    [
                        ("0.5", figures.deploy_median_s),
                        ("0.95", figures.deploy_p95_s),
                    ]
                    .into_iter()
                    .filter_map(move |(q, value)| {
                        value.map(|v| {
                            (
                                format!("playbook=\"{}\",quantile=\"{q}\"", escape_label(playbook)),
                                v,
                            )
                        })
                    })
                })
                .collect(),
        );
        gauge(
            "fleetroll_history_rollback_ratio",
            "Runs that rolled back over runs that ended.",
            per_playbook(&|f| f.rollback_rate),
        );
        gauge(
            "fleetroll_history_rollback_seconds_mean",
            "Mean time from a rollback's start to the run's end.",
            per_playbook(&|f| f.rollback_mean_s),
        );
        gauge(
            "fleetroll_history_hosts",
            "Hosts by outcome, summed over runs.",
            all.iter()
                .flat_map(|(playbook, figures)| {
                    figures.hosts.iter().map(move |(outcome, count)| {
                        (
                            format!(
                                "playbook=\"{}\",outcome=\"{outcome}\"",
                                escape_label(playbook)
                            ),
                            *count as f64,
                        )
                    })
                })
                .collect(),
        );
        gauge(
            "fleetroll_history_out_of_service_seconds_mean",
            "Mean time a host was out of service, per host drained.",
            per_playbook(&|f| f.out_of_service_mean_s),
        );
        out
    }
}

fn render_figures(title: &str, figures: &Figures) -> String {
    let outcomes: Vec<String> = figures
        .outcomes
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(label, count)| format!("{count} {}", label.replace('_', " ")))
        .collect();
    let hosts: Vec<String> = figures
        .hosts
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(label, count)| format!("{count} {}", label.replace('_', " ")))
        .collect();
    let percent =
        |rate: Option<f64>| rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let seconds = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), super::human_seconds);
    let deploys = figures.outcomes[RunOutcome::Succeeded.label()];
    let rows = [
        ("deployment success rate", percent(figures.success_rate)),
        (
            "step failure rate",
            format!(
                "{} ({} of {} steps)",
                percent(figures.step_failure_rate),
                figures.failed_steps,
                figures.steps
            ),
        ),
        (
            "time to deploy",
            format!(
                "median {}, p95 {} ({deploys} succeeded runs)",
                seconds(figures.deploy_median_s),
                seconds(figures.deploy_p95_s)
            ),
        ),
        (
            "rollback frequency",
            format!(
                "{} ({} of {} runs)",
                percent(figures.rollback_rate),
                figures.rollbacks,
                figures.ended
            ),
        ),
        ("mean time to roll back", seconds(figures.rollback_mean_s)),
        (
            "regressions",
            format!(
                "{} hosts in {} of {} runs (caught by [watch])",
                figures
                    .hosts
                    .get(Outcome::Regressed.label())
                    .copied()
                    .unwrap_or(0),
                figures.runs_with_regressions,
                figures.ended
            ),
        ),
        (
            "hosts",
            if hosts.is_empty() {
                "none".to_owned()
            } else {
                hosts.join(", ")
            },
        ),
        (
            "mean time out of service",
            format!(
                "{} per host drained",
                seconds(figures.out_of_service_mean_s)
            ),
        ),
    ];
    let mut out = format!(
        "{title}: {} runs{}\n",
        figures.runs,
        if outcomes.is_empty() {
            String::new()
        } else {
            format!(": {}", outcomes.join(", "))
        }
    );
    for (label, value) in rows {
        out.push_str(&format!("  {label:<25} {value}\n"));
    }
    out
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
