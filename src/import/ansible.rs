//! `fleetroll import ansible FILE`: an Ansible inventory turned into a
//! commented fleetroll inventory (TOML text).
//!
//! # What is read
//!
//! - INI inventories as Ansible's `ini` plugin reads them: `[group]`,
//!   `[group:vars]`, `[group:children]`, hosts before any section in
//!   `ungrouped`, `#` and `;` comment lines, `host:port`, host lines split
//!   like `shlex` (quotes, `#` comments), values read as Python literals
//!   (`80` is a number, `True` a boolean, `a,b` a tuple, `true` a string).
//! - YAML inventories as the `yaml` plugin reads them (`all:` with `hosts`,
//!   `vars` and `children`), scalars resolved as PyYAML (YAML 1.1) does:
//!   `yes`/`no`/`on`/`off` are booleans, `0755` is octal; merge keys (`<<`),
//!   anchors and aliases; `!vault` values are never read; `!unsafe` values
//!   are strings (one holding `{{` is still reported as a template).
//! - Host ranges in both: `web[01:20]` (zero-padded), `db-[a:f]`,
//!   `node[0:10:2]` (a stride), several in one name.
//! - `host_vars/` and `group_vars/` beside the inventory file, found as the
//!   `host_group_vars` plugin finds them: `NAME`, `NAME.yml`, `NAME.yaml`,
//!   `NAME.json` or a directory `NAME/` (the first of these that exists;
//!   a directory's files, recursively, in sorted order, later files
//!   winning).
//!
//! # Precedence
//!
//! Ansible's default `VARIABLE_PRECEDENCE`, lowest first: the `all` group's
//! inline variables, the other groups' inline variables, `group_vars/all`,
//! the other `group_vars/` files, the host's inline variables, its
//! `host_vars/` file. Within one tier, groups are ordered by depth (a child
//! after its parents), then `ansible_group_priority`, then name; the later
//! wins. Note that Ansible puts every `group_vars/` file above every inline
//! group variable, so `group_vars/all.yml` beats a `[web:vars]` line.
//!
//! # What is written
//!
//! - `ansible_host` (or `ansible_ssh_host`) → `address`, `ansible_port` →
//!   `port`, `ansible_user` → `user`, `ansible_ssh_private_key_file` →
//!   `identity_file`, `-J HOP` / `-o ProxyJump=HOP` / a `ProxyCommand` of
//!   the form `ssh -W %h:%p [user@]bastion` in `ansible_ssh_common_args`,
//!   `ansible_ssh_extra_args` or `ansible_ssh_args` → `jump`,
//!   `ansible_become` with no `ansible_become_method` or `sudo` (and no
//!   `ansible_become_user` but root) → `sudo = true`. A setting every host
//!   shares goes to `[defaults]` instead.
//! - The `all` group's variables → `[vars]`; every other variable, flattened
//!   with the precedence above, → the host's `vars` where it differs from
//!   `[vars]`.
//! - Zones: see [`ZoneFrom`]. Zones are written in name order (`unzoned`
//!   last), hosts in the order the Ansible inventory first lists them.
//! - The comment above each host names its Ansible groups (with inherited
//!   ones, as Ansible's `group_names`): fleetroll has no groups, and a
//!   `groups` variable could only be a string.
//!
//! Lists, mappings, nulls, Jinja2 templates, other `ansible_*` settings and
//! anything that looks like a secret (by its name, `!vault`, or a private
//! key in the value) are left out and listed, by name only, in the header
//! and in [`Imported::warnings`]. No value of a secret is ever written.
//!
//! # Not supported
//!
//! Inventory directories, scripts and plugin configurations (refused, with
//! the `ansible-inventory --list --yaml --export` command that makes a
//! static file of them); vault decryption; Jinja2 evaluation; settings from
//! `ansible.cfg` or a playbook's own `group_vars/`; `hash_behaviour =
//! merge` (Ansible's default, replace, is what is done). A YAML mapping
//! with a key twice is an error here (Ansible warns and keeps the last).
//! YAML 1.1 timestamps and sexagesimal floats stay strings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use indexmap::{IndexMap, IndexSet};
use saphyr::{MarkedYaml, Scalar, ScalarStyle, ScanError, Tag, YamlData, YamlLoader};
use saphyr_parser::Parser;

use super::toml_text;

// ------------------------------------------------------------------ API

/// Where each host's zone comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ZoneFrom {
    /// Every host in one zone, `default` (with a warning).
    #[default]
    None,
    /// The host's group whose name starts with this prefix names its zone,
    /// the prefix removed, and a `_`, `-` or `.` right after it too: prefix
    /// `az_` (or `az`) and group `az_eu1` give zone `eu1`. A group named
    /// just the prefix does not count. Inherited membership counts; of two
    /// nested matching groups the innermost wins. A host in two matching
    /// groups, neither inside the other, is an [`ImportError::ZoneConflict`];
    /// a host in none goes to zone `unzoned`, with a warning.
    GroupPrefix(String),
    /// The host's variable of this name (after precedence) is its zone; a
    /// host without it, or with a value that cannot name a zone, goes to
    /// zone `unzoned`, with a warning.
    Var(String),
}

impl FromStr for ZoneFrom {
    type Err = String;

    /// `group:PREFIX` or `var:NAME`.
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(prefix) = text.strip_prefix("group:") {
            return Ok(ZoneFrom::GroupPrefix(prefix.to_owned()));
        }
        if let Some(name) = text.strip_prefix("var:") {
            return Ok(ZoneFrom::Var(name.to_owned()));
        }
        Err(format!(
            "`{text}`: expected group:PREFIX (zones from the groups whose names start with \
             PREFIX) or var:NAME (zones from each host's variable NAME)"
        ))
    }
}

/// Why an inventory could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The inventory or a vars file is not valid INI or YAML, or not shaped
    /// as Ansible wants it.
    #[error("{}: {message}", location(.path, .line, .column))]
    Parse {
        path: PathBuf,
        line: usize,
        column: Option<usize>,
        message: String,
    },
    /// Something wrong with the inventory as a whole (no line to point at).
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
    /// Not a static inventory this importer reads (a script, a plugin
    /// configuration, an encrypted file, a directory).
    #[error("{}: {message}", .path.display())]
    Unsupported { path: PathBuf, message: String },
    /// A host is in two groups that name zones.
    #[error(
        "host `{host}` is in two groups starting with `{prefix}`, `{first}` and `{second}`, \
         so its zone is ambiguous: take it out of one of them, or give --zone-from a prefix \
         that only the zone groups start with"
    )]
    ZoneConflict {
        host: String,
        prefix: String,
        first: String,
        second: String,
    },
    /// The inventory lists no host.
    #[error("{}: no hosts in this inventory: a fleetroll inventory needs at least one", .path.display())]
    NoHosts { path: PathBuf },
    /// An empty `--zone-from` prefix or variable name.
    #[error("--zone-from: {0}")]
    ZoneFrom(String),
}

fn location(path: &Path, line: &usize, column: &Option<usize>) -> String {
    match column {
        Some(column) => format!("{}:{line}:{column}", path.display()),
        None => format!("{}:{line}", path.display()),
    }
}

/// A converted inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The fleetroll inventory, with its explanatory header.
    pub toml: String,
    /// Everything that was not carried over, and everything else worth a
    /// look (the same lines as the header's lists). Never a secret's value.
    pub warnings: Vec<String>,
    /// How many hosts the inventory has.
    pub hosts: usize,
    /// How many zones.
    pub zones: usize,
}

/// Reads the Ansible inventory at `path` (INI or YAML, told apart by the
/// extension, else by the first line) and the `host_vars/` and
/// `group_vars/` beside it, and converts them.
pub fn import(path: &Path, zone_from: &ZoneFrom) -> Result<Imported, ImportError> {
    if path.is_dir() {
        return Err(ImportError::Unsupported {
            path: path.to_owned(),
            message: "is a directory: import one inventory file (for a directory of sources, \
                      run `ansible-inventory -i DIR --list --yaml --export > static.yml` and \
                      import static.yml)"
                .to_owned(),
        });
    }
    let text = fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    import_str(&text, path, zone_from)
}

/// Converts `text`, the content of the inventory at `path`; the
/// `host_vars/` and `group_vars/` beside `path` are read if they exist.
pub fn import_str(text: &str, path: &Path, zone_from: &ZoneFrom) -> Result<Imported, ImportError> {
    match zone_from {
        ZoneFrom::GroupPrefix(prefix) if prefix.is_empty() => {
            return Err(ImportError::ZoneFrom(
                "the group prefix is empty: every group would match".to_owned(),
            ));
        }
        ZoneFrom::Var(name) if name.is_empty() => {
            return Err(ImportError::ZoneFrom(
                "the variable name is empty".to_owned(),
            ));
        }
        _ => {}
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut inventory = match detect_format(text, path)? {
        Format::Ini => parse_ini(text, path)?,
        Format::Yaml => parse_yaml(text, path)?,
    };
    inventory.finish(path)?;
    if inventory.hosts.is_empty() {
        return Err(ImportError::NoHosts {
            path: path.to_owned(),
        });
    }
    let base = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut notes = std::mem::take(&mut inventory.notes);
    let group_names: Vec<&str> = inventory.groups.keys().map(String::as_str).collect();
    let host_names: Vec<&str> = inventory.hosts.keys().map(String::as_str).collect();
    let files = VarsFiles {
        groups: read_vars_files(base, "group_vars", &group_names, &mut notes)?,
        hosts: read_vars_files(base, "host_vars", &host_names, &mut notes)?,
    };
    convert(&inventory, &files, path, zone_from, notes)
}

// --------------------------------------------------------------- values

/// A variable's value, as Ansible would hold it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// `!vault`-encrypted: never read, never written.
    Vault,
    /// What fleetroll cannot hold: "a list", "a mapping", "a tuple"…
    Other(&'static str),
}

impl Value {
    /// The text of a string or number.
    fn text(&self) -> Option<String> {
        match self {
            Value::Str(text) => Some(text.clone()),
            Value::Int(number) => Some(number.to_string()),
            Value::Float(number) => Some(number.to_string()),
            Value::Bool(_) | Value::Null | Value::Vault | Value::Other(_) => None,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Null => "null (no value)",
            Value::Vault => "encrypted with ansible-vault",
            Value::Other(what) => what,
        }
    }
}

type Vars = IndexMap<String, Value>;

/// Ansible's `boolean()`.
fn to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Int(1) => Some(true),
        Value::Int(0) => Some(false),
        Value::Float(f) if *f == 1.0 => Some(true),
        Value::Float(f) if *f == 0.0 => Some(false),
        Value::Str(text) => match text.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A value that is a secret whatever its name.
fn is_secret_value(value: &Value) -> bool {
    match value {
        Value::Vault => true,
        Value::Str(text) => text.contains("$ANSIBLE_VAULT;") || text.contains("PRIVATE KEY-----"),
        _ => false,
    }
}

/// A variable whose name says it holds a secret. Generous on purpose: a
/// non-secret left out is listed; a secret written out cannot be unwritten.
fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(['_', '-', '.']).collect();
    let last = words.last().copied().unwrap_or_default();
    if matches!(last, "file" | "path" | "dir" | "url") {
        return false;
    }
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
    ]
    .iter()
    .any(|word| lower.contains(word))
        || words
            .iter()
            .any(|word| matches!(*word, "pass" | "pwd" | "pw" | "psk" | "apikey"))
        || last == "key"
}

/// fleetroll's variable names (what `validate` accepts).
fn is_var_name(name: &str) -> bool {
    crate::model::template::is_identifier(name)
}

/// fleetroll's host names (and, by this importer's choice, zone names).
fn is_safe_name(name: &str) -> bool {
    crate::model::inventory::is_safe_name(name)
}

/// A non-empty string or number without spaces (an address, user, path).
fn word(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::Str(_) | Value::Int(_) | Value::Float(_) => value.text().unwrap_or_default(),
        other => return Err(format!("is {}", other.describe())),
    };
    if is_template(&text) {
        return Err("is a Jinja2 template, which fleetroll does not evaluate".to_owned());
    }
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err("is not one word (it is empty or has spaces)".to_owned());
    }
    Ok(text)
}

fn port(value: &Value) -> Option<u16> {
    match value {
        Value::Int(number) => u16::try_from(*number).ok(),
        Value::Str(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|port| *port != 0)
}

/// A value quoted for a message: short, one line.
fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 40 {
        out.push('…');
    }
    format!("`{out}`")
}

// ------------------------------------------------------------ settings

/// What an `ansible_*` variable (or any other) means to the importer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
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
const ADDRESS_VARS: [&str; 2] = ["ansible_ssh_host", "ansible_host"];
const PORT_VARS: [&str; 2] = ["ansible_ssh_port", "ansible_port"];
const USER_VARS: [&str; 2] = ["ansible_ssh_user", "ansible_user"];
const KEY_VARS: [&str; 2] = ["ansible_ssh_private_key_file", "ansible_private_key_file"];
/// In the order they reach `ssh`'s command line, where the first
/// `ProxyJump` wins.
const SSH_ARGS_VARS: [&str; 3] = [
    "ansible_ssh_args",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

fn setting(name: &str) -> Setting {
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
fn why_not_carried(name: &str, value: &Value) -> Option<String> {
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
fn word_or_text(value: &Value) -> Result<String, String> {
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
struct SshArgs {
    /// `Some(None)`: `ProxyJump none`.
    jump: Option<Option<String>>,
    /// The options not carried over, by name only.
    dropped: Vec<String>,
}

impl SshArgs {
    fn parse(text: &str) -> Self {
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

    fn option(&mut self, option: &str) {
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

    fn set_jump(&mut self, value: &str, what: &str) {
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
fn jump_chain(value: &str) -> Option<String> {
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
fn proxy_command_jump(command: &str) -> Option<String> {
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

// ------------------------------------------------------------ inventory

#[derive(Debug, Default)]
struct Group {
    vars: Vars,
    children: IndexSet<String>,
    parents: IndexSet<String>,
    depth: usize,
    priority: i64,
}

#[derive(Debug, Default)]
struct HostEntry {
    vars: Vars,
    /// The groups the host was put in (not the inherited ones).
    groups: IndexSet<String>,
}

#[derive(Debug, Default)]
struct Inventory {
    groups: IndexMap<String, Group>,
    hosts: IndexMap<String, HostEntry>,
    notes: Vec<String>,
}

impl Inventory {
    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_owned()).or_default()
    }

    fn add_child(&mut self, parent: &str, child: &str) {
        self.group(parent).children.insert(child.to_owned());
        self.group(child).parents.insert(parent.to_owned());
    }

    fn add_host(&mut self, name: &str, group: &str, vars: &Vars) {
        self.group(group);
        let host = self.hosts.entry(name.to_owned()).or_default();
        host.groups.insert(group.to_owned());
        for (key, value) in vars {
            host.vars.insert(key.clone(), value.clone());
        }
    }

    /// What Ansible's `reconcile_inventory` does: `all` and `ungrouped`
    /// exist, groups without parents are `all`'s children, hosts in no group
    /// are in `ungrouped` (and only those); then depths and priorities.
    fn finish(&mut self, path: &Path) -> Result<(), ImportError> {
        self.group("all");
        self.group("ungrouped");
        for host in self.hosts.values_mut() {
            host.groups.shift_remove("all");
            if host.groups.is_empty() {
                host.groups.insert("ungrouped".to_owned());
            } else if host.groups.len() > 1 {
                host.groups.shift_remove("ungrouped");
            }
        }
        let orphans: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, group)| *name != "all" && group.parents.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for orphan in orphans {
            self.add_child("all", &orphan);
        }
        let mut depths: HashMap<&str, usize> = HashMap::new();
        for name in self.groups.keys() {
            let mut trail = Vec::new();
            depth_of(&self.groups, name, &mut depths, &mut trail).map_err(|cycle| {
                ImportError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "groups {} contain each other (a loop of children): Ansible refuses \
                         this too; take one out of the other's children",
                        cycle
                            .iter()
                            .map(|g| format!("`{g}`"))
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                }
            })?;
        }
        let depths: HashMap<String, usize> = depths
            .into_iter()
            .map(|(name, depth)| (name.to_owned(), depth))
            .collect();
        let label = file_label(path);
        for (name, group) in &mut self.groups {
            group.depth = depths.get(name.as_str()).copied().unwrap_or_default();
            group.priority = 1;
            if let Some(value) = group.vars.shift_remove("ansible_group_priority") {
                let priority = match &value {
                    Value::Int(number) => Some(*number),
                    Value::Str(text) => text.trim().parse().ok(),
                    _ => None,
                };
                match priority {
                    Some(priority) => group.priority = priority,
                    None => self.notes.push(format!(
                        "group `{name}` ({label}): `ansible_group_priority` is not an integer; \
                         ignored"
                    )),
                }
            }
        }
        Ok(())
    }

    /// A host's groups with the inherited ones, `all` left out, in the
    /// order Ansible applies their variables: depth, priority, name.
    fn host_groups<'a>(&'a self, host: &'a HostEntry) -> Vec<&'a str> {
        let mut found: IndexSet<&str> = IndexSet::new();
        let mut stack: Vec<&str> = host.groups.iter().map(String::as_str).collect();
        while let Some(name) = stack.pop() {
            if name == "all" || !found.insert(name) {
                continue;
            }
            if let Some(group) = self.groups.get(name) {
                stack.extend(group.parents.iter().map(String::as_str));
            }
        }
        let mut groups: Vec<&str> = found.into_iter().collect();
        groups.sort_by_key(|name| {
            let group = &self.groups[*name];
            (group.depth, group.priority, *name)
        });
        groups
    }

    /// Whether `ancestor` is among `group`'s parents, or theirs…
    fn is_ancestor(&self, ancestor: &str, group: &str) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![group];
        while let Some(name) = stack.pop() {
            let Some(entry) = self.groups.get(name) else {
                continue;
            };
            for parent in &entry.parents {
                if parent == ancestor {
                    return true;
                }
                if seen.insert(parent.as_str()) {
                    stack.push(parent);
                }
            }
        }
        false
    }
}

/// The longest distance from `all` (Ansible's group depth); a loop is an
/// error naming its groups.
fn depth_of<'a>(
    groups: &'a IndexMap<String, Group>,
    name: &'a str,
    depths: &mut HashMap<&'a str, usize>,
    trail: &mut Vec<&'a str>,
) -> Result<usize, Vec<String>> {
    if let Some(depth) = depths.get(name) {
        return Ok(*depth);
    }
    if let Some(at) = trail.iter().position(|g| *g == name) {
        let mut cycle: Vec<String> = trail[at..].iter().map(|g| (*g).to_owned()).collect();
        cycle.push(name.to_owned());
        return Err(cycle);
    }
    trail.push(name);
    let mut depth = 0;
    if let Some(group) = groups.get(name) {
        for parent in &group.parents {
            depth = depth.max(depth_of(groups, parent, depths, trail)? + 1);
        }
    }
    trail.pop();
    depths.insert(name, depth);
    Ok(depth)
}

fn file_label(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

// --------------------------------------------------------------- format

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ini,
    Yaml,
}

fn detect_format(text: &str, path: &Path) -> Result<Format, ImportError> {
    let unsupported = |message: String| ImportError::Unsupported {
        path: path.to_owned(),
        message,
    };
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        return Err(unsupported(format!(
            "is encrypted with ansible-vault: import a decrypted copy (`ansible-vault decrypt \
             --output plain {}`); its secrets will not be copied",
            path.display()
        )));
    }
    if text.starts_with("#!") {
        return Err(unsupported(format!(
            "is an inventory script: run `ansible-inventory -i {} --list --yaml --export > \
             static.yml` and import static.yml",
            path.display()
        )));
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("yml" | "yaml" | "json") => return Ok(Format::Yaml),
        Some("ini" | "cfg") => return Ok(Format::Ini),
        _ => {}
    }
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with(';') || line.starts_with('[') {
            return Ok(Format::Ini);
        }
        if line.starts_with("---") || line.starts_with('{') || line.starts_with('%') {
            return Ok(Format::Yaml);
        }
        let yaml_key = line.find(':').is_some_and(|colon| {
            let (key, after) = (&line[..colon], &line[colon + 1..]);
            !key.is_empty()
                && !key.contains(char::is_whitespace)
                && !key.contains('=')
                && (after.is_empty() || after.starts_with([' ', '\t']))
        });
        return Ok(if yaml_key { Format::Yaml } else { Format::Ini });
    }
    Ok(Format::Ini)
}

// ------------------------------------------------------------------ INI

fn parse_ini(text: &str, path: &Path) -> Result<Inventory, ImportError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Section {
        Hosts,
        Vars,
        Children,
    }
    let mut inventory = Inventory::default();
    let mut group = "ungrouped".to_owned();
    let mut section = Section::Hosts;
    // Groups with a [name] or [name:children] section.
    let mut declared: HashSet<String> = HashSet::from(["all".to_owned(), "ungrouped".to_owned()]);
    let mut vars_sections: Vec<(String, usize)> = Vec::new();
    let mut children: Vec<(String, String, usize, usize)> = Vec::new();
    let parse_error = |line: usize, column: usize, message: String| ImportError::Parse {
        path: path.to_owned(),
        line,
        column: Some(column),
        message,
    };
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let error =
            |column: usize, message: String| parse_error(line_no, indent + column + 1, message);
        if line.starts_with('[') {
            if let Some((name, kind)) = section_header(line) {
                section = match kind {
                    None => Section::Hosts,
                    Some("vars") => Section::Vars,
                    Some("children") => Section::Children,
                    Some(other) => {
                        return Err(error(
                            0,
                            format!(
                                "section [{name}:{other}] has an unknown type: write [{name}], \
                                 [{name}:vars] or [{name}:children]"
                            ),
                        ));
                    }
                };
                group = name.to_owned();
                inventory.group(name);
                if section == Section::Vars {
                    vars_sections.push((group.clone(), line_no));
                } else {
                    declared.insert(group.clone());
                }
                continue;
            }
            if line.ends_with(']') {
                return Err(error(
                    0,
                    format!(
                        "`{line}` is not a section header: write [group], [group:vars] or \
                         [group:children], without spaces"
                    ),
                ));
            }
        }
        match section {
            Section::Hosts => {
                let words =
                    shell_words(line, true).map_err(|(column, message)| error(column, message))?;
                let Some((first, rest)) = words.split_first() else {
                    continue;
                };
                if first.text.contains('=') {
                    return Err(error(
                        first.column,
                        format!(
                            "`{}` is a variable, not a host: variables go on a host's line after \
                             its name, or in a [{group}:vars] section",
                            first.text.split('=').next().unwrap_or_default()
                        ),
                    ));
                }
                let (names, port) =
                    host_pattern(&first.text).map_err(|message| error(first.column, message))?;
                let mut vars = Vars::new();
                if let Some(port) = port {
                    vars.insert("ansible_port".to_owned(), Value::Int(port));
                }
                for word in rest {
                    let Some((key, value)) = word.text.split_once('=') else {
                        return Err(error(
                            word.column,
                            format!(
                                "expected NAME=VALUE after the host name, found `{}`",
                                word.text
                            ),
                        ));
                    };
                    vars.insert(key.to_owned(), python_value(value));
                }
                for name in names {
                    inventory.add_host(&name, &group, &vars);
                }
            }
            Section::Vars => {
                let Some((key, value)) = line.split_once('=') else {
                    return Err(error(
                        0,
                        format!("expected NAME=VALUE in [{group}:vars], found `{line}`"),
                    ));
                };
                inventory
                    .group(&group)
                    .vars
                    .insert(key.trim().to_owned(), python_value(value.trim()));
            }
            Section::Children => {
                let child = child_name(line).ok_or_else(|| {
                    error(
                        0,
                        format!("expected a group name in [{group}:children], found `{line}`"),
                    )
                })?;
                children.push((child.to_owned(), group.clone(), line_no, indent + 1));
                inventory.add_child(&group, child);
            }
        }
    }
    if let Some((name, line)) = vars_sections
        .iter()
        .find(|(name, _)| !declared.contains(name))
    {
        return Err(parse_error(
            *line,
            1,
            format!(
                "[{name}:vars] is for a group that has no [{name}] or [{name}:children] section: \
                 add one (it may be empty)"
            ),
        ));
    }
    if let Some((child, parent, line, column)) = children
        .iter()
        .find(|(child, ..)| !declared.contains(child))
    {
        return Err(parse_error(
            *line,
            *column,
            format!(
                "[{parent}:children] lists `{child}`, which has no [{child}] section: add one \
                 (it may be empty)"
            ),
        ));
    }
    Ok(inventory)
}

/// `[name]`, `[name:type]`, maybe followed by a `#` comment.
fn section_header(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let end = rest.find(|c: char| c == ':' || c == ']' || c.is_whitespace())?;
    let (name, mut rest) = rest.split_at(end);
    if name.is_empty() {
        return None;
    }
    let mut kind = None;
    if let Some(after) = rest.strip_prefix(':') {
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if end == 0 {
            return None;
        }
        kind = Some(&after[..end]);
        rest = &after[end..];
    }
    let rest = rest.strip_prefix(']')?.trim_start();
    (rest.is_empty() || rest.starts_with('#')).then_some((name, kind))
}

/// A `[group:children]` line: a group name, maybe a `#` comment.
fn child_name(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| c == ':' || c == ']' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_start();
    (!name.is_empty() && (rest.is_empty() || rest.starts_with('#'))).then_some(name)
}

/// A word of a shell-like line and the (0-based, in characters) column it
/// starts at.
#[derive(Debug)]
struct Word {
    text: String,
    column: usize,
}

/// Python's `shlex.split(text, comments=comments)`: POSIX quoting, `\`
/// escapes, and with `comments` a `#` outside quotes ends the line (even
/// in the middle of a word, as in shlex).
fn shell_words(text: &str, comments: bool) -> Result<Vec<Word>, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let blank = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if blank(chars[i]) {
            i += 1;
            continue;
        }
        if comments && chars[i] == '#' {
            break;
        }
        let start = i;
        let mut word = String::new();
        while i < chars.len() && !blank(chars[i]) {
            match chars[i] {
                '#' if comments => {
                    i = chars.len();
                    break;
                }
                '\\' => {
                    let escaped = *chars
                        .get(i + 1)
                        .ok_or((i, "a `\\` ends the line, escaping nothing".to_owned()))?;
                    word.push(escaped);
                    i += 2;
                }
                '\'' => {
                    let close = chars[i + 1..]
                        .iter()
                        .position(|c| *c == '\'')
                        .ok_or((i, "this `'` is never closed".to_owned()))?;
                    word.extend(&chars[i + 1..i + 1 + close]);
                    i += close + 2;
                }
                '"' => {
                    let open = i;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err((open, "this `\"` is never closed".to_owned())),
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                                word.push(chars[i + 1]);
                                i += 2;
                            }
                            Some(c) => {
                                word.push(*c);
                                i += 1;
                            }
                        }
                    }
                }
                c => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        words.push(Word {
            text: word,
            column: start,
        });
    }
    Ok(words)
}

/// Ansible's INI `_parse_value`: `ast.literal_eval`, else the text as it is.
fn python_value(text: &str) -> Value {
    Python::literal(text).unwrap_or_else(|| Value::Str(text.to_owned()))
}

/// Enough of Python's literal syntax to tell what `ast.literal_eval` makes
/// of a value: numbers, strings, `True`, `False`, `None`, and the
/// containers (whose content only has to be valid).
#[derive(Debug)]
struct Python {
    chars: Vec<char>,
    at: usize,
}

impl Python {
    fn literal(text: &str) -> Option<Value> {
        let mut parser = Python {
            chars: text.chars().collect(),
            at: 0,
        };
        parser.blanks();
        let first = parser.value()?;
        parser.blanks();
        let value = if parser.peek() == Some(',') {
            // `a, b`: a tuple without parentheses.
            while parser.eat(',') {
                parser.blanks();
                if parser.peek().is_none_or(|c| c == '#') {
                    break;
                }
                parser.value()?;
                parser.blanks();
            }
            Value::Other("a tuple")
        } else {
            first
        };
        parser.blanks();
        if parser.peek() == Some('#') {
            parser.at = parser.chars.len();
        }
        (parser.at == parser.chars.len()).then_some(value)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        if found {
            self.at += 1;
        }
        found
    }

    fn blanks(&mut self) {
        while self
            .peek()
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\x0c'))
        {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.blanks();
        match self.peek()? {
            '[' => {
                self.at += 1;
                self.items(']')?;
                Some(Value::Other("a list"))
            }
            '(' => {
                self.at += 1;
                self.blanks();
                if self.eat(')') {
                    return Some(Value::Other("a tuple"));
                }
                let inner = self.value()?;
                self.blanks();
                if self.eat(')') {
                    return Some(inner);
                }
                if !self.eat(',') {
                    return None;
                }
                self.items(')')?;
                Some(Value::Other("a tuple"))
            }
            '{' => self.braces(),
            '\'' | '"' => self.strings(String::new()),
            '-' | '+' => {
                let negative = self.peek() == Some('-');
                self.at += 1;
                self.blanks();
                match self.number()? {
                    Value::Int(n) if negative => Some(Value::Int(-n)),
                    Value::Float(f) if negative => Some(Value::Float(-f)),
                    other => Some(other),
                }
            }
            c if c.is_ascii_digit() || c == '.' => self.number(),
            c if c.is_alphabetic() || c == '_' => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.at += 1;
                }
                let name: String = self.chars[start..self.at].iter().collect();
                match name.as_str() {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    prefix
                        if prefix.len() <= 2
                            && prefix.chars().all(|c| "rRbBuU".contains(c))
                            && matches!(self.peek(), Some('\'' | '"')) =>
                    {
                        self.strings(name.clone())
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Values separated by commas up to `close` (a trailing comma allowed).
    fn items(&mut self, close: char) -> Option<()> {
        loop {
            self.blanks();
            if self.eat(close) {
                return Some(());
            }
            self.value()?;
            self.blanks();
            if self.eat(close) {
                return Some(());
            }
            if !self.eat(',') {
                return None;
            }
        }
    }

    /// A dict or a set, after its `{`.
    fn braces(&mut self) -> Option<Value> {
        self.at += 1;
        self.blanks();
        if self.eat('}') {
            return Some(Value::Other("a dict"));
        }
        self.value()?;
        self.blanks();
        if !self.eat(':') {
            if self.eat('}') {
                return Some(Value::Other("a set"));
            }
            if !self.eat(',') {
                return None;
            }
            self.items('}')?;
            return Some(Value::Other("a set"));
        }
        loop {
            self.value()?;
            self.blanks();
            if self.eat('}') {
                return Some(Value::Other("a dict"));
            }
            if !self.eat(',') {
                return None;
            }
            self.blanks();
            if self.eat('}') {
                return Some(Value::Other("a dict"));
            }
            self.value()?;
            self.blanks();
            if !self.eat(':') {
                return None;
            }
        }
    }

    /// One string literal or several side by side (Python joins them).
    fn strings(&mut self, mut prefix: String) -> Option<Value> {
        let mut text = String::new();
        let mut bytes = None;
        loop {
            let is_bytes = prefix.contains(['b', 'B']);
            if bytes.is_some_and(|b| b != is_bytes) {
                return None;
            }
            bytes = Some(is_bytes);
            text.push_str(&self.string(prefix.contains(['r', 'R']), is_bytes)?);
            self.blanks();
            let start = self.at;
            while self.peek().is_some_and(|c| "rRbBuU".contains(c)) && self.at - start < 2 {
                self.at += 1;
            }
            if !matches!(self.peek(), Some('\'' | '"')) {
                self.at = start;
                break;
            }
            prefix = self.chars[start..self.at].iter().collect();
        }
        if bytes == Some(true) {
            Some(Value::Other("bytes"))
        } else {
            Some(Value::Str(text))
        }
    }

    fn string(&mut self, raw: bool, bytes: bool) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let triple =
            self.chars.get(self.at) == Some(&quote) && self.chars.get(self.at + 1) == Some(&quote);
        if triple {
            self.at += 2;
        }
        let mut text = String::new();
        loop {
            let c = *self.chars.get(self.at)?;
            if c == quote {
                if !triple {
                    self.at += 1;
                    return Some(text);
                }
                if self.chars.get(self.at + 1) == Some(&quote)
                    && self.chars.get(self.at + 2) == Some(&quote)
                {
                    self.at += 3;
                    return Some(text);
                }
            }
            if c != '\\' {
                text.push(c);
                self.at += 1;
                continue;
            }
            let escaped = *self.chars.get(self.at + 1)?;
            self.at += 2;
            if raw {
                text.push('\\');
                text.push(escaped);
                continue;
            }
            match escaped {
                '\n' => {}
                '\\' | '\'' | '"' => text.push(escaped),
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                'a' => text.push('\x07'),
                'b' => text.push('\x08'),
                'f' => text.push('\x0c'),
                'v' => text.push('\x0b'),
                '0'..='7' => {
                    let mut code = escaped.to_digit(8)?;
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(digit) => {
                                code = code * 8 + digit;
                                self.at += 1;
                            }
                            None => break,
                        }
                    }
                    text.push(char::from_u32(code)?);
                }
                'x' => text.push(self.hex(2)?),
                'u' if !bytes => text.push(self.hex(4)?),
                'U' if !bytes => text.push(self.hex(8)?),
                'N' if !bytes => return None,
                other => {
                    text.push('\\');
                    text.push(other);
                }
            }
        }
    }

    fn hex(&mut self, digits: usize) -> Option<char> {
        let end = self.at + digits;
        let hex: String = self.chars.get(self.at..end)?.iter().collect();
        self.at = end;
        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        while let Some(c) = self.peek() {
            let exponent_sign = matches!(c, '+' | '-')
                && matches!(self.chars.get(self.at - 1), Some('e' | 'E'))
                && !self.chars[start..].starts_with(&['0', 'x'])
                && !self.chars[start..].starts_with(&['0', 'X']);
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || exponent_sign {
                self.at += 1;
            } else {
                break;
            }
        }
        let text: String = self.chars[start..self.at].iter().collect();
        python_number(&text.to_ascii_lowercase())
    }
}

/// Digits with single `_` between them, the `_` removed.
fn digits_without_underscores(text: &str, is_digit: impl Fn(char) -> bool) -> Option<String> {
    if text.is_empty() || text.starts_with('_') || text.ends_with('_') || text.contains("__") {
        return None;
    }
    text.chars()
        .all(|c| c == '_' || is_digit(c))
        .then(|| text.replace('_', ""))
}

fn whole_number(number: i128) -> Value {
    i64::try_from(number).map_or(
        Value::Other("an integer too large for fleetroll"),
        Value::Int,
    )
}

/// A Python number literal (lower-cased), without its sign.
fn python_number(text: &str) -> Option<Value> {
    if let Some(real) = text.strip_suffix('j') {
        return python_number(real).map(|_| Value::Other("a complex number"));
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = text.strip_prefix(prefix) {
            let digits = digits.strip_prefix('_').unwrap_or(digits);
            let digits = digits_without_underscores(digits, |c| c.is_digit(radix))?;
            return Some(whole_number(i128::from_str_radix(&digits, radix).ok()?));
        }
    }
    if text.contains(['.', 'e']) {
        let (mantissa, exponent) = match text.split_once('e') {
            Some((mantissa, exponent)) => (mantissa, Some(exponent)),
            None => (text, None),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let part = |digits: &str| {
            if digits.is_empty() {
                Some("0".to_owned())
            } else {
                digits_without_underscores(digits, |c| c.is_ascii_digit())
            }
        };
        let mut number = format!("{}.{}", part(whole)?, part(fraction)?);
        if let Some(exponent) = exponent {
            let sign = if exponent.starts_with('-') { "-" } else { "" };
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            let digits = digits_without_underscores(digits, |c| c.is_ascii_digit())?;
            write!(number, "e{sign}{digits}").ok()?;
        }
        return number.parse().ok().map(Value::Float);
    }
    let digits = digits_without_underscores(text, |c| c.is_ascii_digit())?;
    if digits.len() > 1 && digits.starts_with('0') && digits.chars().any(|c| c != '0') {
        // `0755` is a syntax error in Python 3: Ansible keeps the text.
        return None;
    }
    Some(whole_number(digits.parse().ok()?))
}

// --------------------------------------------------------------- ranges

/// The most hosts one pattern may expand to.
const RANGE_LIMIT: usize = 100_000;

/// A host pattern: `name`, `name:port`, `[v6::addr]:port`, with ranges.
fn host_pattern(pattern: &str) -> Result<(Vec<String>, Option<i64>), String> {
    if pattern.is_empty() {
        return Err("empty host name".to_owned());
    }
    let (base, port) = split_port(pattern)?;
    let mut names = Vec::new();
    expand_ranges(base, &mut names)
        .map_err(|why| format!("bad host range in `{pattern}`: {why}"))?;
    Ok((names, port))
}

fn split_port(pattern: &str) -> Result<(&str, Option<i64>), String> {
    // `[2001:db8::1]` or `[2001:db8::1]:22`: an IPv6 address, not a range.
    if let Some(inner) = pattern.strip_prefix('[') {
        if let Some((address, after)) = inner.split_once(']') {
            let colons = address.matches(':').count();
            let ipv6 = (address.contains("::") || colons >= 7)
                && address
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
            if ipv6 {
                return match after.strip_prefix(':') {
                    None if after.is_empty() => Ok((address, None)),
                    Some(port) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
                        Ok((
                            address,
                            Some(port.parse().map_err(|_| "port too large".to_owned())?),
                        ))
                    }
                    _ => Err(format!(
                        "`{pattern}` is not an address with an optional :port"
                    )),
                };
            }
        }
    }
    let mut depth = 0i32;
    let mut colons_outside = Vec::new();
    for (at, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons_outside.push(at),
            _ => {}
        }
    }
    match colons_outside.as_slice() {
        [] => Ok((pattern, None)),
        [at] => {
            let (base, port) = (&pattern[..*at], &pattern[at + 1..]);
            if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "`{pattern}`: a host may be followed by `:PORT` only (digits)"
                ));
            }
            Ok((
                base,
                Some(port.parse().map_err(|_| "port too large".to_owned())?),
            ))
        }
        // A bare IPv6 address: no port.
        _ => Ok((pattern, None)),
    }
}

/// Ansible's `expand_hostname_range`: the first `[begin:end(:step)]`
/// expanded, then the rest of each name.
fn expand_ranges(pattern: &str, names: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err("a `]` without its `[`".to_owned());
        }
        names.push(pattern.to_owned());
        return Ok(());
    };
    let close = pattern[open..]
        .find(']')
        .map(|at| open + at)
        .ok_or("a `[` without its `]`")?;
    if pattern[..open].contains(']') {
        return Err("a `]` without its `[`".to_owned());
    }
    let (head, spec, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let bounds: Vec<&str> = spec.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "`[{spec}]` is not [begin:end] or [begin:end:step] (write web[01:20] or db-[a:f])"
        ));
    }
    let begin = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("`[{spec}]` has no end"));
    }
    let step = match bounds.get(2) {
        Some(step) => step
            .parse::<usize>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("the step of `[{spec}]` is not a positive whole number"))?,
        None => 1,
    };
    let letters: Vec<char> = ('a'..='z').chain('A'..='Z').collect();
    let letter_index = |text: &str| {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => letters.iter().position(|l| *l == c),
            _ => None,
        }
    };
    let items: Vec<String> = match (letter_index(begin), letter_index(end)) {
        (Some(first), Some(last)) => {
            if first > last {
                return Err(format!("`[{spec}]` begins after it ends"));
            }
            letters[first..=last]
                .iter()
                .step_by(step)
                .map(char::to_string)
                .collect()
        }
        _ => {
            let number = |text: &str| {
                text.parse::<u64>().map_err(|_| {
                    format!("`{text}` in `[{spec}]` is neither a whole number nor a letter")
                })
            };
            let (first, last) = (number(begin)?, number(end)?);
            if first > last {
                return Err(format!("`[{spec}]` begins after it ends"));
            }
            let width = if begin.starts_with('0') && begin.len() > 1 {
                if begin.len() != end.len() {
                    return Err(format!(
                        "`[{spec}]`: a zero-padded range needs a begin and end of the same width, \
                         as in [01:20]"
                    ));
                }
                begin.len()
            } else {
                0
            };
            let count = (last - first) / step as u64 + 1;
            if count > RANGE_LIMIT as u64 {
                return Err(format!("`[{spec}]` makes more than {RANGE_LIMIT} hosts"));
            }
            (first..=last)
                .step_by(step)
                .map(|n| format!("{n:0width$}"))
                .collect()
        }
    };
    for item in items {
        expand_ranges(&format!("{head}{item}{tail}"), names)?;
        if names.len() > RANGE_LIMIT {
            return Err(format!("the pattern makes more than {RANGE_LIMIT} hosts"));
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- YAML

/// Loads one YAML document, scalars left unresolved (so they can be
/// resolved as YAML 1.1 and quoted ones told apart); `None` if empty.
fn load_yaml<'i>(text: &'i str, path: &Path) -> Result<Option<MarkedYaml<'i>>, ImportError> {
    let scan_error = |error: &ScanError| ImportError::Parse {
        path: path.to_owned(),
        line: error.marker().line(),
        column: Some(error.marker().col() + 1),
        message: format!("invalid YAML: {}", error.info()),
    };
    let mut loader: YamlLoader<'i, MarkedYaml<'i>> = YamlLoader::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut loader, true).map_err(|e| scan_error(&e))?;
    if let Some(error) = loader.error() {
        return Err(scan_error(error));
    }
    let mut documents = loader.into_documents();
    if documents.len() > 1 {
        let start = documents[1].span.start;
        return Err(ImportError::Parse {
            path: path.to_owned(),
            line: start.line(),
            column: Some(start.col() + 1),
            message: "a second YAML document (after `---`): an inventory is one document"
                .to_owned(),
        });
    }
    Ok(documents.pop().filter(|doc| !is_null(doc)))
}

fn is_null(node: &MarkedYaml) -> bool {
    match &node.data {
        YamlData::Representation(text, ScalarStyle::Plain, None) => {
            matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL")
        }
        YamlData::Value(Scalar::Null) | YamlData::BadValue => true,
        _ => false,
    }
}

fn yaml_value(node: &MarkedYaml) -> Value {
    match &node.data {
        YamlData::Representation(text, style, tag) => scalar_value(text, *style, tag.as_deref()),
        YamlData::Value(scalar) => match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(n) => Value::Int(*n),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(text) => Value::Str(text.to_string()),
        },
        YamlData::Sequence(_) => Value::Other("a list"),
        YamlData::Mapping(_) => Value::Other("a mapping"),
        YamlData::Tagged(tag, inner) => {
            if tag.handle == "!" && tag.suffix == "vault" {
                Value::Vault
            } else {
                yaml_value(inner)
            }
        }
        _ => Value::Other("an unreadable value"),
    }
}

/// A scalar as PyYAML (YAML 1.1) and Ansible's tags resolve it.
fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() {
            let text_value = || Value::Str(text.to_owned());
            return match tag.suffix.as_str() {
                "int" => yaml11_int(text).unwrap_or_else(text_value),
                "float" => yaml11_float(text).map_or_else(text_value, Value::Float),
                "bool" | "null" => match yaml11_plain(text) {
                    value @ (Value::Bool(_) | Value::Null) => value,
                    _ => text_value(),
                },
                "binary" => Value::Other("binary data"),
                _ => text_value(),
            };
        }
        match tag.suffix.as_str() {
            "vault" => return Value::Vault,
            "unsafe" => return Value::Str(text.to_owned()),
            _ => {}
        }
    }
    if style != ScalarStyle::Plain {
        return Value::Str(text.to_owned());
    }
    yaml11_plain(text)
}

fn yaml11_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if let Some(number) = yaml11_int(text) {
        return number;
    }
    if let Some(number) = yaml11_float(text) {
        return Value::Float(number);
    }
    Value::Str(text.to_owned())
}

/// PyYAML's `int`: `0b1010`, `0755` (octal), `1_000`, `0x1F`, `1:30`.
fn yaml11_int(text: &str) -> Option<Value> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits_in = |digits: &str, radix: u32| -> Option<i128> {
        let clean = digits.replace('_', "");
        if clean.is_empty() || !digits.chars().all(|c| c == '_' || c.is_digit(radix)) {
            return None;
        }
        i128::from_str_radix(&clean, radix).ok()
    };
    let number = if body == "0" {
        0
    } else if let Some(digits) = body.strip_prefix("0b") {
        digits_in(digits, 2)?
    } else if let Some(digits) = body.strip_prefix("0x") {
        digits_in(digits, 16)?
    } else if let Some(digits) = body.strip_prefix('0') {
        digits_in(digits, 8)?
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let mut total = digits_in(first, 10)?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let sixtieth: i128 = part.parse().ok()?;
            if sixtieth >= 60 {
                return None;
            }
            total = total.checked_mul(60)? + sixtieth;
        }
        total
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        digits_in(body, 10)?
    };
    Some(whole_number(if negative { -number } else { number }))
}

/// PyYAML's `float`: `1.5`, `1.`, `.5`, `6.8523015e+5`, `.inf`, `.nan`
/// (`1e3`, without a dot, is a string).
fn yaml11_float(text: &str) -> Option<f64> {
    match text {
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.')?;
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit() || c == '_');
    let starts_right = if whole.is_empty() {
        fraction.starts_with(|c: char| c.is_ascii_digit())
    } else {
        whole.starts_with(|c: char| c.is_ascii_digit())
    };
    if !starts_right || !digits(whole) || !digits(fraction) {
        return None;
    }
    if let Some(exponent) = exponent {
        let power = exponent.strip_prefix(['-', '+'])?;
        if power.is_empty() || !power.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let clean = clean.replace(".e", ".0e").replace(".E", ".0E");
    let clean = if clean.ends_with('.') {
        format!("{clean}0")
    } else {
        clean
    };
    clean.parse().ok()
}

/// A mapping entry, with merge keys (`<<`) applied.
#[derive(Debug)]
struct Entry<'a, 'i> {
    key: String,
    key_node: &'a MarkedYaml<'i>,
    value: &'a MarkedYaml<'i>,
}

#[derive(Debug)]
struct YamlFile<'p> {
    path: &'p Path,
}

impl YamlFile<'_> {
    fn error(&self, node: &MarkedYaml, message: String) -> ImportError {
        ImportError::Parse {
            path: self.path.to_owned(),
            line: node.span.start.line(),
            column: Some(node.span.start.col() + 1),
            message,
        }
    }

    /// The entries of a mapping, `None` if `node` is not one.
    fn map<'a, 'i>(
        &self,
        node: &'a MarkedYaml<'i>,
    ) -> Result<Option<Vec<Entry<'a, 'i>>>, ImportError> {
        let mapping = match &node.data {
            YamlData::Mapping(mapping) => mapping,
            YamlData::Tagged(_, inner) => return self.map(inner),
            _ => return Ok(None),
        };
        let mut merged: IndexMap<String, Entry<'a, 'i>> = IndexMap::new();
        let mut explicit = Vec::new();
        for (key, value) in mapping {
            if matches!(&key.data, YamlData::Representation(text, ScalarStyle::Plain, None) if text == "<<")
            {
                let sources: Vec<&MarkedYaml> = match &value.data {
                    YamlData::Sequence(items) => items.iter().collect(),
                    _ => vec![value],
                };
                for source in sources {
                    let Some(entries) = self.map(source)? else {
                        return Err(self.error(
                            source,
                            "a `<<` merge takes a mapping (such as an alias `*defaults`) or a \
                             list of them"
                                .to_owned(),
                        ));
                    };
                    for entry in entries {
                        // Of several merged mappings, the first wins.
                        merged.entry(entry.key.clone()).or_insert(entry);
                    }
                }
                continue;
            }
            let Some(text) = key_text(key) else {
                return Err(self.error(
                    key,
                    "a key here must be a name, not a list or a mapping".to_owned(),
                ));
            };
            explicit.push(Entry {
                key: text,
                key_node: key,
                value,
            });
        }
        for entry in explicit {
            merged.insert(entry.key.clone(), entry);
        }
        Ok(Some(merged.into_values().collect()))
    }

    /// A mapping of variables (`None` or empty: none).
    fn vars(&self, node: &MarkedYaml, what: &str) -> Result<Vars, ImportError> {
        if is_null(node) {
            return Ok(Vars::new());
        }
        let Some(entries) = self.map(node)? else {
            return Err(self.error(
                node,
                format!("{what} must be a mapping of variable names to values"),
            ));
        };
        Ok(entries
            .into_iter()
            .map(|entry| (entry.key, yaml_value(entry.value)))
            .collect())
    }

    fn group(
        &self,
        inventory: &mut Inventory,
        name: &str,
        node: &MarkedYaml,
        parent: Option<&str>,
    ) -> Result<(), ImportError> {
        inventory.group(name);
        if let Some(parent) = parent {
            inventory.add_child(parent, name);
        }
        if is_null(node) {
            return Ok(());
        }
        let Some(entries) = self.map(node)? else {
            return Err(self.error(
                node,
                format!(
                    "group `{name}` must be a mapping of `hosts`, `vars` and `children`, or empty"
                ),
            ));
        };
        for entry in entries {
            match entry.key.as_str() {
                "hosts" => self.hosts(inventory, name, entry.value)?,
                "vars" => {
                    let vars = self.vars(entry.value, &format!("`vars` of group `{name}`"))?;
                    inventory.group(name).vars.extend(vars);
                }
                "children" => {
                    if is_null(entry.value) {
                        continue;
                    }
                    let Some(children) = self.map(entry.value)? else {
                        return Err(self.error(
                            entry.value,
                            format!(
                                "`children` of group `{name}` must be a mapping of group names \
                                 (each to its hosts, vars and children, or to nothing)"
                            ),
                        ));
                    };
                    for child in children {
                        self.group(inventory, &child.key, child.value, Some(name))?;
                    }
                }
                other => inventory.notes.push(format!(
                    "{}:{}: group `{name}`: `{other}` skipped (a group has hosts, vars and \
                     children only; Ansible skips it too)",
                    file_label(self.path),
                    entry.key_node.span.start.line()
                )),
            }
        }
        Ok(())
    }

    fn hosts(
        &self,
        inventory: &mut Inventory,
        group: &str,
        node: &MarkedYaml,
    ) -> Result<(), ImportError> {
        if is_null(node) {
            return Ok(());
        }
        let Some(hosts) = self.map(node)? else {
            return Err(self.error(
                node,
                format!(
                    "`hosts` of group `{group}` must be a mapping of host names, each to its \
                     variables or to nothing (`web1:`), not a list"
                ),
            ));
        };
        for host in hosts {
            let (names, port) =
                host_pattern(&host.key).map_err(|message| self.error(host.key_node, message))?;
            let mut vars = Vars::new();
            if let Some(port) = port {
                vars.insert("ansible_port".to_owned(), Value::Int(port));
            }
            vars.extend(self.vars(host.value, &format!("host `{}`", host.key))?);
            for name in names {
                inventory.add_host(&name, group, &vars);
            }
        }
        Ok(())
    }
}

fn key_text(node: &MarkedYaml) -> Option<String> {
    match &node.data {
        YamlData::Representation(text, ..) => Some(text.to_string()),
        YamlData::Value(scalar) => Some(match scalar {
            Scalar::Null => "null".to_owned(),
            Scalar::Boolean(b) => b.to_string(),
            Scalar::Integer(n) => n.to_string(),
            Scalar::FloatingPoint(f) => f.to_string(),
            Scalar::String(text) => text.to_string(),
        }),
        YamlData::Tagged(_, inner) => key_text(inner),
        _ => None,
    }
}

fn parse_yaml(text: &str, path: &Path) -> Result<Inventory, ImportError> {
    let file = YamlFile { path };
    let mut inventory = Inventory::default();
    let Some(root) = load_yaml(text, path)? else {
        return Ok(inventory);
    };
    let Some(entries) = file.map(&root)? else {
        return Err(file.error(
            &root,
            "an Ansible YAML inventory is a mapping of group names, usually `all:` with its \
             `hosts`, `vars` and `children`"
                .to_owned(),
        ));
    };
    let rerun = format!(
        "run `ansible-inventory -i {} --list --yaml --export > static.yml` and import static.yml",
        path.display()
    );
    if entries.iter().any(|entry| entry.key == "plugin") {
        return Err(ImportError::Unsupported {
            path: path.to_owned(),
            message: format!(
                "configures an inventory plugin (`plugin:`), it does not list hosts: {rerun}"
            ),
        });
    }
    if entries.iter().any(|entry| entry.key == "_meta") {
        return Err(ImportError::Unsupported {
            path: path.to_owned(),
            message: format!(
                "is the JSON output of an inventory script or of `ansible-inventory --list`: \
                 {rerun}"
            ),
        });
    }
    for entry in entries {
        file.group(&mut inventory, &entry.key, entry.value, None)?;
    }
    Ok(inventory)
}

// ----------------------------------------------------------- vars files

#[derive(Debug)]
struct VarsFile {
    /// `group_vars/web/10-base.yml`, for messages.
    label: String,
    vars: Vars,
}

#[derive(Debug, Default)]
struct VarsFiles {
    groups: HashMap<String, Vec<VarsFile>>,
    hosts: HashMap<String, Vec<VarsFile>>,
}

const VARS_EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

/// `base/kind/NAME[.yml|.yaml|.json]` or `base/kind/NAME/**` for each name.
fn read_vars_files(
    base: &Path,
    kind: &str,
    names: &[&str],
    notes: &mut Vec<String>,
) -> Result<HashMap<String, Vec<VarsFile>>, ImportError> {
    let dir = base.join(kind);
    let mut found = HashMap::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    let label_of = |path: &Path| {
        let relative = path.strip_prefix(base).unwrap_or(path);
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    for name in names {
        if name.contains(['/', '\\']) || *name == "." || *name == ".." {
            continue;
        }
        let candidates: Vec<PathBuf> = std::iter::once(dir.join(name))
            .chain(
                VARS_EXTENSIONS
                    .iter()
                    .map(|ext| dir.join(format!("{name}.{ext}"))),
            )
            .filter(|candidate| candidate.exists())
            .collect();
        let Some((chosen, ignored)) = candidates.split_first() else {
            continue;
        };
        for other in ignored {
            notes.push(format!(
                "{} is not read: {} comes first (Ansible reads only the first of NAME, NAME.yml, \
                 NAME.yaml, NAME.json)",
                label_of(other),
                label_of(chosen)
            ));
        }
        let mut paths = Vec::new();
        if chosen.is_dir() {
            files_in(chosen, &mut paths)?;
        } else {
            paths.push(chosen.clone());
        }
        let mut files = Vec::new();
        for path in paths {
            let label = label_of(&path);
            if let Some(vars) = read_vars_file(&path, &label, notes)? {
                files.push(VarsFile { label, vars });
            }
        }
        found.insert((*name).to_owned(), files);
    }
    let known: HashSet<&str> = names.iter().copied().collect();
    for entry in sorted_entries(&dir)? {
        let file_name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name.starts_with('.') || file_name.ends_with('~') {
            continue;
        }
        let stem = match file_name.rsplit_once('.') {
            Some((stem, ext)) if !entry.is_dir() && VARS_EXTENSIONS.contains(&ext) => stem,
            _ => file_name.as_str(),
        };
        if !known.contains(stem) {
            let what = if kind == "group_vars" {
                "group"
            } else {
                "host"
            };
            notes.push(format!(
                "{} is not read: the inventory has no {what} `{stem}`",
                label_of(&entry)
            ));
        }
    }
    Ok(found)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let read_error = |source| ImportError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_error)? {
        entries.push(entry.map_err(read_error)?.path());
    }
    entries.sort();
    Ok(entries)
}

/// A group_vars/host_vars directory's files, as Ansible takes them: sorted,
/// recursively (directories without an extension), hidden and `~` files
/// skipped, files with no extension or .yml, .yaml or .json.
fn files_in(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    for path in sorted_entries(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let extension = path.extension().map(|e| e.to_string_lossy().into_owned());
        if path.is_dir() {
            if extension.is_none() {
                files_in(&path, files)?;
            }
        } else if extension.is_none_or(|ext| VARS_EXTENSIONS.contains(&ext.as_str())) {
            files.push(path);
        }
    }
    Ok(())
}

fn read_vars_file(
    path: &Path,
    label: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Vars>, ImportError> {
    let text = fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        notes.push(format!(
            "{label} is encrypted with ansible-vault: none of its variables were imported"
        ));
        return Ok(None);
    }
    let file = YamlFile { path };
    let Some(root) = load_yaml(text, path)? else {
        return Ok(None);
    };
    file.vars(&root, "a vars file").map(Some)
}

// ------------------------------------------------------------ conversion

/// A host as it will be written.
#[derive(Debug)]
struct OutHost {
    name: String,
    ansible_name: String,
    groups: Vec<String>,
    zone: String,
    address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<String>,
    jump: Option<String>,
    sudo: bool,
    vars: BTreeMap<String, Value>,
}

/// Whether a variable is carried into `vars` as it is.
fn plain_var(name: &str, value: &Value) -> bool {
    setting(name) == Setting::Plain && why_not_carried(name, value).is_none()
}

fn first_set<'a>(vars: &'a Vars, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| vars.get(*name))
}

/// Lines "origin: reason", the hosts that share an inline reason gathered
/// into one line.
fn not_carried_over(inventory: &Inventory, files: &VarsFiles, label: &str) -> Vec<String> {
    let mut lines: IndexSet<String> = IndexSet::new();
    let mut report = |origin: &str, vars: &Vars| {
        for (name, value) in vars {
            if let Some(why) = why_not_carried(name, value) {
                lines.insert(format!("{origin}: {why}"));
            }
        }
    };
    // Groups in Ansible's order: `all` first, parents before children.
    let mut groups: Vec<(&String, &Group)> = inventory.groups.iter().collect();
    groups.sort_by_key(|(name, group)| (group.depth, group.priority, name.as_str()));
    for (name, group) in &groups {
        report(&format!("group `{name}` ({label})"), &group.vars);
    }
    for (name, _) in &groups {
        for file in files.groups.get(name.as_str()).into_iter().flatten() {
            report(&file.label, &file.vars);
        }
    }
    let mut by_reason: IndexMap<String, Vec<&str>> = IndexMap::new();
    for (host, entry) in &inventory.hosts {
        for (name, value) in &entry.vars {
            if let Some(why) = why_not_carried(name, value) {
                by_reason.entry(why).or_default().push(host);
            }
        }
    }
    for (why, hosts) in by_reason {
        let names: Vec<String> = hosts.iter().map(|h| format!("`{h}`")).collect();
        let noun = if hosts.len() == 1 { "host" } else { "hosts" };
        lines.insert(format!("{noun} {} ({label}): {why}", names.join(", ")));
    }
    for name in inventory.hosts.keys() {
        for file in files.hosts.get(name).into_iter().flatten() {
            for (var, value) in &file.vars {
                if let Some(why) = why_not_carried(var, value) {
                    lines.insert(format!("{}: {why}", file.label));
                }
            }
        }
    }
    lines.into_iter().collect()
}

/// A fleetroll host name for an Ansible one: characters it does not take
/// become `-`, unique among `taken`.
fn safe_host_name(name: &str, taken: &mut HashSet<String>) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    safe = safe
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(240)
        .collect();
    if safe.is_empty() {
        safe = "host".to_owned();
    }
    let mut candidate = safe.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{safe}-{n}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// Hosts gathered under one message: "`a`, `b`, `c`".
fn host_list(hosts: &[String]) -> String {
    hosts
        .iter()
        .map(|h| format!("`{h}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A host's variables, flattened with Ansible's precedence (lowest first):
/// `all`'s inline variables, its groups' (in `groups` order), then
/// group_vars/all and its groups' files, its inline variables, host_vars.
fn host_vars_by_precedence(
    inventory: &Inventory,
    files: &VarsFiles,
    ansible_name: &str,
    entry: &HostEntry,
    groups: &[&str],
) -> Vars {
    let mut vars = inventory.groups["all"].vars.clone();
    for group in groups {
        vars.extend(inventory.groups[*group].vars.clone());
    }
    for group in std::iter::once("all").chain(groups.iter().copied()) {
        for file in files.groups.get(group).into_iter().flatten() {
            vars.extend(file.vars.clone());
        }
    }
    vars.extend(entry.vars.clone());
    for file in files.hosts.get(ansible_name).into_iter().flatten() {
        vars.extend(file.vars.clone());
    }
    vars
}

/// A host's zone (`Ok(Ok(zone))`), or why it has none (`Ok(Err(why))`,
/// for the `unzoned` warning); two zone groups are an error.
fn zone_for(
    inventory: &Inventory,
    zone_from: &ZoneFrom,
    ansible_name: &str,
    groups: &[&str],
    vars: &Vars,
) -> Result<Result<String, String>, ImportError> {
    match zone_from {
        ZoneFrom::None => Ok(Ok("default".to_owned())),
        ZoneFrom::GroupPrefix(prefix) => {
            let matching: Vec<(&str, &str)> = groups
                .iter()
                .filter_map(|group| {
                    let rest = group.strip_prefix(prefix.as_str())?;
                    let zone = rest.trim_start_matches(['_', '-', '.']);
                    (!zone.is_empty()).then_some((*group, zone))
                })
                .collect();
            // Of nested zone groups (az_eu ⊃ az_eu1), the innermost.
            let mut innermost: Vec<(&str, &str)> = matching
                .iter()
                .filter(|(group, _)| {
                    !matching
                        .iter()
                        .any(|(other, _)| other != group && inventory.is_ancestor(group, other))
                })
                .copied()
                .collect();
            innermost.sort_by_key(|(group, zone)| (*zone, *group));
            // Two groups naming the same zone (az_eu1, az-eu1) agree.
            innermost.dedup_by(|a, b| a.1 == b.1);
            Ok(match innermost.as_slice() {
                [] => Err(format!("in no group starting with `{prefix}`")),
                [(_, zone)] if is_safe_name(zone) => Ok((*zone).to_owned()),
                [(group, _)] => Err(format!(
                    "in group `{group}`, which leaves no valid zone name once the prefix is \
                     removed (letters, digits, `.`, `_` and `-`)"
                )),
                [(first, _), (second, _), ..] => {
                    return Err(ImportError::ZoneConflict {
                        host: ansible_name.to_owned(),
                        prefix: prefix.clone(),
                        first: (*first).to_owned(),
                        second: (*second).to_owned(),
                    });
                }
            })
        }
        ZoneFrom::Var(var) => {
            let Some(value) = vars.get(var.as_str()) else {
                return Ok(Err(format!("without the variable `{var}`")));
            };
            let text = match value {
                Value::Bool(b) => Some(b.to_string()),
                other => other.text(),
            };
            if let Some(text) = text.filter(|t| is_safe_name(t) && !is_secret_value(value)) {
                return Ok(Ok(text));
            }
            let what = if is_secret_name(var) || is_secret_value(value) {
                "a value that cannot be shown".to_owned()
            } else {
                match value.text() {
                    Some(text) => format!("the value {}", shown(&text)),
                    None => value.describe().to_owned(),
                }
            };
            Ok(Err(format!(
                "whose `{var}` is {what}, which cannot name a zone (letters, digits, `.`, `_` \
                 and `-`, starting with a letter or digit)"
            )))
        }
    }
}

fn convert(
    inventory: &Inventory,
    files: &VarsFiles,
    path: &Path,
    zone_from: &ZoneFrom,
    mut notes: Vec<String>,
) -> Result<Imported, ImportError> {
    let label = file_label(path);
    let dropped = not_carried_over(inventory, files, &label);
    // The `all` group's variables, inline and from group_vars/all.
    let mut all_vars = inventory.groups["all"].vars.clone();
    for file in files.groups.get("all").into_iter().flatten() {
        all_vars.extend(file.vars.clone());
    }
    let inventory_vars: BTreeMap<String, Value> = all_vars
        .iter()
        .filter(|(name, value)| plain_var(name, value))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();

    let mut taken: HashSet<String> = inventory
        .hosts
        .keys()
        .filter(|name| is_safe_name(name))
        .cloned()
        .collect();
    let mut hosts = Vec::new();
    let mut unzoned: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut shadowed: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut relative_keys: IndexSet<String> = IndexSet::new();
    for (ansible_name, entry) in &inventory.hosts {
        let groups = inventory.host_groups(entry);
        let vars = host_vars_by_precedence(inventory, files, ansible_name, entry, &groups);
        let name = if is_safe_name(ansible_name) {
            ansible_name.clone()
        } else {
            let name = safe_host_name(ansible_name, &mut taken);
            notes.push(format!(
                "host {} is named `{name}`: fleetroll names are letters, digits, `.`, `_` and \
                 `-`, starting with a letter or digit",
                shown(ansible_name)
            ));
            name
        };
        let pick_word = |names: &[&str]| first_set(&vars, names).and_then(|v| word(v).ok());
        let mut address = pick_word(&ADDRESS_VARS);
        if address.is_none() && name != *ansible_name {
            // Ansible dials the inventory name when there is no ansible_host.
            address = word(&Value::Str(ansible_name.clone())).ok();
        }
        let identity_file = pick_word(&KEY_VARS);
        if let Some(key) = &identity_file {
            if !key.starts_with(['/', '~']) {
                relative_keys.insert(key.clone());
            }
        }
        let mut jump = None;
        for args in SSH_ARGS_VARS.iter().filter_map(|n| vars.get(*n)) {
            if let Ok(text) = word_or_text(args) {
                if let Some(found) = SshArgs::parse(&text).jump {
                    jump = found;
                    break;
                }
            }
        }
        let become_method = vars.get("ansible_become_method").and_then(Value::text);
        let become_user =
            first_set(&vars, &["ansible_become_user", "ansible_sudo_user"]).and_then(Value::text);
        let sudo = first_set(&vars, &["ansible_become", "ansible_sudo"])
            .and_then(to_bool)
            .unwrap_or(false)
            && become_method.as_deref().is_none_or(|m| m == "sudo")
            && become_user.as_deref().is_none_or(|u| u == "root");

        let mut host_vars = BTreeMap::new();
        for (var, value) in &vars {
            if plain_var(var, value) {
                if inventory_vars.get(var) != Some(value) {
                    host_vars.insert(var.clone(), value.clone());
                }
            } else if inventory_vars.contains_key(var) {
                shadowed.entry(var.clone()).or_default().push(name.clone());
            }
        }

        let zone = match zone_for(inventory, zone_from, ansible_name, &groups, &vars)? {
            Ok(zone) => zone,
            Err(why) => {
                unzoned.entry(why).or_default().push(name.clone());
                "unzoned".to_owned()
            }
        };

        let mut group_names: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        group_names.sort();
        hosts.push(OutHost {
            name,
            ansible_name: ansible_name.clone(),
            groups: group_names,
            zone,
            address,
            port: first_set(&vars, &PORT_VARS).and_then(port),
            user: pick_word(&USER_VARS),
            identity_file,
            jump,
            sudo,
            vars: host_vars,
        });
    }

    if *zone_from == ZoneFrom::None {
        notes.push(
            "no --zone-from given: every host is in one zone, `default`, so the rollout has no \
             zones to go through one by one; give --zone-from a group prefix (zones from groups \
             such as az_eu1) or a variable"
                .to_owned(),
        );
    }
    for (why, names) in unzoned {
        let noun = if names.len() == 1 { "host" } else { "hosts" };
        notes.push(format!(
            "{noun} {} {why}: put in zone `unzoned`",
            host_list(&names)
        ));
    }
    for (var, names) in shadowed {
        let noun = if names.len() == 1 { "host" } else { "hosts" };
        notes.push(format!(
            "{noun} {}: `{var}` is set there to something fleetroll cannot hold, so they get \
             the inventory-wide value from [vars] instead",
            host_list(&names)
        ));
    }
    for key in relative_keys {
        notes.push(format!(
            "identity file {} is a relative path: Ansible reads it from the directory it runs \
             in, fleetroll from the directory of the inventory file",
            shown(&key)
        ));
    }

    let toml = render(path, zone_from, &hosts, &inventory_vars, &dropped, &notes);
    let zones: IndexSet<&str> = hosts.iter().map(|h| h.zone.as_str()).collect();
    let mut warnings: Vec<String> = dropped
        .iter()
        .map(|line| format!("not carried over: {line}"))
        .collect();
    warnings.extend(notes);
    Ok(Imported {
        toml,
        warnings,
        hosts: hosts.len(),
        zones: zones.len(),
    })
}

// ---------------------------------------------------------------- output

/// `[defaults]` values: those every host shares.
#[derive(Debug, Default)]
struct Defaults {
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<String>,
    jump: Option<String>,
    sudo: bool,
}

fn shared<T: PartialEq + Clone>(
    hosts: &[OutHost],
    get: impl Fn(&OutHost) -> Option<T>,
) -> Option<T> {
    let first = get(hosts.first()?)?;
    hosts
        .iter()
        .all(|host| get(host).as_ref() == Some(&first))
        .then_some(first)
}

fn render(
    path: &Path,
    zone_from: &ZoneFrom,
    hosts: &[OutHost],
    inventory_vars: &BTreeMap<String, Value>,
    dropped: &[String],
    notes: &[String],
) -> String {
    let defaults = Defaults {
        port: shared(hosts, |h| h.port),
        user: shared(hosts, |h| h.user.clone()),
        identity_file: shared(hosts, |h| h.identity_file.clone()),
        jump: shared(hosts, |h| h.jump.clone()),
        sudo: shared(hosts, |h| h.sudo.then_some(true)).unwrap_or(false),
    };
    let mut out = String::new();
    let mut comment = |text: &str| {
        if text.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(&comment_text(text));
            out.push('\n');
        }
    };
    comment(&format!(
        "Generated from {} by `fleetroll import ansible`.",
        path.display()
    ));
    comment("");
    comment(&match zone_from {
        ZoneFrom::None => {
            "Zones: none chosen (no --zone-from): every host is in zone `default`.".to_owned()
        }
        ZoneFrom::GroupPrefix(prefix) => format!(
            "Zones: each host's group whose name starts with `{prefix}` names its zone, without \
             the prefix (nor a `_`, `-` or `.` after it); hosts in no such group are in zone \
             `unzoned`."
        ),
        ZoneFrom::Var(var) => format!(
            "Zones: each host's variable `{var}` names its zone; hosts without it are in zone \
             `unzoned`."
        ),
    });
    comment(
        "Order: zones by name (`unzoned` last), hosts as the Ansible inventory first lists \
         them. fleetroll goes through zones in file order: reorder them, or set `zone_order` \
         in the playbook.",
    );
    comment(
        "Variables: the `all` group's are in [vars]; each host's `vars` hold the rest, \
         flattened with Ansible's precedence. SSH settings every host shares are in \
         [defaults]. The comment above each host lists its Ansible groups.",
    );
    comment("");
    if dropped.is_empty() {
        comment("Not carried over: nothing.");
    } else {
        comment(&format!("Not carried over ({}):", dropped.len()));
        for line in dropped {
            comment(&format!("- {line}"));
        }
    }
    if !notes.is_empty() {
        comment("");
        comment(&format!("Warnings ({}):", notes.len()));
        for line in notes {
            comment(&format!("- {line}"));
        }
    }

    let mut defaults_lines = Vec::new();
    if let Some(user) = &defaults.user {
        defaults_lines.push(format!("user = {}", toml_text::string(user)));
    }
    if let Some(port) = defaults.port {
        defaults_lines.push(format!("port = {port}"));
    }
    if let Some(key) = &defaults.identity_file {
        defaults_lines.push(format!("identity_file = {}", toml_text::string(key)));
    }
    if let Some(jump) = &defaults.jump {
        defaults_lines.push(format!("jump = {}", toml_text::string(jump)));
    }
    if defaults.sudo {
        defaults_lines.push("sudo = true".to_owned());
    }
    if !defaults_lines.is_empty() {
        out.push_str("\n[defaults]\n");
        for line in defaults_lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    if !inventory_vars.is_empty() {
        out.push_str("\n[vars]\n");
        for (name, value) in inventory_vars {
            let _ = writeln!(out, "{} = {}", toml_text::key(name), toml_value(value));
        }
    }

    let mut zones: BTreeMap<&str, Vec<&OutHost>> = BTreeMap::new();
    for host in hosts {
        zones.entry(host.zone.as_str()).or_default().push(host);
    }
    let unzoned = zones.remove("unzoned");
    for (zone, members) in zones.into_iter().chain(unzoned.map(|m| ("unzoned", m))) {
        let _ = writeln!(out, "\n[zones.{}]\nhosts = [", toml_text::key(zone));
        for host in members {
            let groups = if host.groups.is_empty() {
                "none".to_owned()
            } else {
                host.groups.join(", ")
            };
            if host.name == host.ansible_name {
                let _ = writeln!(out, "    # groups: {}", comment_text(&groups));
            } else {
                let _ = writeln!(
                    out,
                    "    # Ansible host {}; groups: {}",
                    comment_text(&shown(&host.ansible_name)),
                    comment_text(&groups)
                );
            }
            let _ = writeln!(out, "    {},", host_table(host, &defaults));
        }
        out.push_str("]\n");
    }
    out
}

fn host_table(host: &OutHost, defaults: &Defaults) -> String {
    let mut fields = vec![format!("name = {}", toml_text::string(&host.name))];
    if let Some(address) = &host.address {
        fields.push(format!("address = {}", toml_text::string(address)));
    }
    if let Some(port) = host.port.filter(|_| defaults.port.is_none()) {
        fields.push(format!("port = {port}"));
    }
    if let Some(user) = host.user.as_ref().filter(|_| defaults.user.is_none()) {
        fields.push(format!("user = {}", toml_text::string(user)));
    }
    if let Some(key) = host
        .identity_file
        .as_ref()
        .filter(|_| defaults.identity_file.is_none())
    {
        fields.push(format!("identity_file = {}", toml_text::string(key)));
    }
    if let Some(jump) = host.jump.as_ref().filter(|_| defaults.jump.is_none()) {
        fields.push(format!("jump = {}", toml_text::string(jump)));
    }
    if host.sudo && !defaults.sudo {
        fields.push("sudo = true".to_owned());
    }
    if !host.vars.is_empty() {
        let vars: Vec<String> = host
            .vars
            .iter()
            .map(|(name, value)| format!("{} = {}", toml_text::key(name), toml_value(value)))
            .collect();
        fields.push(format!("vars = {{ {} }}", vars.join(", ")));
    }
    format!("{{ {} }}", fields.join(", "))
}

/// Text safe inside a `#` comment: one line, no control characters.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn toml_value(value: &Value) -> String {
    match value {
        Value::Str(text) => toml_text::string(text),
        Value::Int(number) => number.to_string(),
        Value::Float(number) if number.is_nan() => "nan".to_owned(),
        Value::Float(number) if number.is_infinite() => {
            if *number > 0.0 { "inf" } else { "-inf" }.to_owned()
        }
        Value::Float(number) => format!("{number:?}"),
        Value::Bool(b) => b.to_string(),
        // Never written: filtered out before.
        Value::Null | Value::Vault | Value::Other(_) => "\"\"".to_owned(),
    }
}

#[cfg(test)]
#[path = "ansible_tests.rs"]
mod tests;
