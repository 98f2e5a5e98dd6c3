//! A run's timeline, folded from its journal: per host the phases it went
//! through and when, what failed, and how many hosts were out of service
//! over time. Pure: records in, timeline out; `html` draws it.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use crate::events::{Envelope, Event, Phase, RunOutcome};
use crate::journal::replay::replay;

/// One phase of one host, `from` until `to` (seconds since the run began).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub phase: Phase,
    pub from: f64,
    pub to: f64,
}

/// One host's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub host: String,
    pub zone: String,
    pub spans: Vec<Span>,
    pub outcome: &'static str,
    /// Why it failed: the step, its exit code and the tail of its output,
    /// or the run's detail.
    pub failure: Option<String>,
    /// When it failed, if it did.
    pub failed_at: Option<f64>,
    /// Seconds out of service (first drain to last return).
    pub out_of_service: f64,
}

/// One planned batch and the hosts it rolled.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub index: usize,
    pub zones: Vec<String>,
    pub lanes: Vec<Lane>,
    pub from: Option<f64>,
    pub to: Option<f64>,
    pub ok: Option<bool>,
}

/// Something that happened to the run as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: f64,
    pub label: String,
    pub ok: bool,
}

/// Hosts out of service from `at` on: in total and per zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub at: f64,
    pub total: usize,
    pub per_zone: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub run_id: String,
    pub playbook: String,
    pub outcome: RunOutcome,
    pub reason: Option<String>,
    pub started: Option<Timestamp>,
    /// Seconds from the first record to the last.
    pub length: f64,
    pub max_unavailable: Option<usize>,
    /// Seconds from the start at which the maintenance window closes.
    pub window_closes: Option<f64>,
    pub batches: Vec<BatchRow>,
    pub marks: Vec<Mark>,
    pub capacity: Vec<Capacity>,
    pub zones: Vec<String>,
}

impl Timeline {
    pub fn lanes(&self) -> impl Iterator<Item = &Lane> {
        self.batches.iter().flat_map(|batch| &batch.lanes)
    }
}

/// Folds a run's records into its timeline. `outcome` is the caller's
/// reading of the run (a run without an end record: running or not).
pub fn timeline(run_id: &str, records: &[Envelope], outcome: RunOutcome) -> Timeline {
    let record = replay(run_id, records);
    let times: Vec<Option<Timestamp>> = records.iter().map(|e| e.ts.parse().ok()).collect();
    let started = times.iter().flatten().next().copied();
    let at = |index: usize| -> f64 {
        match (started, times[index]) {
            (Some(start), Some(t)) => t.duration_since(start).as_secs_f64().max(0.0),
            _ => 0.0,
        }
    };
    let length = (0..records.len()).map(at).fold(0.0, f64::max);
    let last = times.iter().flatten().max().copied();
    let mut max_unavailable = None;
    let mut window_closes = None;
    let mut open: HashMap<String, (Phase, f64)> = HashMap::new();
    let mut spans: HashMap<String, Vec<Span>> = HashMap::new();
    let mut failed_at: HashMap<String, f64> = HashMap::new();
    let mut batch_times: BTreeMap<usize, (Option<f64>, Option<f64>)> = BTreeMap::new();
    let mut marks = Vec::new();
    let mut drained: HashMap<String, usize> = HashMap::new();
    let mut capacity: Vec<Capacity> = Vec::new();
    let mut out_now: BTreeMap<String, usize> = BTreeMap::new();
    let zone_of = |host: &str| record.zone_of(host).unwrap_or("-").to_owned();
    for (index, envelope) in records.iter().enumerate() {
        let now = at(index);
        match &envelope.event {
            Event::RunStarted {
                max_unavailable: limit,
                window_closes_at,
                ..
            } => {
                max_unavailable = *limit;
                window_closes = window_closes_at
                    .as_deref()
                    .and_then(|text| text.parse::<Timestamp>().ok())
                    .zip(started)
                    .map(|(closes, start)| closes.duration_since(start).as_secs_f64());
            }
            Event::RunResumed { .. } => marks.push(Mark {
                at: now,
                label: "resumed".into(),
                ok: true,
            }),
            Event::HostPhase { host, phase, .. } => {
                if let Some((previous, from)) = open.remove(host) {
                    spans.entry(host.clone()).or_default().push(Span {
                        phase: previous,
                        from,
                        to: now,
                    });
                }
                match phase {
                    Phase::Checking
                    | Phase::Draining
                    | Phase::Updating
                    | Phase::Verifying
                    | Phase::Undraining
                    | Phase::Watching => {
                        open.insert(host.clone(), (*phase, now));
                    }
                    Phase::Failed => {
                        failed_at.insert(host.clone(), now);
                    }
                    Phase::Pending | Phase::Done | Phase::Skipped | Phase::RolledBack => {}
                }
            }
            Event::BatchStarted { index, .. } => {
                batch_times.entry(*index).or_default().0.get_or_insert(now);
            }
            Event::BatchFinished { index, .. } => {
                batch_times.entry(*index).or_default().1 = Some(now);
            }
            Event::Gate { name, ok, .. } => marks.push(Mark {
                at: now,
                label: format!("gate {name}"),
                ok: *ok,
            }),
            Event::Pause { seconds, .. } => marks.push(Mark {
                at: now,
                label: format!("pause {seconds}s"),
                ok: true,
            }),
            Event::RollbackStarted { batch, .. } => marks.push(Mark {
                at: now,
                label: format!("rollback of batch {}", batch + 1),
                ok: false,
            }),
            Event::Drain { host, .. } => {
                let count = drained.entry(host.clone()).or_default();
                *count += 1;
                if *count == 1 {
                    *out_now.entry(zone_of(host)).or_default() += 1;
                    capacity.push(snapshot(now, &out_now));
                }
            }
            Event::Undrained { host, .. } => {
                if let Some(count) = drained.get_mut(host)
                    && *count > 0
                {
                    *count -= 1;
                    if *count == 0 {
                        if let Some(out) = out_now.get_mut(&zone_of(host)) {
                            *out = out.saturating_sub(1);
                        }
                        capacity.push(snapshot(now, &out_now));
                    }
                }
            }
            _ => {}
        }
    }
    // Phases still open at the end (an interrupted run) end there.
    for (host, (phase, from)) in open {
        spans.entry(host).or_default().push(Span {
            phase,
            from,
            to: length,
        });
    }
    let lane = |host: &str| -> Lane {
        let host_record = record.hosts.get(host);
        let failure = host_record.and_then(|h| {
            h.failed_step
                .as_ref()
                .map(|step| {
                    let mut text = format!("step {}", step.step);
                    if let Some(code) = step.exit_code {
                        text.push_str(&format!(" exited {code}"));
                    }
                    if !step.output_tail.is_empty() {
                        text.push_str(&format!(": {}", step.output_tail.trim_end()));
                    }
                    text
                })
                .or_else(|| {
                    h.outcome
                        .is_failure()
                        .then(|| h.detail.clone().unwrap_or_default())
                })
        });
        let mut own = spans.get(host).cloned().unwrap_or_default();
        own.sort_by(|a, b| a.from.total_cmp(&b.from));
        Lane {
            host: host.to_owned(),
            zone: zone_of(host),
            spans: own,
            outcome: host_record.map_or("pending", |h| h.outcome.label()),
            failure,
            failed_at: failed_at.get(host).copied(),
            // A host still out counts until the last record.
            out_of_service: host_record
                .map_or(0.0, |h| h.out_of_service_ms_until(last) as f64 / 1000.0),
        }
    };
    let batches = record
        .plan
        .iter()
        .map(|planned| {
            let (from, to) = batch_times.get(&planned.index).copied().unwrap_or_default();
            BatchRow {
                index: planned.index,
                zones: planned.zones.clone(),
                lanes: planned.hosts.iter().map(|host| lane(host)).collect(),
                from,
                to,
                ok: record.batches.get(&planned.index).copied(),
            }
        })
        .collect();
    let mut zones: Vec<String> = record
        .plan
        .iter()
        .flat_map(|batch| batch.zones.iter().cloned())
        .collect();
    zones.sort();
    zones.dedup();
    Timeline {
        run_id: run_id.to_owned(),
        playbook: record.playbook.clone(),
        outcome,
        reason: record.reason.clone(),
        started,
        length,
        max_unavailable,
        window_closes,
        batches,
        marks,
        capacity,
        zones,
    }
}

fn snapshot(at: f64, out_now: &BTreeMap<String, usize>) -> Capacity {
    Capacity {
        at,
        total: out_now.values().sum(),
        per_zone: out_now.clone(),
    }
}
