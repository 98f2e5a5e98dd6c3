//! Auto Scaling: replacing a host's instance, and Standby around steps.

use crate::transport::aws::AsgError;
use std::time::Duration;

use tokio::time::Instant;

use super::{HostTask, Stop};
use crate::events::{Event, Outcome};
use crate::model::playbook::Step;
use crate::model::playbook::{ProbeKind, StepAction};

impl HostTask {
    /// With `asg_standby`, the Auto Scaling client, group and instance of a
    /// host that is a group member and is updated in place.
    pub(super) async fn standby_group(&self) -> Option<Standby> {
        if !self.env.playbook.asg_standby
            || self
                .env
                .playbook
                .steps
                .iter()
                .any(|s| matches!(s.action, StepAction::ReplaceAsg { .. }))
        {
            return None;
        }
        let origin = self.host.aws.as_ref()?;
        let group = origin.asg.clone()?;
        let instance = self.host.target_id.clone()?;
        let asg = crate::transport::aws::autoscaling::AutoScaling::connect(
            origin.source.region.as_deref(),
            origin.source.endpoint_url.as_deref(),
        )
        .await;
        Some(Standby {
            asg,
            group,
            instance,
        })
    }

    /// Replaces the host's instance in its Auto Scaling group: terminate it
    /// without lowering capacity (or, with `surge`, raise capacity first and
    /// terminate with the decrement once the new one is in service), wait,
    /// bounded, for the replacement, then follow it: the probes and the
    /// balancers now look at the new instance. The journal records both ids.
    pub(super) async fn replace(
        &mut self,
        index: usize,
        step: &Step,
        surge: bool,
    ) -> Result<(), Stop> {
        use crate::transport::aws::autoscaling::AutoScaling;
        use crate::transport::aws::discovery::describe_instance;
        let failed =
            |what: String| Stop::Outcome(Outcome::Failed, format!("{}: {what}", step.name));
        let Some(origin) = self.host.aws.clone() else {
            return Err(failed("a static host cannot be replaced".to_owned()));
        };
        let Some(group) = origin.asg.clone() else {
            return Err(failed(
                "the instance is in no Auto Scaling group".to_owned(),
            ));
        };
        let old = self.host.target_id.clone().unwrap_or_default();
        self.step_started(index, step, 1).await?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + step.timeout;
        let source = &origin.source;
        let asg =
            AutoScaling::connect(source.region.as_deref(), source.endpoint_url.as_deref()).await;
        let info = super::retry::transient(|| asg.describe_group(&group), AsgError::retryable)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let replacements = &self.env.replacements;
        let resumed = self.replacing.take().filter(|r| r.old_instance == old);
        let members: Vec<String> = match &resumed {
            // Before the interruption's change: its replacement is new.
            Some(begun) => begun.members.clone(),
            None => info
                .instances
                .iter()
                .map(|i| i.instance_id.clone())
                .collect(),
        };
        replacements.snapshot(&group, members.iter().cloned());
        if let Some(begun) = &resumed {
            replacements.forget_launched(&group, &begun.members);
        }
        let old_in_service = info
            .instances
            .iter()
            .any(|i| i.instance_id == old && i.lifecycle_state == "InService");
        // Several hosts of one batch may be replaced in the same group at
        // once; each new instance must stand in for exactly one old one.
        let claim = || {
            let asg = &asg;
            let group = &group;
            async move {
                loop {
                    let known = replacements.known(group);
                    let new = asg.wait_for_replacement(group, &known, deadline).await?;
                    if replacements.claim(group, &new.instance_id) {
                        return Ok::<_, AsgError>(new);
                    }
                }
            }
        };
        let aws = |e: AsgError| failed(e.to_string());
        let begun = |surge_desired: Option<u32>| Event::Replacing {
            host: self.name(),
            group: group.clone(),
            old_instance: old.clone(),
            members: members.clone(),
            surge_desired,
        };
        // This process raised the group's capacity for this host.
        let mut raised_here = false;
        if surge {
            // Read desired capacity afresh under the group's guard: a surge
            // of another host may have raised it since `info`.
            let guard = replacements.capacity(&group).await;
            let now = super::retry::transient(|| asg.describe_group(&group), AsgError::retryable)
                .await
                .map_err(aws)?;
            let raised = match &resumed {
                // The old instance was terminated with the decrement before
                // the interruption: the surge is over.
                Some(_) if !old_in_service => true,
                Some(begun) => surge_made(begun, &now, replacements.changed_here(&group)),
                None => false,
            };
            if !raised {
                let target = now.desired + 1;
                self.reporter.record(begun(Some(target))).await?;
                // An absolute capacity: asking again changes nothing more.
                super::retry::transient(|| asg.set_desired(&group, target), AsgError::retryable)
                    .await
                    .map_err(aws)?;
                replacements.count_raise(&group);
                raised_here = true;
            }
            drop(guard);
        } else {
            if resumed.is_none() {
                self.reporter.record(begun(None)).await?;
            }
            // Terminated before an interruption: only the wait is left.
            if old_in_service {
                terminate(&asg, &group, &old, false).await.map_err(aws)?;
            }
        }
        let new = tokio::select! {
            result = claim() => result.map_err(aws)?,
            () = self.cancel.cancelled() => return Err(Stop::Cancelled),
        };
        // A surge's decrement and its record are one turn at the group's
        // guard: no other surge is recorded while a decrement is made and
        // not yet journaled (see `surge_made`).
        let guard = match surge {
            true => Some(replacements.capacity(&group).await),
            false => None,
        };
        if surge && old_in_service {
            terminate(&asg, &group, &old, true).await.map_err(aws)?;
            if raised_here {
                replacements.count_lower(&group);
            }
        }
        self.reporter
            .record(Event::Replaced {
                host: self.name(),
                index,
                old_instance: old.clone(),
                new_instance: new.instance_id.clone(),
                zone: new.zone.clone(),
            })
            .await?;
        drop(guard);
        // The old instance is gone; from here on the host is the new one.
        let before = self.host.clone();
        let found = super::retry::transient(
            || describe_instance(source, &new.instance_id),
            crate::transport::aws::DiscoveryError::retryable,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
        self.host.address = found.address;
        self.host.target_id = Some(new.instance_id.clone());
        // The group registers the new instance in its own target groups
        // only; the return puts it wherever the old one was (groups the
        // group does not manage too), and no balancer counts the old
        // target as a member any more.
        for balancer in self.balancers() {
            balancer.follow(&before, &self.host);
            self.record_drain_memory(&balancer).await?;
        }
        // The session was to the old instance. A command probe needs one to
        // the new instance, whose host key nobody has seen yet: that is
        // refused unless --accept-new-host-keys was given (documented).
        if let Some(shell) = self.shell.take() {
            shell.close().await;
        }
        if self
            .probes
            .iter()
            .any(|p| matches!(p.kind, ProbeKind::Command { .. }))
        {
            self.connect().await?;
        }
        self.step_finished(
            index,
            step,
            Some(0),
            started.elapsed(),
            true,
            format!("{old} replaced by {} in {}", new.instance_id, new.zone),
        )
        .await?;
        self.wait_registered().await
    }

    /// After a replacement: every balancer the host is not drained from
    /// (the group registers the new instance there by itself) reports it
    /// healthy, bounded. Those it is drained from get it at its return.
    pub(super) async fn wait_registered(&self) -> Result<(), Stop> {
        let deadline = Instant::now() + self.env.playbook.health.timeout;
        for balancer in self.balancers() {
            if self.drained_from(&balancer) {
                continue;
            }
            loop {
                let status = super::retry::balancer(|| balancer.status(self.target()))
                    .await
                    .map_err(super::balancer_failure)?;
                if status.up != Some(false) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Stop::Outcome(
                        Outcome::Unhealthy,
                        format!(
                            "balancer {} does not report the new instance healthy",
                            balancer.name()
                        ),
                    ));
                }
                self.pause(
                    self.env
                        .cadence
                        .balancer_poll
                        .max(Duration::from_millis(500)),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Moves the instance into Standby (`enter`) or back to InService,
    /// bounded; nothing without `asg_standby`.
    pub(super) async fn set_standby(&mut self, enter: bool) -> Result<(), Stop> {
        let Some(Standby {
            asg,
            group,
            instance,
        }) = &self.standby
        else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.env.cadence.up_timeout;
        let failed = |e: crate::transport::aws::autoscaling::AsgError| {
            Stop::Outcome(Outcome::Failed, format!("asg_standby: {e}"))
        };
        // Idempotent: a resume finds the instance where the run left it.
        let state =
            super::retry::transient(|| asg.lifecycle_state(group, instance), AsgError::retryable)
                .await
                .map_err(failed)?;
        if enter {
            if !self.standby_ours && is_standby(state.as_deref()) {
                // Put there by an operator after the run looked (it skips
                // a host in Standby): theirs, never taken out by fleetroll.
                self.reporter.note(Event::Warning {
                    host: Some(self.name()),
                    message: format!(
                        "an operator put instance {instance} in Standby in Auto Scaling group \
                         {group}; it stays there"
                    ),
                });
                self.standby = None;
                return Ok(());
            }
            if state.as_deref() != Some("Standby") {
                self.reporter
                    .record(Event::Standby {
                        host: self.name(),
                        standby: true,
                    })
                    .await?;
                self.standby_ours = true;
                if state.as_deref() != Some("EnteringStandby") {
                    asg.enter_standby(group, instance, deadline)
                        .await
                        .map_err(failed)?;
                }
            }
            return Ok(());
        }
        if !self.standby_ours {
            return Ok(());
        }
        if state.as_deref() != Some("InService") {
            asg.exit_standby(group, instance, deadline)
                .await
                .map_err(failed)?;
        }
        self.reporter
            .record(Event::Standby {
                host: self.name(),
                standby: false,
            })
            .await?;
        Ok(())
    }
}

/// Whether an interrupted surge raised its group's desired capacity before
/// the interruption. A process's surges of a group take turns (recorded,
/// then made), so one followed by another surge record of the same process
/// was made. Otherwise it was made if the desired capacity is what it
/// recorded, once corrected for what changed it since: the decrement of
/// each surge then under way whose old instance is gone now, and what this
/// process's own surges changed. (Raising to the recorded absolute value
/// instead left the group one larger than asked whenever another surge
/// ended in between.)
fn surge_made(
    begun: &crate::journal::replay::Replacing,
    now: &crate::transport::aws::GroupInfo,
    (raised_here, lowered_here): (u32, u32),
) -> bool {
    let Some(recorded) = begun.surge_desired else {
        return true;
    };
    if begun.surge_settled {
        return true;
    }
    let in_service = |id: &str| {
        now.instances
            .iter()
            .any(|i| i.instance_id == id && i.lifecycle_state == "InService")
    };
    let decrements = begun
        .pending_olds
        .iter()
        .filter(|old| !in_service(old))
        .count() as u32;
    now.desired + decrements + lowered_here >= recorded + raised_here
}

/// Terminates `old` in its group, with or without lowering the desired
/// capacity, retried while AWS is unreachable or throttling. A call whose
/// answer was lost may have taken effect, and asking again is then refused
/// (it is no longer a member in service): an old instance that is no
/// longer InService after a failed call is terminated, as asked.
async fn terminate(
    asg: &crate::transport::aws::autoscaling::AutoScaling,
    group: &str,
    old: &str,
    decrement: bool,
) -> Result<(), AsgError> {
    let call = || async {
        if decrement {
            asg.terminate_with_decrement(old).await
        } else {
            asg.terminate_without_decrement(old).await
        }
    };
    match super::retry::transient(call, AsgError::retryable).await {
        Ok(()) => Ok(()),
        Err(error) => {
            let state =
                super::retry::transient(|| asg.lifecycle_state(group, old), AsgError::retryable)
                    .await?;
            if state.as_deref() == Some("InService") {
                Err(error)
            } else {
                tracing::debug!("{error}; {old} is {state:?}: its termination took effect");
                Ok(())
            }
        }
    }
}

/// Standby, or on its way there.
fn is_standby(state: Option<&str>) -> bool {
    matches!(state, Some("Standby" | "EnteringStandby"))
}

impl HostTask {
    /// With `asg_standby`: why the instance is an operator's to leave
    /// alone, when it is in Standby that this run did not set.
    pub(super) async fn in_operators_standby(&self) -> Result<Option<String>, Stop> {
        if self.standby_ours {
            return Ok(None);
        }
        let Some(Standby {
            asg,
            group,
            instance,
        }) = self.standby_group().await
        else {
            return Ok(None);
        };
        let state = super::retry::transient(
            || asg.lifecycle_state(&group, &instance),
            AsgError::retryable,
        )
        .await
        .map_err(|e| Stop::Outcome(Outcome::Failed, format!("asg_standby: {e}")))?;
        Ok(is_standby(state.as_deref()).then(|| {
            format!(
                "in Standby in Auto Scaling group {group} before the run (an operator's); left as it was"
            )
        }))
    }
}

/// An Auto Scaling member kept in Standby while it is updated in place.
#[derive(Debug)]
pub(super) struct Standby {
    asg: crate::transport::aws::autoscaling::AutoScaling,
    group: String,
    instance: String,
}

#[cfg(test)]
mod tests {
    use super::surge_made;
    use crate::journal::replay::Replacing;
    use crate::transport::aws::GroupInfo;
    use crate::transport::aws::autoscaling::GroupInstance;

    fn group(desired: u32, in_service: &[&str]) -> GroupInfo {
        GroupInfo {
            name: "g".into(),
            desired,
            min: 0,
            max: 10,
            instances: in_service
                .iter()
                .map(|id| GroupInstance {
                    instance_id: (*id).into(),
                    zone: "z".into(),
                    lifecycle_state: "InService".into(),
                    protected_from_scale_in: false,
                })
                .collect(),
            launch_template_version: None,
            target_group_arns: Vec::new(),
        }
    }

    /// The last of three surges of one batch (3 → 4 → 5 → 6), with the
    /// two others under way when it was recorded.
    fn last_of_three() -> Replacing {
        Replacing {
            group: "g".into(),
            old_instance: "o3".into(),
            members: vec!["o1".into(), "o2".into(), "o3".into()],
            surge_desired: Some(6),
            surge_settled: false,
            pending_olds: vec!["o1".into(), "o2".into()],
            process: 1,
        }
    }

    /// Killed after the first surge ended (its decrement: 6 → 5): the last
    /// surge was made, and raising to its recorded 6 again would leave the
    /// group one larger than asked once every surge ends.
    #[test]
    fn a_surge_made_before_another_ended_is_not_made_again() {
        let now = group(5, &["o2", "o3", "n1", "n2", "n3"]);
        assert!(surge_made(&last_of_three(), &now, (0, 0)));
    }

    /// Killed between the last surge's record and its capacity change.
    #[test]
    fn a_surge_recorded_but_not_made_is_made() {
        let now = group(5, &["o1", "o2", "o3", "n1", "n2"]);
        assert!(!surge_made(&last_of_three(), &now, (0, 0)));
        // The same, after this process's own surge of another host raised
        // the group and ended.
        let now = group(5, &["o1", "o2", "o3", "n1", "n2", "n4"]);
        assert!(!surge_made(&last_of_three(), &now, (1, 1)));
        let now = group(6, &["o1", "o2", "o3", "o4", "n1", "n2", "n4"]);
        assert!(!surge_made(&last_of_three(), &now, (1, 0)));
    }

    #[test]
    fn a_surge_followed_by_another_of_its_process_was_made() {
        let settled = Replacing {
            surge_settled: true,
            ..last_of_three()
        };
        assert!(surge_made(&settled, &group(3, &[]), (0, 0)));
    }
}
