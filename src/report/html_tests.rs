//! The report page: its structure for a fixed run (snapshot), its size and
//! shape at 1,000 hosts, and that it needs nothing from the network.

use super::*;
use crate::events::{Envelope, Event, Outcome, PlannedBatch, RunSettings};
use crate::report::timeline::timeline;

/// A run of `batches` batches of `per_batch` hosts in two zones, every
/// host 10 s drained; `failing` fails its step (and the run halts there).
fn journal(batches: usize, per_batch: usize, failing: Option<&str>) -> Vec<Envelope> {
    let start = 1_764_460_800; // 2025-11-30T00:00:00Z
    let mut second = start;
    let mut records = Vec::new();
    let mut push = |after: i64, event: Event| {
        second += after;
        records.push(Envelope {
            ts: jiff::Timestamp::from_second(second).unwrap().to_string(),
            run_id: "20251130T000000Z-0001".into(),
            event,
        });
    };
    let host = |batch: usize, n: usize| format!("web-{:04}", batch * per_batch + n);
    let zone = |n: usize| if n % 2 == 0 { "eu-1a" } else { "eu-1b" }.to_owned();
    let plan: Vec<PlannedBatch> = (0..batches)
        .map(|b| PlannedBatch {
            index: b,
            zones: vec!["eu-1a".into(), "eu-1b".into()],
            hosts: (0..per_batch).map(|n| host(b, n)).collect(),
            host_zones: (0..per_batch).map(zone).collect(),
        })
        .collect();
    push(
        0,
        Event::RunStarted {
            playbook: "patch".into(),
            hosts: batches * per_batch,
            batches,
            failure_budget: 0,
            settings: RunSettings {
                inventory: "/srv/inventory.toml".into(),
                playbook: "/srv/patch.toml".into(),
                var_names: vec![],
                limit: vec![],
                accept_new_host_keys: false,
            },
            plan,
            fingerprint: None,
            max_unavailable: Some(per_batch),
            window_closes_at: Some(
                jiff::Timestamp::from_second(start + 3600)
                    .unwrap()
                    .to_string(),
            ),
        },
    );
    let phase = |host: &str, phase: Phase, outcome: Option<Outcome>| Event::HostPhase {
        host: host.into(),
        phase,
        outcome,
        detail: None,
    };
    for b in 0..batches {
        push(
            1,
            Event::BatchStarted {
                index: b,
                zones: vec!["eu-1a".into(), "eu-1b".into()],
                hosts: (0..per_batch).map(|n| host(b, n)).collect(),
            },
        );
        let names: Vec<String> = (0..per_batch).map(|n| host(b, n)).collect();
        for name in &names {
            push(0, phase(name, Phase::Checking, None));
            push(0, phase(name, Phase::Draining, None));
            push(
                0,
                Event::Drain {
                    host: name.clone(),
                    balancer: "web".into(),
                },
            );
        }
        push(
            2,
            Event::Warning {
                host: None,
                message: "settled".into(),
            },
        );
        for name in &names {
            push(0, phase(name, Phase::Updating, None));
        }
        let mut failed = false;
        for name in &names {
            let ok = failing != Some(name.as_str());
            push(
                1,
                Event::StepFinished {
                    host: name.clone(),
                    step: "upgrade".into(),
                    index: 0,
                    exit_code: Some(if ok { 0 } else { 100 }),
                    duration_ms: 5000,
                    ok,
                    output_tail: if ok {
                        String::new()
                    } else {
                        "E: <dpkg> was interrupted & left half-configured\n".into()
                    },
                    rollback: false,
                },
            );
            if ok {
                push(0, phase(name, Phase::Verifying, None));
            } else {
                failed = true;
                push(0, phase(name, Phase::Failed, Some(Outcome::Failed)));
            }
        }
        for name in &names {
            if failing == Some(name.as_str()) {
                continue;
            }
            push(2, phase(name, Phase::Undraining, None));
            push(
                0,
                Event::Undrained {
                    host: name.clone(),
                    balancer: "web".into(),
                },
            );
            push(0, phase(name, Phase::Done, Some(Outcome::Updated)));
        }
        push(
            1,
            Event::BatchFinished {
                index: b,
                ok: !failed,
            },
        );
        if failed {
            break;
        }
        push(
            0,
            Event::Gate {
                name: "error-rate".into(),
                ok: true,
                detail: "0.1 % < 1 %".into(),
                batch: Some(b),
            },
        );
        push(
            5,
            Event::Pause {
                seconds: 5,
                next_batch: b + 1,
            },
        );
    }
    let outcome = if failing.is_some() {
        RunOutcome::Halted
    } else {
        RunOutcome::Succeeded
    };
    push(
        1,
        Event::RunFinished {
            outcome,
            updated: 0,
            failed: 0,
            skipped: 0,
            duration_ms: 0,
            reason: failing.map(|host| format!("{host} failed; the failure budget (0) is spent")),
        },
    );
    records
}

fn page(batches: usize, per_batch: usize, failing: Option<&str>) -> String {
    let records = journal(batches, per_batch, failing);
    let outcome = if failing.is_some() {
        RunOutcome::Halted
    } else {
        RunOutcome::Succeeded
    };
    render(&timeline("20251130T000000Z-0001", &records, outcome))
}

#[test]
fn the_page_of_a_halted_run_keeps_its_structure() {
    insta::assert_snapshot!(page(2, 2, Some("web-0003")));
}

#[test]
fn a_failure_shows_its_step_exit_code_and_output_escaped() {
    let html = page(2, 2, Some("web-0003"));
    assert!(
        html.contains(
            "web-0003 failed: step upgrade exited 100: E: &lt;dpkg&gt; was interrupted &amp; left half-configured"
        ),
        "{html}"
    );
    assert!(!html.contains("<dpkg>"));
    // The failed batch is open; the reason is in the header.
    assert!(html.contains("<details open><summary>batch 1"), "{html}");
    assert!(html.contains("the failure budget (0) is spent"));
}

#[test]
fn the_page_fetches_nothing_and_runs_no_script() {
    let html = page(3, 4, None);
    for forbidden in ["<script", "src=", "href=", "url(", "@import", "https:"] {
        assert!(!html.contains(forbidden), "{forbidden} in the page");
    }
    // The only URL is SVG's namespace, which is a name, not a fetch.
    assert_eq!(
        html.matches("http://").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
}

#[test]
fn a_thousand_host_run_folds_its_batches_and_stays_under_2_mb() {
    let html = page(10, 100, None);
    assert!(html.len() < 2 * 1024 * 1024, "{} bytes", html.len());
    assert_eq!(html.matches("<details>").count(), 10, "every batch folded");
    assert_eq!(html.matches("<details open>").count(), 0);
    // Every host has its row, every phase its bar.
    assert_eq!(html.matches("<rect class=\"updating\"").count(), 1000);
    assert!(html.contains("1000 hosts in 10 batches"));
}

#[test]
fn capacity_is_drawn_per_zone_against_max_unavailable() {
    let records = journal(2, 4, None);
    let line = timeline("r", &records, RunOutcome::Succeeded);
    let peak = line.capacity.iter().map(|c| c.total).max();
    assert_eq!(peak, Some(4));
    assert!(
        line.capacity
            .iter()
            .all(|c| c.per_zone.values().all(|n| *n <= 2))
    );
    assert_eq!(line.capacity.last().map(|c| c.total), Some(0));
    let html = render(&line);
    assert!(html.contains("<title>max_unavailable 4</title>"));
    assert!(html.contains("<title>zone eu-1a</title>"));
    assert!(html.contains("the maintenance window closes at"));
}
