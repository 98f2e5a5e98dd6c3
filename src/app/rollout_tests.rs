//! Taking over a dead holder's lock, against other processes doing the same.

use super::*;
use crate::journal::store::read_run;

/// A lock left by run `r`, whose pid is certainly dead on this machine.
fn dead_holders_lock(state: &Path, inventory: &Path) -> LockInfo {
    let dead = LockInfo {
        host: this_host(),
        // Far above any pid_max: never alive.
        pid: 4_000_000,
        run_id: "r".into(),
        inventory: inventory.display().to_string(),
        since: "2026-01-01T00:00:00Z".into(),
        heartbeat: "2026-01-01T00:00:00Z".into(),
        lease_s: None,
    };
    let path = lock_path(state, inventory);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
    dead
}

fn lock_broken_records(state: &Path) -> usize {
    read_run(state, "r")
        .unwrap()
        .iter()
        .filter(|e| matches!(e.event, Event::LockBroken { .. }))
        .count()
}

/// Regression: the take-over read the lock, then removed whatever was at
/// its path and created its own, with no re-check in between. Two resumes
/// that both saw the dead holder could both "take over": the second
/// removed the first one's fresh lock, and each recorded a broken lock.
#[test]
fn concurrent_take_overs_of_a_dead_holders_lock_leave_one_holder_and_one_record() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let inventory = dir.path().join("inventory.toml");
        std::fs::write(&inventory, "").unwrap();
        dead_holders_lock(&state, &inventory);
        let barrier = std::sync::Barrier::new(6);
        let won: Vec<RunLock> = std::thread::scope(|scope| {
            let takers: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        take_over_lock(
                            &Store::Dir(state.clone()),
                            &inventory,
                            "r",
                            jiff::Timestamp::now(),
                        )
                        .ok()
                    })
                })
                .collect();
            takers
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .collect()
        });
        assert_eq!(won.len(), 1, "round {round}: {} holders", won.len());
        assert_eq!(lock_broken_records(&state), 1, "round {round}");
        let held = crate::lock::read(&lock_path(&state, &inventory)).unwrap();
        assert_eq!(&held, won[0].info(), "round {round}");
    }
}

/// Regression: `unlock --force` judged the holder dead, then removed the
/// lock file without looking again; a resume that had taken the lock over
/// in between lost its fresh lock (and the journal of the dead run was
/// told its lock was broken twice).
#[test]
fn unlock_force_leaves_a_lock_that_changed_since_it_was_judged() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&inventory, "").unwrap();
    let dead = dead_holders_lock(&state, &inventory);
    let path = lock_path(&state, &inventory);
    let now = jiff::Timestamp::now();
    // The operator's unlock judged `dead`; then a resume took over.
    let resumed = take_over_lock(
        &Store::Dir(state.clone()),
        &inventory,
        "r",
        jiff::Timestamp::now(),
    )
    .unwrap();
    let outcome = break_lock(&Store::Dir(state.clone()), &path, Some(&dead), now).unwrap();
    assert!(matches!(outcome, BreakOutcome::Changed(_)), "{outcome:?}");
    assert_eq!(&crate::lock::read(&path).unwrap(), resumed.info());
    assert_eq!(lock_broken_records(&state), 1, "only the take-over's");

    // The lock judged is the lock broken, and the journal says so.
    resumed.release();
    let dead = dead_holders_lock(&state, &inventory);
    assert_eq!(
        break_lock(&Store::Dir(state.clone()), &path, Some(&dead), now).unwrap(),
        BreakOutcome::Broken
    );
    assert!(!path.exists());
    assert_eq!(lock_broken_records(&state), 2);
    assert_eq!(
        break_lock(&Store::Dir(state.clone()), &path, Some(&dead), now).unwrap(),
        BreakOutcome::Gone
    );
}
