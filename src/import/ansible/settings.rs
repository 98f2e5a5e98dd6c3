//! What an `ansible_*` variable (or any other) means to the importer.

use super::*;

/// What an `ansible_*` variable (or any other) means to the importer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setting {
    Address,
    Port,
    User,
    IdentityFile,
    SshArgs,
    Become,
    BecomeMethod,
    BecomeUser,
    Connection,
    GroupPriority,
    OtherAnsible,
    Plain,
}

/// In each list the first variable that is set wins (Ansible lets the
/// `ansible_ssh_*` spelling win).
pub(super) const ADDRESS_VARS: [&str; 2] = ["ansible_ssh_host", "ansible_host"];
pub(super) const PORT_VARS: [&str; 2] = ["ansible_ssh_port", "ansible_port"];
pub(super) const USER_VARS: [&str; 2] = ["ansible_ssh_user", "ansible_user"];
pub(super) const KEY_VARS: [&str; 2] = ["ansible_ssh_private_key_file", "ansible_private_key_file"];
/// In the order they reach `ssh`'s command line, where the first
/// `ProxyJump` wins.
pub(super) const SSH_ARGS_VARS: [&str; 3] = [
    "ansible_ssh_args",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

pub(super) fn setting(name: &str) -> Setting {
    match name {
        n if ADDRESS_VARS.contains(&n) => Setting::Address,
        n if PORT_VARS.contains(&n) => Setting::Port,
        n if USER_VARS.contains(&n) => Setting::User,
        n if KEY_VARS.contains(&n) => Setting::IdentityFile,
        n if SSH_ARGS_VARS.contains(&n) => Setting::SshArgs,
        "ansible_become" | "ansible_sudo" => Setting::Become,
        "ansible_become_method" => Setting::BecomeMethod,
        "ansible_become_user" | "ansible_sudo_user" => Setting::BecomeUser,
        "ansible_connection" => Setting::Connection,
        "ansible_group_priority" => Setting::GroupPriority,
        n if n.starts_with("ansible_") => Setting::OtherAnsible,
        _ => Setting::Plain,
    }
}

/// Why the definition `name = value` cannot be carried over as it is, if
/// it cannot. Never quotes the value of anything that might be a secret.
pub(super) fn why_not_carried(name: &str, value: &Value) -> Option<String> {
    let kind = setting(name);
    if is_secret_value(value) {
        return Some(format!(
            "`{name}` is encrypted with ansible-vault or holds a private key: not copied"
        ));
    }
    if matches!(kind, Setting::Plain | Setting::OtherAnsible) && is_secret_name(name) {
        let why = if name.starts_with("ansible_become") || name.starts_with("ansible_sudo") {
            "is a sudo password: not copied (fleetroll runs `sudo -n`: the user needs \
             passwordless sudo)"
        } else if name.starts_with("ansible_") {
            "is a password or key: not copied (fleetroll logs in with SSH keys or your agent)"
        } else {
            "looks like a secret: not copied (give it to the playbook with --var or the \
             environment when it runs)"
        };
        return Some(format!("`{name}` {why}"));
    }
    match kind {
        Setting::Plain => {
            if !is_var_name(name) {
                return Some(format!(
                    "`{name}` cannot name a fleetroll variable (letters, digits, `_` and `-`, \
                     starting with a letter)"
                ));
            }
            match value {
                Value::Str(text) if is_template(text) => Some(format!(
                    "`{name}` is a Jinja2 template, which fleetroll does not evaluate"
                )),
                Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => None,
                other => Some(format!(
                    "`{name}` is {}; fleetroll variables are strings, numbers or booleans",
                    other.describe()
                )),
            }
        }
        Setting::Address | Setting::User | Setting::IdentityFile => {
            word(value).err().map(|why| format!("`{name}` {why}"))
        }
        Setting::Port => port(value)
            .is_none()
            .then(|| format!("`{name}` is not a port number (1 to 65535)")),
        Setting::SshArgs => match word_or_text(value) {
            Err(why) => Some(format!("`{name}` {why}")),
            Ok(text) => {
                let args = SshArgs::parse(&text);
                (!args.dropped.is_empty()).then(|| {
                    format!(
                        "`{name}`: {} not carried over (fleetroll reads ~/.ssh/config: set \
                         them there)",
                        args.dropped.join(", ")
                    )
                })
            }
        },
        Setting::Become => to_bool(value)
            .is_none()
            .then(|| format!("`{name}` is not a boolean")),
        Setting::BecomeMethod => match value.text() {
            Some(method) if method == "sudo" => None,
            Some(method) => Some(format!(
                "`{name}` is {}: fleetroll only runs steps through `sudo -n`, so `sudo` is \
                 not set where this applies",
                shown(&method)
            )),
            None => Some(format!("`{name}` is {}", value.describe())),
        },
        Setting::BecomeUser => match value.text() {
            Some(user) if user == "root" => None,
            Some(user) => Some(format!(
                "`{name}` is {}: fleetroll's sudo runs steps as root",
                shown(&user)
            )),
            None => Some(format!("`{name}` is {}", value.describe())),
        },
        Setting::Connection => match value.text() {
            Some(kind)
                if matches!(kind.as_str(), "ssh" | "smart" | "paramiko" | "paramiko_ssh") =>
            {
                None
            }
            Some(kind) => Some(format!(
                "`{name}` is {}: fleetroll reaches every host over SSH",
                shown(&kind)
            )),
            None => Some(format!("`{name}` is {}", value.describe())),
        },
        Setting::GroupPriority => Some(format!(
            "`{name}` has no fleetroll equivalent (Ansible only honours it among a group's \
             inventory variables, to order groups)"
        )),
        Setting::OtherAnsible => Some(format!(
            "`{name}` is an Ansible setting with no fleetroll equivalent"
        )),
    }
}

/// The text of a string value that may have spaces (ssh arguments).
pub(super) fn word_or_text(value: &Value) -> Result<String, String> {
    match value {
        Value::Str(text) if is_template(text) => {
            Err("is a Jinja2 template, which fleetroll does not evaluate".to_owned())
        }
        Value::Str(text) => Ok(text.clone()),
        other => Err(format!("is {}", other.describe())),
    }
}

/// What `ssh` arguments say about the jump host, and what else they hold.
#[derive(Debug, Default)]
pub(super) struct SshArgs {
    /// `Some(None)`: `ProxyJump none`.
    pub(super) jump: Option<Option<String>>,
    /// The options not carried over, by name only.
    pub(super) dropped: Vec<String>,
}

impl SshArgs {
    pub(super) fn parse(text: &str) -> Self {
        let mut args = SshArgs::default();
        let words = match shell_words(text, false) {
            Ok(words) => words,
            Err(_) => {
                args.dropped.push("an unclosed quote".to_owned());
                return args;
            }
        };
        let words: Vec<String> = words.into_iter().map(|w| w.text).collect();
        let mut i = 0;
        while i < words.len() {
            let current = &words[i];
            i += 1;
            let Some(flags) = current.strip_prefix('-').filter(|f| !f.is_empty()) else {
                args.dropped
                    .push("an argument that is not an option".to_owned());
                continue;
            };
            for (at, flag) in flags.char_indices() {
                if !"BbcDEeFIiJLlmOopQRSWw".contains(flag) {
                    args.dropped.push(format!("`-{flag}`"));
                    continue;
                }
                let rest = &flags[at + flag.len_utf8()..];
                let value = if !rest.is_empty() {
                    Some(rest.to_owned())
                } else if i < words.len() {
                    i += 1;
                    Some(words[i - 1].clone())
                } else {
                    None
                };
                match (flag, value) {
                    ('J', Some(value)) => args.set_jump(&value, "`-J`"),
                    ('o', Some(option)) => args.option(&option),
                    (flag, _) => args.dropped.push(format!("`-{flag}`")),
                }
                break;
            }
        }
        args
    }

    pub(super) fn option(&mut self, option: &str) {
        let option = option.trim();
        let split = option
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(option.len());
        let (key, rest) = option.split_at(split);
        let rest = rest.trim_start();
        let value = rest.strip_prefix('=').unwrap_or(rest).trim();
        match key.to_ascii_lowercase().as_str() {
            "proxyjump" => self.set_jump(value, "`-o ProxyJump`"),
            "proxycommand" => match proxy_command_jump(value) {
                Some(jump) => self.set_jump(&jump, "`-o ProxyCommand`"),
                None => self.dropped.push(
                    "`-o ProxyCommand` (fleetroll takes ProxyJump hops only; a ProxyCommand \
                     of the form `ssh -W %h:%p [user@]host` is converted)"
                        .to_owned(),
                ),
            },
            _ => self.dropped.push(format!("`-o {key}`")),
        }
    }

    pub(super) fn set_jump(&mut self, value: &str, what: &str) {
        if self.jump.is_some() {
            // ssh takes the first ProxyJump it is given.
            return;
        }
        if value.eq_ignore_ascii_case("none") {
            self.jump = Some(None);
            return;
        }
        match jump_chain(value) {
            Some(chain) => self.jump = Some(Some(chain)),
            None => self.dropped.push(format!(
                "{what} (not host, user@host or user@host:port hops)"
            )),
        }
    }
}

/// A ProxyJump value as fleetroll's `jump` takes it: hops `user@host:port`
/// (user and port optional), comma-separated; `ssh://` prefixes dropped.
pub(super) fn jump_chain(value: &str) -> Option<String> {
    let hops: Option<Vec<String>> = value
        .split(',')
        .map(|hop| {
            let hop = hop.trim();
            let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
            let rest = match hop.split_once('@') {
                Some((user, rest)) if !user.is_empty() => rest,
                Some(_) => return None,
                None => hop,
            };
            let host = match rest.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') || host.starts_with('[') => {
                    port.parse::<u16>().ok().filter(|p| *p != 0)?;
                    host
                }
                _ => rest,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (!host.is_empty() && !hop.chars().any(char::is_whitespace)).then(|| hop.to_owned())
        })
        .collect();
    hops.map(|hops| hops.join(","))
}

/// `ssh -W %h:%p [-q] [-p PORT] [-l USER] [USER@]HOST` as a jump hop.
pub(super) fn proxy_command_jump(command: &str) -> Option<String> {
    let words: Vec<String> = shell_words(command, false)
        .ok()?
        .into_iter()
        .map(|w| w.text)
        .collect();
    let (program, args) = words.split_first()?;
    if program != "ssh" && !program.ends_with("/ssh") {
        return None;
    }
    let (mut forwards, mut user, mut port, mut host) = (false, None, None, None);
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let mut value = |inline: &str| -> Option<String> {
            if !inline.is_empty() {
                return Some(inline.to_owned());
            }
            i += 1;
            args.get(i - 1).cloned()
        };
        match arg {
            "-q" | "-T" | "-4" | "-6" | "-C" | "-N" => {}
            _ if arg.starts_with("-W") => {
                let target = value(&arg[2..])?;
                if target != "%h:%p" && target != "[%h]:%p" {
                    return None;
                }
                forwards = true;
            }
            _ if arg.starts_with("-p") => port = Some(value(&arg[2..])?.parse::<u16>().ok()?),
            _ if arg.starts_with("-l") => user = Some(value(&arg[2..])?),
            _ if arg.starts_with('-') => return None,
            _ if host.is_none() => host = Some(arg.to_owned()),
            _ => return None,
        }
    }
    let host = host?;
    if !forwards || (user.is_some() && host.contains('@')) {
        return None;
    }
    let mut hop = match user {
        Some(user) => format!("{user}@{host}"),
        None => host,
    };
    if let Some(port) = port {
        write!(hop, ":{port}").ok()?;
    }
    jump_chain(&hop)
}
