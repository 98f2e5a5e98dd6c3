//! Health probes: HTTP status and body, TCP connect, a command over SSH.

use std::sync::Arc;
use std::time::Duration;

use super::http_error::describe;
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
                // The details name no URL: the probe's name shows its
                // template, and the rendered URL may carry a secret (a
                // token in the query, a `{vars.*}` value).
                let response = self.http.get(&url).timeout(timeout).send().await;
                let response = match response {
                    Ok(response) => response,
                    Err(error) => return fail(describe(error)),
                };
                let status = response.status().as_u16();
                let body = match tokio::time::timeout(timeout, read_capped(response)).await {
                    Ok(Ok(body)) => body,
                    Ok(Err(error)) => {
                        return fail(format!("reading the body: {}", describe(error)));
                    }
                    Err(_) => return fail(format!("body not read within {timeout:?}")),
                };
                if status != *expect_status {
                    return fail(format!("status {status}, expected {expect_status}"));
                }
                if let Some(expected) = expected_body
                    && !body.contains(&expected)
                {
                    let seen: String = body.trim().chars().take(60).collect();
                    return fail(format!("body lacks {expected:?} (got {seen:?})"));
                }
                ProbeResult {
                    ok: true,
                    detail: format!("status {status}"),
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

fn last_line(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.trim().lines().last().unwrap_or_default().to_owned()
}

/// The most of a probe's answer that is read: a health page is small, and
/// a probe pointed at a large download must not read all of it into memory.
const BODY_CAP: usize = 1 << 20;

/// The body's first [`BODY_CAP`] bytes, lossily decoded; the rest is left
/// unread.
async fn read_capped(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < BODY_CAP {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = BODY_CAP - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::model::inventory::SshSettings;
    use crate::model::template::Template;

    const SECRET: &str = "t0ken-SECRET";
    const PASSWORD: &str = "pa55-SECRET";

    fn host() -> Host {
        Host {
            name: "web-01".into(),
            address: "127.0.0.1".into(),
            zone: "a".into(),
            ssh: SshSettings {
                user: "root".into(),
                port: 22,
                ..SshSettings::default()
            },
            balancers: Vec::new(),
            lb_server: "web-01".into(),
            target_id: None,
            vars: [("token".to_owned(), SECRET.to_owned())].into(),
            aws: None,
        }
    }

    fn probe(port: u16, expect_body: Option<&str>) -> Probe {
        let url = format!("http://ops:{PASSWORD}@{{address}}:{port}/healthz?token={{vars.token}}");
        Probe {
            name: "http".into(),
            kind: ProbeKind::Http {
                url: Template::parse(&url).unwrap(),
                expect_status: 200,
                expect_body: expect_body.map(|b| Template::parse(b).unwrap()),
            },
        }
    }

    /// A loopback server that answers each connection with `reply` (raw
    /// bytes, possibly nothing) and closes it.
    async fn server(reply: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn failing_http_probes_keep_url_secrets_out_of_their_detail() {
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let hangs_up = server("").await;
        let garbage = server("this is not HTTP\r\n\r\n").await;
        let broken =
            server("HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        let other =
            server("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").await;
        let prober = Prober::new();
        let host = host();
        let cases = [
            (closed, None, "connection refused"),
            (hangs_up, None, ""),
            (garbage, None, ""),
            (broken, None, "status 500, expected 200"),
            (other, Some("expected text"), "body lacks"),
        ];
        for (port, body, expected) in cases {
            let result = prober
                .check(&probe(port, body), &host, None, Duration::from_secs(5))
                .await;
            assert!(!result.ok, "port {port}: {result:?}");
            assert!(result.detail.contains(expected), "{result:?}");
            for secret in [SECRET, PASSWORD] {
                assert!(!result.detail.contains(secret), "{result:?}");
            }
        }
    }
}
