//! Health probes: HTTP status and body, TCP connect, a command over SSH.

use std::sync::Arc;
use std::time::Duration;

use super::shell::RemoteShell;
use crate::model::inventory::Host;
use crate::model::playbook::{Probe, ProbeKind};
use crate::model::template::{Quoting, Template};

/// One probe's verdict, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub ok: bool,
    pub detail: String,
}

/// Runs probes; holds the HTTP client so connections are reused.
#[derive(Debug, Clone)]
pub struct Prober {
    http: reqwest::Client,
}

impl Prober {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        Self { http }
    }

    /// Runs `probe` against `host`, giving up after `timeout`.
    pub async fn check(
        &self,
        probe: &Probe,
        host: &Host,
        shell: Option<&Arc<dyn RemoteShell>>,
        timeout: Duration,
    ) -> ProbeResult {
        let context = host.template_context();
        let render = |template: &Template, quoting| template.render(&context, quoting);
        let fail = |detail: String| ProbeResult { ok: false, detail };
        match &probe.kind {
            ProbeKind::Http {
                url,
                expect_status,
                expect_body,
            } => {
                let url = match render(url, Quoting::Raw) {
                    Ok(url) => url,
                    Err(error) => return fail(error.to_string()),
                };
                let expected_body = match expect_body
                    .as_ref()
                    .map(|b| render(b, Quoting::Raw))
                    .transpose()
                {
                    Ok(body) => body,
                    Err(error) => return fail(error.to_string()),
                };
                let response = self.http.get(&url).timeout(timeout).send().await;
                let response = match response {
                    Ok(response) => response,
                    Err(error) => return fail(format!("GET {url}: {}", short_error(&error))),
                };
                let status = response.status().as_u16();
                let body = match tokio::time::timeout(timeout, response.text()).await {
                    Ok(Ok(body)) => body,
                    Ok(Err(error)) => return fail(format!("GET {url}: {}", short_error(&error))),
                    Err(_) => return fail(format!("GET {url}: body not read within {timeout:?}")),
                };
                if status != *expect_status {
                    return fail(format!(
                        "GET {url}: status {status}, expected {expect_status}"
                    ));
                }
                if let Some(expected) = expected_body
                    && !body.contains(&expected)
                {
                    let seen: String = body.trim().chars().take(60).collect();
                    return fail(format!("GET {url}: body lacks {expected:?} (got {seen:?})"));
                }
                ProbeResult {
                    ok: true,
                    detail: format!("GET {url}: {status}"),
                }
            }
            ProbeKind::Tcp { target } => {
                let address = match render(target, Quoting::Raw) {
                    Ok(address) => address,
                    Err(error) => return fail(error.to_string()),
                };
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await
                {
                    Ok(Ok(_)) => ProbeResult {
                        ok: true,
                        detail: format!("connected to {address}"),
                    },
                    Ok(Err(error)) => fail(format!("connect {address}: {error}")),
                    Err(_) => fail(format!("connect {address}: no answer within {timeout:?}")),
                }
            }
            ProbeKind::Command { command } => {
                let Some(shell) = shell else {
                    return fail("no SSH session to the host".to_owned());
                };
                let command = match render(command, Quoting::Shell) {
                    Ok(command) => command,
                    Err(error) => return fail(error.to_string()),
                };
                match shell.exec(&command, timeout).await {
                    Ok(output) if output.status.success() => ProbeResult {
                        ok: true,
                        detail: "exit 0".to_owned(),
                    },
                    Ok(output) => fail(format!(
                        "exit {}: {}",
                        output.status.code(),
                        last_line(&output.stdout_tail, &output.stderr_tail)
                    )),
                    Err(error) => fail(error.to_string()),
                }
            }
        }
    }
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

fn short_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        error.to_string()
    }
}

fn last_line(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.trim().lines().last().unwrap_or_default().to_owned()
}
