//! Auto Scaling: replacing a host's instance, and Standby around steps.

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
        use crate::transport::aws::autoscaling::{AsgError, AutoScaling};
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
        let info = asg
            .describe_group(&group)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let replacements = &self.env.replacements;
        replacements.snapshot(&group, info.instances.iter().map(|i| i.instance_id.clone()));
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
        let swap = async {
            if surge {
                // Read desired capacity afresh under the group's guard: a
                // surge of another host may have raised it since `info`.
                let guard = replacements.capacity(&group).await;
                let desired = asg.describe_group(&group).await?.desired;
                asg.set_desired(&group, desired + 1).await?;
                drop(guard);
                let new = claim().await?;
                asg.terminate_with_decrement(&old).await?;
                Ok::<_, AsgError>(new)
            } else {
                asg.terminate_without_decrement(&old).await?;
                claim().await
            }
        };
        let new = tokio::select! {
            result = swap => result.map_err(|e| failed(e.to_string()))?,
            () = self.cancel.cancelled() => return Err(Stop::Cancelled),
        };
        self.reporter
            .record(Event::Replaced {
                host: self.name(),
                index,
                old_instance: old.clone(),
                new_instance: new.instance_id.clone(),
                zone: new.zone.clone(),
            })
            .await?;
        // The old instance and its registrations are gone; from here on the
        // host is the new instance.
        self.drained.clear();
        let found = describe_instance(source, &new.instance_id)
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.host.address = found.address;
        self.host.target_id = Some(new.instance_id.clone());
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

    /// After a replacement: every balancer reports the new instance healthy
    /// (the group registers it in its target groups), bounded.
    pub(super) async fn wait_registered(&self) -> Result<(), Stop> {
        let deadline = Instant::now() + self.env.playbook.health.timeout;
        for balancer in self.balancers() {
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
    pub(super) async fn set_standby(&self, enter: bool) -> Result<(), Stop> {
        let Some(Standby {
            asg,
            group,
            instance,
        }) = &self.standby
        else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.env.cadence.up_timeout;
        let result = if enter {
            asg.enter_standby(group, instance, deadline).await
        } else {
            asg.exit_standby(group, instance, deadline).await
        };
        result.map_err(|e| Stop::Outcome(Outcome::Failed, format!("asg_standby: {e}")))
    }
}

/// An Auto Scaling member kept in Standby while it is updated in place.
#[derive(Debug)]
pub(super) struct Standby {
    asg: crate::transport::aws::autoscaling::AutoScaling,
    group: String,
    instance: String,
}
