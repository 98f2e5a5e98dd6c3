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

/// The run's ledger of replacements, per Auto Scaling group.
#[derive(Debug, Default)]
pub struct Replacements {
    groups: Mutex<HashMap<String, Ledger>>,
}

/// Held while a surge reads the group's desired capacity and raises it by
/// one, so that two surges at once raise it by two.
pub type CapacityGuard = tokio::sync::OwnedMutexGuard<()>;

#[derive(Debug, Default)]
struct Ledger {
    /// Members before this run terminated anything, and every claimed one.
    known: HashSet<String>,
    /// Instances claimed as replacements.
    claimed: HashSet<String>,
    capacity: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Replacements {
    /// Records the group's members, unless a snapshot was already taken: the
    /// first one, before any termination of this run, is the one that counts.
    pub fn snapshot(&self, group: &str, members: impl IntoIterator<Item = String>) {
        let mut groups = self.lock();
        groups.entry(group.to_owned()).or_insert_with(|| Ledger {
            known: members.into_iter().collect(),
            claimed: HashSet::new(),
            capacity: std::sync::Arc::default(),
        });
    }

    /// A replacement begun before an interruption recorded the members it
    /// saw: instances launched since (its own replacement among them) are
    /// not old members, even if this process's snapshot counted them.
    pub fn forget_launched(&self, group: &str, members: &[String]) {
        let mut groups = self.lock();
        if let Some(ledger) = groups.get_mut(group) {
            let snapshot = std::mem::take(&mut ledger.known);
            ledger.known = snapshot
                .into_iter()
                .filter(|id| members.contains(id) || ledger.claimed.contains(id))
                .collect();
        }
    }

    /// Instances that are not a replacement anybody may still take.
    pub fn known(&self, group: &str) -> Vec<String> {
        let groups = self.lock();
        let mut known: Vec<String> = groups
            .get(group)
            .map(|ledger| ledger.known.iter().cloned().collect())
            .unwrap_or_default();
        known.sort();
        known
    }

    /// Takes `instance` as a replacement; false if it is not new or someone
    /// took it first.
    pub fn claim(&self, group: &str, instance: &str) -> bool {
        let mut groups = self.lock();
        let ledger = groups.entry(group.to_owned()).or_default();
        ledger.claimed.insert(instance.to_owned());
        ledger.known.insert(instance.to_owned())
    }

    /// Waits for the group's capacity to be ours to change.
    pub async fn capacity(&self, group: &str) -> CapacityGuard {
        let mutex =
            std::sync::Arc::clone(&self.lock().entry(group.to_owned()).or_default().capacity);
        mutex.lock_owned().await
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

    #[test]
    fn old_members_are_never_claimed() {
        let ledger = Replacements::default();
        ledger.snapshot("g", ids(&["o1"]));
        assert!(!ledger.claim("g", "o1"));
        assert!(ledger.claim("other", "o1"), "groups are separate");
    }
}
