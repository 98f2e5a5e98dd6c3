//! The live view: a fixed event sequence and what it draws (snapshots),
//! and a status area that does not grow with the fleet.

use super::*;
use crate::events::{PlannedBatch, RunSettings};

fn at(second: i64, event: Event) -> Envelope {
    Envelope {
        ts: Timestamp::from_second(1_764_460_800 + second)
            .unwrap()
            .to_string(),
        run_id: "20251130T000000Z-0001".into(),
        event,
    }
}

fn started(hosts: &[(&str, &str)], per_batch: usize) -> Envelope {
    let plan = hosts
        .chunks(per_batch)
        .enumerate()
        .map(|(index, chunk)| PlannedBatch {
            index,
            zones: {
                let mut zones: Vec<String> = chunk.iter().map(|(_, z)| (*z).to_owned()).collect();
                zones.dedup();
                zones
            },
            hosts: chunk.iter().map(|(h, _)| (*h).to_owned()).collect(),
            host_zones: chunk.iter().map(|(_, z)| (*z).to_owned()).collect(),
        })
        .collect::<Vec<_>>();
    at(
        0,
        Event::RunStarted {
            playbook: "patch".into(),
            hosts: hosts.len(),
            batches: plan.len(),
            failure_budget: 1,
            settings: RunSettings {
                inventory: "inv.toml".into(),
                playbook: "play.toml".into(),
                var_names: vec![],
                limit: vec![],
                accept_new_host_keys: false,
            },
            plan,
            fingerprint: None,
            max_unavailable: Some(per_batch),
            window_closes_at: Some(
                Timestamp::from_second(1_764_460_800 + 3600)
                    .unwrap()
                    .to_string(),
            ),
        },
    )
}

fn phase(second: i64, host: &str, phase: Phase, outcome: Option<Outcome>) -> Envelope {
    at(
        second,
        Event::HostPhase {
            host: host.into(),
            phase,
            outcome,
            detail: (outcome == Some(Outcome::Failed)).then(|| "step upgrade exited 100".into()),
        },
    )
}

#[test]
fn a_fixed_run_draws_one_line_per_finished_host_and_a_status_area() {
    let hosts = [
        ("web-01", "eu-1a"),
        ("web-02", "eu-1b"),
        ("web-03", "eu-1a"),
    ];
    let events = vec![
        started(&hosts, 2),
        at(
            1,
            Event::BatchStarted {
                index: 0,
                zones: vec!["eu-1a".into(), "eu-1b".into()],
                hosts: vec!["web-01".into(), "web-02".into()],
            },
        ),
        phase(1, "web-01", Phase::Checking, None),
        phase(1, "web-02", Phase::Checking, None),
        phase(2, "web-01", Phase::Draining, None),
        phase(2, "web-02", Phase::Draining, None),
        phase(3, "web-01", Phase::Updating, None),
        phase(3, "web-02", Phase::Updating, None),
        at(
            8,
            Event::StepFinished {
                host: "web-02".into(),
                step: "upgrade".into(),
                index: 0,
                exit_code: Some(100),
                duration_ms: 5000,
                ok: false,
                output_tail: "E: dpkg was interrupted\n".into(),
                rollback: false,
            },
        ),
        phase(8, "web-02", Phase::Failed, Some(Outcome::Failed)),
        phase(9, "web-01", Phase::Verifying, None),
    ];
    let mut view = LiveView::default();
    let printed: Vec<String> = events.iter().filter_map(|e| view.apply(e)).collect();
    let now = Timestamp::from_second(1_764_460_800 + 12).unwrap();
    let status = view.status(now, 100);
    insta::assert_snapshot!(format!(
        "--- printed above\n{}\n--- status area\n{}",
        printed.join("\n"),
        status.join("\n")
    ));
}

#[test]
fn the_status_area_stays_small_at_a_thousand_hosts() {
    let names: Vec<String> = (0..1000).map(|n| format!("web-{n:04}")).collect();
    let hosts: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .map(|(n, name)| (name.as_str(), if n % 2 == 0 { "eu-1a" } else { "eu-1b" }))
        .collect();
    let mut view = LiveView::default();
    view.apply(&started(&hosts, 100));
    let mut printed = 0;
    for (n, (host, _)) in hosts.iter().enumerate().take(150) {
        view.apply(&phase(1, host, Phase::Updating, None));
        if n < 100 {
            printed += usize::from(
                view.apply(&phase(5, host, Phase::Done, Some(Outcome::Updated)))
                    .is_some(),
            );
        }
    }
    assert_eq!(printed, 100, "one line per finished host");
    let status = view.status(Timestamp::from_second(1_764_460_800 + 6).unwrap(), 80);
    assert!(status.len() <= 3 + IN_FLIGHT_ROWS + 1, "{status:#?}");
    assert!(
        status.iter().all(|line| line.chars().count() <= 80),
        "{status:#?}"
    );
    assert!(
        status[0].contains("100/1000 done (100 updated) · 50 in flight"),
        "{}",
        status[0]
    );
    assert_eq!(status.last().unwrap(), "  … and 42 more in flight");
    assert!(
        status[1].contains("eu-1a 50/500  eu-1b 50/500"),
        "{}",
        status[1]
    );
}
