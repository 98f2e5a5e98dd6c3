//! The planner: selected hosts and a strategy in, ordered batches out.
//!
//! Pure: no clock, no I/O. The rules, in the words users read them:
//! - Batch sizes follow `batch`; the last entry repeats. Percentages are of
//!   the selected hosts, rounded down, never below one host.
//! - `one-at-a-time`: a batch never spans two zones. Zones in `zone_order`
//!   go first, the rest in inventory order. The size sequence runs across
//!   zones, so a canary of 1 happens once per run, not once per zone.
//! - `spread`: each batch draws round-robin from every zone that has hosts
//!   left, so zones are updated evenly.
//! - `max_unavailable` (percent of the whole inventory) caps every batch; a
//!   `batch` entry larger than it is an error, because the user asked for two
//!   contradicting things. `max_unavailable_per_zone` (percent of each
//!   zone's inventory hosts) caps the hosts one batch takes from a zone.

use std::collections::HashSet;

use crate::model::amount::Amount;
use crate::model::playbook::{Strategy, ZoneMode};

/// A host, as an index into the inventory's hosts in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub u32);

/// The selected hosts, by zone in inventory order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    /// Hosts in the whole inventory, selected or not: capacity caps are
    /// fractions of the real fleet.
    pub fleet_size: usize,
    pub zones: Vec<ZoneHosts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneHosts {
    pub name: String,
    /// Selected hosts of this zone, in inventory order.
    pub hosts: Vec<HostId>,
    /// Hosts of this zone in the inventory, selected or not.
    pub size: usize,
}

impl PlanInput {
    pub fn selected(&self) -> usize {
        self.zones.iter().map(|z| z.hosts.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Batch>,
    pub selected: usize,
    /// Failed hosts tolerated; one more halts the run.
    pub failure_budget: usize,
    /// Per zone, failed hosts tolerated in that zone, when the playbook sets one.
    pub zone_failure_budgets: Option<Vec<(String, usize)>>,
    /// Hosts allowed out of service at once across the fleet.
    pub max_unavailable: usize,
    /// Per zone, hosts allowed out of service at once, when capped.
    pub zone_caps: Option<Vec<(String, usize)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub index: usize,
    /// Zones the batch takes hosts from, in plan order.
    pub zones: Vec<String>,
    pub hosts: Vec<HostId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "batch entry {position} ({entry} = {size} hosts) is larger than max_unavailable ({cap} = {cap_hosts} of {fleet} hosts)"
    )]
    BatchOverCap {
        position: usize,
        entry: Amount,
        size: usize,
        cap: Amount,
        cap_hosts: usize,
        fleet: usize,
    },
}

/// Plans the batches for `input` under `strategy`.
pub fn plan_batches(input: &PlanInput, strategy: &Strategy) -> Result<Plan, PlanError> {
    let selected = input.selected();
    let max_unavailable = strategy
        .max_unavailable
        .map_or(usize::MAX, |cap| cap.at_least_one_of(input.fleet_size));
    let zone_cap = |zone: &ZoneHosts| {
        strategy
            .max_unavailable_per_zone
            .map_or(usize::MAX, |cap| cap.at_least_one_of(zone.size))
    };
    let ordered = order_zones(&input.zones, &strategy.zone_order);
    let mut sizes = BatchSizes::new(strategy, selected, max_unavailable, input.fleet_size);
    let mut batches = Vec::new();
    match strategy.zones {
        ZoneMode::OneAtATime => {
            let mut remaining_total = selected;
            for zone in &ordered {
                let cap = zone_cap(zone).min(max_unavailable);
                let mut rest: &[HostId] = &zone.hosts;
                while !rest.is_empty() {
                    let size = sizes.next(remaining_total)?.min(cap).min(rest.len());
                    let (taken, left) = rest.split_at(size);
                    batches.push(Batch {
                        index: batches.len(),
                        zones: vec![zone.name.clone()],
                        hosts: taken.to_vec(),
                    });
                    remaining_total -= size;
                    rest = left;
                }
            }
        }
        ZoneMode::Spread => {
            let mut queues: Vec<(&ZoneHosts, &[HostId], usize)> = ordered
                .iter()
                .map(|zone| (*zone, zone.hosts.as_slice(), zone_cap(zone)))
                .collect();
            let mut remaining_total = selected;
            while remaining_total > 0 {
                let size = sizes.next(remaining_total)?.min(remaining_total);
                let mut taken_per_zone = vec![0usize; queues.len()];
                let mut taken = 0;
                // Round-robin, one host per zone per turn, within each zone's cap.
                while taken < size {
                    let before = taken;
                    for (index, (_, rest, cap)) in queues.iter().enumerate() {
                        if taken == size {
                            break;
                        }
                        if taken_per_zone[index] < rest.len() && taken_per_zone[index] < *cap {
                            taken_per_zone[index] += 1;
                            taken += 1;
                        }
                    }
                    if taken == before {
                        break; // every zone is at its cap for this batch
                    }
                }
                let mut batch = Batch {
                    index: batches.len(),
                    zones: Vec::new(),
                    hosts: Vec::with_capacity(taken),
                };
                for (index, (zone, rest, _)) in queues.iter_mut().enumerate() {
                    let count = taken_per_zone[index];
                    if count > 0 {
                        batch.zones.push(zone.name.clone());
                        batch.hosts.extend_from_slice(&rest[..count]);
                        *rest = &rest[count..];
                    }
                }
                if taken == 0 {
                    // Caps are at least one host, so this cannot happen;
                    // stopping beats looping forever if it ever does.
                    debug_assert!(false, "a spread batch took no host");
                    break;
                }
                remaining_total -= taken;
                batches.push(batch);
            }
        }
    }
    let failure_budget = strategy.max_failed.floor_of(selected).min(selected);
    let zone_failure_budgets = strategy.max_failed_per_zone.map(|amount| {
        ordered
            .iter()
            .filter(|zone| !zone.hosts.is_empty())
            .map(|zone| {
                (
                    zone.name.clone(),
                    amount.floor_of(zone.hosts.len()).min(zone.hosts.len()),
                )
            })
            .collect()
    });
    let zone_caps = strategy.max_unavailable_per_zone.map(|_| {
        ordered
            .iter()
            .filter(|zone| !zone.hosts.is_empty())
            .map(|zone| (zone.name.clone(), zone_cap(zone)))
            .collect()
    });
    Ok(Plan {
        batches,
        selected,
        failure_budget,
        zone_failure_budgets,
        max_unavailable: max_unavailable.min(input.fleet_size),
        zone_caps,
    })
}

/// Zones named in `zone_order` first, in that order, then the rest in
/// inventory order; zones with no selected host are left out.
fn order_zones<'a>(zones: &'a [ZoneHosts], zone_order: &[String]) -> Vec<&'a ZoneHosts> {
    let mut ordered: Vec<&ZoneHosts> = zone_order
        .iter()
        .filter_map(|name| zones.iter().find(|zone| &zone.name == name))
        .collect();
    let named: HashSet<&str> = zone_order.iter().map(String::as_str).collect();
    ordered.extend(
        zones
            .iter()
            .filter(|zone| !named.contains(zone.name.as_str())),
    );
    ordered.retain(|zone| !zone.hosts.is_empty());
    ordered
}

/// The `batch` list as a sequence of sizes, the last entry repeating.
struct BatchSizes<'a> {
    strategy: &'a Strategy,
    selected: usize,
    max_unavailable: usize,
    fleet: usize,
    position: usize,
}

impl<'a> BatchSizes<'a> {
    fn new(strategy: &'a Strategy, selected: usize, max_unavailable: usize, fleet: usize) -> Self {
        Self {
            strategy,
            selected,
            max_unavailable,
            fleet,
            position: 0,
        }
    }

    /// The next batch's size, refusing one that the fleet cap forbids.
    fn next(&mut self, remaining: usize) -> Result<usize, PlanError> {
        let list = &self.strategy.batch;
        let index = self.position.min(list.len().saturating_sub(1));
        self.position += 1;
        let entry = list.get(index).copied().unwrap_or(Amount::Count(1));
        let size = entry.at_least_one_of(self.selected).max(1);
        if size.min(remaining) > self.max_unavailable {
            return Err(PlanError::BatchOverCap {
                position: index + 1,
                entry,
                size,
                cap: self.strategy.max_unavailable.unwrap_or(Amount::Count(0)),
                cap_hosts: self.max_unavailable,
                fleet: self.fleet,
            });
        }
        Ok(size)
    }
}

#[cfg(test)]
#[path = "batches_tests.rs"]
mod tests;
