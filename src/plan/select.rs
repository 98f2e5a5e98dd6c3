//! `--limit`: which hosts a command applies to, by host or zone name or glob.

use globset::{Glob, GlobMatcher};

use super::batches::{HostId, PlanInput, ZoneHosts};
use crate::model::inventory::Inventory;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("--limit {pattern}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("--limit {pattern} matches no host or zone in the inventory")]
    NoMatch { pattern: String },
}

/// Groups the selected hosts by zone, zones and hosts in inventory order.
/// With no patterns every host is selected. `HostId`s index
/// [`Inventory::hosts`] in iteration order.
pub fn select(inventory: &Inventory, patterns: &[String]) -> Result<PlanInput, SelectError> {
    let matchers: Vec<(String, GlobMatcher)> = patterns
        .iter()
        .map(|pattern| {
            Glob::new(pattern)
                .map(|glob| (pattern.clone(), glob.compile_matcher()))
                .map_err(|error| SelectError::BadPattern {
                    pattern: pattern.clone(),
                    reason: error.kind().to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    let mut used = vec![false; matchers.len()];
    let mut zones = Vec::new();
    let mut next_id = 0u32;
    for zone in &inventory.zones {
        let zone_hits: Vec<bool> = matchers
            .iter()
            .map(|(_, m)| m.is_match(&zone.name))
            .collect();
        let mut hosts = Vec::new();
        for host in &zone.hosts {
            let id = HostId(next_id);
            next_id += 1;
            let mut selected = matchers.is_empty();
            for (index, (_, matcher)) in matchers.iter().enumerate() {
                if zone_hits[index] || matcher.is_match(&host.name) {
                    used[index] = true;
                    selected = true;
                }
            }
            if selected {
                hosts.push(id);
            }
        }
        zones.push(ZoneHosts {
            name: zone.name.clone(),
            hosts,
            size: zone.hosts.len(),
        });
    }
    if let Some(index) = used.iter().position(|&u| !u) {
        return Err(SelectError::NoMatch {
            pattern: matchers[index].0.clone(),
        });
    }
    Ok(PlanInput {
        fleet_size: inventory.host_count(),
        zones,
    })
}
