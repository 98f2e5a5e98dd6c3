//! AWS ELBv2 target groups as a fleetroll balancer.
//!
//! Draining a host deregisters exactly its target (id and port) from each of
//! its target groups and nothing else; undraining registers the same
//! registrations again. ELBv2 forgets a deregistered target, so the
//! registrations removed are remembered per target; with `discover = true`
//! they are the only record of where the host belongs, and a controller that
//! may die between drain and undrain should journal them
//! ([`TargetGroupBalancer::drained_registrations`]) and give them back after a
//! restart ([`TargetGroupBalancer::restore_registrations`]).
//!
//! ELBv2 does not count connections. `sessions` is 1 while the target is
//! registered or draining in any group (traffic may still reach it) and 0
//! once it is gone from every group or `unused`, so the caller's drain wait
//! ends when AWS has finished the deregistration delay.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealthDescription, TargetHealthStateEnum, TargetTypeEnum,
};
use futures_util::{StreamExt, TryStreamExt};

use super::config::{AwsError, sdk_config};
use super::target_health::{Freshness, GroupSettings, Health, HealthObserver};
use crate::model::inventory::{BalancerKind, Host, TargetGroups};
use crate::transport::balancer::{
    AdminState, BalancerError, LoadBalancer, PoolStatus, ServerStatus, Target,
};

/// AWS reports a target gone a little after its deregistration delay ends.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(10);
/// How long a discovery pass answers for targets it did not find.
const REDISCOVER_AFTER: Duration = Duration::from_secs(15);
/// Target groups described at once while discovering: enough to keep a large
/// account quick, few enough not to provoke throttling.
const DISCOVERY_CONCURRENCY: usize = 4;

/// One registration of a target in a target group: what DeregisterTargets
/// removed and RegisterTargets puts back.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Registration {
    pub target_group_arn: String,
    /// The target id: an instance id or an IP address.
    pub id: String,
    /// The port it was registered on; `None` lets the group's port apply.
    pub port: Option<u16>,
}

/// One registration of the target at hand in one DescribeTargetHealth answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub port: Option<u16>,
    pub state: TargetHealthStateEnum,
}

/// What the balancer remembers between calls.
#[derive(Debug, Default)]
struct Memory {
    /// Registrations this balancer removed, by target id, until undrained.
    drained: HashMap<String, BTreeSet<Registration>>,
    /// `discover = true`: the groups each target id was found in by the last
    /// discovery pass (every target of every group, not only our hosts').
    seen: HashMap<String, BTreeSet<String>>,
    /// When the last discovery pass ran. An id missing from `seen` is
    /// registered nowhere as of then; it is looked for again once the pass
    /// is [`REDISCOVER_AFTER`] old, since a new instance (a replacement)
    /// gets registered after launch.
    discovered_at: Option<Instant>,
    /// `discover = true`: the target ids of the hosts asked about; the pool
    /// is their groups.
    hosts: BTreeSet<String>,
}

#[derive(Debug)]
pub struct TargetGroupBalancer {
    name: String,
    client: Client,
    observer: HealthObserver,
    groups: TargetGroups,
    /// The configured target port: only registrations on it are touched.
    port: Option<u16>,
    memory: Mutex<Memory>,
}

impl TargetGroupBalancer {
    pub fn new(
        name: &str,
        config: &SdkConfig,
        target_groups: TargetGroups,
        port: Option<u16>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            client: Client::new(config),
            observer: HealthObserver::new(Client::new(config)),
            groups: target_groups,
            port,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// The balancer for an `aws-target-group` inventory entry, with the
    /// shared SDK configuration of its region and endpoint; `None` for other
    /// kinds.
    pub async fn from_kind(name: &str, kind: &BalancerKind) -> Option<Self> {
        let BalancerKind::AwsTargetGroup {
            target_groups,
            region,
            endpoint_url,
            port,
        } = kind
        else {
            return None;
        };
        let config = sdk_config(region.as_deref(), endpoint_url.as_deref()).await;
        Some(Self::new(name, &config, target_groups.clone(), *port))
    }

    /// The registrations drained from and not yet given back, for the
    /// journal.
    pub fn drained_registrations(&self, host: &Host) -> Vec<Registration> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        ids_of(host)
            .iter()
            .filter_map(|id| memory.drained.get(id))
            .flatten()
            .cloned()
            .collect()
    }

    /// Remembers registrations drained by an earlier process (from the
    /// journal), so that `undrain` puts them back.
    pub fn restore_registrations(&self, registrations: impl IntoIterator<Item = Registration>) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        for registration in registrations {
            memory
                .drained
                .entry(registration.id.clone())
                .or_default()
                .insert(registration);
        }
    }

    /// A group's timing settings (read once, AWS's defaults while they
    /// cannot be read).
    pub async fn group_settings(&self, arn: &str) -> GroupSettings {
        self.observer.settings(arn).await
    }

    /// The longest deregistration delay over the host's groups: how long a
    /// drain of this host can take at most.
    pub async fn max_deregistration_delay(
        &self,
        target: Target<'_>,
    ) -> Result<Duration, BalancerError> {
        let mut longest = Duration::ZERO;
        for arn in self.groups_of(target.host).await? {
            longest = longest.max(self.observer.settings(&arn).await.deregistration_delay);
        }
        Ok(longest)
    }

    fn error(&self, error: AwsError) -> BalancerError {
        if error.transient {
            BalancerError::Unreachable {
                balancer: self.name.clone(),
                reason: error.to_string(),
            }
        } else {
            BalancerError::Refused {
                balancer: self.name.clone(),
                command: format!("{} {}", error.operation, error.subject),
                reply: error.reply(),
            }
        }
    }

    async fn health(&self, arn: &str, freshness: Freshness) -> Result<Health, BalancerError> {
        self.observer
            .health(arn, freshness)
            .await
            .map_err(|e| self.error(e))
    }

    /// Every instance or IP target group of the account and region.
    async fn all_groups(&self) -> Result<Vec<String>, BalancerError> {
        let pages: Vec<_> = self
            .client
            .describe_target_groups()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error(AwsError::from_sdk("DescribeTargetGroups", "(all)", &e)))?;
        Ok(pages
            .iter()
            .flat_map(|page| page.target_groups())
            .filter(|group| {
                // Lambda and ALB targets are never one of our hosts.
                matches!(
                    group.target_type(),
                    None | Some(TargetTypeEnum::Instance | TargetTypeEnum::Ip)
                )
            })
            .filter_map(|group| group.target_group_arn().map(str::to_owned))
            .collect())
    }

    /// A discovery pass: which groups each target id is registered in.
    async fn discover_all(&self) -> Result<(), BalancerError> {
        let arns = self.all_groups().await?;
        let answers: Vec<(String, Health)> = futures_util::stream::iter(arns)
            .map(|arn| async move {
                let health = self.health(&arn, Freshness::Shared).await?;
                Ok::<_, BalancerError>((arn, health))
            })
            .buffered(DISCOVERY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut seen: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (arn, health) in answers {
            for description in health.iter() {
                let Some(id) = description.target().and_then(|t| t.id()) else {
                    continue;
                };
                if let Some(port) = self.port {
                    if target_port(description) != Some(port) {
                        continue;
                    }
                }
                seen.entry(id.to_owned()).or_default().insert(arn.clone());
            }
        }
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.seen = seen;
        memory.discovered_at = Some(Instant::now());
        Ok(())
    }

    /// The groups to look at for `id`: the configured ones, or those it was
    /// discovered in plus those it was drained from (a deregistered target is
    /// not found by discovery any more).
    async fn groups_of(&self, host: &Host) -> Result<Vec<String>, BalancerError> {
        if let TargetGroups::Arns(arns) = &self.groups {
            return Ok(arns.clone());
        }
        let ids = ids_of(host);
        let known = |memory: &Memory| -> Option<BTreeSet<String>> {
            let drained = ids.iter().filter_map(|id| memory.drained.get(id)).flatten();
            let mut arns: BTreeSet<String> = drained.map(|r| r.target_group_arn.clone()).collect();
            let fresh = memory
                .discovered_at
                .is_some_and(|at| at.elapsed() < REDISCOVER_AFTER);
            let seen: Vec<&BTreeSet<String>> =
                ids.iter().filter_map(|id| memory.seen.get(id)).collect();
            if seen.is_empty() && !fresh && arns.is_empty() {
                return None;
            }
            arns.extend(seen.into_iter().flatten().cloned());
            Some(arns)
        };
        let cached = {
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            memory.hosts.extend(ids.iter().cloned());
            known(&memory)
        };
        if let Some(arns) = cached {
            return Ok(arns.into_iter().collect());
        }
        self.discover_all().await?;
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        Ok(known(&memory).unwrap_or_default().into_iter().collect())
    }

    /// The host's id in group `arn` (its private IP in an `ip` group).
    async fn id_in(&self, arn: &str, host: &Host) -> String {
        if ids_of(host).len() == 1 {
            // Known by one id only: the group's type changes nothing.
            return target_id(host);
        }
        id_in(host, &self.observer.settings(arn).await)
    }

    fn remember_drained(&self, registration: Registration) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory
            .drained
            .entry(registration.id.clone())
            .or_default()
            .insert(registration);
    }

    fn describe(registration: &Registration) -> TargetDescription {
        TargetDescription::builder()
            .id(&registration.id)
            .set_port(registration.port.map(i32::from))
            .build()
    }

    async fn register(
        &self,
        arn: &str,
        registrations: &[Registration],
    ) -> Result<(), BalancerError> {
        self.client
            .register_targets()
            .target_group_arn(arn)
            .set_targets(Some(registrations.iter().map(Self::describe).collect()))
            .send()
            .await
            .map_err(|e| self.error(AwsError::from_sdk("RegisterTargets", arn, &e)))?;
        self.observer.changed(arn).await;
        Ok(())
    }
}

/// The id the host is registered under: its `target_id`, else its address
/// (IP target groups).
pub fn target_id(host: &Host) -> String {
    host.target_id
        .clone()
        .unwrap_or_else(|| host.address.clone())
}

/// Every id the host may be registered under: its target id, and for a
/// discovered instance its private IP (its id in `ip` target groups).
fn ids_of(host: &Host) -> Vec<String> {
    let mut ids = vec![target_id(host)];
    if let Some(ip) = host.aws.as_ref().and_then(|aws| aws.private_ip.clone()) {
        if !ids.contains(&ip) {
            ids.push(ip);
        }
    }
    ids
}

/// The host's id in a group: its private IP in an `ip` group when it is a
/// discovered instance, else its target id.
fn id_in(host: &Host, settings: &GroupSettings) -> String {
    match host.aws.as_ref().and_then(|aws| aws.private_ip.clone()) {
        Some(ip) if settings.by_ip => ip,
        _ => target_id(host),
    }
}

fn target_port(description: &TargetHealthDescription) -> Option<u16> {
    description
        .target()
        .and_then(|t| t.port())
        .and_then(|p| u16::try_from(p).ok())
}

/// The registrations of `id` in one DescribeTargetHealth answer: every port
/// it is registered on, or only `port` when one is configured. Other targets,
/// and this one on other ports when a port is configured, are never
/// returned, so never touched.
pub fn registrations_of(
    answer: &[TargetHealthDescription],
    id: &str,
    port: Option<u16>,
) -> Vec<Registered> {
    answer
        .iter()
        .filter(|d| d.target().and_then(|t| t.id()) == Some(id))
        .filter(|d| port.is_none() || target_port(d) == port)
        .map(|d| Registered {
            port: target_port(d),
            state: d
                .target_health()
                .and_then(|h| h.state())
                .cloned()
                // A registration without a state is one AWS is still setting up.
                .unwrap_or(TargetHealthStateEnum::Initial),
        })
        .collect()
}

/// Folds the target's registrations in each of its groups into one status.
/// A group where it is absent or only draining counts as drained.
pub fn server_status(per_group: &[Vec<Registered>]) -> ServerStatus {
    let out_of = |regs: &Vec<Registered>| {
        regs.iter()
            .all(|r| r.state == TargetHealthStateEnum::Draining)
    };
    let carrying = per_group
        .iter()
        .flatten()
        .any(|r| r.state != TargetHealthStateEnum::Unused);
    let healthy = !per_group.is_empty()
        && per_group.iter().all(|regs| {
            !regs.is_empty()
                && regs
                    .iter()
                    .all(|r| r.state == TargetHealthStateEnum::Healthy)
        });
    ServerStatus {
        // No group at all (discovery found it nowhere): out of service.
        admin: if per_group.is_empty() || per_group.iter().any(out_of) {
            AdminState::Drain
        } else {
            AdminState::Ready
        },
        up: Some(healthy),
        sessions: Some(u64::from(carrying)),
    }
}

/// Healthy and total targets over several groups' answers: a target counts
/// once, healthy when every registration of it is; targets this balancer
/// drained count as unhealthy members of the pool even once AWS has
/// forgotten them, so draining does not shrink the pool it is measured by.
pub fn pool_status<'a>(
    answers: impl IntoIterator<Item = &'a [TargetHealthDescription]>,
    drained_ids: impl IntoIterator<Item = &'a str>,
) -> PoolStatus {
    let mut targets: BTreeMap<&str, bool> = BTreeMap::new();
    for description in answers.into_iter().flatten() {
        let Some(id) = description.target().and_then(|t| t.id()) else {
            continue;
        };
        let healthy = description.target_health().and_then(|h| h.state())
            == Some(&TargetHealthStateEnum::Healthy);
        *targets.entry(id).or_insert(true) &= healthy;
    }
    for id in drained_ids {
        targets.entry(id).or_insert(false);
    }
    PoolStatus {
        healthy: targets.values().filter(|healthy| **healthy).count(),
        total: targets.len(),
    }
}

#[async_trait]
impl LoadBalancer for TargetGroupBalancer {
    fn drain_memory(&self, host: &Host) -> Option<String> {
        let registrations = self.drained_registrations(host);
        if registrations.is_empty() {
            return None;
        }
        serde_json::to_string(&registrations).ok()
    }

    fn restore_memory(&self, memory: &str) {
        if let Ok(registrations) = serde_json::from_str::<Vec<Registration>>(memory) {
            self.restore_registrations(registrations);
        }
    }

    fn follow(&self, old: &Host, new: &Host) {
        let (old_ids, new_ids) = (ids_of(old), ids_of(new));
        // The old target's id in a group becomes the new one's of the same
        // kind: instance id for instance id, private IP for private IP.
        let renamed = |id: &str| {
            let kind = old_ids.iter().position(|old| old == id).unwrap_or(0);
            new_ids.get(kind).unwrap_or(&new_ids[0]).clone()
        };
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let mut moved: Vec<Registration> = Vec::new();
        for id in &old_ids {
            moved.extend(memory.drained.remove(id).into_iter().flatten());
            memory.seen.remove(id);
            memory.hosts.remove(id);
        }
        memory.hosts.extend(new_ids.iter().cloned());
        for registration in moved {
            let id = renamed(&registration.id);
            memory
                .drained
                .entry(id.clone())
                .or_default()
                .insert(Registration { id, ..registration });
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn status(&self, target: Target<'_>) -> Result<ServerStatus, BalancerError> {
        let mut per_group = Vec::new();
        for arn in self.groups_of(target.host).await? {
            let id = self.id_in(&arn, target.host).await;
            per_group.push(registrations_of(
                &self.health(&arn, Freshness::Shared).await?,
                &id,
                self.port,
            ));
        }
        Ok(server_status(&per_group))
    }

    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        if matches!(self.groups, TargetGroups::Discover) {
            // Fresh membership: a group the host joined since the last pass
            // must not keep sending it traffic while it is updated.
            self.discover_all().await?;
        }
        for arn in self.groups_of(target.host).await? {
            let id = self.id_in(&arn, target.host).await;
            let registered =
                registrations_of(&self.health(&arn, Freshness::Fresh).await?, &id, self.port);
            let registrations: Vec<Registration> = registered
                .iter()
                .map(|r| Registration {
                    target_group_arn: arn.clone(),
                    id: id.clone(),
                    port: r.port,
                })
                .collect();
            // Already draining (an earlier attempt of this drain): remember
            // it, AWS needs no second deregistration.
            let to_remove: Vec<TargetDescription> = registered
                .iter()
                .zip(&registrations)
                .filter(|(r, _)| r.state != TargetHealthStateEnum::Draining)
                .map(|(_, registration)| Self::describe(registration))
                .collect();
            // Remembered before the call: one that takes effect but whose
            // answer is lost must not lose where the host was registered.
            for registration in &registrations {
                self.remember_drained(registration.clone());
            }
            if !to_remove.is_empty() {
                let ports: Vec<Option<i32>> = to_remove.iter().map(|t| t.port()).collect();
                let sent = self
                    .client
                    .deregister_targets()
                    .target_group_arn(&arn)
                    .set_targets(Some(to_remove))
                    .send()
                    .await;
                self.observer.changed(&arn).await;
                if let Err(e) = sent {
                    let error = self.error(AwsError::from_sdk("DeregisterTargets", &arn, &e));
                    // The SDK retries a call whose answer was lost, and AWS
                    // refuses the retry (`InvalidTarget`) when the first
                    // took effect: what the group holds now decides.
                    let now = registrations_of(
                        &self.health(&arn, Freshness::Fresh).await?,
                        &id,
                        self.port,
                    );
                    let still_in = now.iter().any(|r| {
                        r.state != TargetHealthStateEnum::Draining
                            && ports.contains(&r.port.map(i32::from))
                    });
                    if still_in {
                        return Err(error);
                    }
                    tracing::debug!("{error}; the target is out of {arn} all the same");
                }
            }
        }
        Ok(())
    }

    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        let remembered = self.drained_registrations(target.host);
        let registrations = if !remembered.is_empty() {
            remembered
        } else {
            // Nothing remembered: a restart lost the record, or the host was
            // never drained. Put it back where it is missing, on the
            // configured port (the group's own when none).
            let TargetGroups::Arns(arns) = &self.groups else {
                return match self.groups_of(target.host).await?.is_empty() {
                    false => Ok(()),
                    true => Err(BalancerError::Refused {
                        balancer: self.name.clone(),
                        command: format!("RegisterTargets {}", target_id(target.host)),
                        reply: "the target is registered in no target group and fleetroll has no \
                                record of where it was drained from (discover = true); register it \
                                by hand or list target_group_arns"
                            .to_owned(),
                    }),
                };
            };
            let mut missing = Vec::new();
            for arn in arns {
                let id = self.id_in(arn, target.host).await;
                let health = self.health(arn, Freshness::Fresh).await?;
                if registrations_of(&health, &id, self.port).is_empty() {
                    missing.push(Registration {
                        target_group_arn: arn.clone(),
                        id: id.clone(),
                        port: self.port,
                    });
                }
            }
            missing
        };
        let mut by_group: BTreeMap<String, Vec<Registration>> = BTreeMap::new();
        for registration in registrations {
            by_group
                .entry(registration.target_group_arn.clone())
                .or_default()
                .push(registration);
        }
        for (arn, registrations) in by_group {
            self.register(&arn, &registrations).await?;
            // Forget each group as soon as it is back, so a failure in the
            // next one leaves exactly the rest to retry.
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            for registration in &registrations {
                let id = &registration.id;
                if let Some(set) = memory.drained.get_mut(id) {
                    set.retain(|r| r.target_group_arn != arn);
                    if set.is_empty() {
                        memory.drained.remove(id);
                    }
                }
                memory
                    .seen
                    .entry(id.clone())
                    .or_default()
                    .insert(arn.clone());
            }
        }
        Ok(())
    }

    /// The longest deregistration delay of the host's groups plus
    /// [`DRAIN_MARGIN`]; `None` (the caller's `[drain].timeout` alone) when
    /// the delay cannot be read.
    async fn drain_bound(&self, target: Target<'_>) -> Option<Duration> {
        self.max_deregistration_delay(target)
            .await
            .ok()
            .map(|delay| delay + DRAIN_MARGIN)
    }

    /// The slowest of the host's groups to call a registered target
    /// healthy; `None` when its groups cannot be told.
    async fn return_bound(&self, target: Target<'_>) -> Option<Duration> {
        let mut longest = None;
        for arn in self.groups_of(target.host).await.ok()? {
            let bound = self.observer.settings(&arn).await.healthy_within();
            longest = longest.max(Some(bound));
        }
        longest
    }

    async fn pool(&self) -> Result<Option<PoolStatus>, BalancerError> {
        let (arns, drained_ids): (Vec<String>, Vec<String>) = {
            let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            let drained = memory.drained.values().flatten();
            let arns = match &self.groups {
                TargetGroups::Arns(arns) => arns.clone(),
                TargetGroups::Discover => {
                    let mut arns: BTreeSet<String> = memory
                        .hosts
                        .iter()
                        .filter_map(|id| memory.seen.get(id))
                        .flatten()
                        .cloned()
                        .collect();
                    arns.extend(drained.clone().map(|r| r.target_group_arn.clone()));
                    arns.into_iter().collect()
                }
            };
            (arns, drained.map(|r| r.id.clone()).collect())
        };
        if arns.is_empty() {
            return Ok(None);
        }
        let mut answers = Vec::with_capacity(arns.len());
        for arn in &arns {
            answers.push(self.health(arn, Freshness::Shared).await?);
        }
        Ok(Some(pool_status(
            answers.iter().map(|answer| answer.as_slice()),
            drained_ids.iter().map(String::as_str),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
    use aws_sdk_elasticloadbalancingv2::types::TargetHealth;

    fn described(id: &str, port: i32, state: TargetHealthStateEnum) -> TargetHealthDescription {
        TargetHealthDescription::builder()
            .target(TargetDescription::builder().id(id).port(port).build())
            .target_health(TargetHealth::builder().state(state).build())
            .build()
    }

    /// A fake DescribeTargetHealth answer, built like the SDK builds the
    /// parsed one.
    fn answer(targets: &[(&str, i32, TargetHealthStateEnum)]) -> Vec<TargetHealthDescription> {
        DescribeTargetHealthOutput::builder()
            .set_target_health_descriptions(Some(
                targets
                    .iter()
                    .map(|(id, port, state)| described(id, *port, state.clone()))
                    .collect(),
            ))
            .build()
            .target_health_descriptions
            .unwrap_or_default()
    }

    use TargetHealthStateEnum::{Draining, Healthy, Initial, Unhealthy, Unused};

    #[test]
    fn matches_only_the_target_at_hand() {
        let group = answer(&[
            ("i-1", 80, Healthy),
            ("i-2", 80, Healthy),
            ("i-1", 8080, Unhealthy),
            ("i-10", 80, Healthy),
        ]);
        let any_port = registrations_of(&group, "i-1", None);
        assert_eq!(
            any_port,
            vec![
                Registered {
                    port: Some(80),
                    state: Healthy
                },
                Registered {
                    port: Some(8080),
                    state: Unhealthy
                },
            ]
        );
        let on_8080 = registrations_of(&group, "i-1", Some(8080));
        assert_eq!(on_8080.len(), 1);
        assert_eq!(on_8080[0].port, Some(8080));
        assert!(registrations_of(&group, "i-3", None).is_empty());
        assert!(registrations_of(&group, "i-2", Some(8080)).is_empty());
    }

    #[test]
    fn the_target_id_falls_back_to_the_address() {
        let mut host = Host {
            name: "web-01".into(),
            address: "10.0.1.11".into(),
            zone: "eu-west-1a".into(),
            ssh: crate::model::inventory::SshSettings {
                user: "deploy".into(),
                port: 22,
                ..crate::model::inventory::SshSettings::default()
            },
            balancers: vec!["alb".into()],
            lb_server: "web-01".into(),
            target_id: None,
            vars: Default::default(),
            aws: None,
        };
        assert_eq!(target_id(&host), "10.0.1.11");
        host.target_id = Some("i-0abc".into());
        assert_eq!(target_id(&host), "i-0abc");
    }

    /// moto_server deregisters at once and never reports `draining`
    /// (PITFALLS), so the draining → gone sequence AWS goes through is
    /// checked here on fake DescribeTargetHealth answers.
    #[test]
    fn draining_reports_sessions_until_the_target_is_gone() {
        let id = "i-1";
        let before = [registrations_of(
            &answer(&[(id, 80, Healthy), ("i-2", 80, Healthy)]),
            id,
            None,
        )];
        assert_eq!(
            server_status(&before),
            ServerStatus {
                admin: AdminState::Ready,
                up: Some(true),
                sessions: Some(1)
            }
        );
        let draining = [registrations_of(
            &answer(&[(id, 80, Draining), ("i-2", 80, Healthy)]),
            id,
            None,
        )];
        assert_eq!(
            server_status(&draining),
            ServerStatus {
                admin: AdminState::Drain,
                up: Some(false),
                sessions: Some(1)
            }
        );
        let gone = [registrations_of(&answer(&[("i-2", 80, Healthy)]), id, None)];
        assert_eq!(
            server_status(&gone),
            ServerStatus {
                admin: AdminState::Drain,
                up: Some(false),
                sessions: Some(0)
            }
        );
    }

    #[test]
    fn unused_counts_as_carrying_nothing_but_still_registered() {
        let unused = [registrations_of(
            &answer(&[("i-1", 80, Unused)]),
            "i-1",
            None,
        )];
        assert_eq!(
            server_status(&unused),
            ServerStatus {
                admin: AdminState::Ready,
                up: Some(false),
                sessions: Some(0)
            }
        );
    }

    #[test]
    fn several_groups_fold_into_one_status() {
        let healthy = registrations_of(&answer(&[("i-1", 80, Healthy)]), "i-1", None);
        let initial = registrations_of(&answer(&[("i-1", 80, Initial)]), "i-1", None);
        let gone: Vec<Registered> = Vec::new();
        // Registered everywhere, healthy in one only: in service, not up.
        let status = server_status(&[healthy.clone(), initial]);
        assert_eq!((status.admin, status.up), (AdminState::Ready, Some(false)));
        // Gone from one group: drained (half a drain is not in service).
        let status = server_status(&[healthy.clone(), gone]);
        assert_eq!(status.admin, AdminState::Drain);
        assert_eq!(status.sessions, Some(1));
        // Healthy in both.
        let status = server_status(&[healthy.clone(), healthy]);
        assert_eq!((status.admin, status.up), (AdminState::Ready, Some(true)));
        // Found in no group at all.
        let status = server_status(&[]);
        assert_eq!(
            (status.admin, status.up, status.sessions),
            (AdminState::Drain, Some(false), Some(0))
        );
    }

    #[test]
    fn the_pool_counts_each_target_once_and_keeps_drained_ones() {
        let a = answer(&[
            ("i-1", 80, Healthy),
            ("i-2", 80, Healthy),
            ("i-3", 80, Initial),
        ]);
        let b = answer(&[("i-1", 80, Healthy), ("i-2", 80, Unhealthy)]);
        let pool = pool_status([a.as_slice(), b.as_slice()], ["i-4"]);
        assert_eq!(
            pool,
            PoolStatus {
                healthy: 1,
                total: 4
            }
        );
        // A drained target still listed (draining) is counted once.
        let c = answer(&[("i-1", 80, Draining), ("i-2", 80, Healthy)]);
        let pool = pool_status([c.as_slice()], ["i-1"]);
        assert_eq!(
            pool,
            PoolStatus {
                healthy: 1,
                total: 2
            }
        );
    }
}
