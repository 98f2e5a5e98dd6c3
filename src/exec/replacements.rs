//! Which new Auto Scaling instance stands in for which old one.
//!
//! Several hosts of one group may be replaced at the same time. Each waits
//! for an instance the group launched that nobody has claimed yet; if each
//! host judged "new" against its own snapshot of the group, a host that
//! looked after another's replacement had launched would count that
//! replacement as an old member, and wait forever while the other host took
//! its own. So the run keeps one snapshot per group, taken before its first
//! termination, and one set of claims: an instance is new if it is in
//! neither, and is claimed by exactly one host.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::journal::replay::RunRecord;

/// The run's ledger of replacements, per Auto Scaling group.
#[derive(Debug, Default)]
pub struct Replacements {
    groups: Mutex<HashMap<String, Ledger>>,
}

/// Held while a surge reads the group's desired capacity and raises it by
/// one, so that two surges at once raise it by two; and while a surge's
/// old instance is terminated with the decrement and the replacement
/// recorded, so that no surge is recorded in between.
pub type CapacityGuard = tokio::sync::OwnedMutexGuard<()>;

#[derive(Debug, Default)]
struct Ledger {
    /// Members before this run terminated anything (the first snapshot).
    snapshot: Option<HashSet<String>>,
    /// Instances claimed as replacements, by this process or (from the
    /// journal) by an earlier one of the same run.
    claimed: HashSet<String>,
    /// Capacity raises this process made (surges), and the decrements of
    /// those surges it made since.
    raised: u32,
    lowered: u32,
    capacity: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Replacements {
    /// The ledger of a resumed run: every instance its journal says a host
    /// was replaced by is taken, so that a host resumed part-way through
    /// its replacement cannot take another host's.
    pub fn from_record(record: &RunRecord) -> Self {
        let ledger = Self::default();
        for host in record.hosts.values() {
            if let (Some(group), Some(instance)) = (&host.replaced_in, &host.replaced_by) {
                ledger.claim(group, instance);
            }
        }
        ledger
    }

    /// Records the group's members, unless a snapshot was already taken: the
    /// first one, before any termination of this run, is the one that counts.
    pub fn snapshot(&self, group: &str, members: impl IntoIterator<Item = String>) {
        let mut groups = self.lock();
        let ledger = groups.entry(group.to_owned()).or_default();
        if ledger.snapshot.is_none() {
            ledger.snapshot = Some(members.into_iter().collect());
        }
    }

    /// A replacement begun before an interruption recorded the members it
    /// saw: instances launched since (its own replacement among them) are
    /// not old members, even if this process's snapshot counted them.
    pub fn forget_launched(&self, group: &str, members: &[String]) {
        let mut groups = self.lock();
        if let Some(snapshot) = groups.get_mut(group).and_then(|l| l.snapshot.as_mut()) {
            snapshot.retain(|id| members.contains(id));
        }
    }

    /// Instances that are not a replacement anybody may still take.
    pub fn known(&self, group: &str) -> Vec<String> {
        let groups = self.lock();
        let mut known: Vec<String> = groups
            .get(group)
            .map(|ledger| {
                ledger
                    .snapshot
                    .iter()
                    .flatten()
                    .chain(&ledger.claimed)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        known.dedup();
        known
    }

    /// Takes `instance` as a replacement; false if it is not new or someone
    /// took it first.
    pub fn claim(&self, group: &str, instance: &str) -> bool {
        let mut groups = self.lock();
        let ledger = groups.entry(group.to_owned()).or_default();
        let old = ledger
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.contains(instance));
        !old && ledger.claimed.insert(instance.to_owned())
    }

    /// Waits for the group's capacity to be ours to change.
    pub async fn capacity(&self, group: &str) -> CapacityGuard {
        let mutex =
            std::sync::Arc::clone(&self.lock().entry(group.to_owned()).or_default().capacity);
        mutex.lock_owned().await
    }

    /// A surge of this process raised the group's desired capacity.
    pub fn count_raise(&self, group: &str) {
        self.lock().entry(group.to_owned()).or_default().raised += 1;
    }

    /// A surge this process raised ended with the decrement.
    pub fn count_lower(&self, group: &str) {
        self.lock().entry(group.to_owned()).or_default().lowered += 1;
    }

    /// What this process's own surges changed the group's desired
    /// capacity by so far: raises, and decrements of those surges.
    pub fn changed_here(&self, group: &str) -> (u32, u32) {
        self.lock()
            .get(group)
            .map_or((0, 0), |ledger| (ledger.raised, ledger.lowered))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ledger>> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The race of two hosts replaced at once: the second looks at the group
    /// after the first one's replacement launched. Both must get one.
    #[test]
    fn a_late_snapshot_does_not_hide_another_hosts_replacement() {
        let ledger = Replacements::default();
        ledger.snapshot("g", ids(&["o1", "o2"]));
        // o1 terminated, n1 launched; the second host looks now.
        ledger.snapshot("g", ids(&["o2", "n1"]));
        assert_eq!(ledger.known("g"), ids(&["o1", "o2"]));
        // o2 terminated, n2 launched; the first host happens to see n2 first.
        assert!(ledger.claim("g", "n2"));
        // The second host sees n2 taken, and n1 still free.
        assert!(!ledger.claim("g", "n2"));
        assert!(!ledger.known("g").contains(&"n1".to_owned()));
        assert!(ledger.claim("g", "n1"));
    }

    /// A replacement killed after its terminate: the new process's snapshot
    /// already lists the replacement launched for it.
    #[test]
    fn a_resumed_replacement_can_claim_what_its_interrupted_self_launched() {
        let ledger = Replacements::default();
        ledger.snapshot("g", ids(&["o2", "n1"]));
        ledger.forget_launched("g", &ids(&["o1", "o2"]));
        assert!(ledger.claim("g", "n1"));
        assert!(!ledger.claim("g", "o2"));
    }

    /// A host resumed part-way through its replacement, after another
    /// host's replacement of the same group was recorded as done: the
    /// other's instance is not new to it, whatever its own record saw.
    #[test]
    fn a_resumed_replacement_never_takes_one_the_journal_gave_another_host() {
        let ledger = Replacements::default();
        ledger.claim("g", "n1");
        ledger.snapshot("g", ids(&["o1", "o2"]));
        ledger.forget_launched("g", &ids(&["o1", "o2"]));
        assert_eq!(ledger.known("g"), ids(&["n1", "o1", "o2"]));
        assert!(!ledger.claim("g", "n1"));
        assert!(ledger.claim("g", "n2"));
    }

    #[test]
    fn old_members_are_never_claimed() {
        let ledger = Replacements::default();
        ledger.snapshot("g", ids(&["o1"]));
        assert!(!ledger.claim("g", "o1"));
        assert!(ledger.claim("other", "o1"), "groups are separate");
    }
}
