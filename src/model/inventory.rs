//! The fleet: zones of hosts, the balancers in front of them, dynamic sources.

use std::path::PathBuf;
use std::time::Duration;

use super::template::{Template, Vars};

/// A resolved inventory: every default applied, every reference checked.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub vars: Vars,
    pub balancers: Vec<Balancer>,
    /// Zones in file order; a zone holds at least one host.
    pub zones: Vec<Zone>,
    pub sources: Vec<Source>,
    /// Where the lock and the run journals live.
    pub state: StateStore,
    /// Which OpenSSH client configuration hosts are reached with.
    pub ssh_config: SshConfigChoice,
    /// `[defaults] max_handshakes`: SSH handshakes (connect and log in)
    /// in flight at once per destination, a host's or a jump host's sshd;
    /// four times as many over the whole run.
    pub max_handshakes: usize,
}

/// Below OpenSSH's default `MaxStartups` (10): beyond 10 connections not yet
/// logged in, sshd starts dropping new ones.
pub const DEFAULT_MAX_HANDSHAKES: usize = 8;

/// The most `max_handshakes` may be.
pub const MAX_HANDSHAKES_LIMIT: usize = 1000;

/// `[defaults] ssh_config`: which OpenSSH client configuration to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SshConfigChoice {
    /// `~/.ssh/config`, then `/etc/ssh/ssh_config`, as `ssh` reads them.
    #[default]
    Standard,
    /// Only this file (as `ssh -F FILE`); relative paths were resolved
    /// against the inventory's directory.
    File(PathBuf),
    /// `ssh_config = false`: none.
    Off,
}

/// Where an inventory's lock and run journals live (`[state]`): one place
/// per inventory, whoever runs it from wherever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateStore {
    /// A directory; a relative `dir` was resolved against the inventory
    /// file's directory.
    Local { dir: PathBuf },
    /// An S3 bucket (or an S3-compatible store at `endpoint_url`), shared
    /// by every controller; a lock holder silent for `lease` is presumed
    /// dead.
    S3 {
        bucket: String,
        prefix: String,
        region: Option<String>,
        endpoint_url: Option<String>,
        lease: std::time::Duration,
    },
}

impl Inventory {
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.zones.iter().flat_map(|zone| zone.hosts.iter())
    }

    pub fn host_count(&self) -> usize {
        self.zones.iter().map(|zone| zone.hosts.len()).sum()
    }

    pub fn balancer(&self, name: &str) -> Option<&Balancer> {
        self.balancers.iter().find(|balancer| balancer.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub zone: String,
    pub ssh: SshSettings,
    /// Names of the balancers this host is drained from, in order; empty for none.
    pub balancers: Vec<String>,
    /// The host's name in the balancer (HAProxy server name); defaults to `name`.
    pub lb_server: String,
    /// The AWS target id (an instance id or an IP address), if the host has one.
    pub target_id: Option<String>,
    /// Fleet variables with the host's own on top.
    pub vars: Vars,
    /// Where an AWS-discovered host came from; `None` for static hosts.
    pub aws: Option<AwsOrigin>,
}

/// The longest name a host, server or backend may have: a DNS name's.
pub const NAME_MAX: usize = 253;

/// Whether `name` may name a host, an HAProxy server or a backend: letters,
/// digits, `.`, `_` and `-`, starting with a letter or digit, at most
/// [`NAME_MAX`] long. Names reach balancer commands: HAProxy's runtime API
/// splits commands at `;` and newlines, and a command balancer's program
/// would take a leading `-` for an option.
pub fn is_safe_name(name: &str) -> bool {
    name.len() <= NAME_MAX
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The source and Auto Scaling group of a discovered instance.
#[derive(Debug, Clone)]
pub struct AwsOrigin {
    /// The `[sources.NAME]` it was found by (region, endpoint, address kind).
    pub source: Source,
    /// The instance's Auto Scaling group, if it is in one.
    pub asg: Option<String>,
    /// Its private IP address: its target id in target groups of type
    /// `ip`, whatever address fleetroll reaches it by.
    pub private_ip: Option<String>,
}

impl Host {
    /// The values this host's templates are rendered with.
    pub fn template_context(&self) -> super::template::TemplateContext<'_> {
        super::template::TemplateContext {
            host: &self.name,
            address: &self.address,
            zone: &self.zone,
            vars: &self.vars,
        }
    }
}

/// How to reach a host over SSH: the inventory's keys over ssh_config's
/// over fleetroll's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    /// Tried in order; empty: ssh-agent's identities, then `~/.ssh/id_*`.
    pub identity_files: Vec<PathBuf>,
    /// OpenSSH user certificates (`CertificateFile`), each offered with
    /// the identity whose key it certifies.
    pub certificate_files: Vec<PathBuf>,
    /// OpenSSH's `IdentitiesOnly`: no agent identity beyond the files'.
    pub identities_only: bool,
    pub identity_agent: IdentityAgent,
    /// Files searched for the host's key, in order (new keys are recorded
    /// in the first); `None` means `~/.ssh/known_hosts`.
    pub known_hosts: Option<Vec<PathBuf>>,
    /// Searched after `known_hosts`; `None` means OpenSSH's system-wide
    /// `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`.
    pub global_known_hosts: Option<Vec<PathBuf>>,
    /// ProxyJump hops, the first connected to first.
    pub jump: Vec<JumpHost>,
    /// TCP connect and handshake limit; `None`: the connector's own.
    pub connect_timeout: Option<Duration>,
    /// Keepalive interval and how many may go unanswered; `None`: the
    /// connector's own.
    pub keepalive: Option<(Duration, usize)>,
    pub sudo: bool,
    /// The lock file on the host that keeps two instances of a step from
    /// running at once (util-linux `flock`); `None`: steps are not
    /// serialised (`step_lock = false`).
    pub step_lock: Option<String>,
    /// Where each setting came from, by inventory key (`user`, `port`,
    /// `address`, …): `inventory.toml:12:5` or `~/.ssh/config:4`; a
    /// setting not listed is fleetroll's default.
    /// Shared between the clones of a host (one per batch, task, record).
    pub origins: std::sync::Arc<Origins>,
}

/// Where steps take their lock on a host unless the inventory says
/// otherwise (`step_lock`).
pub const DEFAULT_STEP_LOCK: &str = "/tmp/fleetroll-step.lock";

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            user: "root".to_owned(),
            port: 22,
            identity_files: Vec::new(),
            certificate_files: Vec::new(),
            identities_only: false,
            identity_agent: IdentityAgent::Environment,
            known_hosts: None,
            global_known_hosts: None,
            jump: Vec::new(),
            connect_timeout: None,
            keepalive: None,
            sudo: false,
            step_lock: Some(DEFAULT_STEP_LOCK.to_owned()),
            origins: std::sync::Arc::default(),
        }
    }
}

impl SshSettings {
    /// Records where the setting `key` came from.
    pub fn set_origin(&mut self, key: &'static str, origin: String) {
        std::sync::Arc::make_mut(&mut self.origins).insert(key, origin);
    }
}

/// Where a host's SSH settings came from, by setting: a few entries, kept
/// small because every host has its own (10,000 hosts, cloned per batch
/// and per task).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(Vec<(&'static str, Box<str>)>);

impl Origins {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, origin)| &**origin)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn insert(&mut self, key: &'static str, origin: String) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = origin.into_boxed_str(),
            None => self.0.push((key, origin.into_boxed_str())),
        }
    }
}

/// Which ssh-agent to ask for identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityAgent {
    /// `$SSH_AUTH_SOCK`, if set.
    Environment,
    None,
    Socket(PathBuf),
}

/// A ProxyJump-style hop: `user@host:port`, user and port optional (then
/// ssh_config's, or the target's user and port 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The hop's own identities (from ssh_config); empty: the target's.
    pub identity_files: Vec<PathBuf>,
}

impl JumpHost {
    pub fn parse(text: &str) -> Option<Self> {
        let (user, rest) = match text.split_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
            Some(_) => return None,
            None => (None, text),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.starts_with('[') => {
                (host, Some(port.parse().ok().filter(|&p: &u16| p != 0)?))
            }
            _ => (rest, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return None;
        }
        Some(Self {
            user,
            host: host.to_owned(),
            port,
            identity_files: Vec::new(),
        })
    }

    /// Several hops, comma-separated, as ProxyJump takes them.
    pub fn parse_chain(text: &str) -> Option<Vec<Self>> {
        text.split(',').map(|hop| Self::parse(hop.trim())).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Balancer {
    pub name: String,
    pub kind: BalancerKind,
}

#[derive(Debug, Clone)]
pub enum BalancerKind {
    Haproxy {
        endpoint: HaproxyEndpoint,
        backend: String,
    },
    AwsTargetGroup {
        target_groups: TargetGroups,
        region: Option<String>,
        endpoint_url: Option<String>,
        /// The target's port, when the group registers hosts on a port.
        port: Option<u16>,
    },
    Command {
        drain: Template,
        undrain: Template,
        /// Exit 0 in service, 1 out of service, 2 disabled by an operator.
        /// Without it, fleetroll cannot tell an operator's disable.
        status: Option<Template>,
        /// Run the commands on the host itself over SSH instead of locally.
        ssh: bool,
    },
}

impl BalancerKind {
    pub fn label(&self) -> &'static str {
        match self {
            BalancerKind::Haproxy { .. } => "haproxy",
            BalancerKind::AwsTargetGroup { .. } => "aws-target-group",
            BalancerKind::Command { .. } => "command",
        }
    }
}

/// Where HAProxy's runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaproxyEndpoint {
    Socket(PathBuf),
    Address(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetGroups {
    Arns(Vec<String>),
    /// Every target group the instance is registered in, found at run time.
    Discover,
}

/// Hosts discovered at run time, merged into zones by availability zone.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub address: AddressKind,
    /// Settings every discovered host gets, like a static host's.
    pub ssh: SshSettings,
    pub balancers: Vec<String>,
    pub vars: Vars,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    AwsAsg { groups: Vec<String> },
    AwsEc2 { filters: Vec<(String, Vec<String>)> },
}

impl SourceKind {
    pub fn describe(&self) -> String {
        match self {
            SourceKind::AwsAsg { groups } => format!("aws-asg {}", groups.join(", ")),
            SourceKind::AwsEc2 { filters } => {
                let filters: Vec<String> = filters
                    .iter()
                    .map(|(name, values)| format!("{name}={}", values.join("|")))
                    .collect();
                format!("aws-ec2 {}", filters.join(" "))
            }
        }
    }
}

/// Which of an instance's addresses SSH and probes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    PrivateIp,
    PublicIp,
    PrivateDns,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_are_plain_identifiers() {
        let long = "a".repeat(NAME_MAX);
        for name in [
            "web-01",
            "web_01.eu-west-1.internal",
            "i-0abc",
            "10.0.0.1",
            &long,
        ] {
            assert!(is_safe_name(name), "{name}");
        }
        let too_long = "a".repeat(NAME_MAX + 1);
        for name in [
            "", "web;01", "web 01", "web\n01", "app/web", "-rf", ".hidden", "wéb", "srv:80",
            &too_long,
        ] {
            assert!(!is_safe_name(name), "{name:?}");
        }
    }

    #[test]
    fn parses_jump_hosts_like_proxyjump() {
        let cases = [
            ("bastion", Some((None, "bastion", None))),
            (
                "ops@bastion:2222",
                Some((Some("ops"), "bastion", Some(2222))),
            ),
            (
                "bastion.example.com:22",
                Some((None, "bastion.example.com", Some(22))),
            ),
            ("[::1]:2200", Some((None, "::1", Some(2200)))),
            ("@bastion", None),
            ("bastion:0", None),
            ("bastion:http", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let parsed = JumpHost::parse(text);
            let parsed = parsed
                .as_ref()
                .map(|jump| (jump.user.as_deref(), jump.host.as_str(), jump.port));
            assert_eq!(parsed, expected, "{text}");
        }
    }
}
