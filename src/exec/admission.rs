//! Which queued hosts may start now: a pure function of who is out.
//!
//! A host is "out" from the moment it is admitted (it may drain any time
//! after) until the journal says it is back in every balancer, and a host
//! that failed and stays drained stays out. Admission takes the queue in
//! order and decides for the whole round at once, so two hosts can never
//! both pass a check that only one of them fits:
//!
//! - a host that is already out (left drained, failed and kept out, being
//!   rolled back) needs no room: it holds its slot already;
//! - any other host needs room under `max_unavailable` and its zone's cap;
//! - with `min_healthy`, every balancer of the host must keep its floor of
//!   healthy servers after this drain and every drain admitted but not yet
//!   done.

use std::collections::HashMap;

use crate::model::amount::Amount;

/// Who is out of service now, kept up to date by the dispatcher as the
/// journal records drains and returns, so that admission never scans the
/// fleet.
#[derive(Debug, Default, Clone)]
pub struct Occupancy {
    /// Host → zone.
    out: HashMap<String, String>,
    per_zone: HashMap<String, usize>,
}

impl Occupancy {
    /// Counts `host` as out (idempotent).
    pub fn hold(&mut self, host: &str, zone: &str) {
        if self.out.insert(host.to_owned(), zone.to_owned()).is_none() {
            *self.per_zone.entry(zone.to_owned()).or_default() += 1;
        }
    }

    /// `host` is back in service (idempotent).
    pub fn release(&mut self, host: &str) {
        if let Some(zone) = self.out.remove(host)
            && let Some(count) = self.per_zone.get_mut(&zone)
        {
            *count -= 1;
        }
    }

    pub fn holds(&self, host: &str) -> bool {
        self.out.contains_key(host)
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn total(&self) -> usize {
        self.out.len()
    }

    pub fn in_zone(&self, zone: &str) -> usize {
        self.per_zone.get(zone).copied().unwrap_or(0)
    }

    /// The hosts out, by name.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.out.keys().map(String::as_str)
    }
}

/// The caps admission enforces.
#[derive(Debug, Clone)]
pub struct Caps {
    pub max_unavailable: usize,
    pub zone_caps: HashMap<String, usize>,
    pub min_healthy: Option<Amount>,
}

/// A queued host as admission sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub host: &'a str,
    pub zone: &'a str,
    pub balancers: &'a [String],
}

/// What a balancer reports of its pool, and drains admitted on it that
/// it does not show yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub healthy: usize,
    pub total: usize,
    /// Admitted hosts not yet drained from this balancer (still counted
    /// healthy by it).
    pub pending: usize,
    /// The balancer could not say: nobody is drained from it.
    pub unknown: bool,
}

impl Pool {
    pub fn read(healthy: usize, total: usize, pending: usize) -> Self {
        Self {
            healthy,
            total,
            pending,
            unknown: false,
        }
    }

    /// A pool whose health could not be read.
    pub fn unknown() -> Self {
        Self {
            healthy: 0,
            total: 0,
            pending: 0,
            unknown: true,
        }
    }
}

/// Why the next host cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// `max_unavailable` or the zone's cap is full.
    Cap { zone: String },
    /// A balancer would fall under `min_healthy`.
    Floor {
        balancer: String,
        healthy: usize,
        total: usize,
        required: usize,
    },
    /// A balancer's pool could not be read for `min_healthy`.
    Unread { balancer: String },
}

impl Blocked {
    /// Why a host waiting on the floor failed to start, when it did.
    pub fn floor_detail(&self) -> Option<String> {
        match self {
            Blocked::Cap { .. } => None,
            Blocked::Floor {
                balancer,
                healthy,
                total,
                required,
            } => Some(format!(
                "balancer {balancer}: {healthy} of {total} healthy; min_healthy needs {required} left after the drain"
            )),
            Blocked::Unread { balancer } => Some(format!(
                "balancer {balancer}: its pool's health could not be read, and min_healthy drains nobody without it"
            )),
        }
    }
}

/// Admission's decision for one round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admitted {
    /// Indices into the candidates, in order.
    pub start: Vec<usize>,
    /// Why the first candidate left waiting waits.
    pub blocked: Option<Blocked>,
}

/// Takes candidates in order while they fit; the first that does not fit
/// stops the round (order is the plan's), except that hosts already out
/// always start.
pub fn admit(
    occupancy: &Occupancy,
    caps: &Caps,
    candidates: &[Candidate<'_>],
    pools: &HashMap<String, Pool>,
) -> Admitted {
    let mut admitted = Admitted::default();
    let mut total = occupancy.total();
    let mut per_zone: HashMap<&str, usize> = HashMap::new();
    let mut pools = pools.clone();
    let mut stopped = false;
    for (index, candidate) in candidates.iter().enumerate() {
        if occupancy.holds(candidate.host) {
            admitted.start.push(index);
            continue;
        }
        if stopped {
            continue;
        }
        let zone_out =
            occupancy.in_zone(candidate.zone) + per_zone.get(candidate.zone).copied().unwrap_or(0);
        let zone_cap = caps
            .zone_caps
            .get(candidate.zone)
            .copied()
            .unwrap_or(usize::MAX);
        if total >= caps.max_unavailable || zone_out >= zone_cap {
            admitted.blocked = Some(Blocked::Cap {
                zone: candidate.zone.to_owned(),
            });
            stopped = true;
            continue;
        }
        if let Some(floor) = caps.min_healthy
            && let Some(blocked) = below_floor(floor, candidate, &pools)
        {
            admitted.blocked = Some(blocked);
            stopped = true;
            continue;
        }
        for balancer in candidate.balancers {
            if let Some(pool) = pools.get_mut(balancer) {
                pool.pending += 1;
            }
        }
        total += 1;
        *per_zone.entry(candidate.zone).or_default() += 1;
        admitted.start.push(index);
    }
    admitted
}

/// The first balancer of `candidate` that this drain would take under the
/// floor, counting drains admitted but not done.
fn below_floor(
    floor: Amount,
    candidate: &Candidate<'_>,
    pools: &HashMap<String, Pool>,
) -> Option<Blocked> {
    candidate.balancers.iter().find_map(|balancer| {
        let pool = pools.get(balancer)?;
        if pool.unknown {
            return Some(Blocked::Unread {
                balancer: balancer.clone(),
            });
        }
        let required = floor.floor_of(pool.total);
        let left = pool.healthy.saturating_sub(pool.pending + 1);
        (left < required).then(|| Blocked::Floor {
            balancer: balancer.clone(),
            healthy: pool.healthy.saturating_sub(pool.pending),
            total: pool.total,
            required,
        })
    })
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
