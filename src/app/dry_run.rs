//! `run --dry-run`: connect and check every selected host, change nothing.
//!
//! For each host: SSH (with host-key verification), `skip_if`, and what its
//! balancers say of it (operator-disabled, health). No lock is taken and no
//! journal is written; nothing is drained and no step runs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::Exit;
use crate::config::load::Config;
use crate::model::inventory::Host;
use crate::model::template::Quoting;
use crate::transport::balancer::{AdminState, LoadBalancer, Target};
use crate::transport::shell::Connector;

/// Hosts checked at the same time.
const CONCURRENCY: usize = 16;

/// What the dry run found for one host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostCheck {
    pub host: String,
    pub zone: String,
    /// `ok`, or why SSH failed (unknown or changed host key, unreachable…).
    pub ssh: String,
    /// `would skip`, `would update`, or why `skip_if` could not run.
    pub skip_if: String,
    /// Per balancer: its view of the host.
    pub balancers: Vec<String>,
    pub ok: bool,
}

pub async fn dry_run(
    config: &Config,
    hosts: Vec<Host>,
    connector: Arc<dyn Connector>,
    balancers: &std::collections::HashMap<String, Arc<dyn LoadBalancer>>,
    needs_ssh: bool,
) -> Vec<HostCheck> {
    futures_util::stream::iter(hosts)
        .map(|host| {
            let connector = Arc::clone(&connector);
            async move { check(config, host, connector, balancers, needs_ssh).await }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

async fn check(
    config: &Config,
    host: Host,
    connector: Arc<dyn Connector>,
    balancers: &std::collections::HashMap<String, Arc<dyn LoadBalancer>>,
    needs_ssh: bool,
) -> HostCheck {
    let mut ok = true;
    let (ssh, shell) = if needs_ssh {
        match connector.connect(&host).await {
            Ok(shell) => ("ok".to_owned(), Some(shell)),
            Err(error) => {
                ok = false;
                (error.to_string(), None)
            }
        }
    } else {
        ("not needed".to_owned(), None)
    };
    let skip_if = match (&config.playbook.strategy.skip_if, &shell) {
        (None, _) => "-".to_owned(),
        (Some(_), None) => "not checked".to_owned(),
        (Some(template), Some(shell)) => {
            match template.render(&host.template_context(), Quoting::Shell) {
                Err(error) => {
                    ok = false;
                    error.to_string()
                }
                Ok(command) => match shell.exec(&command, Duration::from_secs(60)).await {
                    Ok(output) if output.status.success() => "would skip (already done)".to_owned(),
                    Ok(_) => "would update".to_owned(),
                    Err(error) => {
                        ok = false;
                        format!("cannot run: {error}")
                    }
                },
            }
        }
    };
    let mut views = Vec::new();
    for name in &host.balancers {
        let Some(balancer) = balancers.get(name) else {
            continue;
        };
        let view = match balancer
            .status(Target {
                host: &host,
                shell: shell.as_ref(),
            })
            .await
        {
            Ok(status) => {
                let admin = match status.admin {
                    AdminState::Ready => "ready",
                    AdminState::Drain => "drain (operator: will be skipped)",
                    AdminState::Maint => "maintenance (operator: will be skipped)",
                    AdminState::Unknown => "state unknown",
                };
                let health = match status.up {
                    Some(true) => ", up",
                    Some(false) => ", DOWN",
                    None => "",
                };
                format!("{name}: {admin}{health}")
            }
            Err(error) => {
                ok = false;
                format!("{name}: {error}")
            }
        };
        views.push(view);
    }
    if let Some(shell) = &shell {
        shell.close().await;
    }
    HostCheck {
        zone: host.zone.clone(),
        host: host.name,
        ssh,
        skip_if,
        balancers: views,
        ok,
    }
}

/// The table people read, and the exit code.
pub fn report(checks: &[HostCheck], json: bool) -> Exit {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        for check in checks {
            if let Ok(line) = serde_json::to_string(check) {
                println!("{line}");
            }
        }
    } else {
        let width = checks
            .iter()
            .map(|c| c.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("dry run: nothing was changed");
        for check in checks {
            println!(
                "  {:<width$}  {:<10}  ssh {}; skip_if: {}; {}",
                check.host,
                check.zone,
                check.ssh,
                check.skip_if,
                if check.balancers.is_empty() {
                    "no balancer".to_owned()
                } else {
                    check.balancers.join("; ")
                }
            );
        }
        println!(
            "{} of {} hosts ready to roll",
            checks.len() - failed,
            checks.len()
        );
    }
    if failed == 0 {
        Exit::Success
    } else {
        Exit::Halted
    }
}
