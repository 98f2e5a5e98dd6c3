//! One reader of each target group's health, shared by every host that
//! waits on it.
//!
//! ELBv2's describe calls share a small per-account budget (a bucket of
//! about 40, refilled at 10 a second). A host waiting out a deregistration
//! delay, or for its health checks to pass, asks for its status every
//! 100 ms; if every such question were a `DescribeTargetHealth`, two
//! waiting hosts would exhaust the budget. So each group is read at most
//! once per [`GroupSettings::poll_every`] (paced by the group's own health
//! check interval: its state cannot change faster than that) and every
//! waiting host is answered from that one reading, as HAProxy's servers
//! are from one `show servers state`. Throttling pushes the next reading
//! further out instead of failing the hosts: waiters get the last reading
//! while it is recent, and only a group that stays throttled for minutes
//! fails them.
//!
//! Reads that decide what to change (which registrations to remove or put
//! back) are fresh, and every change fleetroll makes to a group discards
//! its reading, so nobody is answered from before it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;
use tokio::time::Instant;

use super::config::AwsError;

/// AWS's defaults when a group does not say.
const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);
const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_HEALTHY_THRESHOLD: u32 = 5;
/// Readings of one group are at least this far apart, and at most this
/// far apart while hosts wait on it.
const POLL_FLOOR: Duration = Duration::from_secs(1);
const POLL_CEILING: Duration = Duration::from_secs(5);
/// A throttled group is read again after this, doubling to the ceiling.
const THROTTLED_FIRST: Duration = Duration::from_secs(1);
const THROTTLED_CEILING: Duration = Duration::from_secs(30);
/// How old a reading may be and still answer waiters while the group is
/// throttled.
const STALE_LIMIT: Duration = Duration::from_secs(180);

/// What a target group's own settings say about its timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// `deregistration_delay.timeout_seconds`: how long AWS keeps a
    /// deregistered target draining.
    pub deregistration_delay: Duration,
    pub health_check_interval: Duration,
    /// Consecutive passing checks before a target is `healthy`.
    pub healthy_threshold: u32,
    /// Targets are IP addresses (`ip`), not instance ids.
    pub by_ip: bool,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            deregistration_delay: DEFAULT_DEREGISTRATION_DELAY,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            by_ip: false,
        }
    }
}

impl GroupSettings {
    /// How often the group is read while hosts wait on it: a tenth of its
    /// health check interval (3 s with AWS's defaults), within 1 to 5 s.
    pub fn poll_every(&self) -> Duration {
        (self.health_check_interval / 10).clamp(POLL_FLOOR, POLL_CEILING)
    }

    /// How long a registered target may take to be reported healthy: its
    /// healthy threshold of passing checks, one more interval for the
    /// check under way at registration, and 30 s for AWS to begin.
    pub fn healthy_within(&self) -> Duration {
        self.health_check_interval * (self.healthy_threshold + 1) + Duration::from_secs(30)
    }
}

/// Whether a reading may come from the shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// For waiting: a reading younger than the group's poll interval.
    Shared,
    /// For deciding a change: read now.
    Fresh,
}

pub type Health = Arc<Vec<TargetHealthDescription>>;

/// The last reading of one group, and its throttling.
#[derive(Debug, Default)]
struct Reading {
    answer: Option<(Instant, Health)>,
    /// Throttled: the group is not read again before this.
    quiet_until: Option<Instant>,
    backoff: Duration,
}

/// Reads target groups' health and settings for one balancer.
#[derive(Debug)]
pub struct HealthObserver {
    client: Client,
    readings: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Reading>>>>,
    /// Each group's settings, and when AWS's defaults were assumed for
    /// want of an answer (asked again a minute later).
    settings: Mutex<HashMap<String, (GroupSettings, Option<Instant>)>>,
}

/// How long assumed settings stand before the group is asked again.
const ASSUMED_FOR: Duration = Duration::from_secs(60);

impl HealthObserver {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            readings: Mutex::default(),
            settings: Mutex::default(),
        }
    }

    fn reading(&self, arn: &str) -> Arc<tokio::sync::Mutex<Reading>> {
        let mut readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(readings.entry(arn.to_owned()).or_default())
    }

    /// The group's targets and their health: from the shared reading when
    /// `freshness` allows and it is recent, else read now. Callers waiting
    /// on the same group take turns, so one reading answers all of them.
    pub async fn health(&self, arn: &str, freshness: Freshness) -> Result<Health, AwsError> {
        let reading = self.reading(arn);
        let mut reading = reading.lock().await;
        if freshness == Freshness::Shared {
            let now = Instant::now();
            let quiet = reading.quiet_until.is_some_and(|until| now < until);
            if let Some((at, answer)) = &reading.answer {
                let every = self.settings(arn).await.poll_every();
                let age = now.saturating_duration_since(*at);
                if age < every || (quiet && age < STALE_LIMIT) {
                    return Ok(Arc::clone(answer));
                }
            }
            if let Some(until) = reading.quiet_until.filter(|_| quiet) {
                tokio::time::sleep_until(until).await;
            }
        }
        match self.describe(arn).await {
            Ok(answer) => {
                reading.answer = Some((Instant::now(), Arc::clone(&answer)));
                reading.quiet_until = None;
                reading.backoff = Duration::ZERO;
                Ok(answer)
            }
            Err(error) if error.is_throttling() => {
                reading.backoff = (reading.backoff * 2).clamp(THROTTLED_FIRST, THROTTLED_CEILING);
                reading.quiet_until = Some(Instant::now() + reading.backoff);
                tracing::debug!(
                    "{error}: reading target group {arn} again in {:?}",
                    reading.backoff
                );
                match &reading.answer {
                    Some((at, answer))
                        if freshness == Freshness::Shared && at.elapsed() < STALE_LIMIT =>
                    {
                        Ok(Arc::clone(answer))
                    }
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Forgets the group's reading: fleetroll just changed the group.
    pub async fn changed(&self, arn: &str) {
        self.reading(arn).lock().await.answer = None;
    }

    async fn describe(&self, arn: &str) -> Result<Health, AwsError> {
        self.client
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map(|answer| Arc::new(answer.target_health_descriptions.unwrap_or_default()))
            .map_err(|e| AwsError::from_sdk("DescribeTargetHealth", arn, &e))
    }

    /// The group's timing settings, read once per run; AWS's defaults
    /// while they cannot be read (read again next time).
    pub async fn settings(&self, arn: &str) -> GroupSettings {
        let known = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(arn)
            .copied();
        match known {
            Some((settings, None)) => return settings,
            Some((settings, Some(assumed))) if assumed.elapsed() < ASSUMED_FOR => return settings,
            _ => {}
        }
        let (settings, assumed) = match self.read_settings(arn).await {
            Ok(settings) => (settings, None),
            Err(error) => {
                tracing::debug!("{error}: assuming AWS's defaults for {arn}");
                (GroupSettings::default(), Some(Instant::now()))
            }
        };
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(arn.to_owned(), (settings, assumed));
        settings
    }

    async fn read_settings(&self, arn: &str) -> Result<GroupSettings, AwsError> {
        let mut settings = GroupSettings::default();
        let groups = self
            .client
            .describe_target_groups()
            .target_group_arns(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeTargetGroups", arn, &e))?;
        if let Some(group) = groups.target_groups().first() {
            settings.by_ip = group.target_type()
                == Some(&aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip);
            if let Some(seconds) = group
                .health_check_interval_seconds()
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
            {
                settings.health_check_interval = Duration::from_secs(seconds);
            }
            if let Some(count) = group
                .healthy_threshold_count()
                .and_then(|c| u32::try_from(c).ok())
                .filter(|c| *c > 0)
            {
                settings.healthy_threshold = count;
            }
        }
        let attributes = self
            .client
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeTargetGroupAttributes", arn, &e))?;
        if let Some(seconds) = attributes
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value()?.parse().ok())
        {
            settings.deregistration_delay = Duration::from_secs(seconds);
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_interval_follows_the_health_check_within_bounds() {
        let aws_defaults = GroupSettings::default();
        assert_eq!(aws_defaults.poll_every(), Duration::from_secs(3));
        let fastest = GroupSettings {
            health_check_interval: Duration::from_secs(5),
            ..aws_defaults
        };
        assert_eq!(fastest.poll_every(), POLL_FLOOR);
        let slowest = GroupSettings {
            health_check_interval: Duration::from_secs(300),
            ..aws_defaults
        };
        assert_eq!(slowest.poll_every(), POLL_CEILING);
    }

    #[test]
    fn a_target_has_its_healthy_threshold_of_checks_and_more_to_become_healthy() {
        // AWS's defaults: 30 s × 5 checks is 150 s; a fixed 60 s would give
        // up on a working host long before AWS could call it healthy.
        let bound = GroupSettings::default().healthy_within();
        assert_eq!(bound, Duration::from_secs(30 * 6 + 30));
        assert!(bound > Duration::from_secs(150));
    }
}
