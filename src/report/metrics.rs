//! The `--metrics-file`: a run's figures in the Prometheus text format (0.0.4) for node_exporter's textfile collector.
//!
//! Cron runs are alerted on from these gauges, so two things matter beyond
//! the format: every label value a query may select on is always present
//! (zeros included, so `== 0` works without `absent()`), and
//! `fleetroll_last_success_timestamp_seconds` survives failed runs, which is
//! what makes "no successful run for 8 days" alertable. The file is replaced
//! atomically because the collector may read it at any moment.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::events::{Outcome, RunOutcome};
use crate::report::summary::Summary;

const LAST_SUCCESS: &str = "fleetroll_last_success_timestamp_seconds";

/// Every run outcome, so that each gets a sample; `every_run_outcome_is_listed`
/// fails to compile when a variant is added without being listed here.
const RUN_OUTCOMES: [RunOutcome; 6] = [
    RunOutcome::Running,
    RunOutcome::Succeeded,
    RunOutcome::Halted,
    RunOutcome::RolledBack,
    RunOutcome::WindowClosed,
    RunOutcome::Interrupted,
];

/// Renders the metrics of a run that ended at `now` after `duration`.
///
/// `previous_file` is the current content of the metrics file, if any: a run
/// that did not succeed carries its last-success time over (from the sample
/// with the same `playbook` label), and the gauge is 0 when no run of this
/// playbook ever succeeded, so that a staleness alert fires for it too.
pub fn render(
    summary: &Summary,
    playbook: &str,
    now: Timestamp,
    duration: Duration,
    previous_file: Option<&str>,
) -> String {
    let playbook_label = format!("playbook=\"{}\"", escape_label(playbook));
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(Option<(&str, &str)>, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (extra, value) in samples {
            let extra = extra
                .map(|(key, value)| format!(",{key}=\"{}\"", escape_label(value)))
                .unwrap_or_default();
            let _ = writeln!(out, "{name}{{{playbook_label}{extra}}} {value}");
        }
    };

    let end = now.as_second() as f64;
    gauge(
        "fleetroll_last_run_timestamp_seconds",
        "Unix time at which the last run ended.",
        &[(None, end)],
    );
    let outcomes: Vec<_> = RUN_OUTCOMES
        .iter()
        .map(|&o| {
            let value = if o == summary.outcome { 1.0 } else { 0.0 };
            (Some(("outcome", o.label())), value)
        })
        .collect();
    gauge(
        "fleetroll_last_run_outcome",
        "1 for the outcome of the last run, 0 for the others.",
        &outcomes,
    );
    let last_success = if summary.outcome == RunOutcome::Succeeded {
        end
    } else {
        previous_file
            .and_then(|text| previous_last_success(text, playbook))
            .unwrap_or(0.0)
    };
    gauge(
        LAST_SUCCESS,
        "Unix time at which the last successful run ended; 0 if none did.",
        &[(None, last_success)],
    );
    let hosts: Vec<_> = Outcome::ALL
        .iter()
        .map(|o| {
            let count = summary.counts.get(o.label()).copied().unwrap_or(0);
            (Some(("outcome", o.label())), count as f64)
        })
        .collect();
    gauge(
        "fleetroll_hosts",
        "Hosts of the last run by outcome.",
        &hosts,
    );
    gauge(
        "fleetroll_run_duration_seconds",
        "Wall-clock duration of the last run.",
        &[(None, duration.as_secs_f64())],
    );
    gauge(
        "fleetroll_longest_capacity_loss_seconds",
        "Longest time one host of the last run spent out of its balancers.",
        &[(None, summary.longest_out_of_service_ms as f64 / 1000.0)],
    );
    let failed = summary
        .hosts
        .iter()
        .filter(|h| h.outcome.is_failure())
        .count();
    gauge(
        "fleetroll_failed_hosts",
        "Hosts of the last run that failed, were unreachable, unhealthy or timed out.",
        &[(None, failed as f64)],
    );
    out
}

/// Replaces `path` with `text` so that a reader sees the old file or the new
/// one, never a part: writes `PATH.tmp` in the same directory (a rename is
/// atomic only within one file system), fsyncs it, renames it over `path`,
/// then fsyncs the directory so the rename itself survives a crash. The
/// textfile collector reads only `*.prom`, so it never sees the temporary.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        // Best effort: the write already failed, and a stale temporary is
        // harmless next to the error being reported.
        let _ = fs::remove_file(&tmp);
        return Err(error);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
pub(crate) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The last-success value for `playbook` in a previously written file.
/// Anything unreadable is ignored: the file may be from an older version or
/// edited by hand, and a lost carry-over only makes an alert fire early.
fn previous_last_success(text: &str, playbook: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(LAST_SUCCESS)?.strip_prefix('{')?;
        let (labels, value) = split_labels(rest)?;
        let same_playbook = labels
            .iter()
            .any(|(key, value)| key == "playbook" && value == playbook);
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        (same_playbook && value.is_finite()).then_some(value)
    })
}

/// Parses `k="v",k2="v2"} rest` into the unescaped labels and `rest`.
fn split_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        text = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::summary::HostSummary;

    fn host(name: &str, outcome: Outcome, out_ms: u64) -> HostSummary {
        HostSummary {
            host: name.into(),
            zone: "eu-west-1a".into(),
            phase: "done".into(),
            outcome,
            out_of_service_ms: out_ms,
            still_out: false,
            failed_step: None,
            exit_code: None,
            output_tail: String::new(),
            detail: None,
        }
    }

    fn summary(outcome: RunOutcome, hosts: Vec<HostSummary>) -> Summary {
        let mut counts = BTreeMap::new();
        for h in &hosts {
            *counts.entry(h.outcome.label().to_owned()).or_default() += 1;
        }
        let longest = hosts.iter().max_by_key(|h| h.out_of_service_ms);
        Summary {
            run_id: "20261128T010000Z-ab12".into(),
            outcome,
            reason: None,
            longest_out_of_service_ms: longest.map_or(0, |h| h.out_of_service_ms),
            longest_out_of_service_host: longest.map(|h| h.host.clone()),
            hosts,
            zones: BTreeMap::new(),
            counts,
        }
    }

    /// `name{k="v",...} value` → (name, labels, value); a parser written
    /// independently of the renderer so the test checks the format, not
    /// itself. Also checks that every sample has HELP and TYPE before it.
    fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
        let mut typed = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(kind, "gauge");
                typed.push(name.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let open = line.find('{').unwrap();
            let close = line.rfind('}').unwrap();
            let name = line[..open].to_owned();
            assert!(typed.contains(&name), "{name} has no TYPE line");
            let mut labels = BTreeMap::new();
            let mut body = &line[open + 1..close];
            while !body.is_empty() {
                let eq = body.find("=\"").unwrap();
                let key = body[..eq].to_owned();
                let mut value = String::new();
                let mut escaped = false;
                let mut end = 0;
                for (i, c) in body[eq + 2..].char_indices() {
                    match (escaped, c) {
                        (true, 'n') => (value.push('\n'), escaped = false).1,
                        (true, c) => (value.push(c), escaped = false).1,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = eq + 2 + i + 1;
                            break;
                        }
                        (false, c) => value.push(c),
                    }
                }
                labels.insert(key, value);
                body = body[end..].trim_start_matches(',');
            }
            let value: f64 = line[close + 1..].trim().parse().unwrap();
            samples.push((name, labels, value));
        }
        samples
    }

    fn value(
        samples: &[(String, BTreeMap<String, String>, f64)],
        name: &str,
        outcome: Option<&str>,
    ) -> f64 {
        let found: Vec<_> = samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name && labels.get("outcome").map(String::as_str) == outcome
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {outcome:?}");
        found[0].2
    }

    const NOW: &str = "2026-11-28T03:00:00Z";

    #[test]
    fn render_succeeded_run() {
        let run = summary(
            RunOutcome::Succeeded,
            vec![
                host("web-01", Outcome::Updated, 12_500),
                host("web-02", Outcome::Updated, 9_000),
                host("web-03", Outcome::Skipped, 0),
            ],
        );
        let now: Timestamp = NOW.parse().unwrap();
        let text = render(
            &run,
            "patch-openssl",
            now,
            Duration::from_millis(95_250),
            None,
        );
        let samples = parse(&text);
        assert!(
            samples
                .iter()
                .all(|(_, labels, _)| labels["playbook"] == "patch-openssl")
        );
        let end = now.as_second() as f64;
        assert_eq!(
            value(&samples, "fleetroll_last_run_timestamp_seconds", None),
            end
        );
        assert_eq!(value(&samples, LAST_SUCCESS, None), end);
        for o in RUN_OUTCOMES {
            let expected = if o == RunOutcome::Succeeded { 1.0 } else { 0.0 };
            assert_eq!(
                value(&samples, "fleetroll_last_run_outcome", Some(o.label())),
                expected
            );
        }
        assert_eq!(value(&samples, "fleetroll_hosts", Some("updated")), 2.0);
        assert_eq!(value(&samples, "fleetroll_hosts", Some("skipped")), 1.0);
        assert_eq!(value(&samples, "fleetroll_hosts", Some("timed_out")), 0.0);
        let host_lines = samples.iter().filter(|s| s.0 == "fleetroll_hosts").count();
        assert_eq!(host_lines, Outcome::ALL.len());
        assert_eq!(
            value(&samples, "fleetroll_run_duration_seconds", None),
            95.25
        );
        assert_eq!(
            value(&samples, "fleetroll_longest_capacity_loss_seconds", None),
            12.5
        );
        assert_eq!(value(&samples, "fleetroll_failed_hosts", None), 0.0);
    }

    #[test]
    fn render_halted_run() {
        let run = summary(
            RunOutcome::Halted,
            vec![
                host("web-01", Outcome::Updated, 3_000),
                host("web-02", Outcome::Failed, 40_000),
                host("web-03", Outcome::Unreachable, 0),
                host("web-04", Outcome::Pending, 0),
            ],
        );
        let now: Timestamp = NOW.parse().unwrap();
        let text = render(&run, "patch-openssl", now, Duration::from_secs(60), None);
        let samples = parse(&text);
        assert_eq!(
            value(&samples, "fleetroll_last_run_outcome", Some("halted")),
            1.0
        );
        assert_eq!(
            value(&samples, "fleetroll_last_run_outcome", Some("succeeded")),
            0.0
        );
        // No previous file: never succeeded, so a staleness alert fires.
        assert_eq!(value(&samples, LAST_SUCCESS, None), 0.0);
        assert_eq!(value(&samples, "fleetroll_hosts", Some("failed")), 1.0);
        assert_eq!(value(&samples, "fleetroll_hosts", Some("unreachable")), 1.0);
        assert_eq!(value(&samples, "fleetroll_hosts", Some("pending")), 1.0);
        assert_eq!(value(&samples, "fleetroll_failed_hosts", None), 2.0);
        assert_eq!(
            value(&samples, "fleetroll_longest_capacity_loss_seconds", None),
            40.0
        );
    }

    #[test]
    fn last_success_carries_over_from_previous_file() {
        let earlier: Timestamp = "2026-11-21T03:00:00Z".parse().unwrap();
        let ok = summary(RunOutcome::Succeeded, vec![host("a", Outcome::Updated, 1)]);
        let first = render(
            &ok,
            "patch \"ssl\"\\x",
            earlier,
            Duration::from_secs(1),
            None,
        );
        // Another playbook's value in the same file must not be taken.
        let previous = format!("{LAST_SUCCESS}{{playbook=\"other\"}} 5\n{first}");

        let halted = summary(RunOutcome::Halted, vec![host("a", Outcome::Failed, 1)]);
        let now: Timestamp = NOW.parse().unwrap();
        let text = render(
            &halted,
            "patch \"ssl\"\\x",
            now,
            Duration::from_secs(1),
            Some(&previous),
        );
        let samples = parse(&text);
        assert_eq!(samples[0].1["playbook"], "patch \"ssl\"\\x");
        assert_eq!(
            value(&samples, LAST_SUCCESS, None),
            earlier.as_second() as f64
        );
        assert_eq!(
            value(&samples, "fleetroll_last_run_timestamp_seconds", None),
            now.as_second() as f64
        );

        let unrelated = render(
            &halted,
            "other-book",
            now,
            Duration::from_secs(1),
            Some(&first),
        );
        assert_eq!(value(&parse(&unrelated), LAST_SUCCESS, None), 0.0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleetroll.prom");
        fs::write(&path, "old\n").unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["fleetroll.prom"]);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn every_run_outcome_is_listed() {
        for o in RUN_OUTCOMES {
            // Exhaustive on purpose: a new variant breaks this match.
            match o {
                RunOutcome::Running
                | RunOutcome::Succeeded
                | RunOutcome::Halted
                | RunOutcome::RolledBack
                | RunOutcome::WindowClosed
                | RunOutcome::Interrupted => {}
            }
        }
        let labels: std::collections::BTreeSet<_> =
            RUN_OUTCOMES.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), RUN_OUTCOMES.len());
    }
}
