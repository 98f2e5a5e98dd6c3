//! How long a plan should take, from the playbook's own timings.

use std::time::Duration;

use super::batches::Plan;
use crate::model::playbook::Playbook;

/// The parts of one batch's expected duration; hosts of a batch run at once,
/// so a batch takes as long as one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub settle: Duration,
    pub steps: Duration,
    pub health: Duration,
    /// `[watch] for`: the batch ends when its hosts' watches end.
    pub watch: Duration,
    pub pause: Duration,
    pub batches: usize,
}

impl Estimate {
    pub fn of(plan: &Plan, playbook: &Playbook) -> Self {
        Self {
            settle: playbook.drain.settle,
            steps: playbook.steps.iter().map(|step| step.estimate).sum(),
            health: if playbook.probes.is_empty() {
                Duration::ZERO
            } else {
                playbook.health.interval * playbook.health.healthy_after
            },
            watch: playbook.watch.map_or(Duration::ZERO, |w| w.duration),
            pause: playbook.strategy.pause,
            batches: plan.batches.len(),
        }
    }

    pub fn per_batch(&self) -> Duration {
        self.settle + self.steps + self.health + self.watch
    }

    /// Every batch, with the pauses between them.
    pub fn total(&self) -> Duration {
        let batches = u32::try_from(self.batches).unwrap_or(u32::MAX);
        self.per_batch() * batches + self.pause * batches.saturating_sub(1)
    }
}
