//! Reboot steps: reboot, reconnect, and prove it by a changed boot id.

use backon::{BackoffBuilder, ExponentialBuilder};

use std::time::Duration;

use tokio::time::Instant;

use super::{HostTask, Stop};
use crate::events::Outcome;
use crate::model::playbook::Step;

impl HostTask {
    /// Reboots the host and proves it: SSH must come back with a boot id
    /// other than the one read before. Watching port 22 is not enough; a
    /// host that never went down would pass.
    pub(super) async fn reboot(
        &mut self,
        index: usize,
        step: &Step,
        command: &crate::model::template::Template,
        boot_id_file: &crate::model::template::Template,
    ) -> Result<(), Stop> {
        let read_boot_id = format!("cat {}", self.render(boot_id_file)?);
        let before = self.boot_id(&read_boot_id).await?;
        let reboot = self.render(command)?;
        self.step_started(index, step, 1).await?;
        let started = Instant::now();
        let deadline = started + step.timeout;
        // The command may never answer: the host goes down under it.
        let _ = self.exec(&reboot, Duration::from_secs(15)).await;
        if let Some(shell) = self.shell.take() {
            shell.close().await;
        }
        let mut backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(10))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let mut last = "SSH did not come back".to_owned();
        let mut outcome = Outcome::TimedOut;
        loop {
            let delay = backoff.next().unwrap_or(Duration::from_secs(5));
            if Instant::now() + delay >= deadline {
                break;
            }
            self.pause(delay).await?;
            let connected = tokio::select! {
                result = self.env.transports.connector.connect(&self.host) => result,
                () = self.cancel.cancelled() => return Err(Stop::Cancelled),
            };
            let Ok(shell) = connected else { continue };
            self.shell = Some(shell);
            match self.boot_id(&read_boot_id).await {
                Ok(after) if after != before => {
                    self.step_finished(
                        index,
                        step,
                        Some(0),
                        started.elapsed(),
                        true,
                        format!("boot id {before} -> {after}"),
                    )
                    .await?;
                    return Ok(());
                }
                Ok(_) => {
                    last = format!("boot id unchanged ({before}): the host did not reboot");
                    outcome = Outcome::Failed;
                }
                Err(_) => last = "SSH is back but the boot id cannot be read".to_owned(),
            }
            if let Some(shell) = self.shell.take() {
                shell.close().await;
            }
        }
        self.step_finished(index, step, None, started.elapsed(), false, last.clone())
            .await?;
        Err(Stop::Outcome(
            outcome,
            format!("{}: {last} within {:?}", step.name, step.timeout),
        ))
    }

    pub(super) async fn boot_id(&self, command: &str) -> Result<String, Stop> {
        let output = self
            .exec(command, Duration::from_secs(30))
            .await
            .map_err(|error| self.failure(&error, "reading the boot id"))?;
        let id = output.stdout_tail.trim().to_owned();
        if !output.status.success() || id.is_empty() {
            return Err(Stop::Outcome(
                Outcome::Failed,
                format!("cannot read the boot id: {}", output.stderr_tail.trim()),
            ));
        }
        Ok(id)
    }
}
