//! AWS Auto Scaling groups: the calls behind `replace = "aws-asg"` steps and
//! `asg_standby`.
//!
//! Auto Scaling has no waiter for replacements or standby transitions
//! (PITFALLS), so every wait here is a poll of DescribeAutoScalingGroups
//! every [`AutoScaling::with_poll_interval`] (2 s by default), bounded by the
//! caller's deadline, each call also bounded by that deadline.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{AutoScalingGroup, InstanceRefreshStatus, LifecycleState};
use tokio::time::Instant;

use super::config::{AwsError, sdk_config};

const DEFAULT_POLL: Duration = Duration::from_secs(2);

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub instance_id: String,
    pub zone: String,
    /// `InService`, `Pending`, `Standby`, `Terminating`, …
    pub lifecycle_state: String,
    pub protected_from_scale_in: bool,
}

/// What a replacement needs to know about a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    pub instances: Vec<GroupInstance>,
    /// The launch template version the group launches (`$Latest`, `3`), when
    /// it uses a launch template.
    pub launch_template_version: Option<String>,
    pub target_group_arns: Vec<String>,
}

/// The instance that replaced one terminated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInstance {
    pub instance_id: String,
    pub zone: String,
}

/// Whether an instance refresh is running; `warning` says when that could
/// not be checked and `in_progress` is a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCheck {
    pub in_progress: bool,
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsgError {
    #[error("Auto Scaling: {0}")]
    Api(AwsError),
    #[error("Auto Scaling group {group} not found")]
    GroupNotFound { group: String },
    #[error("Auto Scaling group {group}: {what} not seen within {waited:?}")]
    TimedOut {
        group: String,
        what: String,
        waited: Duration,
    },
}

impl AsgError {
    /// Whether asking again later may succeed (throttling, timeouts).
    pub fn retryable(&self) -> bool {
        matches!(self, AsgError::Api(error) if error.transient)
    }
}

#[derive(Debug, Clone)]
pub struct AutoScaling {
    client: Client,
    poll: Duration,
}

impl AutoScaling {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            client: Client::new(config),
            poll: DEFAULT_POLL,
        }
    }

    /// With the shared SDK configuration of a region and endpoint.
    pub async fn connect(region: Option<&str>, endpoint_url: Option<&str>) -> Self {
        Self::new(&sdk_config(region, endpoint_url).await)
    }

    /// How often the waits poll (tests shorten it).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    async fn group(&self, name: &str) -> Result<AutoScalingGroup, AsgError> {
        let answer = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| {
                AsgError::Api(AwsError::from_sdk("DescribeAutoScalingGroups", name, &e))
            })?;
        answer
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .cloned()
            .ok_or_else(|| AsgError::GroupNotFound {
                group: name.to_owned(),
            })
    }

    pub async fn describe_group(&self, name: &str) -> Result<GroupInfo, AsgError> {
        Ok(group_info(&self.group(name).await?))
    }

    /// The instance's lifecycle state in the group (`InService`,
    /// `Standby`, …), or `None` if it is no longer a member.
    pub async fn lifecycle_state(
        &self,
        name: &str,
        instance_id: &str,
    ) -> Result<Option<String>, AsgError> {
        Ok(self
            .describe_group(name)
            .await?
            .instances
            .into_iter()
            .find(|i| i.instance_id == instance_id)
            .map(|i| i.lifecycle_state))
    }

    /// Whether an instance refresh is running in the group (a replacement
    /// must not race one). An endpoint that does not implement
    /// DescribeInstanceRefreshes (moto_server answers an HTML 500 page)
    /// yields `in_progress = false` with a warning for the caller to print,
    /// since it cannot run refreshes either.
    pub async fn refresh_in_progress(&self, name: &str) -> Result<RefreshCheck, AsgError> {
        match self
            .client
            .describe_instance_refreshes()
            .auto_scaling_group_name(name)
            .send()
            .await
        {
            Ok(answer) => Ok(RefreshCheck {
                in_progress: answer
                    .instance_refreshes()
                    .iter()
                    .any(|r| r.status().is_some_and(refresh_running)),
                warning: None,
            }),
            Err(e) => {
                let error = AwsError::from_sdk("DescribeInstanceRefreshes", name, &e);
                if error.is_not_implemented() {
                    Ok(RefreshCheck {
                        in_progress: false,
                        warning: Some(format!(
                            "cannot tell whether an instance refresh is running in Auto Scaling group \
                             {name} (the endpoint does not implement DescribeInstanceRefreshes: {}); \
                             assuming none",
                            error.reply()
                        )),
                    })
                } else {
                    Err(AsgError::Api(error))
                }
            }
        }
    }

    pub async fn set_desired(&self, name: &str, desired: u32) -> Result<(), AsgError> {
        let desired = i32::try_from(desired).unwrap_or(i32::MAX);
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(name)
            .desired_capacity(desired)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| AsgError::Api(AwsError::from_sdk("SetDesiredCapacity", name, &e)))?;
        Ok(())
    }

    /// Terminates the instance and lets its group launch a replacement.
    pub async fn terminate_without_decrement(&self, instance_id: &str) -> Result<(), AsgError> {
        self.terminate(instance_id, false).await
    }

    /// Terminates the instance and lowers desired capacity with it: the
    /// second half of a surge, after the replacement was launched first.
    pub async fn terminate_with_decrement(&self, instance_id: &str) -> Result<(), AsgError> {
        self.terminate(instance_id, true).await
    }

    async fn terminate(&self, instance_id: &str, decrement: bool) -> Result<(), AsgError> {
        self.client
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
            .map_err(|e| {
                AsgError::Api(AwsError::from_sdk(
                    "TerminateInstanceInAutoScalingGroup",
                    instance_id,
                    &e,
                ))
            })?;
        Ok(())
    }

    /// Waits until the group has an InService instance that is not one of
    /// `old_ids`, which must be every member before the termination (or the
    /// surge), not only the one terminated.
    pub async fn wait_for_replacement(
        &self,
        name: &str,
        old_ids: &[String],
        deadline: Instant,
    ) -> Result<NewInstance, AsgError> {
        let started = Instant::now();
        loop {
            let group = self
                .group_by(name, deadline, started, "a replacement InService")
                .await?;
            let new = group.instances().iter().find(|i| {
                i.lifecycle_state() == Some(&LifecycleState::InService)
                    && i.instance_id()
                        .is_some_and(|id| !old_ids.iter().any(|o| o == id))
            });
            if let Some(instance) = new {
                return Ok(NewInstance {
                    instance_id: instance.instance_id().unwrap_or_default().to_owned(),
                    zone: instance.availability_zone().unwrap_or_default().to_owned(),
                });
            }
            self.pause(name, deadline, started, "a replacement InService")
                .await?;
        }
    }

    /// Moves the instance to Standby, decrementing desired capacity so the
    /// group launches nothing in its place, and waits until it is there.
    pub async fn enter_standby(
        &self,
        name: &str,
        instance_id: &str,
        deadline: Instant,
    ) -> Result<(), AsgError> {
        self.client
            .enter_standby()
            .auto_scaling_group_name(name)
            .instance_ids(instance_id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| AsgError::Api(AwsError::from_sdk("EnterStandby", name, &e)))?;
        self.wait_for_state(name, instance_id, LifecycleState::Standby, deadline)
            .await
    }

    /// Returns the instance from Standby and waits until it is InService.
    pub async fn exit_standby(
        &self,
        name: &str,
        instance_id: &str,
        deadline: Instant,
    ) -> Result<(), AsgError> {
        self.client
            .exit_standby()
            .auto_scaling_group_name(name)
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| AsgError::Api(AwsError::from_sdk("ExitStandby", name, &e)))?;
        self.wait_for_state(name, instance_id, LifecycleState::InService, deadline)
            .await
    }

    async fn wait_for_state(
        &self,
        name: &str,
        instance_id: &str,
        state: LifecycleState,
        deadline: Instant,
    ) -> Result<(), AsgError> {
        let started = Instant::now();
        let what = format!("instance {instance_id} {}", state.as_str());
        loop {
            let group = self.group_by(name, deadline, started, &what).await?;
            let reached = group.instances().iter().any(|i| {
                i.instance_id() == Some(instance_id) && i.lifecycle_state() == Some(&state)
            });
            if reached {
                return Ok(());
            }
            self.pause(name, deadline, started, &what).await?;
        }
    }

    /// One DescribeAutoScalingGroups of a wait, cut short by the deadline.
    /// A transient failure (throttling outlasting the SDK's own retries, a
    /// timeout) is one poll that saw nothing: asked again at the next
    /// poll until the deadline, never a failed host.
    async fn group_by(
        &self,
        name: &str,
        deadline: Instant,
        started: Instant,
        what: &str,
    ) -> Result<AutoScalingGroup, AsgError> {
        loop {
            match tokio::time::timeout_at(deadline, self.group(name)).await {
                Ok(Err(error)) if error.retryable() => {
                    tracing::debug!("{error}; asking again");
                    self.pause(name, deadline, started, what).await?;
                }
                Ok(group) => return group,
                Err(_) => return Err(timed_out(name, what, started)),
            }
        }
    }

    async fn pause(
        &self,
        name: &str,
        deadline: Instant,
        started: Instant,
        what: &str,
    ) -> Result<(), AsgError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(name, what, started));
        }
        tokio::time::sleep_until((now + self.poll).min(deadline)).await;
        Ok(())
    }
}

fn timed_out(name: &str, what: &str, started: Instant) -> AsgError {
    AsgError::TimedOut {
        group: name.to_owned(),
        what: what.to_owned(),
        waited: started.elapsed(),
    }
}

fn refresh_running(status: &InstanceRefreshStatus) -> bool {
    matches!(
        status,
        InstanceRefreshStatus::Pending
            | InstanceRefreshStatus::InProgress
            | InstanceRefreshStatus::Cancelling
            | InstanceRefreshStatus::RollbackInProgress
            | InstanceRefreshStatus::Baking
    )
}

fn count(value: Option<i32>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// The parts of a DescribeAutoScalingGroups answer a replacement needs.
pub fn group_info(group: &AutoScalingGroup) -> GroupInfo {
    let template = group.launch_template().or_else(|| {
        group
            .mixed_instances_policy()
            .and_then(|p| p.launch_template())
            .and_then(|t| t.launch_template_specification())
    });
    GroupInfo {
        name: group
            .auto_scaling_group_name()
            .unwrap_or_default()
            .to_owned(),
        desired: count(group.desired_capacity()),
        min: count(group.min_size()),
        max: count(group.max_size()),
        instances: group
            .instances()
            .iter()
            .map(|i| GroupInstance {
                instance_id: i.instance_id().unwrap_or_default().to_owned(),
                zone: i.availability_zone().unwrap_or_default().to_owned(),
                lifecycle_state: i
                    .lifecycle_state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                protected_from_scale_in: i.protected_from_scale_in().unwrap_or(false),
            })
            .collect(),
        launch_template_version: template.and_then(|t| t.version()).map(str::to_owned),
        target_group_arns: group.target_group_arns().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types::{
        Instance, LaunchTemplate, LaunchTemplateSpecification, MixedInstancesPolicy,
    };

    fn member(id: &str, zone: &str, state: LifecycleState) -> Instance {
        Instance::builder()
            .instance_id(id)
            .availability_zone(zone)
            .lifecycle_state(state)
            .protected_from_scale_in(id == "i-2")
            .build()
    }

    #[test]
    fn reads_a_group() {
        let group = AutoScalingGroup::builder()
            .auto_scaling_group_name("web")
            .desired_capacity(2)
            .min_size(1)
            .max_size(4)
            .instances(member("i-1", "eu-west-1a", LifecycleState::InService))
            .instances(member("i-2", "eu-west-1b", LifecycleState::Standby))
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .version("$Latest")
                    .build(),
            )
            .target_group_arns("arn:tg")
            .build();
        let info = group_info(&group);
        assert_eq!((info.desired, info.min, info.max), (2, 1, 4));
        assert_eq!(info.launch_template_version.as_deref(), Some("$Latest"));
        assert_eq!(info.target_group_arns, ["arn:tg"]);
        assert_eq!(
            info.instances[1],
            GroupInstance {
                instance_id: "i-2".into(),
                zone: "eu-west-1b".into(),
                lifecycle_state: "Standby".into(),
                protected_from_scale_in: true,
            }
        );
    }

    #[test]
    fn the_template_version_may_come_from_a_mixed_instances_policy() {
        let group = AutoScalingGroup::builder()
            .auto_scaling_group_name("web")
            .mixed_instances_policy(
                MixedInstancesPolicy::builder()
                    .launch_template(
                        LaunchTemplate::builder()
                            .launch_template_specification(
                                LaunchTemplateSpecification::builder().version("7").build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(
            group_info(&group).launch_template_version.as_deref(),
            Some("7")
        );
    }

    /// moto_server does not implement DescribeInstanceRefreshes (PITFALLS),
    /// so which refresh states block a replacement is checked here.
    #[test]
    fn running_refresh_states() {
        assert!(refresh_running(&InstanceRefreshStatus::InProgress));
        assert!(refresh_running(&InstanceRefreshStatus::Pending));
        assert!(refresh_running(&InstanceRefreshStatus::Baking));
        assert!(!refresh_running(&InstanceRefreshStatus::Successful));
        assert!(!refresh_running(&InstanceRefreshStatus::Cancelled));
        assert!(!refresh_running(&InstanceRefreshStatus::Failed));
    }
}
