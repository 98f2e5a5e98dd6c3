//! What every host task shares: the transports and the playbook.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::model::playbook::Playbook;
use crate::transport::balancer::LoadBalancer;
use crate::transport::probe::Prober;
use crate::transport::shell::Connector;

/// The outside world, bundled once by `app` and shared by host tasks.
#[derive(Debug, Clone)]
pub struct Transports {
    pub connector: Arc<dyn Connector>,
    /// By balancer name.
    pub balancers: HashMap<String, Arc<dyn LoadBalancer>>,
    pub prober: Prober,
}

/// Polling cadence for waits on the outside world. Every wait also has a
/// deadline from the playbook; these only say how often to look.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// How often to ask a balancer whether a drain finished or a host is up.
    pub balancer_poll: Duration,
    /// How long to wait for a balancer to report a returned host up.
    pub up_timeout: Duration,
    /// Attempts to connect before a host is called unreachable.
    pub connect_attempts: usize,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            balancer_poll: Duration::from_millis(100),
            up_timeout: Duration::from_secs(60),
            connect_attempts: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunEnv {
    pub transports: Transports,
    pub playbook: Arc<Playbook>,
    pub cadence: Cadence,
    /// Whether rolling a host runs anything on it over SSH; a playbook that
    /// only replaces instances does not connect at all.
    pub needs_ssh: bool,
    /// Which new Auto Scaling instance replaced which old one.
    pub replacements: Arc<super::replacements::Replacements>,
}

impl RunEnv {
    /// Whether `playbook` over `inventory` ever needs an SSH session.
    pub fn needs_ssh(playbook: &Playbook, inventory: &crate::model::inventory::Inventory) -> bool {
        use crate::model::inventory::BalancerKind;
        use crate::model::playbook::{ProbeKind, StepAction};
        let steps = playbook
            .steps
            .iter()
            .chain(&playbook.rollback)
            .any(|s| s.only_if.is_some() || !matches!(s.action, StepAction::ReplaceAsg { .. }));
        let probes = playbook
            .probes
            .iter()
            .any(|p| matches!(p.kind, ProbeKind::Command { .. }));
        let balancers = inventory
            .balancers
            .iter()
            .any(|b| matches!(b.kind, BalancerKind::Command { ssh: true, .. }));
        playbook.strategy.skip_if.is_some() || steps || probes || balancers
    }
}
