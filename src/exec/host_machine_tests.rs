//! The host machine's routes, table by table, and its rules under any
//! sequence of observations.

use proptest::prelude::*;

use super::*;

fn roll(steps_total: usize) -> Start {
    Start {
        route: Route::Roll,
        steps_total,
        steps_done: 0,
        drained: false,
        returning: false,
        resumed: false,
        needs_ssh: true,
        watch: false,
        watching: false,
        regressed: false,
    }
}

/// Drives the machine, answering each action with `answer`, and lists the
/// actions taken (the last is always `End`).
fn walk(start: &Start, mut answer: impl FnMut(&Action) -> Observation) -> Vec<Action> {
    let mut state = State::Begin;
    let mut observation = Observation::Started;
    let mut actions = Vec::new();
    for _ in 0..64 {
        let (next_state, action) = next(start, &state, observation);
        state = next_state;
        actions.push(action.clone());
        if let Action::End(_) = action {
            return actions;
        }
        observation = answer(&action);
    }
    panic!("the machine did not end: {actions:?}");
}

fn ending(actions: &[Action]) -> &Ending {
    match actions.last() {
        Some(Action::End(ending)) => ending,
        other => panic!("no ending: {other:?}"),
    }
}

fn all_done(_: &Action) -> Observation {
    Observation::Done
}

#[test]
fn a_fresh_host_is_checked_before_it_is_drained_and_verified_before_it_returns() {
    let actions = walk(&roll(2), all_done);
    assert_eq!(
        &actions[..actions.len() - 1],
        &[
            Action::Connect,
            Action::CheckSkipIf,
            Action::CheckOperator,
            Action::Drain,
            Action::RunStep { index: 0 },
            Action::RunStep { index: 1 },
            Action::Verify,
            Action::Undrain,
        ]
    );
    assert_eq!(ending(&actions).outcome, Outcome::Updated);
}

#[test]
fn a_skipped_or_operator_disabled_host_is_never_drained() {
    for skip_at in [Action::CheckSkipIf, Action::CheckOperator] {
        let actions = walk(&roll(1), |action| {
            if *action == skip_at {
                Observation::Skip("already done".into())
            } else {
                Observation::Done
            }
        });
        assert!(!actions.contains(&Action::Drain), "{actions:?}");
        assert_eq!(ending(&actions).outcome, Outcome::Skipped);
    }
}

#[test]
fn a_resumed_host_goes_on_from_its_next_step_without_the_pre_checks() {
    let start = Start {
        steps_done: 1,
        drained: true,
        resumed: true,
        ..roll(3)
    };
    let actions = walk(&start, all_done);
    assert_eq!(
        &actions[..actions.len() - 1],
        &[
            Action::Connect,
            Action::Drain,
            Action::RunStep { index: 1 },
            Action::RunStep { index: 2 },
            Action::Verify,
            Action::Undrain,
        ]
    );
}

#[test]
fn a_host_whose_return_had_begun_is_verified_and_returned_never_drained_again() {
    let start = Start {
        steps_done: 2,
        drained: true,
        resumed: true,
        returning: true,
        ..roll(2)
    };
    let actions = walk(&start, all_done);
    assert_eq!(
        &actions[..actions.len() - 1],
        &[Action::Connect, Action::Verify, Action::Undrain]
    );
    assert_eq!(ending(&actions).outcome, Outcome::Updated);
}

/// Found by the simulation (seed 1529): a host whose steps a second signal
/// cut short was being returned when the run was killed; resume took the
/// return for the end of an update and reported it updated.
#[test]
fn a_return_after_cut_short_steps_is_not_taken_for_an_update() {
    let start = Start {
        steps_done: 0,
        drained: true,
        resumed: true,
        returning: true,
        ..roll(1)
    };
    let actions = walk(&start, all_done);
    assert!(
        actions.contains(&Action::RunStep { index: 0 }),
        "{actions:?}"
    );
    assert_eq!(ending(&actions).outcome, Outcome::Updated);
}

#[test]
fn a_failure_after_the_drain_keeps_the_host_out() {
    let actions = walk(&roll(2), |action| match action {
        Action::RunStep { index: 1 } => Observation::Failed(Outcome::Failed, "exit 1".into()),
        _ => Observation::Done,
    });
    assert!(!actions.contains(&Action::Undrain), "{actions:?}");
    let end = ending(&actions);
    assert_eq!((end.outcome, end.phase), (Outcome::Failed, Phase::Failed));
}

#[test]
fn a_second_signal_returns_a_host_only_after_a_passing_probe_round() {
    let cancel_step = |healthy: bool| {
        move |action: &Action| match action {
            Action::RunStep { .. } => Observation::Cancelled,
            Action::ProbeOnce if !healthy => Observation::NotHealthy("probe: 503".into()),
            _ => Observation::Done,
        }
    };
    let actions = walk(&roll(1), cancel_step(true));
    assert_eq!(
        &actions[actions.len() - 3..actions.len() - 1],
        &[Action::ProbeOnce, Action::Undrain]
    );
    assert_eq!(ending(&actions).outcome, Outcome::Pending);

    let actions = walk(&roll(1), cancel_step(false));
    assert!(actions.contains(&Action::ProbeOnce));
    assert!(!actions.contains(&Action::Undrain), "{actions:?}");
    assert_eq!(ending(&actions).outcome, Outcome::Pending);
}

#[test]
fn a_return_is_never_cut_short() {
    let mut undrains = 0;
    let actions = walk(&roll(0), |action| match action {
        Action::Undrain => {
            undrains += 1;
            if undrains == 1 {
                Observation::Cancelled
            } else {
                Observation::Done
            }
        }
        _ => Observation::Done,
    });
    assert_eq!(undrains, 2);
    assert_eq!(ending(&actions).outcome, Outcome::Updated);
}

#[test]
fn rolling_back_drains_runs_the_rollback_steps_and_verifies() {
    let start = Start {
        route: Route::RollBack,
        drained: true,
        ..roll(1)
    };
    let actions = walk(&start, all_done);
    assert_eq!(
        &actions[..actions.len() - 1],
        &[
            Action::Connect,
            Action::Drain,
            Action::RunStep { index: 0 },
            Action::Verify,
            Action::Undrain,
        ]
    );
    assert_eq!(ending(&actions).outcome, Outcome::RolledBack);
}

#[test]
fn returning_a_host_left_drained_needs_one_passing_round() {
    let start = Start {
        route: Route::Return,
        drained: true,
        steps_done: 1,
        ..roll(1)
    };
    let actions = walk(&start, all_done);
    assert_eq!(
        &actions[..actions.len() - 1],
        &[Action::Connect, Action::ProbeOnce, Action::Undrain]
    );
    assert_eq!(ending(&actions).outcome, Outcome::Updated);
    let actions = walk(&start, |action| match action {
        Action::ProbeOnce => Observation::NotHealthy("down".into()),
        _ => Observation::Done,
    });
    assert!(!actions.contains(&Action::Undrain));
    assert_eq!(ending(&actions).outcome, Outcome::Pending);
}

#[test]
fn a_playbook_without_ssh_goes_straight_to_the_operator_check() {
    let start = Start {
        needs_ssh: false,
        ..roll(1)
    };
    let actions = walk(&start, all_done);
    assert_eq!(actions[0], Action::CheckOperator);
}

fn observation() -> impl Strategy<Value = Observation> {
    prop_oneof![
        6 => Just(Observation::Done),
        1 => Just(Observation::Skip("skip".into())),
        1 => Just(Observation::NotHealthy("no".into())),
        1 => Just(Observation::Failed(Outcome::Failed, "bad".into())),
        1 => Just(Observation::Cancelled),
        1 => Just(Observation::Regressed("5xx".into())),
        1 => Just(Observation::NotJudged("not judged: 3 requests".into())),
    ]
}

fn start() -> impl Strategy<Value = Start> {
    (
        prop_oneof![
            Just(Route::Roll),
            Just(Route::Return),
            Just(Route::RollBack)
        ],
        0usize..4,
        0usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                route,
                steps_total,
                steps_done,
                drained,
                returning,
                resumed,
                needs_ssh,
                watch,
                watching,
            )| {
                let steps_done = steps_done.min(steps_total);
                // A watch begins only once the host is back after every step.
                let watching = watching
                    && watch
                    && route == Route::Roll
                    && steps_done == steps_total
                    && !drained;
                Start {
                    route,
                    steps_total,
                    steps_done,
                    drained,
                    returning: returning && drained,
                    resumed: resumed || drained || watching,
                    needs_ssh,
                    watch,
                    watching,
                    regressed: false,
                }
            },
        )
}

/// What an action can really answer: only the checks skip, only a probe
/// round answers "not healthy".
fn realistic(action: &Action, answer: Observation) -> Observation {
    match (action, answer) {
        // Only a watch judges traffic.
        (action, Observation::Regressed(_) | Observation::NotJudged(_))
            if *action != Action::Watch =>
        {
            Observation::Done
        }
        (Action::CheckSkipIf | Action::CheckOperator, answer) => answer,
        (Action::ProbeOnce, Observation::Skip(_) | Observation::Regressed(_)) => Observation::Done,
        (Action::ProbeOnce, answer) => answer,
        (Action::Watch, Observation::Skip(_) | Observation::NotHealthy(_)) => Observation::Done,
        (Action::Watch, answer) => answer,
        (
            _,
            Observation::Skip(_)
            | Observation::NotHealthy(_)
            | Observation::Regressed(_)
            | Observation::NotJudged(_),
        ) => Observation::Done,
        (_, answer) => answer,
    }
}

proptest! {
    /// Whatever the outside world answers: the machine ends; a fresh host is
    /// drained only after both checks passed; a host goes back to service
    /// only after a verification or a probe round passed; a step never runs
    /// before the drain; and only a host that went back ends updated.
    #[test]
    fn the_rules_hold_under_any_answers(start in start(), answers in prop::collection::vec(observation(), 64)) {
        let mut answers = answers.into_iter();
        let mut state = State::Begin;
        let mut observation = Observation::Started;
        let mut actions: Vec<(Action, Observation)> = Vec::new();
        let mut ended = None;
        for _ in 0..64 {
            let (next_state, action) = next(&start, &state, observation);
            state = next_state;
            if let Action::End(ending) = &action {
                ended = Some(ending.clone());
                break;
            }
            let answer = realistic(&action, answers.next().unwrap_or(Observation::Done));
            actions.push((action, answer.clone()));
            observation = answer;
        }
        let ending = ended.expect("the machine ends within 64 actions");
        let passed = |wanted: &Action, before: usize| {
            actions[..before].iter().any(|(a, o)| a == wanted && *o == Observation::Done)
        };
        for (at, (action, _)) in actions.iter().enumerate() {
            match action {
                Action::Drain if start.route == Route::Roll && !start.resumed && !start.drained => {
                    prop_assert!(passed(&Action::CheckOperator, at));
                    if start.needs_ssh {
                        prop_assert!(passed(&Action::CheckSkipIf, at));
                    }
                }
                Action::Undrain => {
                    prop_assert!(passed(&Action::Verify, at) || passed(&Action::ProbeOnce, at),
                        "returned without a passing probe: {actions:?}");
                }
                Action::RunStep { .. } => {
                    prop_assert!(start.route != Route::Return);
                    prop_assert!(passed(&Action::Drain, at), "a step before the drain: {actions:?}");
                }
                _ => {}
            }
        }
        let went_back = actions.iter().any(|(a, o)| *a == Action::Undrain && *o == Observation::Done);
        if matches!(ending.outcome, Outcome::Updated | Outcome::RolledBack) {
            prop_assert!(went_back || start.watching, "{ending:?} without a return: {actions:?}");
        }
        // With [watch], a host counts as updated only after its watch, and
        // one that regressed is drained again before it ends.
        let watched = actions.iter().any(|(a, o)| {
            *a == Action::Watch && matches!(o, Observation::Done | Observation::NotJudged(_))
        });
        if start.watch && start.route == Route::Roll && ending.outcome == Outcome::Updated {
            prop_assert!(watched, "updated without a watch: {actions:?}");
        }
        if !start.watch || start.route != Route::Roll {
            prop_assert!(actions.iter().all(|(a, _)| *a != Action::Watch), "{actions:?}");
        }
        if let Some(at) = actions.iter().position(|(a, o)| *a == Action::Watch && matches!(o, Observation::Regressed(_))) {
            prop_assert_eq!(&actions[at + 1].0, &Action::Drain, "{:?}", actions);
            prop_assert!(
                matches!(ending.outcome, Outcome::Regressed | Outcome::Failed | Outcome::TimedOut | Outcome::Unhealthy | Outcome::Unreachable),
                "a regressed host ended {:?}: {:?}", ending, actions
            );
        }
        if start.route == Route::Return {
            prop_assert!(!ending.outcome.is_failure(), "a host returned for an earlier run is not this run's failure");
        }
    }
}

#[test]
fn a_watched_host_counts_as_updated_only_after_its_watch_and_goes_out_if_it_regressed() {
    let start = Start {
        watch: true,
        ..roll(1)
    };
    let passed = walk(&start, |_| Observation::Done);
    assert_eq!(
        &passed[passed.len() - 3..],
        [
            Action::Undrain,
            Action::Watch,
            Action::End(Ending::new(Outcome::Updated, Phase::Done, None))
        ]
    );
    let regressed = walk(&start, |action| match action {
        Action::Watch => Observation::Regressed("5xx 30%".into()),
        _ => Observation::Done,
    });
    assert_eq!(
        &regressed[regressed.len() - 3..],
        [
            Action::Watch,
            Action::Drain,
            Action::End(Ending::new(
                Outcome::Regressed,
                Phase::Failed,
                Some("5xx 30%".into())
            ))
        ]
    );
    // Killed once judged regressed: the resume only drains it.
    let judged = Start {
        regressed: true,
        resumed: true,
        steps_done: 1,
        ..start
    };
    let actions = walk(&judged, |_| Observation::Done);
    assert_eq!(&actions[..2], [Action::Connect, Action::Drain]);
    assert!(matches!(
        actions.last(),
        Some(Action::End(Ending {
            outcome: Outcome::Regressed,
            ..
        }))
    ));
    // Killed during its watch: the resume only watches it again.
    let resumed = Start {
        watching: true,
        resumed: true,
        steps_done: 1,
        ..start
    };
    assert_eq!(
        walk(&resumed, |_| Observation::Done),
        [
            Action::Connect,
            Action::Watch,
            Action::End(Ending::new(Outcome::Updated, Phase::Done, None))
        ]
    );
}
