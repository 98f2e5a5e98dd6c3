//! What to do to each host, and the policy around it: batches, caps, budgets.

use std::time::Duration;

use jiff::civil::{Time, Weekday};

use super::amount::Amount;
use super::template::{Template, Vars};

#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub vars: Vars,
    pub strategy: Strategy,
    pub window: Option<Window>,
    pub drain: DrainPolicy,
    pub steps: Vec<Step>,
    pub health: HealthPolicy,
    pub probes: Vec<Probe>,
    pub gates: Vec<Gate>,
    pub rollback: Vec<Step>,
    pub webhooks: Vec<String>,
    /// Auto Scaling members go to Standby around in-place steps.
    pub asg_standby: bool,
    /// Judge each returned host by its real traffic (`[watch]`).
    pub watch: Option<WatchPolicy>,
}

/// `[watch]`: how long a returned host's real traffic is watched, and
/// when it counts as regressed against the hosts not yet touched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchPolicy {
    pub duration: Duration,
    /// Fewer responses in the window: no verdict.
    pub min_requests: u64,
    /// A share, 0.01 for "1%".
    pub max_error_ratio: f64,
    pub baseline_factor: f64,
    pub max_latency_factor: Option<f64>,
}

impl Default for WatchPolicy {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(60),
            min_requests: 50,
            max_error_ratio: 0.01,
            baseline_factor: 2.0,
            max_latency_factor: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    /// Batch sizes in order; the last one repeats until every host is done.
    pub batch: Vec<Amount>,
    pub zones: ZoneMode,
    pub zone_order: Vec<String>,
    pub max_unavailable: Option<Amount>,
    pub max_unavailable_per_zone: Option<Amount>,
    pub pause: Duration,
    pub max_failed: Amount,
    pub max_failed_per_zone: Option<Amount>,
    pub on_failure: OnFailure,
    pub min_healthy: Option<Amount>,
    pub skip_if: Option<Template>,
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            batch: vec![Amount::Count(1)],
            zones: ZoneMode::OneAtATime,
            zone_order: Vec::new(),
            max_unavailable: None,
            max_unavailable_per_zone: None,
            pause: Duration::ZERO,
            max_failed: Amount::Count(0),
            max_failed_per_zone: None,
            on_failure: OnFailure::Halt,
            min_healthy: None,
            skip_if: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneMode {
    /// A batch never spans two zones.
    OneAtATime,
    /// Every batch takes from every zone evenly.
    Spread,
}

impl ZoneMode {
    pub fn label(self) -> &'static str {
        match self {
            ZoneMode::OneAtATime => "one-at-a-time",
            ZoneMode::Spread => "spread",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Halt,
    Rollback,
}

/// New batches start only inside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Days on which the window opens; every day when the file names none.
    pub days: Vec<Weekday>,
    pub start: Time,
    pub end: Time,
    /// An IANA time zone name, checked against the time zone database.
    pub timezone: String,
}

impl Window {
    /// Length of one opening; a window whose end is not after its start
    /// crosses midnight. Daylight-saving changes are the run's concern.
    pub fn length(&self) -> Duration {
        let minutes = |t: Time| u64::from(t.hour() as u8) * 60 + u64::from(t.minute() as u8);
        let (start, end) = (minutes(self.start), minutes(self.end));
        let span = if end > start {
            end - start
        } else {
            end + 24 * 60 - start
        };
        Duration::from_secs(span * 60)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainPolicy {
    /// How long to wait for the balancer to report the host drained.
    pub timeout: Duration,
    /// Extra wait after drain, for in-flight requests.
    pub settle: Duration,
    /// How long a returned host may take to be reported up; `None`: the
    /// balancer's own health check says (an ELBv2 group's interval ×
    /// healthy threshold), else 60 s.
    pub return_timeout: Option<Duration>,
}

impl Default for DrainPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            settle: Duration::from_secs(2),
            return_timeout: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub action: StepAction,
    pub only_if: Option<Template>,
    pub timeout: Duration,
    pub retries: u32,
    /// The time the step is expected to take, for the plan's estimate.
    pub estimate: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    Run(Template),
    /// Reboot and wait for SSH to come back with a new boot id.
    Reboot {
        /// How to reboot (default `systemctl reboot`).
        command: Template,
        /// Where the boot id is read (default the kernel's).
        boot_id_file: Template,
    },
    /// Replace the instance in its Auto Scaling group.
    ReplaceAsg {
        surge: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    pub interval: Duration,
    /// Consecutive rounds in which every probe passed.
    pub healthy_after: u32,
    pub timeout: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            healthy_after: 3,
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub kind: ProbeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    Http {
        url: Template,
        expect_status: u16,
        expect_body: Option<Template>,
    },
    Tcp {
        target: Template,
    },
    Command {
        command: Template,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub name: String,
    pub kind: GateKind,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GateKind {
    Command {
        command: String,
    },
    Http {
        url: String,
        expect_status: u16,
        expect_body: Option<String>,
    },
    Prometheus {
        url: String,
        query: String,
        max: Option<f64>,
        min: Option<f64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: (i8, i8), end: (i8, i8)) -> Window {
        Window {
            days: Vec::new(),
            start: Time::constant(start.0, start.1, 0, 0),
            end: Time::constant(end.0, end.1, 0, 0),
            timezone: "UTC".into(),
        }
    }

    #[test]
    fn window_length_handles_midnight() {
        assert_eq!(
            window((2, 0), (5, 0)).length(),
            Duration::from_secs(3 * 3600)
        );
        assert_eq!(
            window((22, 30), (4, 0)).length(),
            Duration::from_secs(5 * 3600 + 1800)
        );
    }
}
