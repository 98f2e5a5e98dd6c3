//! The fleet: zones of hosts, the balancers in front of them, dynamic sources.

use std::path::PathBuf;

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
}

/// Where an inventory's lock and run journals live (`[state]`): one place
/// per inventory, whoever runs it from wherever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateStore {
    /// A directory; a relative `dir` was resolved against the inventory
    /// file's directory.
    Local { dir: PathBuf },
    /// An S3 bucket. Parsed so that inventories can name it; not
    /// implemented yet, so every command that would use it refuses.
    S3 {
        bucket: String,
        prefix: String,
        region: Option<String>,
        endpoint_url: Option<String>,
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

/// How to reach a host over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    /// `None` means the user's `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    pub jump: Option<JumpHost>,
    pub sudo: bool,
}

/// A ProxyJump-style hop: `user@host:port`, user and port optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
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
                (host, port.parse().ok().filter(|&p: &u16| p != 0)?)
            }
            _ => (rest, 22),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return None;
        }
        Some(Self {
            user,
            host: host.to_owned(),
            port,
        })
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
            ("bastion", Some((None, "bastion", 22))),
            ("ops@bastion:2222", Some((Some("ops"), "bastion", 2222))),
            (
                "bastion.example.com:22",
                Some((None, "bastion.example.com", 22)),
            ),
            ("[::1]:2200", Some((None, "::1", 2200))),
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
