//! Raw inventory → [`Inventory`]: defaults applied, references checked.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::vars::resolve_vars;
use crate::config::checker::{Checker, span_of};
use crate::config::raw::{RawBalancer, RawDefaults, RawHost, RawInventory, RawSource};
use crate::config::values::{OneOrMany, PathOrOff};
use crate::model::inventory::{
    AddressKind, Balancer, BalancerKind, HaproxyEndpoint, Host, Inventory, JumpHost, Source,
    SourceKind, SshConfigChoice, SshSettings, TargetGroups, Zone,
};
use crate::model::inventory::{DEFAULT_MAX_HANDSHAKES, DEFAULT_STEP_LOCK, MAX_HANDSHAKES_LIMIT};
use crate::model::template::is_identifier;

/// Where relative paths and `~` in the inventory lead.
#[derive(Debug, Clone, Copy)]
pub struct PathContext<'a> {
    /// The directory holding the inventory file.
    pub base_dir: &'a Path,
    /// The user's home directory, for `~`.
    pub home: Option<&'a Path>,
}

impl PathContext<'_> {
    pub fn resolve(&self, path: &str) -> PathBuf {
        if let (Some(rest), Some(home)) = (path.strip_prefix("~/"), self.home) {
            return home.join(rest);
        }
        if path == "~"
            && let Some(home) = self.home
        {
            return home.to_path_buf();
        }
        self.base_dir.join(path)
    }
}

/// The name that means "no balancer" in `balancer = "none"`.
const NO_BALANCER: &str = "none";

pub fn resolve_inventory(
    raw: RawInventory,
    checker: &mut Checker<'_>,
    paths: PathContext<'_>,
) -> Inventory {
    let RawInventory {
        defaults,
        vars,
        balancers,
        zones,
        sources,
        state,
    } = raw;
    let vars = resolve_vars(vars.as_ref(), checker);
    let state = super::state::resolve_state(state, checker, paths);
    let balancers = balancers.unwrap_or_default();
    // References are checked against every declared name, so that a
    // balancer with its own error is not reported again as unknown.
    let declared: Vec<String> = balancers.keys().map(|k| k.get_ref().clone()).collect();
    let balancer_names: Vec<&str> = declared.iter().map(String::as_str).collect();
    let balancers: Vec<(Balancer, Range<usize>)> = balancers
        .into_iter()
        .filter_map(|(name, raw)| {
            let span = name.span();
            resolve_balancer(name, raw, checker).map(|balancer| (balancer, span))
        })
        .collect();
    let defaults = resolve_defaults(defaults, checker, paths, &balancer_names);

    let mut resolved_zones = Vec::new();
    let mut first_seen: HashMap<String, Range<usize>> = HashMap::new();
    for (zone_name, raw_zone) in zones.unwrap_or_default() {
        let zone_name = zone_name.into_inner();
        let raw_zone = raw_zone.into_inner();
        if raw_zone.hosts.get_ref().is_empty() {
            checker
                .error(
                    raw_zone.hosts.span(),
                    format!("zone `{zone_name}` has no hosts"),
                    "empty list",
                )
                .set_help("add hosts to the zone, or remove the zone");
            continue;
        }
        let mut hosts = Vec::new();
        for raw_host in raw_zone.hosts.into_inner() {
            let raw_host = raw_host.into_inner();
            let name_span = raw_host.name.span();
            let name = raw_host.name.get_ref().clone();
            if let Some(first) = first_seen.get(&name) {
                let first = first.clone();
                checker
                    .error(
                        name_span,
                        format!("host `{name}` is defined twice"),
                        "second definition",
                    )
                    .add_label(first, "first defined here")
                    .set_help("host names must be unique across all zones");
                continue;
            }
            first_seen.insert(name.clone(), name_span);
            if let Some(host) = resolve_host(
                raw_host,
                &zone_name,
                &defaults,
                checker,
                paths,
                &balancer_names,
            ) {
                hosts.push(host);
            }
        }
        resolved_zones.push(Zone {
            name: zone_name,
            hosts,
        });
    }

    let sources: Vec<Source> = sources
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, raw)| {
            resolve_source(name, raw, &defaults, checker, paths, &balancer_names)
        })
        .collect();

    // A balancer nobody uses is most likely a forgotten `balancer =` line:
    // those hosts would be patched while still taking traffic.
    let uses_balancer = |name: &str| {
        resolved_zones
            .iter()
            .flat_map(|zone| &zone.hosts)
            .any(|host| host.balancers.iter().any(|b| b == name))
            || sources
                .iter()
                .any(|source| source.balancers.iter().any(|b| b == name))
    };
    for (balancer, span) in &balancers {
        if !uses_balancer(&balancer.name) {
            checker.warn(
                span.clone(),
                format!(
                    "balancer `{}` is defined but no host uses it",
                    balancer.name
                ),
                "unused",
            );
        }
    }

    Inventory {
        vars,
        balancers: balancers.into_iter().map(|(b, _)| b).collect(),
        zones: resolved_zones,
        sources,
        state,
        ssh_config: defaults.ssh_config,
        max_handshakes: defaults.max_handshakes,
    }
}

/// `[defaults]` with fleetroll's own defaults under it.
#[derive(Debug, Clone)]
struct Defaults {
    ssh_config: SshConfigChoice,
    max_handshakes: usize,
    ssh: SshSettings,
    balancers: Vec<String>,
}

fn resolve_defaults(
    raw: Option<RawDefaults>,
    checker: &mut Checker<'_>,
    paths: PathContext<'_>,
    balancer_names: &[&str],
) -> Defaults {
    let base = Defaults {
        ssh_config: SshConfigChoice::Standard,
        max_handshakes: DEFAULT_MAX_HANDSHAKES,
        ssh: SshSettings::default(),
        balancers: Vec::new(),
    };
    let Some(raw) = raw else { return base };
    let RawDefaults {
        user,
        port,
        identity_file,
        certificate_file,
        known_hosts,
        jump,
        sudo,
        step_lock,
        balancer,
        ssh_config,
        max_handshakes,
    } = raw;
    let ssh_config = match ssh_config {
        None => SshConfigChoice::Standard,
        Some(value) => {
            let span = value.span();
            match value.into_inner() {
                PathOrOff::Switch(true) => SshConfigChoice::Standard,
                PathOrOff::Switch(false) => SshConfigChoice::Off,
                PathOrOff::Path(path) => checker
                    .word(&Spanned::new(span, path), "path")
                    .map_or(SshConfigChoice::Standard, |path| {
                        SshConfigChoice::File(paths.resolve(&path))
                    }),
            }
        }
    };
    let max_handshakes = max_handshakes.map_or(DEFAULT_MAX_HANDSHAKES, |value| {
        match usize::try_from(*value.get_ref()) {
            Ok(n) if (1..=MAX_HANDSHAKES_LIMIT).contains(&n) => n,
            _ => {
                checker.error(
                    value.span(),
                    format!("{} is not a number of handshakes", value.get_ref()),
                    format!(
                        "expected 1 to {MAX_HANDSHAKES_LIMIT}: SSH handshakes in flight at once per destination"
                    ),
                );
                DEFAULT_MAX_HANDSHAKES
            }
        }
    });
    let overrides = SshOverrides {
        user: user.as_ref(),
        port: port.as_ref(),
        identity_file: identity_file.as_ref(),
        certificate_file: certificate_file.as_ref(),
        known_hosts: known_hosts.as_ref(),
        jump: jump.as_ref(),
        sudo: sudo.as_ref(),
        step_lock: step_lock.as_ref(),
    };
    Defaults {
        ssh_config,
        max_handshakes,
        ssh: overrides.apply(&base.ssh, checker, paths),
        balancers: balancer
            .as_ref()
            .map(|b| balancer_list(b, checker, balancer_names))
            .unwrap_or_default(),
    }
}

/// The SSH keys a host, a source or `[defaults]` may set.
struct SshOverrides<'r> {
    user: Option<&'r Spanned<String>>,
    port: Option<&'r Spanned<i64>>,
    identity_file: Option<&'r Spanned<String>>,
    certificate_file: Option<&'r Spanned<String>>,
    known_hosts: Option<&'r Spanned<String>>,
    jump: Option<&'r Spanned<String>>,
    sudo: Option<&'r Spanned<bool>>,
    step_lock: Option<&'r Spanned<PathOrOff>>,
}

impl SshOverrides<'_> {
    fn apply(
        &self,
        base: &SshSettings,
        checker: &mut Checker<'_>,
        paths: PathContext<'_>,
    ) -> SshSettings {
        let mut ssh = base.clone();
        if let Some(user) = self.user.and_then(|u| checker.word(u, "user name")) {
            ssh.user = user;
            origin(&mut ssh, checker, "user", self.user);
        }
        if let Some(port) = self.port.and_then(|p| checker.port(p)) {
            ssh.port = port;
            origin(&mut ssh, checker, "port", self.port);
        }
        if let Some(path) = self.identity_file.and_then(|p| checker.word(p, "path")) {
            ssh.identity_files = vec![paths.resolve(&path)];
            origin(&mut ssh, checker, "identity_file", self.identity_file);
        }
        if let Some(path) = self.certificate_file.and_then(|p| checker.word(p, "path")) {
            ssh.certificate_files = vec![paths.resolve(&path)];
            origin(&mut ssh, checker, "certificate_file", self.certificate_file);
        }
        if let Some(path) = self.known_hosts.and_then(|p| checker.word(p, "path")) {
            ssh.known_hosts = Some(vec![paths.resolve(&path)]);
            origin(&mut ssh, checker, "known_hosts", self.known_hosts);
        }
        if let Some(jump) = self.jump {
            match JumpHost::parse_chain(jump.get_ref()) {
                Some(hops) => {
                    ssh.jump = hops;
                    origin(&mut ssh, checker, "jump", self.jump);
                }
                None => {
                    checker.error(
                        jump.span(),
                        format!("`{}` is not a jump host", jump.get_ref()),
                        "expected host, user@host or user@host:port, several separated by commas",
                    );
                }
            }
        }
        if let Some(sudo) = self.sudo {
            ssh.sudo = *sudo.get_ref();
            origin(&mut ssh, checker, "sudo", self.sudo);
        }
        if let Some(lock) = self.step_lock {
            match lock.get_ref() {
                PathOrOff::Switch(false) => ssh.step_lock = None,
                PathOrOff::Switch(true) => ssh.step_lock = Some(DEFAULT_STEP_LOCK.to_owned()),
                PathOrOff::Path(path) if path.starts_with('/') && !path.contains('\0') => {
                    ssh.step_lock = Some(path.clone());
                }
                PathOrOff::Path(path) => {
                    checker.error(
                        lock.span(),
                        format!("`{path}` is not an absolute path"),
                        "expected an absolute path on the host (the lock file steps are \
                         serialised on), or false",
                    );
                }
            }
            origin(&mut ssh, checker, "step_lock", self.step_lock);
        }
        ssh
    }
}

/// Records that the inventory set `key` at `value`'s position.
fn origin<T>(
    ssh: &mut SshSettings,
    checker: &Checker<'_>,
    key: &'static str,
    value: Option<&Spanned<T>>,
) {
    if let Some(value) = value {
        let (line, column) = checker.file.line_col(value.span().start);
        ssh.set_origin(key, format!("{}:{line}:{column}", checker.file.name()));
    }
}

fn balancer_list(
    value: &Spanned<OneOrMany>,
    checker: &mut Checker<'_>,
    balancer_names: &[&str],
) -> Vec<String> {
    let names = &value.get_ref().0;
    if names.len() == 1 && names[0] == NO_BALANCER {
        return Vec::new();
    }
    let mut resolved: Vec<String> = Vec::new();
    for name in names {
        if name == NO_BALANCER {
            checker.error(
                value.span(),
                "`none` cannot be combined with other balancers",
                "write balancer = \"none\" alone",
            );
        } else if !balancer_names.contains(&name.as_str()) {
            let known = if balancer_names.is_empty() {
                "this inventory defines no balancers".to_owned()
            } else {
                format!("defined balancers: {}", balancer_names.join(", "))
            };
            checker
                .error(
                    value.span(),
                    format!("unknown balancer `{name}`"),
                    format!("no [balancers.{name}] in this inventory"),
                )
                .set_help(format!("{known}; write \"none\" for no balancer"));
        } else if resolved.contains(name) {
            checker.error(
                value.span(),
                format!("balancer `{name}` is listed twice"),
                "duplicate",
            );
        } else {
            resolved.push(name.clone());
        }
    }
    resolved
}

fn resolve_host(
    raw: RawHost,
    zone: &str,
    defaults: &Defaults,
    checker: &mut Checker<'_>,
    paths: PathContext<'_>,
    balancer_names: &[&str],
) -> Option<Host> {
    let RawHost {
        name,
        address,
        port,
        user,
        identity_file,
        certificate_file,
        known_hosts,
        jump,
        sudo,
        step_lock,
        balancer,
        lb_server,
        target_id,
        vars,
    } = raw;
    let name_ok = checker.name(&name, "host name");
    // Without an address, the name is dialled (after ssh_config's HostName).
    let address_checked = address.as_ref().map(|a| checker.word(a, "address"));
    let ssh = SshOverrides {
        user: user.as_ref(),
        port: port.as_ref(),
        identity_file: identity_file.as_ref(),
        certificate_file: certificate_file.as_ref(),
        known_hosts: known_hosts.as_ref(),
        jump: jump.as_ref(),
        sudo: sudo.as_ref(),
        step_lock: step_lock.as_ref(),
    }
    .apply(&defaults.ssh, checker, paths);
    let mut ssh = ssh;
    origin(&mut ssh, checker, "address", address.as_ref());
    let balancers = balancer.as_ref().map_or_else(
        || defaults.balancers.clone(),
        |b| balancer_list(b, checker, balancer_names),
    );
    let lb_server = lb_server
        .as_ref()
        .and_then(|s| checker.name(s, "server name"));
    let target_id = target_id
        .as_ref()
        .and_then(|t| checker.word(t, "target id"));
    let vars = resolve_vars(vars.as_ref(), checker);
    let name = name_ok?;
    let address = match address_checked {
        Some(address) => address?,
        None => name.clone(),
    };
    Some(Host {
        lb_server: lb_server.unwrap_or_else(|| name.clone()),
        name,
        address,
        zone: zone.to_owned(),
        ssh,
        balancers,
        target_id,
        vars,
        aws: None,
    })
}

fn resolve_balancer(
    name: Spanned<String>,
    raw: Spanned<RawBalancer>,
    checker: &mut Checker<'_>,
) -> Option<Balancer> {
    let raw_span = raw.span();
    let RawBalancer {
        kind,
        socket,
        address,
        backend,
        target_group_arn,
        target_group_arns,
        discover,
        region,
        endpoint_url,
        port,
        drain,
        undrain,
        status,
        ssh,
    } = raw.into_inner();
    let name = name.into_inner();
    if name == NO_BALANCER || !is_identifier(&name) {
        checker.error(
            raw_span.clone(),
            format!("`{name}` cannot name a balancer"),
            "reserved or malformed name",
        );
    }
    let present = [
        ("socket", span_of(&socket)),
        ("address", span_of(&address)),
        ("backend", span_of(&backend)),
        ("target_group_arn", span_of(&target_group_arn)),
        ("target_group_arns", span_of(&target_group_arns)),
        ("discover", span_of(&discover)),
        ("region", span_of(&region)),
        ("endpoint_url", span_of(&endpoint_url)),
        ("port", span_of(&port)),
        ("drain", span_of(&drain)),
        ("undrain", span_of(&undrain)),
        ("status", span_of(&status)),
        ("ssh", span_of(&ssh)),
    ];
    let what = "balancer";
    let kind_resolved = match kind.get_ref().as_str() {
        "haproxy" => {
            checker.only_keys_of(
                "a haproxy",
                what,
                &present,
                &["socket", "address", "backend"],
            );
            let endpoint = match (&socket, &address) {
                (Some(socket), None) => Some(HaproxyEndpoint::Socket(socket.get_ref().into())),
                (None, Some(address)) => checker
                    .word(address, "address")
                    .map(HaproxyEndpoint::Address),
                (Some(_), Some(address)) => {
                    checker.error(
                        address.span(),
                        "a haproxy balancer takes `socket` or `address`, not both",
                        "remove one",
                    );
                    None
                }
                (None, None) => {
                    checker
                        .error(raw_span.clone(), format!("balancer `{name}` has no runtime API"), "`socket` or `address` missing")
                        .set_help("add socket = \"/run/haproxy/admin.sock\" or address = \"127.0.0.1:9999\"");
                    None
                }
            };
            let backend = match &backend {
                Some(backend) => checker.name(backend, "backend name"),
                None => {
                    checker
                        .error(raw_span.clone(), format!("balancer `{name}` has no backend"), "`backend` missing")
                        .set_help("add backend = \"NAME\", the HAProxy backend holding the hosts' servers");
                    None
                }
            };
            Some(BalancerKind::Haproxy {
                endpoint: endpoint?,
                backend: backend?,
            })
        }
        "aws-target-group" => {
            checker.only_keys_of(
                "an aws-target-group",
                what,
                &present,
                &[
                    "target_group_arn",
                    "target_group_arns",
                    "discover",
                    "region",
                    "endpoint_url",
                    "port",
                ],
            );
            let discover_on = discover.as_ref().is_some_and(|d| *d.get_ref());
            let mut arns = Vec::new();
            if let Some(arn) = &target_group_arn {
                arns.push(arn);
            }
            if let Some(list) = &target_group_arns {
                arns.extend(list.get_ref().iter());
            }
            let target_groups = match (arns.is_empty(), discover_on) {
                (true, true) => Some(TargetGroups::Discover),
                (false, false) => {
                    let mut ok = Vec::new();
                    for arn in arns {
                        if is_target_group_arn(arn.get_ref()) {
                            ok.push(arn.get_ref().clone());
                        } else {
                            checker.error(
                                arn.span(),
                                format!("`{}` is not a target group ARN", arn.get_ref()),
                                "expected arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID",
                            );
                        }
                    }
                    Some(TargetGroups::Arns(ok))
                }
                (false, true) => {
                    checker.error(
                        span_of(&discover).unwrap_or(raw_span.clone()),
                        "`discover = true` finds the target groups itself",
                        "remove the ARNs or `discover`",
                    );
                    None
                }
                (true, false) => {
                    checker
                        .error(raw_span.clone(), format!("balancer `{name}` names no target group"), "no target group")
                        .set_help("add target_group_arn = \"arn:…\", target_group_arns = [...], or discover = true");
                    None
                }
            };
            let region = region.as_ref().and_then(|r| checker.word(r, "region"));
            let endpoint_url = endpoint_url
                .as_ref()
                .and_then(|u| checker.http_url(u, "endpoint_url"));
            let port = port.as_ref().and_then(|p| checker.port(p));
            Some(BalancerKind::AwsTargetGroup {
                target_groups: target_groups?,
                region,
                endpoint_url,
                port,
            })
        }
        "command" => {
            checker.only_keys_of(
                "a command",
                what,
                &present,
                &["drain", "undrain", "status", "ssh"],
            );
            let mut command = |value: &Option<Spanned<String>>, key: &str| match value {
                Some(value) => checker.shell_template(value),
                None => {
                    checker.error(
                        raw_span.clone(),
                        format!("balancer `{name}` has no `{key}` command"),
                        format!("`{key}` missing"),
                    );
                    None
                }
            };
            let drain = command(&drain, "drain");
            let undrain = command(&undrain, "undrain");
            // Optional: without it the balancer reports no admin state.
            let status = match &status {
                Some(value) => Some(checker.shell_template(value)?),
                None => None,
            };
            Some(BalancerKind::Command {
                drain: drain?,
                undrain: undrain?,
                status,
                ssh: ssh.as_ref().is_some_and(|s| *s.get_ref()),
            })
        }
        other => {
            checker.error(
                kind.span(),
                format!("unknown balancer kind `{other}`"),
                "expected \"haproxy\", \"aws-target-group\" or \"command\"",
            );
            None
        }
    };
    Some(Balancer {
        name,
        kind: kind_resolved?,
    })
}

fn is_target_group_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "elasticloadbalancing"
        && parts[5].starts_with("targetgroup/")
}

fn resolve_source(
    name: Spanned<String>,
    raw: Spanned<RawSource>,
    defaults: &Defaults,
    checker: &mut Checker<'_>,
    paths: PathContext<'_>,
    balancer_names: &[&str],
) -> Option<Source> {
    let raw_span = raw.span();
    let RawSource {
        kind,
        name: group_names,
        filters,
        region,
        endpoint_url,
        address,
        port,
        user,
        identity_file,
        certificate_file,
        known_hosts,
        jump,
        sudo,
        step_lock,
        balancer,
        vars,
    } = raw.into_inner();
    let source_name = name.into_inner();
    let present = [
        ("name", span_of(&group_names)),
        ("filters", span_of(&filters)),
    ];
    let source_kind = match kind.get_ref().as_str() {
        "aws-asg" => {
            checker.only_keys_of("an aws-asg", "source", &present, &["name"]);
            match &group_names {
                Some(names) if !names.get_ref().0.is_empty() => Some(SourceKind::AwsAsg {
                    groups: names.get_ref().0.clone(),
                }),
                _ => {
                    checker
                        .error(
                            raw_span.clone(),
                            format!("source `{source_name}` names no Auto Scaling group"),
                            "`name` missing",
                        )
                        .set_help(
                            "add name = \"web-asg\" or name = [\"web-asg-a\", \"web-asg-b\"]",
                        );
                    None
                }
            }
        }
        "aws-ec2" => {
            checker.only_keys_of("an aws-ec2", "source", &present, &["filters"]);
            match &filters {
                Some(filters) if !filters.get_ref().is_empty() => Some(SourceKind::AwsEc2 {
                    filters: filters
                        .get_ref()
                        .iter()
                        .map(|(key, values)| (key.clone(), values.0.clone()))
                        .collect(),
                }),
                _ => {
                    checker
                        .error(raw_span.clone(), format!("source `{source_name}` has no filters"), "`filters` missing")
                        .set_help("add filters = { \"tag:Role\" = \"web\" }; fleetroll will not roll every instance in an account");
                    None
                }
            }
        }
        other => {
            checker.error(
                kind.span(),
                format!("unknown source kind `{other}`"),
                "expected \"aws-asg\" or \"aws-ec2\"",
            );
            None
        }
    };
    let address = match address.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
        None | Some(("private-ip", _)) => Some(AddressKind::PrivateIp),
        Some(("public-ip", _)) => Some(AddressKind::PublicIp),
        Some(("private-dns", _)) => Some(AddressKind::PrivateDns),
        Some((other, span)) => {
            checker.error(
                span,
                format!("unknown address kind `{other}`"),
                "expected \"private-ip\", \"public-ip\" or \"private-dns\"",
            );
            None
        }
    };
    let region = region.as_ref().and_then(|r| checker.word(r, "region"));
    let endpoint_url = endpoint_url
        .as_ref()
        .and_then(|u| checker.http_url(u, "endpoint_url"));
    let ssh = SshOverrides {
        user: user.as_ref(),
        port: port.as_ref(),
        identity_file: identity_file.as_ref(),
        certificate_file: certificate_file.as_ref(),
        known_hosts: known_hosts.as_ref(),
        jump: jump.as_ref(),
        sudo: sudo.as_ref(),
        step_lock: step_lock.as_ref(),
    }
    .apply(&defaults.ssh, checker, paths);
    let balancers = balancer.as_ref().map_or_else(
        || defaults.balancers.clone(),
        |b| balancer_list(b, checker, balancer_names),
    );
    let vars = resolve_vars(vars.as_ref(), checker);
    Some(Source {
        name: source_name,
        kind: source_kind?,
        region,
        endpoint_url,
        address: address?,
        ssh,
        balancers,
        vars,
    })
}
