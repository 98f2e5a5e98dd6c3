//! The user's OpenSSH client configuration applied to hosts: each host is
//! reached as `ssh NAME` would reach it (NAME matched against `Host` and
//! `Match` lines), except that the inventory's own keys win.

use std::path::{Path, PathBuf};

use super::ssh_config::{
    ConfigFile, FileKind, MatchContext, Resolved, SshConfig, SshConfigError, Tokens, Value,
    expand_tokens,
};
use crate::model::inventory::{Host, IdentityAgent, JumpHost, SshConfigChoice, SshSettings};

/// OpenSSH's default for `ServerAliveCountMax`.
const SERVER_ALIVE_COUNT_MAX: u32 = 3;

/// The configuration read once per command, applied to every host.
#[derive(Debug)]
pub struct OpenSsh {
    config: SshConfig,
    home: PathBuf,
    local_user: String,
    local_uid: u32,
    local_host: String,
}

/// The local identity `%u`, `%i`, `%d`, `%l` and `%L` expand to.
#[derive(Debug, Clone)]
pub struct LocalUser {
    pub home: PathBuf,
    pub name: String,
    pub uid: u32,
    pub host: String,
}

impl LocalUser {
    /// From `$HOME`, `$USER` (or `$LOGNAME`), the process's user id and the
    /// kernel's host name.
    pub fn from_env(home: &Path) -> Self {
        let name = ["USER", "LOGNAME"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "root".to_owned());
        Self {
            home: home.to_owned(),
            name,
            uid: rustix::process::getuid().as_raw(),
            host: crate::lock::this_host(),
        }
    }
}

impl OpenSsh {
    /// Reads the files `choice` names; `None` when it is `Off`.
    pub fn load(
        choice: &SshConfigChoice,
        local: LocalUser,
    ) -> Result<Option<Self>, SshConfigError> {
        let files = match choice {
            SshConfigChoice::Off => return Ok(None),
            SshConfigChoice::Standard => ConfigFile::defaults(&local.home),
            SshConfigChoice::File(path) => vec![ConfigFile {
                path: path.clone(),
                kind: FileKind::User,
                required: true,
            }],
        };
        let config = SshConfig::load(&files, &local.home)?;
        Ok(Some(Self::with_config(config, local)))
    }

    pub fn with_config(config: SshConfig, local: LocalUser) -> Self {
        Self {
            config,
            home: local.home,
            local_user: local.name,
            local_uid: local.uid,
            local_host: local.host,
        }
    }

    /// Fills in what the inventory left unset from ssh_config; returns
    /// warnings (a `Match exec` skipped, `StrictHostKeyChecking no`
    /// ignored), which name the ssh_config line but not the host, or an
    /// error for a setting fleetroll cannot honour.
    pub fn settle(&self, host: &mut Host) -> Result<Vec<String>, String> {
        let context = MatchContext {
            local_user: self.local_user.clone(),
            user: host
                .ssh
                .origins
                .contains_key("user")
                .then(|| host.ssh.user.clone()),
        };
        let resolved = self.config.resolve(&host.name, &context);
        let mut warnings = resolved.warnings.clone();
        if let Some(command) = &resolved.proxy_command
            && !command.value.eq_ignore_ascii_case("none")
        {
            return Err(format!(
                "{}: ProxyCommand is set for {}; fleetroll does not run proxy commands: use ProxyJump, or set ssh_config = false in [defaults]",
                command.origin, host.name
            ));
        }
        if let Some(strict) = &resolved.strict_host_key_checking
            && matches!(strict.value.to_ascii_lowercase().as_str(), "no" | "off")
        {
            warnings.push(format!(
                "{}: StrictHostKeyChecking {} is not honoured: fleetroll always verifies host keys (use --accept-new-host-keys to record new ones)",
                strict.origin, strict.value
            ));
        }
        if let Some(alias) = &resolved.host_key_alias {
            warnings.push(format!(
                "{}: HostKeyAlias is not supported; host keys are looked up by address",
                alias.origin
            ));
        }
        let ssh = &mut host.ssh;
        if let Some(name) = unset(ssh, "address", resolved.host_name.as_ref()) {
            host.address = name.clone();
        }
        if let Some(user) = unset(ssh, "user", resolved.user.as_ref()) {
            ssh.user = user.clone();
        }
        if let Some(port) = unset(ssh, "port", resolved.port.as_ref()) {
            ssh.port = *port;
        }
        let remote_user = ssh.user.clone();
        let tokens = Tokens {
            host: &host.address,
            alias: &host.name,
            port: ssh.port,
            remote_user: &remote_user,
            local_user: &self.local_user,
            local_uid: self.local_uid,
            home: &self.home,
            local_host: &self.local_host,
        };
        self.apply_files(ssh, &resolved, &tokens)?;
        if let Some(only) = unset(ssh, "identities_only", resolved.identities_only.as_ref()) {
            ssh.identities_only = *only;
        }
        if let Some(agent) = &resolved.identity_agent
            && !ssh.origins.contains_key("identity_agent")
        {
            ssh.identity_agent = identity_agent(agent, &tokens)?;
            ssh.set_origin("identity_agent", agent.origin.to_string());
        }
        if let Some(timeout) = unset(ssh, "connect_timeout", resolved.connect_timeout.as_ref()) {
            ssh.connect_timeout = Some(*timeout);
        }
        if let Some(interval) = &resolved.server_alive_interval
            && !ssh.origins.contains_key("keepalive")
        {
            let max = resolved
                .server_alive_count_max
                .as_ref()
                .map_or(SERVER_ALIVE_COUNT_MAX, |count| count.value);
            ssh.keepalive = Some((interval.value, max as usize));
            ssh.set_origin("keepalive", interval.origin.to_string());
        }
        if let Some(hops) = &resolved.proxy_jump
            && !ssh.origins.contains_key("jump")
        {
            ssh.jump = self.jump_hosts(hops, &context)?;
            ssh.set_origin("jump", hops.origin.to_string());
        }
        Ok(warnings)
    }

    /// Identity and known_hosts files, with `~` and `%` tokens expanded.
    fn apply_files(
        &self,
        ssh: &mut SshSettings,
        resolved: &Resolved,
        tokens: &Tokens<'_>,
    ) -> Result<(), String> {
        if !resolved.identity_files.is_empty() && !ssh.origins.contains_key("identity_file") {
            ssh.identity_files = resolved
                .identity_files
                .iter()
                .map(|file| expand_path(file, tokens))
                .collect::<Result<_, _>>()?;
            ssh.set_origin(
                "identity_file",
                resolved.identity_files[0].origin.to_string(),
            );
        }
        if !resolved.certificate_files.is_empty() && !ssh.origins.contains_key("certificate_file") {
            ssh.certificate_files = resolved
                .certificate_files
                .iter()
                .map(|file| expand_path(file, tokens))
                .collect::<Result<_, _>>()?;
            ssh.set_origin(
                "certificate_file",
                resolved.certificate_files[0].origin.to_string(),
            );
        }
        if let Some(files) = &resolved.user_known_hosts_files
            && !ssh.origins.contains_key("known_hosts")
        {
            ssh.known_hosts = Some(expand_list(files, tokens)?);
            ssh.set_origin("known_hosts", files.origin.to_string());
        }
        if let Some(files) = &resolved.global_known_hosts_files {
            ssh.global_known_hosts = Some(expand_list(files, tokens)?);
            ssh.set_origin("global_known_hosts", files.origin.to_string());
        }
        Ok(())
    }

    /// ProxyJump hops, each resolved through ssh_config as `ssh HOP` would:
    /// its HostName, Port, User and identities, under what the hop names.
    fn jump_hosts(
        &self,
        hops: &Value<Vec<String>>,
        context: &MatchContext,
    ) -> Result<Vec<JumpHost>, String> {
        hops.value
            .iter()
            .map(|text| {
                let Some(mut hop) = JumpHost::parse(text) else {
                    return Err(format!(
                        "{}: ProxyJump `{text}` is not a jump host (expected host, user@host or user@host:port)",
                        hops.origin
                    ));
                };
                let resolved = self.config.resolve(
                    &hop.host,
                    &MatchContext {
                        local_user: context.local_user.clone(),
                        user: hop.user.clone(),
                    },
                );
                let alias = hop.host.clone();
                if let Some(name) = &resolved.host_name {
                    hop.host = name.value.clone();
                }
                hop.port = hop.port.or(resolved.port.as_ref().map(|port| port.value));
                hop.user = hop.user.or(resolved.user.as_ref().map(|user| user.value.clone()));
                let user = hop.user.clone().unwrap_or_else(|| self.local_user.clone());
                let tokens = Tokens {
                    host: &hop.host,
                    alias: &alias,
                    port: hop.port.unwrap_or(22),
                    remote_user: &user,
                    local_user: &self.local_user,
                    local_uid: self.local_uid,
                    home: &self.home,
                    local_host: &self.local_host,
                };
                hop.identity_files = resolved
                    .identity_files
                    .iter()
                    .map(|file| expand_path(file, &tokens))
                    .collect::<Result<_, _>>()?;
                Ok(hop)
            })
            .collect()
    }
}

/// One line per distinct warning, naming the hosts it applies to (a
/// `Host *` line would otherwise repeat for every host).
pub fn group_warnings(warnings: Vec<(String, String)>) -> Vec<String> {
    let mut grouped: indexmap::IndexMap<String, Vec<String>> = indexmap::IndexMap::new();
    for (host, warning) in warnings {
        grouped.entry(warning).or_default().push(host);
    }
    grouped
        .into_iter()
        .map(|(warning, hosts)| match hosts.as_slice() {
            [host] => format!("ssh_config for {host}: {warning}"),
            _ if hosts.len() <= 3 => format!("ssh_config for {}: {warning}", hosts.join(", ")),
            _ => format!(
                "ssh_config for {} hosts ({}, …): {warning}",
                hosts.len(),
                hosts[..3].join(", ")
            ),
        })
        .collect()
}

/// ssh_config's value for `key` when the inventory did not set it; records
/// where it came from.
fn unset<'v, T>(
    ssh: &mut SshSettings,
    key: &'static str,
    value: Option<&'v Value<T>>,
) -> Option<&'v T> {
    let value = value?;
    if ssh.origins.contains_key(key) {
        return None;
    }
    ssh.set_origin(key, value.origin.to_string());
    Some(&value.value)
}

fn expand_path(file: &Value<String>, tokens: &Tokens<'_>) -> Result<PathBuf, String> {
    expand_tokens(&file.value, tokens)
        .map(PathBuf::from)
        .map_err(|error| format!("{}: {error}", file.origin))
}

fn expand_list(files: &Value<Vec<String>>, tokens: &Tokens<'_>) -> Result<Vec<PathBuf>, String> {
    files
        .value
        .iter()
        .map(|file| {
            expand_tokens(file, tokens)
                .map(PathBuf::from)
                .map_err(|error| format!("{}: {error}", files.origin))
        })
        .collect()
}

/// `IdentityAgent`: `none`, `SSH_AUTH_SOCK`, `$VAR`, or a socket path.
fn identity_agent(agent: &Value<String>, tokens: &Tokens<'_>) -> Result<IdentityAgent, String> {
    let value = agent.value.as_str();
    if value.eq_ignore_ascii_case("none") {
        return Ok(IdentityAgent::None);
    }
    if value == "SSH_AUTH_SOCK" || value == "$SSH_AUTH_SOCK" {
        return Ok(IdentityAgent::Environment);
    }
    if let Some(var) = value.strip_prefix('$') {
        return match std::env::var_os(var) {
            Some(path) if !path.is_empty() => Ok(IdentityAgent::Socket(PathBuf::from(path))),
            _ => Err(format!(
                "{}: IdentityAgent names ${var}, which is not set",
                agent.origin
            )),
        };
    }
    expand_tokens(value, tokens)
        .map(|path| IdentityAgent::Socket(PathBuf::from(path)))
        .map_err(|error| format!("{}: {error}", agent.origin))
}

/// Each SSH setting of `host` as `validate -v` shows it: key, value, and
/// where it came from (`default` for fleetroll's own).
pub fn provenance(host: &Host) -> Vec<(&'static str, String, String)> {
    let ssh = &host.ssh;
    let paths = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: Vec<(&'static str, String)> = vec![
        ("address", host.address.clone()),
        ("user", ssh.user.clone()),
        ("port", ssh.port.to_string()),
        (
            "identity_file",
            if ssh.identity_files.is_empty() {
                "ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa".to_owned()
            } else {
                paths(&ssh.identity_files)
            },
        ),
        (
            "certificate_file",
            if ssh.certificate_files.is_empty() {
                "none (IDENTITY-cert.pub if present)".to_owned()
            } else {
                paths(&ssh.certificate_files)
            },
        ),
        (
            "identities_only",
            if ssh.identities_only { "yes" } else { "no" }.to_owned(),
        ),
        (
            "identity_agent",
            match &ssh.identity_agent {
                IdentityAgent::Environment => "$SSH_AUTH_SOCK".to_owned(),
                IdentityAgent::None => "none".to_owned(),
                IdentityAgent::Socket(path) => path.display().to_string(),
            },
        ),
        (
            "known_hosts",
            ssh.known_hosts.as_deref().map_or_else(
                || "~/.ssh/known_hosts ~/.ssh/known_hosts2".to_owned(),
                paths,
            ),
        ),
        (
            "global_known_hosts",
            ssh.global_known_hosts.as_deref().map_or_else(
                || "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2".to_owned(),
                paths,
            ),
        ),
        (
            "jump",
            if ssh.jump.is_empty() {
                "none".to_owned()
            } else {
                ssh.jump
                    .iter()
                    .map(|hop| {
                        let user = hop
                            .user
                            .as_deref()
                            .map(|u| format!("{u}@"))
                            .unwrap_or_default();
                        format!("{user}{}:{}", hop.host, hop.port.unwrap_or(22))
                    })
                    .collect::<Vec<_>>()
                    .join(" -> ")
            },
        ),
        (
            "connect_timeout",
            ssh.connect_timeout.map_or_else(
                || "fleetroll's (10s)".to_owned(),
                |t| format!("{}s", t.as_secs()),
            ),
        ),
        (
            "keepalive",
            ssh.keepalive.map_or_else(
                || "fleetroll's (every 5s, 3 unanswered)".to_owned(),
                |(interval, max)| format!("every {}s, {max} unanswered", interval.as_secs()),
            ),
        ),
        ("sudo", if ssh.sudo { "yes" } else { "no" }.to_owned()),
        (
            "step_lock",
            ssh.step_lock
                .clone()
                .unwrap_or_else(|| "off: steps are not serialised".to_owned()),
        ),
    ];
    rows.into_iter()
        .map(|(key, value)| {
            let origin = match ssh.origins.get(key) {
                Some(origin) => origin.to_owned(),
                None if key == "address" => "the host's name".to_owned(),
                None => "default".to_owned(),
            };
            (key, value, origin)
        })
        .collect()
}
