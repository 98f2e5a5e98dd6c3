//! The `plan` command's output: a table for people, one JSON object for machines.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::batches::Plan;
use super::estimate::Estimate;
use crate::model::duration::human_duration;
use crate::model::inventory::{Host, Inventory};
use crate::model::playbook::{Playbook, Window, ZoneMode};

/// Everything the renderers need, gathered once.
#[derive(Debug)]
pub struct PlanView<'a> {
    pub plan: &'a Plan,
    pub playbook: &'a Playbook,
    pub inventory: &'a Inventory,
    /// The inventory's hosts in file order; `HostId` indexes this.
    pub hosts: Vec<&'a Host>,
    pub estimate: Estimate,
    /// When the plan is shown, for "the window opens in 2d 3h"; none in
    /// snapshot tests, where the clock would make the output change.
    pub now: Option<jiff::Timestamp>,
    /// One line per `[sources]` entry resolved against AWS.
    pub discovered: Vec<String>,
}

impl<'a> PlanView<'a> {
    pub fn new(plan: &'a Plan, playbook: &'a Playbook, inventory: &'a Inventory) -> Self {
        Self {
            plan,
            playbook,
            inventory,
            hosts: inventory.hosts().collect(),
            estimate: Estimate::of(plan, playbook),
            now: None,
            discovered: Vec::new(),
        }
    }

    fn host(&self, id: super::batches::HostId) -> &'a Host {
        self.hosts[id.0 as usize]
    }

    /// The balancers a batch drains from, in first-use order.
    fn balancers(&self, batch: &super::batches::Batch) -> Vec<&'a str> {
        let mut names: Vec<&str> = Vec::new();
        for &id in &batch.hosts {
            for name in &self.host(id).balancers {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }
}

#[derive(Debug, Serialize)]
struct JsonPlan<'a> {
    playbook: &'a str,
    hosts: usize,
    failure_budget: usize,
    max_unavailable: usize,
    estimated_s: f64,
    window: Option<JsonWindow>,
    window_fits: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_next: Option<String>,
    unresolved_sources: Vec<&'a str>,
    discovered: &'a [String],
    batches: Vec<JsonBatch<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonWindow {
    days: Vec<&'static str>,
    start: String,
    end: String,
    timezone: String,
    length_s: u64,
}

#[derive(Debug, Serialize)]
struct JsonBatch<'a> {
    index: usize,
    zones: &'a [String],
    hosts: Vec<&'a str>,
    balancers: Vec<&'a str>,
}

pub fn render_json(view: &PlanView<'_>) -> String {
    let total = view.estimate.total();
    let json = JsonPlan {
        playbook: &view.playbook.name,
        hosts: view.plan.selected,
        failure_budget: view.plan.failure_budget,
        max_unavailable: view.plan.max_unavailable,
        estimated_s: total.as_secs_f64(),
        window: view.playbook.window.as_ref().map(|w| JsonWindow {
            days: w.days.iter().map(|d| day_name(*d)).collect(),
            start: clock(w.start),
            end: clock(w.end),
            timezone: w.timezone.clone(),
            length_s: w.length().as_secs(),
        }),
        window_fits: view.playbook.window.as_ref().map(|w| total <= w.length()),
        window_next: view
            .playbook
            .window
            .as_ref()
            .zip(view.now)
            .map(|(w, now)| super::window::describe_next(w, now)),
        unresolved_sources: view
            .inventory
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .collect(),
        discovered: &view.discovered,
        batches: view
            .plan
            .batches
            .iter()
            .map(|batch| JsonBatch {
                index: batch.index,
                zones: &batch.zones,
                hosts: batch
                    .hosts
                    .iter()
                    .map(|&id| view.host(id).name.as_str())
                    .collect(),
                balancers: view.balancers(batch),
            })
            .collect(),
    };
    serde_json::to_string(&json).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
}

/// Hosts listed per batch line before the rest are summarised.
const HOSTS_SHOWN: usize = 6;

pub fn render_human(view: &PlanView<'_>) -> String {
    let plan = view.plan;
    let playbook = view.playbook;
    let strategy = &playbook.strategy;
    let zones_used = {
        let mut names: Vec<&str> = Vec::new();
        for zone in plan.batches.iter().flat_map(|b| &b.zones) {
            if !names.contains(&zone.as_str()) {
                names.push(zone);
            }
        }
        names.len()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for {}: {} in {}, {}",
        playbook.name,
        count(plan.selected, "host"),
        count(zones_used, "zone"),
        count(plan.batches.len(), "batch"),
    );
    if plan.batches.is_empty() {
        // Limits and estimates of an empty plan would read like real figures.
        write_sources(&mut out, view);
        let _ = writeln!(out, "\nno hosts to plan");
        return out;
    }
    let sizes: Vec<String> = strategy.batch.iter().map(ToString::to_string).collect();
    let mode = match strategy.zones {
        ZoneMode::OneAtATime => "one zone at a time",
        ZoneMode::Spread => "spread across zones",
    };
    let pause = if strategy.pause.is_zero() {
        String::new()
    } else {
        format!(", {} pause between batches", human_duration(strategy.pause))
    };
    let _ = writeln!(
        out,
        "  batches       {mode}; sizes {}{pause}",
        sizes.join(", ")
    );
    let mut capacity = match strategy.max_unavailable {
        Some(cap) => format!(
            "at most {} out of service at once (max_unavailable {cap})",
            count(plan.max_unavailable, "host")
        ),
        None => "no fleet-wide cap (max_unavailable not set)".to_owned(),
    };
    if let (Some(cap), Some(zone_caps)) = (strategy.max_unavailable_per_zone, &plan.zone_caps) {
        let _ = write!(capacity, "; per zone {cap}: {}", per_zone_list(zone_caps));
    }
    let _ = writeln!(out, "  capacity      {capacity}");
    let _ = writeln!(
        out,
        "  failure       {}",
        failure_sentence(plan.failure_budget, plan.selected)
    );
    if let Some(zones) = &plan.zone_failure_budgets {
        let _ = writeln!(
            out,
            "                per zone, failed hosts tolerated: {}",
            per_zone_list(zones)
        );
    }
    let estimate = &view.estimate;
    let _ = writeln!(
        out,
        "  estimate      {} ({} per batch: settle {}, steps {}, health {}{}{})",
        human_duration(estimate.total()),
        human_duration(estimate.per_batch()),
        human_duration(estimate.settle),
        human_duration(estimate.steps),
        human_duration(estimate.health),
        if estimate.watch.is_zero() {
            String::new()
        } else {
            format!(", watch {}", human_duration(estimate.watch))
        },
        if estimate.batches > 1 && !estimate.pause.is_zero() {
            format!(
                "; pauses {}",
                human_duration(estimate.pause * (estimate.batches as u32 - 1))
            )
        } else {
            String::new()
        },
    );
    if let Some(window) = &playbook.window {
        let _ = writeln!(
            out,
            "  window        {}",
            window_sentence(window, estimate.total())
        );
        if let Some(now) = view.now {
            let _ = writeln!(
                out,
                "                {}",
                super::window::describe_next(window, now)
            );
        }
    }
    write_sources(&mut out, view);

    let rows: Vec<[String; 5]> = plan
        .batches
        .iter()
        .map(|batch| {
            let names: Vec<&str> = batch
                .hosts
                .iter()
                .map(|&id| view.host(id).name.as_str())
                .collect();
            let shown = if names.len() <= HOSTS_SHOWN {
                names.join(" ")
            } else {
                format!(
                    "{} … {}",
                    names[..HOSTS_SHOWN - 1].join(" "),
                    names[names.len() - 1]
                )
            };
            let balancers = view.balancers(batch);
            [
                (batch.index + 1).to_string(),
                zone_list(&batch.zones),
                names.len().to_string(),
                if balancers.is_empty() {
                    "-".to_owned()
                } else {
                    balancers.join(",")
                },
                shown,
            ]
        })
        .collect();
    let header = ["batch", "zone", "hosts", "balancers", "names"];
    let widths: Vec<usize> = (0..4)
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .chain([header[col].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:>w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
        header[0],
        header[1],
        header[2],
        header[3],
        header[4],
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2],
        w3 = widths[3]
    );
    for row in &rows {
        let line = format!(
            "  {:>w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// What became of `[sources]`: discovered, or left out with --offline.
fn write_sources(out: &mut String, view: &PlanView<'_>) {
    for line in &view.discovered {
        let _ = writeln!(out, "  source        {line}");
    }
    for source in &view.inventory.sources {
        let _ = writeln!(
            out,
            "  source        {} ({}): not contacted (--offline); its hosts are not in this plan",
            source.name,
            source.kind.describe()
        );
    }
}

/// Zones of one batch; past three, only how many.
fn zone_list(zones: &[String]) -> String {
    if zones.len() <= 3 {
        zones.join(",")
    } else {
        format!("{} zones", zones.len())
    }
}

/// "a 2, b 3", or "200 in each of 10 zones" when every zone has the same.
fn per_zone_list(values: &[(String, usize)]) -> String {
    match values {
        [(_, first), rest @ ..] if !rest.is_empty() && rest.iter().all(|(_, n)| n == first) => {
            format!("{first} in each of {} zones", values.len())
        }
        _ => values
            .iter()
            .map(|(zone, n)| format!("{zone} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// "2 of 40 hosts may fail; the 3rd failure halts the run".
pub fn failure_sentence(budget: usize, hosts: usize) -> String {
    if budget == 0 {
        return format!("halts on the first failed host of {hosts} (max_failed 0)");
    }
    format!(
        "halts after {budget} failed {} of {hosts}: the {} failure stops the run",
        if budget == 1 { "host" } else { "hosts" },
        ordinal(budget + 1)
    )
}

fn window_sentence(window: &Window, estimate: Duration) -> String {
    let days = if window.days.is_empty() {
        "every day".to_owned()
    } else {
        window
            .days
            .iter()
            .map(|d| day_name(*d))
            .collect::<Vec<_>>()
            .join(",")
    };
    let length = window.length();
    let verdict = if estimate <= length {
        format!(
            "the estimate fits ({} of {})",
            human_duration(estimate),
            human_duration(length)
        )
    } else {
        format!(
            "the estimate does NOT fit ({} for a {} window): the run will stop at the window's end and continue with `resume`",
            human_duration(estimate),
            human_duration(length)
        )
    };
    format!(
        "{days} {}–{} {}; {verdict}",
        clock(window.start),
        clock(window.end),
        window.timezone
    )
}

fn day_name(day: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match day {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
}

fn clock(time: jiff::civil::Time) -> String {
    format!("{:02}:{:02}", time.hour(), time.minute())
}

fn count(n: usize, noun: &str) -> String {
    let plural = match noun {
        "batch" => "batches".to_owned(),
        _ => format!("{noun}s"),
    };
    format!("{n} {}", if n == 1 { noun } else { &plural })
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
