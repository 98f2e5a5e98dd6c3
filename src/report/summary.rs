//! The end-of-run summary: per host, per zone, for the run. Pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::events::{Outcome, RunOutcome};
use crate::journal::replay::RunRecord;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub outcome: RunOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub hosts: Vec<HostSummary>,
    /// Zone → outcome → count.
    pub zones: BTreeMap<String, BTreeMap<String, usize>>,
    /// The longest time one host spent out of its balancers.
    pub longest_out_of_service_ms: u64,
    pub longest_out_of_service_host: Option<String>,
    pub counts: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostSummary {
    pub host: String,
    pub zone: String,
    pub phase: String,
    pub outcome: Outcome,
    pub out_of_service_ms: u64,
    /// Still drained: a failed host stays out of service.
    pub still_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Summary {
    pub fn of(record: &RunRecord) -> Self {
        // A host still out when the run ended counts until its end.
        let ended = record.finished.as_deref().and_then(|ts| ts.parse().ok());
        let mut hosts = Vec::new();
        let mut zones: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (name, host) in &record.hosts {
            let zone = record.zone_of(name).unwrap_or("-").to_owned();
            *zones
                .entry(zone.clone())
                .or_default()
                .entry(host.outcome.label().to_owned())
                .or_default() += 1;
            *counts.entry(host.outcome.label().to_owned()).or_default() += 1;
            hosts.push(HostSummary {
                host: name.clone(),
                zone,
                phase: host.phase.label().to_owned(),
                outcome: host.outcome,
                out_of_service_ms: host.out_of_service_ms_until(ended),
                still_out: !host.drained.is_empty(),
                failed_step: host.failed_step.as_ref().map(|f| f.step.clone()),
                exit_code: host.failed_step.as_ref().and_then(|f| f.exit_code),
                output_tail: host
                    .failed_step
                    .as_ref()
                    .map(|f| f.output_tail.clone())
                    .unwrap_or_default(),
                detail: host.detail.clone(),
            });
        }
        let longest = hosts
            .iter()
            .max_by_key(|h| h.out_of_service_ms)
            .filter(|h| h.out_of_service_ms > 0);
        Self {
            run_id: record.run_id.clone(),
            outcome: record.outcome,
            reason: record.reason.clone(),
            longest_out_of_service_ms: longest.map_or(0, |h| h.out_of_service_ms),
            longest_out_of_service_host: longest.map(|h| h.host.clone()),
            hosts,
            zones,
            counts,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nrun {} {}{reason}",
            self.run_id,
            self.outcome.label()
        );
        let width = self
            .hosts
            .iter()
            .map(|h| h.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let zone_width = self
            .hosts
            .iter()
            .map(|h| h.zone.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "  {:<width$}  {:<zone_width$}  {:<11}  {:>14}  detail",
            "host", "zone", "outcome", "out of service"
        );
        for host in &self.hosts {
            let out_of_service = if host.still_out {
                "still out".to_owned()
            } else if host.out_of_service_ms > 0 {
                format!("{:.1}s", host.out_of_service_ms as f64 / 1000.0)
            } else {
                "-".to_owned()
            };
            let detail = match (&host.failed_step, host.exit_code) {
                (Some(step), Some(code)) => format!("step \"{step}\" exit {code}"),
                (Some(step), None) => format!("step \"{step}\""),
                _ => host.detail.clone().unwrap_or_default(),
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {:<zone_width$}  {:<11}  {:>14}  {detail}",
                host.host,
                host.zone,
                host.outcome.label(),
                out_of_service
            );
            if host.outcome.is_failure() && !host.output_tail.is_empty() {
                for line in host
                    .output_tail
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    let _ = writeln!(out, "      | {line}");
                }
            }
        }
        let zones: Vec<String> = self
            .zones
            .iter()
            .map(|(zone, counts)| {
                let parts: Vec<String> = counts.iter().map(|(o, n)| format!("{n} {o}")).collect();
                format!("{zone}: {}", parts.join(", "))
            })
            .collect();
        let _ = writeln!(out, "  per zone: {}", zones.join("; "));
        if let Some(host) = &self.longest_out_of_service_host {
            let _ = writeln!(
                out,
                "  longest capacity loss: {:.1}s ({host} out of service)",
                self.longest_out_of_service_ms as f64 / 1000.0
            );
        }
        out
    }
}
