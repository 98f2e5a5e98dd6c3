//! Admission: caps, zone caps and the healthy floor, decided per round.

use super::*;

fn caps(max: usize) -> Caps {
    Caps {
        max_unavailable: max,
        zone_caps: HashMap::new(),
        min_healthy: None,
    }
}

fn lb() -> Vec<String> {
    vec!["lb".to_owned()]
}

#[test]
fn hosts_start_in_order_until_the_cap_is_full() {
    let balancers = lb();
    let queue: Vec<Candidate<'_>> = ["a0", "a1", "a2"]
        .iter()
        .map(|host| Candidate {
            host,
            zone: "a",
            balancers: &balancers,
        })
        .collect();
    let admitted = admit(&Occupancy::default(), &caps(2), &queue, &HashMap::new());
    assert_eq!(admitted.start, [0, 1]);
    assert_eq!(admitted.blocked, Some(Blocked::Cap { zone: "a".into() }));
}

#[test]
fn a_host_that_already_holds_a_slot_needs_no_room() {
    // The failed host of a batch holds the only slot; rolling it back must
    // not wait for a slot it holds itself.
    let mut out = Occupancy::default();
    out.hold("a0", "a");
    let balancers = lb();
    let queue = [
        Candidate {
            host: "a1",
            zone: "a",
            balancers: &balancers,
        },
        Candidate {
            host: "a0",
            zone: "a",
            balancers: &balancers,
        },
    ];
    let admitted = admit(&out, &caps(1), &queue, &HashMap::new());
    assert_eq!(admitted.start, [1]);
    assert!(admitted.blocked.is_some());
}

#[test]
fn zone_caps_count_hosts_out_in_that_zone_only() {
    let mut out = Occupancy::default();
    out.hold("a0", "a");
    let balancers = lb();
    let queue = [
        Candidate {
            host: "b0",
            zone: "b",
            balancers: &balancers,
        },
        Candidate {
            host: "a1",
            zone: "a",
            balancers: &balancers,
        },
    ];
    let caps = Caps {
        zone_caps: [("a".to_owned(), 1), ("b".to_owned(), 1)].into(),
        ..caps(10)
    };
    let admitted = admit(&out, &caps, &queue, &HashMap::new());
    assert_eq!(admitted.start, [0]);
    assert_eq!(admitted.blocked, Some(Blocked::Cap { zone: "a".into() }));
}

#[test]
fn the_floor_is_decided_for_the_whole_round() {
    // 4 healthy of 4, min_healthy 50%: two drains fit, a third would leave
    // one. Checked host by host against the same reading, all three would
    // pass.
    let balancers = lb();
    let queue: Vec<Candidate<'_>> = ["a0", "a1", "a2"]
        .iter()
        .map(|host| Candidate {
            host,
            zone: "a",
            balancers: &balancers,
        })
        .collect();
    let caps = Caps {
        min_healthy: Some(Amount::parse("50%").unwrap()),
        ..caps(10)
    };
    let pools = HashMap::from([("lb".to_owned(), Pool::read(4, 4, 0))]);
    let admitted = admit(&Occupancy::default(), &caps, &queue, &pools);
    assert_eq!(admitted.start, [0, 1]);
    assert!(matches!(
        admitted.blocked,
        Some(Blocked::Floor { required: 2, .. })
    ));
    // A drain admitted earlier but not yet visible counts too.
    let pending = HashMap::from([("lb".to_owned(), Pool::read(4, 4, 2))]);
    assert!(
        admit(&Occupancy::default(), &caps, &queue, &pending)
            .start
            .is_empty()
    );
    // A pool that could not be read drains nobody, whatever the floor
    // (before: it read as 0 of 1 healthy, and 10% of 1 is 0 hosts).
    let low = Caps {
        min_healthy: Some(Amount::parse("10%").unwrap()),
        ..caps.clone()
    };
    let unread = HashMap::from([("lb".to_owned(), Pool::unknown())]);
    let admitted = admit(&Occupancy::default(), &low, &queue, &unread);
    assert!(admitted.start.is_empty(), "{admitted:?}");
    assert_eq!(
        admitted.blocked,
        Some(Blocked::Unread {
            balancer: "lb".into()
        })
    );
}

#[test]
fn occupancy_counts_each_host_once() {
    let mut out = Occupancy::default();
    out.hold("a0", "a");
    out.hold("a0", "a");
    out.hold("b0", "b");
    assert_eq!((out.total(), out.in_zone("a")), (2, 1));
    out.release("a0");
    out.release("a0");
    assert_eq!((out.total(), out.in_zone("a"), out.in_zone("b")), (1, 0, 1));
}
