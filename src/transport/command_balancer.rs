//! Any balancer through commands: drain, undrain and an optional status run
//! locally or on the host.
//!
//! `status` answers by exit code: 0 in service, 1 out of service (drained,
//! maybe by fleetroll), 2 disabled by an operator; anything else is an
//! error. Without it the balancer cannot tell an operator's disable, and a
//! host an operator took out is drained and returned like any other.

use std::time::Duration;

use async_trait::async_trait;

use super::balancer::{AdminState, BalancerError, LoadBalancer, PoolStatus, ServerStatus, Target};
use super::shell::ExitStatus;
use crate::model::template::{Quoting, Template};

/// Drain and undrain commands are bounded by this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// A status command only reads; it is polled, so it is bounded tighter.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct CommandBalancer {
    name: String,
    drain: Template,
    undrain: Template,
    status: Option<Template>,
    over_ssh: bool,
}

/// How a command ended: its exit code (`None` if a signal killed it) and
/// the last of its stderr.
struct Ended {
    code: Option<i64>,
    stderr: String,
}

impl Ended {
    fn describe(&self) -> String {
        let code = self
            .code
            .map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"));
        let stderr = self.stderr.trim();
        if stderr.is_empty() {
            code
        } else {
            format!("{code}: {stderr}")
        }
    }
}

impl CommandBalancer {
    pub fn new(
        name: &str,
        drain: Template,
        undrain: Template,
        status: Option<Template>,
        over_ssh: bool,
    ) -> Self {
        Self {
            name: name.to_owned(),
            drain,
            undrain,
            status,
            over_ssh,
        }
    }

    fn failed(&self, which: &str, detail: String) -> BalancerError {
        BalancerError::CommandFailed {
            balancer: self.name.clone(),
            command: which.to_owned(),
            detail,
        }
    }

    /// Runs `template` for the host, locally or over its SSH session. A
    /// lost SSH connection is `Unreachable` (retryable) for commands that
    /// only read (`status`); any other failure to run is `CommandFailed`.
    async fn execute(
        &self,
        which: &str,
        template: &Template,
        target: Target<'_>,
        timeout: Duration,
    ) -> Result<Ended, BalancerError> {
        let command = template
            .render(&target.host.template_context(), Quoting::Shell)
            .map_err(|e| self.failed(which, e.to_string()))?;
        if self.over_ssh {
            let shell = target
                .shell
                .ok_or_else(|| self.failed(which, "no SSH session to the host".to_owned()))?;
            return match shell.exec(&command, timeout).await {
                Ok(output) => Ok(Ended {
                    code: match output.status {
                        ExitStatus::Code(code) => Some(i64::from(code)),
                        ExitStatus::Signal(_) => None,
                    },
                    stderr: output.stderr_tail,
                }),
                Err(error) if error.retryable() && which == "status" => {
                    Err(BalancerError::Unreachable {
                        balancer: self.name.clone(),
                        reason: error.to_string(),
                    })
                }
                Err(error) => Err(self.failed(which, error.to_string())),
            };
        }
        match tokio::time::timeout(timeout, run_local(&command)).await {
            Err(_) => Err(self.failed(which, format!("timed out after {timeout:?}"))),
            Ok(Err(error)) => Err(self.failed(which, error.to_string())),
            Ok(Ok(ended)) => Ok(ended),
        }
    }

    /// Drain or undrain: exit 0 is done, anything else a failure.
    async fn run(
        &self,
        which: &str,
        template: &Template,
        target: Target<'_>,
    ) -> Result<(), BalancerError> {
        let ended = self
            .execute(which, template, target, COMMAND_TIMEOUT)
            .await?;
        if ended.code == Some(0) {
            Ok(())
        } else {
            Err(self.failed(which, ended.describe()))
        }
    }
}

#[async_trait]
impl LoadBalancer for CommandBalancer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn status(&self, target: Target<'_>) -> Result<ServerStatus, BalancerError> {
        let status = |admin, up| ServerStatus {
            admin,
            up,
            sessions: None,
        };
        let Some(template) = &self.status else {
            return Ok(status(AdminState::Unknown, None));
        };
        let ended = self
            .execute("status", template, target, STATUS_TIMEOUT)
            .await?;
        match ended.code {
            Some(0) => Ok(status(AdminState::Ready, Some(true))),
            // Out of service, not by an operator's hand as far as the
            // command can tell: maybe fleetroll's own drain. Not a reason
            // to skip the host; after an undrain, wait until it says 0.
            Some(1) => Ok(status(AdminState::Unknown, Some(false))),
            // An operator's disable: the host is skipped and never
            // returned to service by fleetroll (HAProxy's maint).
            Some(2) => Ok(status(AdminState::Maint, None)),
            _ => Err(self.failed(
                "status",
                format!(
                    "{} (expected 0 in service, 1 out of service, 2 disabled by an operator)",
                    ended.describe()
                ),
            )),
        }
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

    fn needs_host_session(&self) -> bool {
        self.over_ssh
    }
}

/// The most of a local command's stderr that is kept (its end).
const STDERR_TAIL: usize = 4096;

/// Runs `command` with `sh -c` on this machine: its stdout is not read
/// (only the exit code answers), its stderr only as far as its last
/// [`STDERR_TAIL`] bytes, so a chatty command cannot fill memory. Killed
/// if the caller stops waiting.
async fn run_local(command: &str) -> std::io::Result<Ended> {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stderr.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        tail.extend_from_slice(&buffer[..read]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    let status = child.wait().await?;
    Ok(Ended {
        code: status.code().map(i64::from),
        stderr: String::from_utf8_lossy(&tail).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inventory::{Host, SshSettings};

    fn host() -> Host {
        Host {
            name: "web-01".into(),
            address: "10.0.0.1".into(),
            zone: "a".into(),
            ssh: SshSettings {
                user: "root".into(),
                port: 22,
                ..SshSettings::default()
            },
            balancers: vec!["lb".into()],
            lb_server: "web-01".into(),
            target_id: None,
            vars: Default::default(),
            aws: None,
        }
    }

    fn balancer(status: Option<&str>) -> CommandBalancer {
        let template = |text: &str| Template::parse(text).unwrap();
        CommandBalancer::new(
            "lb",
            template("true"),
            template("exit 4"),
            status.map(template),
            false,
        )
    }

    #[tokio::test]
    async fn status_exit_codes_map_onto_admin_states() {
        let host = host();
        let target = Target {
            host: &host,
            shell: None,
        };
        let cases = [
            ("exit 0", AdminState::Ready, Some(true)),
            ("exit 1", AdminState::Unknown, Some(false)),
            ("echo busy >&2; exit 2", AdminState::Maint, None),
            // The host's values are substituted, shell-quoted.
            (
                "test {host} = web-01 || exit 3",
                AdminState::Ready,
                Some(true),
            ),
        ];
        for (command, admin, up) in cases {
            let status = balancer(Some(command)).status(target).await.unwrap();
            assert_eq!((status.admin, status.up), (admin, up), "{command}");
        }
        let error = balancer(Some("echo no such service >&2; exit 3"))
            .status(target)
            .await
            .unwrap_err();
        assert!(!error.retryable(), "{error}");
        assert_eq!(
            error.to_string(),
            "balancer lb: status command failed: exit 3: no such service \
             (expected 0 in service, 1 out of service, 2 disabled by an operator)"
        );
        assert!(
            balancer(Some("kill -9 $$")).status(target).await.is_err(),
            "a killed status command is an error"
        );
        // Without a status command, the admin state is unknown.
        let unknown = balancer(None).status(target).await.unwrap();
        assert_eq!((unknown.admin, unknown.up), (AdminState::Unknown, None));
        // Over SSH without a session: an error, never "in service".
        let mut over_ssh = balancer(Some("exit 0"));
        over_ssh.over_ssh = true;
        assert!(over_ssh.needs_host_session());
        assert!(!balancer(Some("exit 0")).needs_host_session());
        assert!(over_ssh.status(target).await.is_err());
    }

    #[tokio::test]
    async fn drain_and_undrain_fail_with_their_exit_code() {
        let host = host();
        let target = Target {
            host: &host,
            shell: None,
        };
        let lb = balancer(None);
        lb.drain(target).await.unwrap();
        assert_eq!(
            lb.undrain(target).await.unwrap_err().to_string(),
            "balancer lb: undrain command failed: exit 4"
        );
    }
}
