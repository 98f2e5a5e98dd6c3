//! `fleetroll report RUN_ID --html FILE`: one self-contained HTML page (inline
//! CSS and SVG, no script, nothing fetched) that shows a run: capacity over
//! time, every host's phases as coloured spans grouped by batch, failures
//! with their step, exit code and output tail on hover, and a summary.
//!
//! Batches fold into `<details>` rows once a run is large, so a 1,000-host
//! run opens as one line per batch and stays small (about 1 KB a host).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::timeline::{Lane, Timeline};
use crate::events::{Phase, RunOutcome};

/// Width of the host-name column and of the time axis, in pixels.
const LABEL: f64 = 210.0;
const AXIS: f64 = 960.0;
const ROW: f64 = 16.0;
/// Batches open by default up to this many hosts in the run.
const OPEN_UP_TO: usize = 60;

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.meta{color:#555;margin:0 0 8px}.bad{color:#b00020}.good{color:#1b7f3b}
svg{display:block}text{font:11px system-ui,sans-serif;fill:#333}
.axis line{stroke:#ccc}.lane{stroke:#eee}
.fail{fill:#d32f2f}
.mark{stroke:#555;stroke-dasharray:3 2}.mark.bad{stroke:#d32f2f}
.window{stroke:#b00020;stroke-width:2}.limit{stroke:#b00020;stroke-dasharray:6 3}
.total{fill:none;stroke:#222;stroke-width:1.5}.zone{fill:none;stroke-width:1}
details{border-top:1px solid #eee}summary{cursor:pointer;padding:2px 0}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.legend span{display:inline-block;width:12px;height:10px;margin:0 4px 0 12px;vertical-align:middle}
";

/// The phases drawn, with their colours (CSS classes and the legend).
const PHASES: [(Phase, &str); 6] = [
    (Phase::Checking, "#9e9e9e"),
    (Phase::Draining, "#f0a030"),
    (Phase::Updating, "#3b7dd8"),
    (Phase::Verifying, "#8e5bd0"),
    (Phase::Undraining, "#2aa198"),
    // In service, its real traffic watched ([watch]).
    (Phase::Watching, "#9ccc65"),
];

/// Zone line colours, cycled.
const ZONE_COLOURS: [&str; 6] = [
    "#3b7dd8", "#f0a030", "#2aa198", "#8e5bd0", "#d33682", "#859900",
];

/// The page for `timeline`.
pub fn render(timeline: &Timeline) -> String {
    let scale = Scale::of(timeline);
    let mut page = String::with_capacity(4096 + 1100 * timeline.lanes().count());
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>fleetroll run {id}</title><style>{STYLE}{phases}</style></head><body>\n\
         <h1>Run {id}: playbook {playbook}</h1>\n",
        id = escape(&timeline.run_id),
        playbook = escape(&timeline.playbook),
        phases = PHASES
            .iter()
            .map(|(phase, colour)| format!(".{}{{fill:{colour}}}", phase.label()))
            .collect::<String>(),
    );
    page.push_str(&header(timeline));
    page.push_str("<h2>Capacity: hosts out of service</h2>\n");
    page.push_str(&capacity_chart(timeline, &scale));
    page.push_str("<h2>Timeline</h2>\n");
    page.push_str(&legend());
    page.push_str(&axis(timeline, &scale));
    let open = timeline.lanes().count() <= OPEN_UP_TO;
    for batch in &timeline.batches {
        let failed = batch.lanes.iter().filter(|l| l.failure.is_some()).count();
        let _ = writeln!(
            page,
            "<details{}><summary>batch {} ({}): {}{}{}</summary>",
            if open || failed > 0 { " open" } else { "" },
            // Counted from 1, as the run's output and `status` count them.
            batch.index + 1,
            escape(&batch.zones.join(", ")),
            count(batch.lanes.len(), "host"),
            match (batch.from, batch.to) {
                (Some(from), Some(to)) =>
                    format!(", {} to {} ({})", clock(from), clock(to), clock(to - from)),
                (Some(from), None) => format!(", from {}, unfinished", clock(from)),
                _ => ", not started".to_owned(),
            },
            if failed > 0 {
                format!(", <span class=\"bad\">{failed} failed</span>")
            } else {
                String::new()
            },
        );
        page.push_str(&lanes(&batch.lanes, timeline, &scale));
        page.push_str("</details>\n");
    }
    page.push_str("<h2>Summary</h2>\n");
    page.push_str(&summary(timeline));
    page.push_str("</body></html>\n");
    page
}

/// Seconds to x.
struct Scale {
    per_second: f64,
}

impl Scale {
    fn of(timeline: &Timeline) -> Self {
        let end = timeline
            .length
            .max(
                timeline
                    .window_closes
                    .unwrap_or(0.0)
                    .min(timeline.length * 1.5),
            )
            .max(1.0);
        Scale {
            per_second: AXIS / end,
        }
    }

    fn x(&self, seconds: f64) -> f64 {
        LABEL + seconds * self.per_second
    }
}

fn header(timeline: &Timeline) -> String {
    let outcome = timeline.outcome.label().replace('_', " ");
    let class = if timeline.outcome == RunOutcome::Succeeded {
        "good"
    } else {
        "bad"
    };
    let mut text = format!("<p class=\"meta\">outcome <b class=\"{class}\">{outcome}</b>",);
    if let Some(started) = timeline.started {
        let whole = jiff::Timestamp::from_second(started.as_second()).unwrap_or(started);
        let _ = write!(text, " · started {whole}");
    }
    let _ = write!(
        text,
        " · {} in {} · length {}",
        count(timeline.lanes().count(), "host"),
        count(timeline.batches.len(), "batch"),
        clock(timeline.length)
    );
    if let Some(limit) = timeline.max_unavailable {
        let _ = write!(text, " · max_unavailable {limit}");
    }
    if let Some(reason) = &timeline.reason {
        let _ = write!(text, "<br>{}", escape(reason));
    }
    text.push_str("</p>\n");
    text
}

fn legend() -> String {
    let mut text = String::from("<p class=\"legend\">");
    for (phase, colour) in PHASES {
        let _ = write!(
            text,
            "<span style=\"background:{colour}\"></span>{}",
            phase.label()
        );
    }
    text.push_str(
        "<span style=\"background:#d32f2f\"></span>failed (hover a bar for details)</p>\n",
    );
    text
}

/// The time axis, with run-wide marks: gates, pauses, rollbacks, resumes
/// and the window's end.
fn axis(timeline: &Timeline, scale: &Scale) -> String {
    let height = 28.0;
    let mut svg = svg_open(height);
    svg.push_str("<g class=\"axis\">");
    for tick in ticks(timeline.length) {
        let x = scale.x(tick);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"14\" x2=\"{x:.1}\" y2=\"{height}\"/>\
             <text x=\"{x:.1}\" y=\"11\" text-anchor=\"middle\">{}</text>",
            clock(tick)
        );
    }
    svg.push_str("</g>");
    for mark in &timeline.marks {
        let x = scale.x(mark.at);
        let _ = write!(
            svg,
            "<line class=\"mark{}\" x1=\"{x:.1}\" y1=\"14\" x2=\"{x:.1}\" y2=\"{height}\"><title>{} at {}</title></line>",
            if mark.ok { "" } else { " bad" },
            escape(&mark.label),
            clock(mark.at)
        );
    }
    if let Some(closes) = timeline.window_closes {
        let x = scale.x(closes);
        let _ = write!(
            svg,
            "<line class=\"window\" x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{height}\"><title>the maintenance window closes at {}</title></line>",
            clock(closes)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Hosts out of service over time: the total in black, each zone in its
/// colour, `max_unavailable` dashed red.
fn capacity_chart(timeline: &Timeline, scale: &Scale) -> String {
    let top = timeline
        .capacity
        .iter()
        .map(|c| c.total)
        .max()
        .unwrap_or(0)
        .max(timeline.max_unavailable.unwrap_or(0))
        .max(1) as f64;
    let height = 120.0;
    let y = |count: f64| height - 6.0 - count / top * (height - 16.0);
    let mut svg = svg_open(height);
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{:.1}\">{top}</text><text x=\"4\" y=\"{:.1}\">0</text>",
        y(top) + 4.0,
        y(0.0) + 4.0
    );
    let step_path = |value: &dyn Fn(&super::timeline::Capacity) -> usize| {
        let mut path = format!("M{:.1} {:.1}", scale.x(0.0), y(0.0));
        let mut last = 0usize;
        for point in &timeline.capacity {
            let x = scale.x(point.at);
            let now = value(point);
            let _ = write!(path, "H{x:.1}V{:.1}", y(now as f64));
            last = now;
        }
        let _ = write!(
            path,
            "H{:.1}V{:.1}",
            scale.x(timeline.length),
            y(last as f64)
        );
        path
    };
    for (index, zone) in timeline.zones.iter().enumerate() {
        let _ = write!(
            svg,
            "<path class=\"zone\" stroke=\"{}\" d=\"{}\"><title>zone {}</title></path>",
            ZONE_COLOURS[index % ZONE_COLOURS.len()],
            step_path(&|point| point.per_zone.get(zone).copied().unwrap_or(0)),
            escape(zone)
        );
    }
    let _ = write!(
        svg,
        "<path class=\"total\" d=\"{}\"><title>all zones</title></path>",
        step_path(&|point| point.total)
    );
    if let Some(limit) = timeline.max_unavailable {
        let _ = write!(
            svg,
            "<line class=\"limit\" x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"><title>max_unavailable {limit}</title></line>",
            scale.x(0.0),
            scale.x(timeline.length),
            y = y(limit as f64)
        );
    }
    let mut legend = String::from("<p class=\"legend\">");
    legend.push_str("<span style=\"background:#222\"></span>all zones");
    for (index, zone) in timeline.zones.iter().enumerate() {
        let _ = write!(
            legend,
            "<span style=\"background:{}\"></span>{}",
            ZONE_COLOURS[index % ZONE_COLOURS.len()],
            escape(zone)
        );
    }
    if timeline.max_unavailable.is_some() {
        legend.push_str("<span style=\"background:#b00020\"></span>max_unavailable");
    }
    legend.push_str("</p>\n");
    svg.push_str("</svg>\n");
    svg + &legend
}

/// One row per host: its name and zone, its phases, its failure.
fn lanes(lanes: &[Lane], timeline: &Timeline, scale: &Scale) -> String {
    let height = ROW * lanes.len() as f64 + 4.0;
    let mut svg = svg_open(height);
    for (row, lane) in lanes.iter().enumerate() {
        let top = 2.0 + ROW * row as f64;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{:.1}\">{} <tspan fill=\"#888\">{}</tspan></text>\
             <line class=\"lane\" x1=\"{LABEL}\" y1=\"{mid:.1}\" x2=\"{:.1}\" y2=\"{mid:.1}\"/>",
            top + 11.0,
            escape(&lane.host),
            escape(&lane.zone),
            scale.x(timeline.length),
            mid = top + 7.0
        );
        for span in &lane.spans {
            let x = scale.x(span.from);
            let width = ((span.to - span.from) * scale.per_second).max(1.0);
            let _ = write!(
                svg,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"10\"><title>{} {}: {} to {} ({})</title></rect>",
                span.phase.label(),
                top + 2.0,
                escape(&lane.host),
                span.phase.label(),
                clock(span.from),
                clock(span.to),
                clock(span.to - span.from)
            );
        }
        if let Some(failure) = &lane.failure {
            let at = lane
                .failed_at
                .or_else(|| lane.spans.last().map(|s| s.to))
                .unwrap_or(0.0);
            let _ = write!(
                svg,
                "<rect class=\"fail\" x=\"{:.1}\" y=\"{top:.1}\" width=\"6\" height=\"14\"><title>{} {}: {}</title></rect>",
                scale.x(at) - 3.0,
                escape(&lane.host),
                lane.outcome,
                escape(failure)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Outcomes per zone, the longest time out of service, time to deploy.
fn summary(timeline: &Timeline) -> String {
    let mut per_zone: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut outcomes: Vec<&str> = Vec::new();
    for lane in timeline.lanes() {
        *per_zone
            .entry(&lane.zone)
            .or_default()
            .entry(lane.outcome)
            .or_default() += 1;
        if !outcomes.contains(&lane.outcome) {
            outcomes.push(lane.outcome);
        }
    }
    outcomes.sort_unstable();
    let mut table = String::from("<table><tr><th>zone</th>");
    for outcome in &outcomes {
        let _ = write!(table, "<th>{}</th>", outcome.replace('_', " "));
    }
    table.push_str("</tr>");
    for (zone, counts) in &per_zone {
        let _ = write!(table, "<tr><td>{}</td>", escape(zone));
        for outcome in &outcomes {
            let _ = write!(
                table,
                "<td>{}</td>",
                counts.get(outcome).copied().unwrap_or(0)
            );
        }
        table.push_str("</tr>");
    }
    table.push_str("</table>\n");
    let longest = timeline
        .lanes()
        .max_by(|a, b| a.out_of_service.total_cmp(&b.out_of_service));
    let mut text = table;
    text.push_str("<p>");
    if let Some(lane) = longest.filter(|lane| lane.out_of_service > 0.0) {
        let _ = write!(
            text,
            "Longest capacity loss: {} ({}), {} out of service. ",
            escape(&lane.host),
            escape(&lane.zone),
            clock(lane.out_of_service)
        );
    }
    let _ = writeln!(
        text,
        "Time to deploy: {}.</p>",
        if timeline.outcome == RunOutcome::Succeeded {
            clock(timeline.length)
        } else {
            format!(
                "none, the run {}",
                timeline.outcome.label().replace('_', " ")
            )
        }
    );
    let failures: Vec<&Lane> = timeline.lanes().filter(|l| l.failure.is_some()).collect();
    if !failures.is_empty() {
        text.push_str("<h2>Failures</h2>\n<table><tr><th>host</th><th>zone</th><th>outcome</th><th>why</th></tr>");
        for lane in failures {
            let _ = write!(
                text,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\"><pre>{}</pre></td></tr>",
                escape(&lane.host),
                escape(&lane.zone),
                lane.outcome,
                escape(lane.failure.as_deref().unwrap_or_default())
            );
        }
        text.push_str("</table>\n");
    }
    text
}

/// `1 host`, `4 hosts`, `2 batches`.
fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with('h')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

fn svg_open(height: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height:.0}\" viewBox=\"0 0 {w} {height:.0}\">",
        w = LABEL + AXIS + 10.0
    )
}

/// Round tick positions: about eight across the run.
fn ticks(length: f64) -> Vec<f64> {
    let raw = (length / 8.0).max(1.0);
    let step = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|step| *step >= raw)
    .unwrap_or(3600.0 * (raw / 3600.0).ceil());
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|t| *t <= length)
        .collect()
}

/// `42s`, `3m12s`, `1h02m` from seconds.
fn clock(seconds: f64) -> String {
    let whole = seconds.max(0.0).round() as u64;
    if seconds < 10.0 {
        format!("{seconds:.1}s")
    } else if whole < 60 {
        format!("{whole}s")
    } else if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "html_tests.rs"]
mod tests;
