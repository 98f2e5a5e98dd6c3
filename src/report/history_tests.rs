//! History: figures from journals written by hand, each run a known story.

use super::*;
use crate::events::{Phase, PlannedBatch, RunSettings};
use crate::journal::replay::replay;

/// Builds one run's journal, second by second from `start` (Unix seconds).
struct Journal {
    run_id: String,
    second: i64,
    records: Vec<Envelope>,
}

impl Journal {
    fn new(run_id: &str, playbook: &str, start: i64, hosts: &[&str]) -> Self {
        let mut journal = Journal {
            run_id: run_id.to_owned(),
            second: start,
            records: Vec::new(),
        };
        journal.at(
            0,
            Event::RunStarted {
                playbook: playbook.to_owned(),
                hosts: hosts.len(),
                batches: 1,
                failure_budget: 0,
                settings: RunSettings {
                    inventory: "inv.toml".into(),
                    playbook: "play.toml".into(),
                    var_names: vec![],
                    limit: vec![],
                    accept_new_host_keys: false,
                },
                plan: vec![PlannedBatch {
                    index: 0,
                    zones: vec!["a".into()],
                    hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
                    host_zones: Vec::new(),
                }],
                fingerprint: None,
                max_unavailable: None,
                window_closes_at: None,
            },
        );
        journal
    }

    /// Records `event` `after` seconds after the previous record.
    fn at(&mut self, after: i64, event: Event) -> &mut Self {
        self.second += after;
        self.records.push(Envelope {
            ts: Timestamp::from_second(self.second).unwrap().to_string(),
            run_id: self.run_id.clone(),
            event,
        });
        self
    }

    /// A host drained, one step (ok or not), and with `back` returned to
    /// service `out` seconds after its drain.
    fn host(&mut self, host: &str, ok: bool, out: i64, back: bool) -> &mut Self {
        self.at(
            0,
            Event::Drain {
                host: host.into(),
                balancer: "web".into(),
            },
        )
        .at(out, step(host, ok, false));
        if back {
            self.at(
                0,
                Event::Undrained {
                    host: host.into(),
                    balancer: "web".into(),
                },
            );
        }
        let (phase, outcome) = if ok {
            (Phase::Done, Outcome::Updated)
        } else {
            (Phase::Failed, Outcome::Failed)
        };
        self.at(
            0,
            Event::HostPhase {
                host: host.into(),
                phase,
                outcome: Some(outcome),
                detail: None,
            },
        )
    }

    fn finish(&mut self, after: i64, outcome: RunOutcome) -> &mut Self {
        self.at(
            after,
            Event::RunFinished {
                outcome,
                updated: 0,
                failed: 0,
                skipped: 0,
                duration_ms: 0,
                reason: None,
            },
        )
    }

    fn facts(&self) -> RunFacts {
        let ended = self
            .records
            .iter()
            .rev()
            .find_map(|e| match &e.event {
                Event::RunFinished { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .unwrap_or(RunOutcome::Interrupted);
        facts(&replay(&self.run_id, &self.records), &self.records, ended)
    }
}

fn step(host: &str, ok: bool, rollback: bool) -> Event {
    Event::StepFinished {
        host: host.into(),
        step: "deploy".into(),
        index: 0,
        exit_code: Some(if ok { 0 } else { 1 }),
        duration_ms: 1000,
        ok,
        output_tail: String::new(),
        rollback,
    }
}

const DAY: i64 = 1_764_460_800; // 2025-11-30T00:00:00Z

/// Five runs of two playbooks: two successes (60 s and 100 s), a halt, a
/// rollback that took 30 s, and a run killed mid-way.
fn five_runs() -> Vec<RunFacts> {
    let mut ok_fast = Journal::new("r1", "patch", DAY, &["h1", "h2"]);
    ok_fast
        .host("h1", true, 10, true)
        .host("h2", true, 20, true)
        .finish(30, RunOutcome::Succeeded);
    let mut ok_slow = Journal::new("r2", "patch", DAY + 1000, &["h1", "h2"]);
    ok_slow
        .host("h1", true, 30, true)
        .host("h2", true, 30, true)
        .finish(40, RunOutcome::Succeeded);
    let mut halted = Journal::new("r3", "patch", DAY + 2000, &["h1", "h2"]);
    halted
        .host("h1", true, 10, true)
        .host("h2", false, 10, false)
        .finish(5, RunOutcome::Halted);
    let mut rolled = Journal::new("r4", "deploy", DAY + 3000, &["h1"]);
    rolled
        .host("h1", false, 10, false)
        .at(
            0,
            Event::RollbackStarted {
                batch: 0,
                hosts: vec!["h1".into()],
            },
        )
        .at(20, step("h1", true, true))
        .finish(10, RunOutcome::RolledBack);
    let mut killed = Journal::new("r5", "deploy", DAY + 4000, &["h1"]);
    killed.at(
        1,
        Event::Drain {
            host: "h1".into(),
            balancer: "web".into(),
        },
    );
    vec![
        ok_fast.facts(),
        ok_slow.facts(),
        halted.facts(),
        rolled.facts(),
        killed.facts(),
    ]
}

#[test]
fn figures_over_runs_with_every_kind_of_ending() {
    let history = History::of(&five_runs(), Vec::new(), 0);
    let all = &history.overall;
    assert_eq!(all.runs, 5);
    assert_eq!(all.outcomes["succeeded"], 2);
    assert_eq!(all.outcomes["halted"], 1);
    assert_eq!(all.outcomes["rolled_back"], 1);
    assert_eq!(all.outcomes["interrupted"], 1);
    assert_eq!(all.outcomes["window_closed"], 0);
    // 2 of 5 ended runs succeeded.
    assert_eq!(all.success_rate, Some(0.4));
    // 7 steps (the rollback step not counted), 2 failed.
    assert_eq!((all.steps, all.failed_steps), (7, 2));
    // Time to deploy: 60 s and 100 s.
    assert_eq!(all.deploy_median_s, Some(60.0));
    assert_eq!(all.deploy_p95_s, Some(100.0));
    assert_eq!(all.rollbacks, 1);
    assert_eq!(all.rollback_rate, Some(0.2));
    // From the rollback's start to the run's end: 20 + 10 s.
    assert_eq!(all.rollback_mean_s, Some(30.0));
    assert_eq!(all.hosts["updated"], 5);
    assert_eq!(all.hosts["failed"], 2);
    // Out of service, per host returned: 10, 20, 30, 30, 10 s.
    assert_eq!(all.out_of_service_mean_s, Some(20.0));

    let patch = &history.playbooks["patch"];
    assert_eq!(patch.runs, 3);
    assert_eq!(patch.success_rate, Some(2.0 / 3.0));
    let deploy = &history.playbooks["deploy"];
    assert_eq!(deploy.success_rate, Some(0.0));
    assert_eq!(deploy.deploy_median_s, None);
}

#[test]
fn a_run_still_going_is_not_counted_as_ended() {
    let mut going = Journal::new("r1", "patch", DAY, &["h1"]);
    going.host("h1", true, 5, true);
    let facts = facts(
        &replay("r1", &going.records),
        &going.records,
        RunOutcome::Running,
    );
    let figures = Figures::of([&facts]);
    assert_eq!(figures.outcomes["running"], 1);
    assert_eq!(figures.success_rate, None);
    assert_eq!(figures.rollback_rate, None);
}

#[test]
fn the_report_names_every_figure_and_what_was_skipped() {
    let history = History::of(
        &five_runs(),
        vec![("r9".into(), "line 3 is corrupt".into())],
        2,
    );
    let text = history.render();
    for expected in [
        "playbook deploy: 2 runs: 1 interrupted, 1 rolled back",
        "playbook patch: 3 runs: 1 halted, 2 succeeded",
        "overall: 5 runs",
        "deployment success rate   40.0 %",
        "step failure rate         28.6 % (2 of 7 steps)",
        "time to deploy            median 1m00s, p95 1m40s (2 succeeded runs)",
        "rollback frequency        20.0 % (1 of 5 runs)",
        "mean time to roll back    30.0s",
        "hosts                     2 failed, 1 pending, 5 updated",
        "mean time out of service  20.0s per host drained",
        "2 runs of other inventories in the same state directory were left out",
        "skipped run r9: line 3 is corrupt",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn metrics_are_gauges_per_playbook_and_overall() {
    let metrics = History::of(&five_runs(), Vec::new(), 0).metrics();
    for expected in [
        "# TYPE fleetroll_history_success_ratio gauge",
        "fleetroll_history_success_ratio{playbook=\"\"} 0.4",
        "fleetroll_history_runs{playbook=\"patch\",outcome=\"halted\"} 1",
        "fleetroll_history_runs{playbook=\"deploy\",outcome=\"window_closed\"} 0",
        "fleetroll_history_deploy_seconds{playbook=\"\",quantile=\"0.95\"} 100",
        "fleetroll_history_rollback_seconds_mean{playbook=\"deploy\"} 30",
        "fleetroll_history_hosts{playbook=\"\",outcome=\"updated\"} 5",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected:?} not in:\n{metrics}"
        );
    }
    // The gauge of a playbook without a success has no time to deploy.
    assert!(!metrics.contains("fleetroll_history_deploy_seconds{playbook=\"deploy\""));
}
