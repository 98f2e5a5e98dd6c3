//! Any balancer through commands: drain and undrain run locally or on the host.

use std::time::Duration;

use async_trait::async_trait;

use super::balancer::{AdminState, BalancerError, LoadBalancer, PoolStatus, ServerStatus, Target};
use crate::model::inventory::Host;
use crate::model::template::{Quoting, Template};

/// Drain and undrain commands are bounded by this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CommandBalancer {
    name: String,
    drain: Template,
    undrain: Template,
    over_ssh: bool,
}

impl CommandBalancer {
    pub fn new(name: &str, drain: Template, undrain: Template, over_ssh: bool) -> Self {
        Self {
            name: name.to_owned(),
            drain,
            undrain,
            over_ssh,
        }
    }

    async fn run(
        &self,
        which: &str,
        template: &Template,
        target: Target<'_>,
    ) -> Result<(), BalancerError> {
        let failed = |detail: String| BalancerError::CommandFailed {
            balancer: self.name.clone(),
            command: which.to_owned(),
            detail,
        };
        let command = render(template, target.host).map_err(|e| failed(e.to_string()))?;
        if self.over_ssh {
            let shell = target
                .shell
                .ok_or_else(|| failed("no SSH session to the host".to_owned()))?;
            let output = shell
                .exec(&command, COMMAND_TIMEOUT)
                .await
                .map_err(|e| failed(e.to_string()))?;
            if output.status.success() {
                return Ok(());
            }
            return Err(failed(format!(
                "exit {}: {}",
                output.status.code(),
                output.stderr_tail.trim()
            )));
        }
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
            Err(_) => Err(failed(format!("timed out after {COMMAND_TIMEOUT:?}"))),
            Ok(Err(error)) => Err(failed(error.to_string())),
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => Err(failed(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))),
        }
    }
}

fn render(
    template: &Template,
    host: &Host,
) -> Result<String, crate::model::template::TemplateError> {
    template.render(&host.template_context(), Quoting::Shell)
}

#[async_trait]
impl LoadBalancer for CommandBalancer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn status(&self, _target: Target<'_>) -> Result<ServerStatus, BalancerError> {
        Ok(ServerStatus {
            admin: AdminState::Unknown,
            up: None,
            sessions: None,
        })
    }

    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.run("drain", &self.drain, target).await
    }

    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.run("undrain", &self.undrain, target).await
    }

    async fn pool(&self) -> Result<Option<PoolStatus>, BalancerError> {
        Ok(None)
    }
}
