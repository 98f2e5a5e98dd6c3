//! HAProxy through its runtime API (unix socket or TCP), one command per connection.

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::balancer::{AdminState, BalancerError, LoadBalancer, PoolStatus, ServerStatus, Target};
use crate::model::inventory::HaproxyEndpoint;

/// Every runtime API exchange is bounded by this.
const API_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Haproxy {
    name: String,
    endpoint: HaproxyEndpoint,
    backend: String,
}

impl Haproxy {
    pub fn new(name: &str, endpoint: HaproxyEndpoint, backend: &str) -> Self {
        Self {
            name: name.to_owned(),
            endpoint,
            backend: backend.to_owned(),
        }
    }

    /// Sends one command and returns HAProxy's whole reply.
    pub async fn command(&self, command: &str) -> Result<String, BalancerError> {
        let unreachable = |reason: String| BalancerError::Unreachable {
            balancer: self.name.clone(),
            reason,
        };
        let exchange = async {
            match &self.endpoint {
                HaproxyEndpoint::Socket(path) => {
                    let stream = tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    exchange(stream, command).await.map_err(|e| e.to_string())
                }
                HaproxyEndpoint::Address(address) => {
                    let stream = tokio::net::TcpStream::connect(address)
                        .await
                        .map_err(|e| format!("{address}: {e}"))?;
                    exchange(stream, command).await.map_err(|e| e.to_string())
                }
            }
        };
        match tokio::time::timeout(API_TIMEOUT, exchange).await {
            Ok(result) => result.map_err(unreachable),
            Err(_) => Err(unreachable(format!("no answer within {API_TIMEOUT:?}"))),
        }
    }

    async fn set_state(&self, server: &str, state: &str) -> Result<(), BalancerError> {
        let command = format!("set server {}/{server} state {state}", self.backend);
        let reply = self.command(&command).await?;
        // Success is an empty reply; anything else is HAProxy saying why not.
        if reply.trim().is_empty() {
            Ok(())
        } else if reply.contains("No such server") || reply.contains("No such backend") {
            Err(self.unknown_server(server))
        } else {
            Err(BalancerError::Refused {
                balancer: self.name.clone(),
                command,
                reply: reply.trim().to_owned(),
            })
        }
    }

    fn unknown_server(&self, server: &str) -> BalancerError {
        BalancerError::UnknownServer {
            balancer: self.name.clone(),
            backend: self.backend.clone(),
            server: server.to_owned(),
        }
    }

    async fn stat_rows(&self) -> Result<Vec<StatRow>, BalancerError> {
        let reply = self
            .command(&format!("show stat {} 4 -1", self.backend))
            .await?;
        Ok(parse_stat(&reply))
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    command: &str,
) -> std::io::Result<String> {
    stream.write_all(command.as_bytes()).await?;
    stream.write_all(b"\n").await?;
    stream.flush().await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    Ok(reply)
}

/// One server row of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    pub server: String,
    pub status: String,
    pub sessions: u64,
}

/// Parses `show stat` CSV by the column names in its header, so a HAProxy
/// version that adds columns does not break us.
pub fn parse_stat(csv: &str) -> Vec<StatRow> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(sv), Some(status), Some(scur)) = (index("svname"), index("status"), index("scur"))
    else {
        return Vec::new();
    };
    lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let server = *fields.get(sv)?;
            if server == "FRONTEND" || server == "BACKEND" {
                return None;
            }
            Some(StatRow {
                server: server.to_owned(),
                status: fields.get(status)?.to_string(),
                sessions: fields.get(scur)?.parse().unwrap_or(0),
            })
        })
        .collect()
}

/// Reads the admin state from `show stat`'s status: HAProxy shows MAINT for
/// maintenance (set by an operator or by us) and DRAIN for drain.
fn admin_state(status: &str) -> AdminState {
    if status.starts_with("MAINT") {
        AdminState::Maint
    } else if status.starts_with("DRAIN") {
        AdminState::Drain
    } else {
        AdminState::Ready
    }
}

/// Whether HAProxy's own health check passes: "UP", "UP 1/2" (going down
/// but still up), "NOLB"; not "DOWN", "DOWN 1/2", "MAINT", "DRAIN".
fn is_up(status: &str) -> bool {
    status == "UP" || status.starts_with("UP ") || status == "NOLB" || status == "no check"
}

#[async_trait]
impl LoadBalancer for Haproxy {
    fn name(&self) -> &str {
        &self.name
    }

    async fn status(&self, target: Target<'_>) -> Result<ServerStatus, BalancerError> {
        let server = &target.host.lb_server;
        let rows = self.stat_rows().await?;
        let row = rows
            .iter()
            .find(|row| &row.server == server)
            .ok_or_else(|| self.unknown_server(server))?;
        Ok(ServerStatus {
            admin: admin_state(&row.status),
            up: Some(is_up(&row.status)),
            sessions: Some(row.sessions),
        })
    }

    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.set_state(&target.host.lb_server, "drain").await
    }

    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.set_state(&target.host.lb_server, "ready").await
    }

    async fn pool(&self) -> Result<Option<PoolStatus>, BalancerError> {
        let rows = self.stat_rows().await?;
        Ok(Some(PoolStatus {
            healthy: rows.iter().filter(|r| is_up(&r.status)).count(),
            total: rows.len(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_stat_by_column_name() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
                   app,web-01,0,0,3,5,,10,0,0,,0,,0,0,0,0,UP,1\n\
                   app,web-02,0,0,0,1,,4,0,0,,0,,0,0,0,0,DRAIN,1\n\
                   app,web-03,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1\n\
                   app,BACKEND,0,0,3,5,,14,0,0,0,0,,0,0,0,0,UP,2\n\n";
        let rows = parse_stat(csv);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            StatRow {
                server: "web-01".into(),
                status: "UP".into(),
                sessions: 3
            }
        );
        assert_eq!(admin_state(&rows[1].status), AdminState::Drain);
        assert_eq!(admin_state(&rows[2].status), AdminState::Maint);
    }

    #[test]
    fn health_reads_transitions() {
        for (status, up) in [
            ("UP", true),
            ("UP 1/2", true),
            ("DOWN", false),
            ("DOWN 1/2", false),
            ("MAINT", false),
            ("DRAIN", false),
            ("NOLB", true),
        ] {
            assert_eq!(is_up(status), up, "{status}");
        }
    }
}
