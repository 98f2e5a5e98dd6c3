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

mod convert;
mod format;
mod ini;
mod inventory;
mod output;
mod ranges;
mod settings;
mod values;
mod vars_files;
mod yaml;

use convert::*;
use format::*;
use ini::*;
use inventory::*;
use output::*;
use ranges::*;
use settings::*;
use values::*;
use vars_files::*;
use yaml::*;

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

#[cfg(test)]
mod tests;
