//! OpenSSH client configuration (`ssh_config(5)`), read the way `ssh` reads it.
//!
//! [`SshConfig::load`] parses the files ssh would read, following their
//! `Include` lines, and [`SshConfig::resolve`] answers "what does ssh use for
//! this alias?", each value with the file and line it came from. Path-like
//! values stay as written (with `~` and `%` tokens): the caller expands them
//! with [`expand_tokens`] once it has merged them with its own settings.
//!
//! The rules are those of the OpenSSH 9.2 client (as Debian ships it):
//!
//! - The first value obtained for a keyword wins, except `IdentityFile` and
//!   `CertificateFile`, whose values accumulate in order without duplicates.
//! - `Host` patterns match the alias as typed, case-sensitively (`*`, `?`,
//!   `!` negation). `Match` supports `all`, `host`, `originalhost`, `user` and
//!   `localuser`; a block that needs any other criterion (`exec`, `canonical`,
//!   `final`, …) is treated as not matching and reported in
//!   [`Resolved::warnings`]. No command is ever run.
//! - Included files are read when the configuration is loaded, as ssh parses
//!   them even inside blocks that do not apply; their settings apply only
//!   while the block around the `Include` line does.
//! - A syntax error anywhere, even in a block that does not apply, is an
//!   error, as it is for ssh.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};

mod directives;
mod files;
mod lex;
mod parse;
mod patterns;
mod resolve;

use directives::*;
use files::*;
use lex::*;
use parse::*;
use patterns::*;
use resolve::*;

/// ssh refuses to nest `Include` deeper than this.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Where a relative `Include` of a system-wide file points.
const SYSTEM_CONFIG_DIR: &str = "/etc/ssh";
/// Whitespace between words, as ssh counts it.
const WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];

/// Where a value was written: a file and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A configured value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<T> {
    pub value: T,
    pub origin: Origin,
}

/// Whether a file is the user's or the system's; it decides where a relative
/// `Include` points (`~/.ssh` or `/etc/ssh`). Included files inherit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    User,
    System,
}

/// A top-level configuration file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub kind: FileKind,
    /// `true` when the user named the file explicitly (like `ssh -F`): then a
    /// missing or unreadable file is an error. The default files are not
    /// required: ssh silently skips them when they cannot be read.
    pub required: bool,
}

impl ConfigFile {
    /// The files ssh reads without `-F`: `~/.ssh/config`, then
    /// `/etc/ssh/ssh_config`.
    pub fn defaults(home: &Path) -> Vec<ConfigFile> {
        vec![
            ConfigFile {
                path: home.join(".ssh").join("config"),
                kind: FileKind::User,
                required: false,
            },
            ConfigFile {
                path: Path::new(SYSTEM_CONFIG_DIR).join("ssh_config"),
                kind: FileKind::System,
                required: false,
            },
        ]
    }
}

/// Why an ssh configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    /// A file exists but cannot be read.
    #[error(
        "cannot read the ssh config file {path}: {source}; check that it exists and is readable"
    )]
    Read { path: PathBuf, source: io::Error },
    /// A required file does not exist.
    #[error("the ssh config file {path} does not exist; check the path you gave")]
    Missing { path: PathBuf },
    /// A line ssh would reject; `message` says what to write instead.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// `Include` nested deeper than ssh allows (16 levels).
    #[error(
        "{path}:{line}: Include nests files more than {MAX_INCLUDE_DEPTH} levels deep; look for a file that includes itself"
    )]
    IncludeTooDeep { path: PathBuf, line: usize },
    /// A user or included file that other users may write, which ssh refuses.
    #[error(
        "the ssh config file {path} is writable by other users, so ssh refuses to use it; run `chmod o-w {path}`"
    )]
    WritableByOthers { path: PathBuf },
}

/// The parsed lines of all configuration files, in the order ssh reads them.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    /// One list of entries per top-level file: each file starts outside any
    /// `Host` or `Match` block.
    files: Vec<Vec<Entry>>,
}

/// What the caller already knows when resolving an alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchContext {
    /// The local user name, for `Match localuser`, and for `Match user` while
    /// no remote user is known.
    pub local_user: String,
    /// A remote user the caller has already fixed (fleetroll's inventory wins
    /// over ssh_config), like `ssh -l`: `Match user` sees it, and `User` lines
    /// are then ignored, so [`Resolved::user`] stays `None`.
    pub user: Option<String>,
}

/// What ssh uses for one alias. `None` (or an empty list) means that no
/// applying line set the keyword.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// `HostName`, with `%h` expanded to the alias and lowercased (unless it
    /// is an IP address), as ssh uses it.
    pub host_name: Option<Value<String>>,
    pub user: Option<Value<String>>,
    pub port: Option<Value<u16>>,
    /// Every applying `IdentityFile`, in order, as written.
    pub identity_files: Vec<Value<String>>,
    pub identities_only: Option<Value<bool>>,
    /// As written: `none`, `SSH_AUTH_SOCK`, `$VAR` or a path.
    pub identity_agent: Option<Value<String>>,
    /// The `[user@]host[:port]` hops, in order; `Some` of an empty list for
    /// `ProxyJump none` (explicitly no jump).
    pub proxy_jump: Option<Value<Vec<String>>>,
    /// `Some` of an empty list for `none`.
    pub user_known_hosts_files: Option<Value<Vec<String>>>,
    /// `Some` of an empty list for `none`.
    pub global_known_hosts_files: Option<Value<Vec<String>>>,
    pub connect_timeout: Option<Value<Duration>>,
    pub server_alive_interval: Option<Value<Duration>>,
    pub server_alive_count_max: Option<Value<u32>>,
    /// Every applying `CertificateFile`, in order, as written.
    pub certificate_files: Vec<Value<String>>,
    /// `yes`, `no`, `ask` or `accept-new` (ssh's synonyms `true`, `false` and
    /// `off` are normalized).
    pub strict_host_key_checking: Option<Value<String>>,
    /// The command as written, or `none` (explicitly no proxy command).
    /// `ProxyJump` and `ProxyCommand` exclude each other: the first wins.
    pub proxy_command: Option<Value<String>>,
    pub host_key_alias: Option<Value<String>>,
    /// Lines fleetroll could not honour for this alias, each starting with
    /// `file:line`: unsupported `Match` criteria, ignored keywords.
    pub warnings: Vec<String>,
}

/// The values of the `%` tokens in [`expand_tokens`].
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    /// `%h`: the remote host name.
    pub host: &'a str,
    /// `%n`: the alias as given.
    pub alias: &'a str,
    /// `%p`: the remote port.
    pub port: u16,
    /// `%r`: the remote user.
    pub remote_user: &'a str,
    /// `%u`: the local user.
    pub local_user: &'a str,
    /// `%i`: the local user's numeric id.
    pub local_uid: u32,
    /// `%d`, and `~` at the start: the local home directory.
    pub home: &'a Path,
    /// `%l`: the local host name; `%L` its first component.
    pub local_host: &'a str,
}

/// Expands a leading `~` (or `~/`) to the home directory and the tokens `%%`,
/// `%d`, `%h`, `%i`, `%l`, `%L`, `%n`, `%p`, `%r` and `%u`, as ssh does for
/// paths. Any other token (`%C`, `%j`, `%k`, `%T`: connection details
/// fleetroll does not have at this point) is an error naming it.
pub fn expand_tokens(text: &str, tokens: &Tokens<'_>) -> Result<String, String> {
    let (home, rest) = split_tilde(text, tokens.home)?;
    let port = tokens.port.to_string();
    let uid = tokens.local_uid.to_string();
    let home_dir = tokens.home.to_string_lossy();
    let short_host = tokens.local_host.split('.').next().unwrap_or_default();
    let known = "%%, %d, %h, %i, %l, %L, %n, %p, %r and %u";
    let expanded = percent_expand(rest, known, |token| {
        Some(match token {
            'd' => &home_dir,
            'h' => tokens.host,
            'i' => &uid,
            'l' => tokens.local_host,
            'L' => short_host,
            'n' => tokens.alias,
            'p' => &port,
            'r' => tokens.remote_user,
            'u' => tokens.local_user,
            _ => return None,
        })
    })?;
    Ok(home + &expanded)
}

impl SshConfig {
    /// Reads `files` in order, and the files they include. `home` is the local
    /// home directory, for `~` and for relative includes of user files.
    pub fn load(files: &[ConfigFile], home: &Path) -> Result<SshConfig, SshConfigError> {
        let mut parsed = Vec::new();
        for file in files {
            if let Some(text) = read_top_level(file)? {
                let parser = FileParser {
                    path: &file.path,
                    kind: file.kind,
                    home,
                    depth: 0,
                };
                parsed.push(parser.parse(&text)?);
            }
        }
        Ok(SshConfig { files: parsed })
    }

    /// Parses `text` as if read from `path` (used in errors and origins).
    /// Included files are still read from disk.
    pub fn parse_str(
        text: &str,
        path: &Path,
        kind: FileKind,
        home: &Path,
    ) -> Result<SshConfig, SshConfigError> {
        let parser = FileParser {
            path,
            kind,
            home,
            depth: 0,
        };
        Ok(SshConfig {
            files: vec![parser.parse(text)?],
        })
    }

    /// What ssh would use for `alias` (the host as given on its command line).
    pub fn resolve(&self, alias: &str, context: &MatchContext) -> Resolved {
        let mut resolution = Resolution::new(alias, context);
        for file in &self.files {
            resolution.apply_file(file, true);
        }
        resolution.finish()
    }
}

#[cfg(test)]
mod tests;
