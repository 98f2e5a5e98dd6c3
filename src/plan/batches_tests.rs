//! Table tests and property tests of the planner.

use std::collections::HashSet;

use proptest::prelude::{
    Just, ProptestConfig, any, prop, prop_assert, prop_assert_eq, prop_compose, prop_oneof,
    proptest,
};
use proptest::strategy::Strategy as Generator;

use super::*;
use crate::model::playbook::Strategy;

/// Zones named a, b, c… with the given sizes, every host selected.
fn fleet(sizes: &[usize]) -> PlanInput {
    let mut next = 0u32;
    let zones = sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| {
            let hosts = (0..size)
                .map(|_| {
                    next += 1;
                    HostId(next - 1)
                })
                .collect();
            ZoneHosts {
                name: ((b'a' + index as u8) as char).to_string(),
                hosts,
                size,
            }
        })
        .collect();
    PlanInput {
        fleet_size: sizes.iter().sum(),
        zones,
    }
}

fn strategy(batch: &[Amount]) -> Strategy {
    Strategy {
        batch: batch.to_vec(),
        ..Strategy::default()
    }
}

fn shape(plan: &Plan) -> Vec<(String, usize)> {
    plan.batches
        .iter()
        .map(|b| (b.zones.join(","), b.hosts.len()))
        .collect()
}

fn pct(p: u32) -> Amount {
    Amount::Percent(p * 100)
}

#[test]
fn growing_batches_follow_the_list_and_repeat_the_last() {
    let plan = plan_batches(
        &fleet(&[40]),
        &strategy(&[Amount::Count(1), pct(10), pct(25)]),
    )
    .unwrap();
    let sizes: Vec<usize> = plan.batches.iter().map(|b| b.hosts.len()).collect();
    assert_eq!(sizes, [1, 4, 10, 10, 10, 5]);
}

#[test]
fn one_at_a_time_never_spans_zones_and_continues_the_sequence() {
    let plan = plan_batches(
        &fleet(&[3, 5]),
        &strategy(&[Amount::Count(1), Amount::Count(4)]),
    )
    .unwrap();
    assert_eq!(
        shape(&plan),
        [
            ("a".into(), 1),
            ("a".into(), 2),
            ("b".into(), 4),
            ("b".into(), 1)
        ]
    );
}

#[test]
fn zone_order_goes_first_then_inventory_order() {
    let mut s = strategy(&[Amount::Count(10)]);
    s.zone_order = vec!["c".into(), "a".into()];
    let plan = plan_batches(&fleet(&[2, 2, 2]), &s).unwrap();
    let zones: Vec<String> = plan.batches.iter().map(|b| b.zones.join(",")).collect();
    assert_eq!(zones, ["c", "a", "b"]);
}

#[test]
fn per_zone_cap_limits_batches_inside_a_zone() {
    let mut s = strategy(&[pct(100)]);
    s.max_unavailable_per_zone = Some(pct(50));
    let plan = plan_batches(&fleet(&[4, 3]), &s).unwrap();
    // 50% of 3 is 1.5, rounded down to 1.
    assert_eq!(
        shape(&plan),
        [
            ("a".into(), 2),
            ("a".into(), 2),
            ("b".into(), 1),
            ("b".into(), 1),
            ("b".into(), 1)
        ]
    );
}

#[test]
fn spread_draws_evenly_from_every_zone() {
    let mut s = strategy(&[Amount::Count(3)]);
    s.zones = ZoneMode::Spread;
    let plan = plan_batches(&fleet(&[3, 3, 3]), &s).unwrap();
    assert_eq!(
        shape(&plan),
        [
            ("a,b,c".into(), 3),
            ("a,b,c".into(), 3),
            ("a,b,c".into(), 3)
        ]
    );
}

#[test]
fn spread_respects_the_zone_cap_even_when_the_batch_is_larger() {
    let mut s = strategy(&[Amount::Count(10)]);
    s.zones = ZoneMode::Spread;
    s.max_unavailable_per_zone = Some(Amount::Count(1));
    let plan = plan_batches(&fleet(&[2, 1]), &s).unwrap();
    assert_eq!(shape(&plan), [("a,b".into(), 2), ("a".into(), 1)]);
}

#[test]
fn a_batch_larger_than_max_unavailable_is_refused() {
    let mut s = strategy(&[Amount::Count(1), pct(50)]);
    s.max_unavailable = Some(pct(25));
    let error = plan_batches(&fleet(&[40]), &s).unwrap_err();
    assert_eq!(
        error.to_string(),
        "batch entry 2 (50% = 20 hosts) is larger than max_unavailable (25% = 10 of 40 hosts)"
    );
}

#[test]
fn a_percentage_never_rounds_a_batch_below_one_host() {
    let plan = plan_batches(&fleet(&[5]), &strategy(&[pct(10)])).unwrap();
    assert_eq!(plan.batches.len(), 5);
}

#[test]
fn failure_budget_rounds_down() {
    let mut s = strategy(&[Amount::Count(1)]);
    s.max_failed = pct(5);
    assert_eq!(plan_batches(&fleet(&[40]), &s).unwrap().failure_budget, 2);
    assert_eq!(plan_batches(&fleet(&[10]), &s).unwrap().failure_budget, 0);
    s.max_failed = Amount::Count(100);
    assert_eq!(plan_batches(&fleet(&[10]), &s).unwrap().failure_budget, 10);
}

#[test]
fn caps_are_fractions_of_the_whole_inventory_not_the_selection() {
    let mut input = fleet(&[10, 10]);
    input.zones[1].hosts.clear(); // --limit selected only zone a
    let mut s = strategy(&[Amount::Count(5)]);
    s.max_unavailable = Some(pct(25)); // 25% of 20 hosts = 5
    let plan = plan_batches(&input, &s).unwrap();
    assert_eq!(shape(&plan), [("a".into(), 5), ("a".into(), 5)]);
}

#[test]
fn an_empty_selection_plans_nothing() {
    let plan = plan_batches(&fleet(&[]), &strategy(&[Amount::Count(1)])).unwrap();
    assert!(plan.batches.is_empty());
}

fn amount() -> impl Generator<Value = Amount> {
    prop_oneof![
        (1u64..12).prop_map(Amount::Count),
        (1u32..=Amount::HUNDRED_PERCENT).prop_map(Amount::Percent),
    ]
}

fn cap() -> impl Generator<Value = Option<Amount>> {
    prop_oneof![Just(None), amount().prop_map(Some)]
}

prop_compose! {
    fn arbitrary_strategy()(
        batch in prop::collection::vec(amount(), 1..5),
        spread in any::<bool>(),
        max_unavailable in cap(),
        max_unavailable_per_zone in cap(),
        zone_order in prop::collection::vec(0usize..6, 0..3),
    ) -> crate::model::playbook::Strategy {
        let mut order: Vec<String> = Vec::new();
        for zone in zone_order {
            let name = ((b'a' + zone as u8) as char).to_string();
            if !order.contains(&name) {
                order.push(name);
            }
        }
        crate::model::playbook::Strategy {
            batch,
            zones: if spread { ZoneMode::Spread } else { ZoneMode::OneAtATime },
            zone_order: order,
            max_unavailable,
            max_unavailable_per_zone,
            ..crate::model::playbook::Strategy::default()
        }
    }
}

prop_compose! {
    /// A fleet of up to 6 zones, with some hosts left out as --limit would.
    fn arbitrary_input()(
        sizes in prop::collection::vec(0usize..30, 1..6),
        seed in any::<u64>(),
    ) -> PlanInput {
        let mut input = fleet(&sizes);
        for (index, zone) in input.zones.iter_mut().enumerate() {
            if (seed >> (index * 3)) & 7 == 0 {
                let keep = zone.hosts.len() / 2;
                zone.hosts.truncate(keep);
            }
        }
        input
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_selected_host_lands_in_exactly_one_batch(
        input in arbitrary_input(), s in arbitrary_strategy()
    ) {
        let result = plan_batches(&input, &s);
        // Only a fleet cap can refuse a plan, so these cases are never skipped.
        prop_assert!(result.is_ok() || s.max_unavailable.is_some());
        let Ok(plan) = result else { return Ok(()) };
        let mut seen = HashSet::new();
        for batch in &plan.batches {
            prop_assert!(!batch.hosts.is_empty(), "empty batch {}", batch.index);
            for host in &batch.hosts {
                prop_assert!(seen.insert(*host), "{host:?} planned twice");
            }
        }
        let selected: HashSet<HostId> =
            input.zones.iter().flat_map(|z| z.hosts.iter().copied()).collect();
        prop_assert_eq!(seen, selected);
    }

    #[test]
    fn no_batch_exceeds_the_fleet_or_zone_cap(
        input in arbitrary_input(), s in arbitrary_strategy()
    ) {
        let Ok(plan) = plan_batches(&input, &s) else { return Ok(()) };
        let fleet_cap = s.max_unavailable.map_or(usize::MAX, |c| c.at_least_one_of(input.fleet_size));
        for batch in &plan.batches {
            prop_assert!(batch.hosts.len() <= fleet_cap);
            for zone in &input.zones {
                let in_zone = batch.hosts.iter().filter(|h| zone.hosts.contains(h)).count();
                let zone_cap = s.max_unavailable_per_zone.map_or(usize::MAX, |c| c.at_least_one_of(zone.size));
                prop_assert!(in_zone <= zone_cap, "zone {} has {in_zone} > {zone_cap}", zone.name);
            }
        }
    }

    #[test]
    fn one_at_a_time_batches_never_span_zones(
        input in arbitrary_input(), mut s in arbitrary_strategy()
    ) {
        s.zones = ZoneMode::OneAtATime;
        let Ok(plan) = plan_batches(&input, &s) else { return Ok(()) };
        for batch in &plan.batches {
            prop_assert_eq!(batch.zones.len(), 1);
            let zone = input.zones.iter().find(|z| z.name == batch.zones[0]).unwrap();
            prop_assert!(batch.hosts.iter().all(|h| zone.hosts.contains(h)));
        }
        // A zone, once left, is never come back to.
        let mut finished: Vec<&str> = Vec::new();
        for pair in plan.batches.windows(2) {
            if pair[0].zones != pair[1].zones {
                finished.push(&pair[0].zones[0]);
                prop_assert!(!finished.contains(&pair[1].zones[0].as_str()));
            }
        }
    }

    #[test]
    fn growing_batches_follow_the_list(
        input in arbitrary_input(), mut s in arbitrary_strategy()
    ) {
        // With no caps and a single zone in play, sizes are exactly the list.
        s.max_unavailable = None;
        s.max_unavailable_per_zone = None;
        s.zones = ZoneMode::Spread;
        let Ok(plan) = plan_batches(&input, &s) else { return Ok(()) };
        let selected = input.selected();
        let mut remaining = selected;
        for (index, batch) in plan.batches.iter().enumerate() {
            let entry = s.batch[index.min(s.batch.len() - 1)];
            let expected = entry.at_least_one_of(selected).min(remaining);
            prop_assert_eq!(batch.hosts.len(), expected, "batch {}", index);
            remaining -= expected;
        }
        prop_assert_eq!(remaining, 0);
    }

    #[test]
    fn refusals_are_only_for_batches_over_the_fleet_cap(
        input in arbitrary_input(), s in arbitrary_strategy()
    ) {
        if let Err(PlanError::BatchOverCap { size, cap_hosts, .. }) = plan_batches(&input, &s) {
            prop_assert!(size > cap_hosts);
        }
    }
}
