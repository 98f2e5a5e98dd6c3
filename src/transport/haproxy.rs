//! HAProxy through its runtime API (unix socket or TCP), one command per connection.

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::balancer::{AdminState, BalancerError, LoadBalancer, PoolStatus, ServerStatus, Target};
use crate::model::inventory::{HaproxyEndpoint, Host};

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
        // The runtime API runs each `;`- or newline-separated part as a
        // command of its own. Names are checked where they come from (the
        // inventory, discovery); this is the last line, for names from
        // anywhere else (an old journal, say).
        if command.contains([';', '\n', '\r']) {
            return Err(BalancerError::Refused {
                balancer: self.name.clone(),
                command: format!("{command:?}"),
                reply: "not sent: a name in it is not a plain identifier".to_owned(),
            });
        }
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

    /// The admin state of `server`, from `show servers state`: the status
    /// column of `show stat` says DOWN for a drained server that fails its
    /// health check, which would hide an operator's drain.
    async fn admin(&self, server: &str) -> Result<AdminState, BalancerError> {
        let reply = self
            .command(&format!("show servers state {}", self.backend))
            .await?;
        parse_admin_state(&reply, server).ok_or_else(|| self.unknown_server(server))
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

/// The admin state of one server in `show servers state` output: a
/// version line, a `#` header naming the columns, then one row per server.
pub fn parse_admin_state(text: &str, server: &str) -> Option<AdminState> {
    let mut lines = text.lines().skip_while(|line| !line.starts_with('#'));
    let header: Vec<&str> = lines
        .next()?
        .trim_start_matches('#')
        .split_whitespace()
        .collect();
    let name_at = header.iter().position(|c| *c == "srv_name")?;
    let admin_at = header.iter().position(|c| *c == "srv_admin_state")?;
    let row = lines
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(name_at) == Some(&server))?;
    let bits: u32 = row.get(admin_at)?.parse().ok()?;
    // SRV_ADMF_*: FMAINT 0x01, IMAINT 0x02, CMAINT 0x04, FDRAIN 0x08,
    // IDRAIN 0x10, RMAINT 0x20, HMAINT 0x40.
    Some(if bits & (0x01 | 0x02 | 0x04 | 0x20 | 0x40) != 0 {
        AdminState::Maint
    } else if bits & (0x08 | 0x10) != 0 {
        AdminState::Drain
    } else {
        AdminState::Ready
    })
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
            admin: self.admin(server).await?,
            up: Some(is_up(&row.status)),
            sessions: Some(row.sessions),
        })
    }

    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.set_state(&target.host.lb_server, "drain").await?;
        Ok(())
    }

    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.set_state(&target.host.lb_server, "ready").await
    }

    async fn reassert_drains(&self, drained: &[Host]) -> Result<Vec<String>, BalancerError> {
        if drained.is_empty() {
            return Ok(Vec::new());
        }
        let reply = self
            .command(&format!("show servers state {}", self.backend))
            .await?;
        let mut lost = Vec::new();
        for host in drained {
            if parse_admin_state(&reply, &host.lb_server) == Some(AdminState::Ready) {
                self.set_state(&host.lb_server, "drain").await?;
                lost.push(host.lb_server.clone());
            }
        }
        if lost.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![format!(
            "HAProxy {} lost fleetroll's drain of {} (a reload forgets runtime states): drain re-applied; \
             configure a server-state file to keep them",
            self.name,
            lost.join(", ")
        )])
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
        assert_eq!(rows[2].status, "MAINT");
    }

    #[test]
    fn admin_state_comes_from_the_server_state_bits() {
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n\
                    3 app 1 web-01 127.0.1.2 2 0 1\n\
                    3 app 2 web-02 127.0.1.3 0 8 1\n\
                    3 app 3 web-03 127.0.1.4 0 1 1\n\
                    3 app 4 web-04 127.0.1.5 0 9 1\n";
        assert_eq!(parse_admin_state(text, "web-01"), Some(AdminState::Ready));
        assert_eq!(parse_admin_state(text, "web-02"), Some(AdminState::Drain));
        assert_eq!(parse_admin_state(text, "web-03"), Some(AdminState::Maint));
        assert_eq!(parse_admin_state(text, "web-04"), Some(AdminState::Maint));
        assert_eq!(parse_admin_state(text, "web-09"), None);
    }

    /// A runtime API on loopback that answers like HAProxy, with a process
    /// id the test can change (a reload), and records every command.
    async fn fake_runtime_api(
        pid: std::sync::Arc<std::sync::Mutex<u32>>,
        seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let _ = BufReader::new(read).read_line(&mut line).await;
                let command = line.trim().to_owned();
                seen.lock().unwrap().push(command.clone());
                let reply = if command == "show info" {
                    format!("Name: HAProxy\nPid: {}\n", pid.lock().unwrap())
                } else if command.starts_with("show stat") {
                    "# pxname,svname,qcur,qmax,scur,status\napp,web-01,0,0,0,UP\n".to_owned()
                } else if command.starts_with("show servers state") {
                    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n3 app 1 web-01 10.0.0.1 2 0\n".to_owned()
                } else {
                    "\n".to_owned()
                };
                let _ = write.write_all(reply.as_bytes()).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn a_drain_the_balancer_lost_is_reapplied_and_reported() {
        let pid = std::sync::Arc::new(std::sync::Mutex::new(100));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = fake_runtime_api(pid.clone(), seen.clone()).await;
        let lb = Haproxy::new("web", HaproxyEndpoint::Address(address), "app");
        let host = crate::model::inventory::Host {
            name: "web-01".into(),
            address: "10.0.0.1".into(),
            zone: "a".into(),
            ssh: crate::model::inventory::SshSettings {
                user: "root".into(),
                port: 22,
                identity_file: None,
                known_hosts: None,
                jump: None,
                sudo: false,
            },
            balancers: vec!["web".into()],
            lb_server: "web-01".into(),
            target_id: None,
            vars: Default::default(),
            aws: None,
        };
        let target = Target {
            host: &host,
            shell: None,
        };
        lb.drain(target).await.unwrap();
        let drains = |seen: &std::sync::Mutex<Vec<String>>| {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|c| *c == "set server app/web-01 state drain")
                .count()
        };
        assert_eq!(drains(&seen), 1);
        // The fake answers "ready" for web-01, as HAProxy does after a
        // reload that forgot the drain.
        let warnings = lb
            .reassert_drains(std::slice::from_ref(&host))
            .await
            .unwrap();
        assert_eq!(drains(&seen), 2, "the drain is applied again");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("lost fleetroll's drain of web-01"),
            "{warnings:?}"
        );
        // Nothing the journal does not call drained is touched.
        assert!(lb.reassert_drains(&[]).await.unwrap().is_empty());
        assert_eq!(drains(&seen), 2);
    }

    /// A server name with a command separator (from an old journal, say)
    /// never reaches the runtime API.
    #[tokio::test]
    async fn a_command_with_a_separator_is_never_sent() {
        let pid = std::sync::Arc::new(std::sync::Mutex::new(100));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = fake_runtime_api(pid, seen.clone()).await;
        let lb = Haproxy::new("web", HaproxyEndpoint::Address(address), "app");
        for server in ["web-01;shutdown sessions server app/web-02", "web-01\nx"] {
            let error = lb.set_state(server, "ready").await.unwrap_err();
            assert!(matches!(error, BalancerError::Refused { .. }), "{error:?}");
        }
        assert!(seen.lock().unwrap().is_empty(), "{seen:?}");
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
