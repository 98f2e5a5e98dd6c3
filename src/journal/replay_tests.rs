//! Replay: every prefix of a journal folds into a consistent record.

use proptest::prelude::{ProptestConfig, prop_assert, proptest};

use super::*;

fn envelope(ts: &str, event: Event) -> Envelope {
    Envelope {
        ts: ts.to_owned(),
        run_id: "r1".to_owned(),
        event,
    }
}

fn phase(host: &str, phase: Phase, outcome: Option<Outcome>) -> Event {
    Event::HostPhase {
        host: host.into(),
        phase,
        outcome,
        detail: None,
    }
}

/// A complete two-host run: h1 updated, h2 fails its step and stays drained.
fn journal() -> Vec<Envelope> {
    let settings = RunSettings {
        inventory: "inv.toml".into(),
        playbook: "play.toml".into(),
        var_names: vec![],
        limit: vec![],
        accept_new_host_keys: false,
    };
    vec![
        envelope(
            "2026-01-01T00:00:00Z",
            Event::RunStarted {
                playbook: "p".into(),
                hosts: 2,
                batches: 1,
                failure_budget: 1,
                settings,
                plan: vec![PlannedBatch {
                    index: 0,
                    zones: vec!["a".into()],
                    hosts: vec!["h1".into(), "h2".into()],
                    host_zones: Vec::new(),
                }],
                fingerprint: None,
                max_unavailable: None,
                window_closes_at: None,
            },
        ),
        envelope("2026-01-01T00:00:01Z", phase("h1", Phase::Draining, None)),
        envelope(
            "2026-01-01T00:00:01Z",
            Event::Drain {
                host: "h1".into(),
                balancer: "web".into(),
            },
        ),
        envelope(
            "2026-01-01T00:00:01Z",
            Event::Drain {
                host: "h2".into(),
                balancer: "web".into(),
            },
        ),
        envelope(
            "2026-01-01T00:00:02Z",
            Event::StepFinished {
                host: "h1".into(),
                step: "s".into(),
                index: 0,
                exit_code: Some(0),
                duration_ms: 5,
                ok: true,
                output_tail: String::new(),
                rollback: false,
            },
        ),
        envelope(
            "2026-01-01T00:00:02Z",
            Event::StepFinished {
                host: "h2".into(),
                step: "s".into(),
                index: 0,
                exit_code: Some(3),
                duration_ms: 5,
                ok: false,
                output_tail: "boom".into(),
                rollback: false,
            },
        ),
        envelope(
            "2026-01-01T00:00:03Z",
            phase("h2", Phase::Failed, Some(Outcome::Failed)),
        ),
        envelope(
            "2026-01-01T00:00:05Z",
            Event::Undrained {
                host: "h1".into(),
                balancer: "web".into(),
            },
        ),
        envelope(
            "2026-01-01T00:00:05Z",
            phase("h1", Phase::Done, Some(Outcome::Updated)),
        ),
        envelope(
            "2026-01-01T00:00:06Z",
            Event::RunFinished {
                outcome: RunOutcome::Succeeded,
                updated: 1,
                failed: 1,
                skipped: 0,
                duration_ms: 6000,
                reason: None,
            },
        ),
    ]
}

#[test]
fn a_full_journal_replays_to_the_final_state() {
    let run = replay("r1", &journal());
    let h1 = &run.hosts["h1"];
    assert_eq!(
        (h1.outcome, h1.steps_done, h1.drained.len()),
        (Outcome::Updated, 1, 0)
    );
    assert_eq!(h1.out_of_service_ms, 4000);
    let h2 = &run.hosts["h2"];
    assert_eq!(h2.outcome, Outcome::Failed);
    assert_eq!(h2.drained, ["web"]);
    assert_eq!(h2.failed_step.as_ref().unwrap().exit_code, Some(3));
    assert_eq!(run.outcome, RunOutcome::Succeeded);
    assert_eq!(run.failures(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Cut anywhere (as a kill -9 would), the journal still replays, and what
    /// it says only ever moves forward: a host drained in the prefix is
    /// either still drained or was undrained later in the full journal.
    #[test]
    fn every_prefix_replays_consistently(cut in 0usize..=10) {
        let full = journal();
        let prefix = replay("r1", &full[..cut]);
        let whole = replay("r1", &full);
        for (name, host) in &prefix.hosts {
            let end = &whole.hosts[name];
            prop_assert!(host.steps_done <= end.steps_done);
            if host.is_settled() {
                prop_assert!(end.outcome == host.outcome);
            }
        }
        if cut < full.len() {
            prop_assert!(prefix.outcome == RunOutcome::Running);
        }
    }
}

#[test]
fn a_balancers_drain_memory_lives_until_the_host_is_back() {
    let memory = Event::DrainMemory {
        host: "h1".into(),
        balancer: "alb".into(),
        memory: "[{\"target_group_arn\":\"arn:x\",\"id\":\"i-1\",\"port\":80}]".into(),
    };
    let mut records = journal()[..2].to_vec();
    records.push(envelope(
        "2026-01-01T00:00:01Z",
        Event::Drain {
            host: "h1".into(),
            balancer: "alb".into(),
        },
    ));
    records.push(envelope("2026-01-01T00:00:01Z", memory));
    let drained = replay("r1", &records);
    assert_eq!(drained.hosts["h1"].drain_memory.len(), 1);
    assert_eq!(drained.hosts["h1"].drain_memory[0].0, "alb");
    records.push(envelope(
        "2026-01-01T00:00:09Z",
        Event::Undrained {
            host: "h1".into(),
            balancer: "alb".into(),
        },
    ));
    assert!(replay("r1", &records).hosts["h1"].drain_memory.is_empty());
}

#[test]
fn the_fingerprint_is_kept_and_a_started_rollback_step_is_noticed() {
    let fingerprint = crate::events::PlaybookFingerprint {
        sha256: "ab".into(),
        steps: Vec::new(),
        rollback: Vec::new(),
    };
    let mut records = journal();
    if let Event::RunStarted {
        fingerprint: print, ..
    } = &mut records[0].event
    {
        *print = Some(fingerprint.clone());
    }
    let run = replay("r1", &records);
    assert_eq!(run.fingerprint, Some(fingerprint));
    assert!(!run.rollback_steps_started, "forward steps only");
    let rollback_step = |rollback| Event::StepStarted {
        host: "h2".into(),
        step: "undo".into(),
        index: 0,
        attempt: 1,
        rollback,
    };
    records.push(envelope("2026-01-01T00:00:07Z", rollback_step(true)));
    records.push(envelope("2026-01-01T00:00:08Z", rollback_step(false)));
    assert!(replay("r1", &records).rollback_steps_started);
}

/// Surges of one group: a later surge record of the same process settles
/// the earlier ones (their capacity change was made before it); one of a
/// later process does not (the earlier one may have been killed between its
/// record and its change). Each remembers the surges under way when it was
/// recorded, and a finished replacement remembers its group.
#[test]
fn surges_settle_within_one_process_only() {
    let surge = |host: &str, old: &str, desired: u32| Event::Replacing {
        host: host.into(),
        group: "g".into(),
        old_instance: old.into(),
        members: vec!["o1".into(), "o2".into(), "o3".into()],
        surge_desired: Some(desired),
    };
    let mut records = journal()[..1].to_vec();
    records.push(envelope("2026-01-01T00:00:01Z", surge("h1", "o1", 4)));
    records.push(envelope("2026-01-01T00:00:02Z", surge("h2", "o2", 5)));
    records.push(envelope(
        "2026-01-01T00:00:03Z",
        Event::RunResumed {
            pending: 2,
            rollback: false,
        },
    ));
    records.push(envelope("2026-01-01T00:00:04Z", surge("h3", "o3", 6)));
    records.push(envelope(
        "2026-01-01T00:00:05Z",
        Event::Replaced {
            host: "h1".into(),
            index: 0,
            old_instance: "o1".into(),
            new_instance: "n1".into(),
            zone: "a".into(),
        },
    ));
    let record = replay("r1", &records);
    let replacing = |host: &str| record.hosts[host].replacing.clone();
    assert_eq!(record.hosts["h1"].replaced_in.as_deref(), Some("g"));
    assert!(replacing("h1").is_none());
    let h2 = replacing("h2").unwrap();
    assert!(
        !h2.surge_settled,
        "the next surge record came from a later process"
    );
    assert_eq!(h2.pending_olds, ["o1"]);
    let h3 = replacing("h3").unwrap();
    assert!(!h3.surge_settled);
    assert_eq!(h3.pending_olds, ["o1", "o2"]);
    // Within the first process, h2's record settled h1's surge.
    let first = replay("r1", &records[..3]);
    assert!(first.hosts["h1"].replacing.as_ref().unwrap().surge_settled);
}

/// A host the run drained that failed before its first step is unchanged:
/// `rollback` returns it (it used to be left out, and the rollback exited
/// 0 with it out of service); one whose step ran is rolled back instead.
#[test]
fn a_host_that_failed_before_its_first_step_is_only_returned_by_rollback() {
    let mut records = journal()[..1].to_vec();
    records.push(envelope(
        "2026-01-01T00:00:01Z",
        Event::Drain {
            host: "h1".into(),
            balancer: "web".into(),
        },
    ));
    records.push(envelope(
        "2026-01-01T00:00:02Z",
        phase("h1", Phase::Failed, Some(Outcome::Failed)),
    ));
    let record = replay("r1", &records);
    let h1 = &record.hosts["h1"];
    assert!(h1.out_unchanged() && !h1.to_roll_back());
    let full = replay("r1", &journal());
    let h2 = &full.hosts["h2"];
    assert!(h2.outcome.is_failure() && !h2.drained.is_empty());
    assert!(!h2.out_unchanged() && h2.to_roll_back(), "its step ran");
}

/// Issue 20: the words of `status` and the summary. A batch whose end
/// record says ok (a resume's) but whose host failed is not "ok"; a host
/// still drained has been out of service since its drain, not 0 ms.
#[test]
fn a_batch_with_a_failed_host_is_not_ok_and_a_host_still_out_counts_its_time() {
    let mut records = journal();
    records.insert(
        records.len() - 1,
        envelope(
            "2026-01-01T00:00:05Z",
            Event::BatchFinished { index: 0, ok: true },
        ),
    );
    let run = replay("r1", &records);
    assert_eq!(
        run.batch_verdict(&run.plan[0]),
        BatchVerdict::HostsFailed(1)
    );
    let h2 = &run.hosts["h2"];
    assert_eq!(h2.out_of_service_ms, 0, "no spell of it ended");
    let end: jiff::Timestamp = "2026-01-01T00:00:06Z".parse().unwrap();
    // Drained at 00:00:01 (its `drain` record), still out at 00:00:06.
    assert_eq!(h2.out_of_service_ms_until(Some(end)), 5000);
    let h1 = &run.hosts["h1"];
    assert_eq!(h1.out_of_service_ms_until(Some(end)), h1.out_of_service_ms);
    let unfinished = replay("r1", &records[..2]);
    assert_eq!(
        unfinished.batch_verdict(&unfinished.plan[0]),
        BatchVerdict::NotFinished
    );
}

/// Issue 20: the summary's longest capacity loss counts a host still out
/// at the end of the run (h2, drained at 00:00:01, the run ended at
/// 00:00:06), not only the spells that ended (h1's 4 s).
#[test]
fn the_longest_capacity_loss_counts_a_host_still_out() {
    let summary = crate::report::summary::Summary::of(&replay("r1", &journal()));
    assert_eq!(summary.longest_out_of_service_host.as_deref(), Some("h2"));
    assert_eq!(summary.longest_out_of_service_ms, 5000);
}
