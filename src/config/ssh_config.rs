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

// ---------------------------------------------------------------------------
// Parsed form

/// One meaningful line of a file.
#[derive(Debug, Clone)]
struct Entry {
    origin: Origin,
    kind: FileKind,
    directive: Directive,
}

#[derive(Debug, Clone)]
enum Directive {
    Host(Vec<HostPattern>),
    Match(Vec<Criterion>),
    /// The entries of each included file, in glob order.
    Include(Vec<Vec<Entry>>),
    Set(Setting),
    Ignored(IgnoredKeyword),
}

#[derive(Debug, Clone)]
struct HostPattern {
    pattern: String,
    negated: bool,
}

#[derive(Debug, Clone)]
struct Criterion {
    negated: bool,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// A criterion fleetroll does not evaluate, as written.
    Unsupported(String),
}

#[derive(Debug, Clone)]
enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    IdentitiesOnly(bool),
    IdentityAgent(String),
    /// Empty for `none`.
    ProxyJump(Vec<String>),
    UserKnownHostsFiles(Vec<String>),
    GlobalKnownHostsFiles(Vec<String>),
    /// `None` for `none`, which leaves the value unset, as in ssh.
    ConnectTimeout(Option<Duration>),
    ServerAliveInterval(Option<Duration>),
    ServerAliveCountMax(u32),
    CertificateFile(String),
    StrictHostKeyChecking(String),
    ProxyCommand(String),
    HostKeyAlias(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Host,
    Match,
    HostName,
    User,
    Port,
    IdentityFile,
    IdentitiesOnly,
    IdentityAgent,
    ProxyJump,
    UserKnownHostsFile,
    GlobalKnownHostsFile,
    ConnectTimeout,
    ServerAliveInterval,
    ServerAliveCountMax,
    CertificateFile,
    StrictHostKeyChecking,
    ProxyCommand,
    HostKeyAlias,
}

impl Keyword {
    fn from_lowercase(keyword: &str) -> Option<Keyword> {
        Some(match keyword {
            "host" => Keyword::Host,
            "match" => Keyword::Match,
            "hostname" => Keyword::HostName,
            "user" => Keyword::User,
            "port" => Keyword::Port,
            "identityfile" | "identityfile2" => Keyword::IdentityFile,
            "identitiesonly" => Keyword::IdentitiesOnly,
            "identityagent" => Keyword::IdentityAgent,
            "proxyjump" => Keyword::ProxyJump,
            "userknownhostsfile" => Keyword::UserKnownHostsFile,
            "globalknownhostsfile" => Keyword::GlobalKnownHostsFile,
            "connecttimeout" => Keyword::ConnectTimeout,
            "serveraliveinterval" => Keyword::ServerAliveInterval,
            "serveralivecountmax" => Keyword::ServerAliveCountMax,
            "certificatefile" => Keyword::CertificateFile,
            "stricthostkeychecking" => Keyword::StrictHostKeyChecking,
            "proxycommand" => Keyword::ProxyCommand,
            "hostkeyalias" => Keyword::HostKeyAlias,
            _ => return None,
        })
    }
}

/// A keyword ssh honours but fleetroll does not, where the difference may
/// matter for security; it is reported when it applies to an alias.
#[derive(Debug, Clone, Copy)]
struct IgnoredKeyword {
    name: &'static str,
    consequence: &'static str,
}

/// The ignored keywords, grouped by what fleetroll does instead.
const IGNORED_KEYWORDS: &[(&str, &[&str])] = &[
    (
        "fleetroll's SSH client offers its own algorithm lists",
        &[
            "CASignatureAlgorithms",
            "Ciphers",
            "HostKeyAlgorithms",
            "KexAlgorithms",
            "MACs",
            "PubkeyAcceptedAlgorithms",
            "PubkeyAcceptedKeyTypes",
            "RequiredRSASize",
        ],
    ),
    (
        "fleetroll checks host keys against the known_hosts files only",
        &[
            "CheckHostIP",
            "KnownHostsCommand",
            "RevokedHostKeys",
            "UpdateHostKeys",
            "VerifyHostKeyDNS",
        ],
    ),
    (
        // Other authentication methods (GSSAPI, passwords) are not listed:
        // Debian's own /etc/ssh/ssh_config turns GSSAPI on for every host,
        // and using public keys only loses nothing a run needs.
        "fleetroll authenticates with key files and the agent only",
        &["PKCS11Provider", "SecurityKeyProvider"],
    ),
    (
        "fleetroll never forwards the agent, X11 or ports",
        &[
            "DynamicForward",
            "ForwardAgent",
            "ForwardX11",
            "ForwardX11Trusted",
            "LocalForward",
            "RemoteForward",
        ],
    ),
    (
        "fleetroll runs no command but the playbook's",
        &["LocalCommand", "PermitLocalCommand", "RemoteCommand"],
    ),
    (
        "fleetroll connects to the host name resolved here, from any local address",
        &[
            "AddressFamily",
            "BindAddress",
            "BindInterface",
            "CanonicalizeHostname",
        ],
    ),
];

fn ignored_keyword(keyword: &str) -> Option<IgnoredKeyword> {
    IGNORED_KEYWORDS.iter().find_map(|(consequence, names)| {
        names
            .iter()
            .find(|name| name.eq_ignore_ascii_case(keyword))
            .map(|name| IgnoredKeyword { name, consequence })
    })
}

// ---------------------------------------------------------------------------
// Reading files

fn read_top_level(file: &ConfigFile) -> Result<Option<String>, SshConfigError> {
    let check_permissions = file.kind == FileKind::User && !file.required;
    match read_config_text(&file.path, check_permissions) {
        Ok(None) if file.required => Err(SshConfigError::Missing {
            path: file.path.clone(),
        }),
        Err(SshConfigError::Read { .. }) if !file.required => Ok(None),
        outcome => outcome,
    }
}

/// The file's text; `None` when it does not exist. A directory reads as
/// empty, as it does for ssh.
fn read_config_text(
    path: &Path,
    check_permissions: bool,
) -> Result<Option<String>, SshConfigError> {
    let read_error = |source| SshConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    if metadata.is_dir() {
        return Ok(Some(String::new()));
    }
    if check_permissions && writable_by_others(&metadata) {
        return Err(SshConfigError::WritableByOthers {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(read_error)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(unix)]
fn writable_by_others(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o002 != 0
}

#[cfg(not(unix))]
fn writable_by_others(_metadata: &fs::Metadata) -> bool {
    false
}

/// Parses one file's text into entries, reading its includes.
struct FileParser<'a> {
    path: &'a Path,
    kind: FileKind,
    home: &'a Path,
    depth: usize,
}

impl FileParser<'_> {
    fn parse(&self, text: &str) -> Result<Vec<Entry>, SshConfigError> {
        let mut entries = Vec::new();
        for (index, text) in text.lines().enumerate() {
            let line_number = index + 1;
            let Some(line) = lex_line(text).map_err(|error| self.syntax(line_number, error))?
            else {
                continue;
            };
            if let Some(directive) = self.directive(&line, line_number)? {
                entries.push(Entry {
                    origin: Origin {
                        file: self.path.to_path_buf(),
                        line: line_number,
                    },
                    kind: self.kind,
                    directive,
                });
            }
        }
        Ok(entries)
    }

    fn directive(
        &self,
        line: &Line<'_>,
        line_number: usize,
    ) -> Result<Option<Directive>, SshConfigError> {
        let keyword = line.keyword.to_ascii_lowercase();
        if keyword == "include" {
            return self.include(line, line_number).map(Some);
        }
        if let Some(ignored) = ignored_keyword(&keyword) {
            return Ok(Some(Directive::Ignored(ignored)));
        }
        match Keyword::from_lowercase(&keyword) {
            None => Ok(None),
            Some(keyword) => parse_directive(keyword, line)
                .map(Some)
                .map_err(|error| self.syntax(line_number, error)),
        }
    }

    fn include(&self, line: &Line<'_>, line_number: usize) -> Result<Directive, SshConfigError> {
        let mut files = Vec::new();
        for arg in &line.args {
            let pattern = include_pattern(&arg.text, self.kind, self.home)
                .map_err(|message| self.syntax(line_number, arg.error(message)))?;
            for path in expand_glob(&pattern) {
                if self.depth >= MAX_INCLUDE_DEPTH {
                    return Err(SshConfigError::IncludeTooDeep {
                        path: self.path.to_path_buf(),
                        line: line_number,
                    });
                }
                if let Some(text) = read_config_text(&path, true)? {
                    let parser = FileParser {
                        path: &path,
                        kind: self.kind,
                        home: self.home,
                        depth: self.depth + 1,
                    };
                    files.push(parser.parse(&text)?);
                }
            }
        }
        Ok(Directive::Include(files))
    }

    fn syntax(&self, line: usize, error: LineError) -> SshConfigError {
        SshConfigError::Syntax {
            path: self.path.to_path_buf(),
            line,
            column: error.column,
            message: error.message,
        }
    }
}

/// The path pattern an `Include` argument names: `~` is the home directory,
/// and a relative path is relative to `~/.ssh` (user files) or `/etc/ssh`
/// (system files).
fn include_pattern(arg: &str, kind: FileKind, home: &Path) -> Result<PathBuf, String> {
    if arg.is_empty() {
        return Err("Include has an empty path; remove the empty quotes".to_owned());
    }
    if arg.starts_with('~') {
        if kind == FileKind::System {
            return Err(format!(
                "Include {arg}: a system-wide file cannot include from a home directory; use an absolute path"
            ));
        }
        let (home, rest) = split_tilde(arg, home)?;
        return Ok(PathBuf::from(home + rest));
    }
    if Path::new(arg).is_absolute() {
        return Ok(PathBuf::from(arg));
    }
    Ok(match kind {
        FileKind::User => home.join(".ssh").join(arg),
        FileKind::System => Path::new(SYSTEM_CONFIG_DIR).join(arg),
    })
}

/// The existing paths matching `pattern`, sorted as glob(3) sorts them.
/// Components with `*`, `?` or `[` match directory entries (not those
/// starting with `.` unless the component does); others are taken as written.
fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::new()];
    for component in pattern.components() {
        let name = component.as_os_str();
        candidates = match name.to_str().and_then(ComponentMatcher::new) {
            Some(matcher) => candidates
                .iter()
                .flat_map(|dir| matcher.children_of(dir))
                .collect(),
            None => candidates.into_iter().map(|dir| dir.join(name)).collect(),
        };
    }
    candidates.retain(|path| path.symlink_metadata().is_ok());
    candidates.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    candidates
}

/// Matches one path component's wildcard pattern against directory entries.
struct ComponentMatcher {
    glob: GlobMatcher,
    matches_dot_files: bool,
}

impl ComponentMatcher {
    /// `None` when the component has no wildcard (or is not a valid pattern,
    /// which glob(3) then takes literally).
    fn new(component: &str) -> Option<ComponentMatcher> {
        if !component.contains(['*', '?', '[']) {
            return None;
        }
        let glob = GlobBuilder::new(component)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .ok()?;
        Some(ComponentMatcher {
            glob: glob.compile_matcher(),
            matches_dot_files: component.starts_with('.'),
        })
    }

    fn children_of(&self, dir: &Path) -> Vec<PathBuf> {
        let listed = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Ok(entries) = fs::read_dir(listed) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .filter(|name| self.matches_dot_files || !name.as_encoded_bytes().starts_with(b"."))
            .filter(|name| self.glob.is_match(Path::new(name)))
            .map(|name| dir.join(name))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Lexing one line

/// A line split into its keyword and arguments.
#[derive(Debug)]
struct Line<'a> {
    keyword: &'a str,
    /// Everything after the keyword and its separator, unsplit (ProxyCommand
    /// and ProxyJump take it as written).
    raw_args: &'a str,
    raw_column: usize,
    args: Vec<Arg>,
}

/// One argument, unquoted, with the 1-based column where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arg {
    text: String,
    column: usize,
}

impl Arg {
    fn error(&self, message: impl Into<String>) -> LineError {
        LineError {
            column: self.column,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LineError {
    column: usize,
    message: String,
}

/// Splits a line as ssh does; `None` for blank and comment lines.
fn lex_line(text: &str) -> Result<Option<Line<'_>>, LineError> {
    let text = text.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    let start = text.len() - text.trim_start_matches(WHITESPACE).len();
    let rest = &text[start..];
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let keyword_len = rest
        .find(|c: char| WHITESPACE.contains(&c) || c == '=')
        .unwrap_or(rest.len());
    let keyword = &rest[..keyword_len];
    let args_start = start + keyword_len + separator_len(&rest[keyword_len..]);
    let raw_column = column_at(text, args_start);
    if args_start == text.len() {
        return Err(no_value(keyword, raw_column));
    }
    Ok(Some(Line {
        keyword,
        raw_args: &text[args_start..],
        raw_column,
        args: split_args(text, args_start)?,
    }))
}

/// The length of what separates a keyword from its value: whitespace, or a
/// single `=` with optional whitespace around it.
fn separator_len(after_keyword: &str) -> usize {
    let ended_by_equals = after_keyword.starts_with('=');
    let mut rest = after_keyword
        .strip_prefix('=')
        .unwrap_or(after_keyword)
        .trim_start_matches(WHITESPACE);
    if !ended_by_equals && rest.starts_with('=') {
        rest = rest[1..].trim_start_matches(WHITESPACE);
    }
    after_keyword.len() - rest.len()
}

fn column_at(text: &str, byte: usize) -> usize {
    text[..byte].chars().count() + 1
}

/// Splits arguments like ssh's `argv_split`: words separated by spaces or
/// tabs, `"` or `'` quoting (quotes removed), `\` escaping a quote, a
/// backslash or a space, and a `#` starting a word ends the line.
fn split_args(text: &str, from: usize) -> Result<Vec<Arg>, LineError> {
    let mut args = Vec::new();
    let mut chars = text[from..]
        .char_indices()
        .map(|(at, c)| (from + at, c))
        .peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c == ' ' || c == '\t' {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        let mut word = String::new();
        let mut open_quote: Option<(char, usize)> = None;
        while let Some(&(at, c)) = chars.peek() {
            let quote = open_quote.map(|(quote, _)| quote);
            if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.peek() {
                    Some(&(_, next))
                        if matches!(next, '\'' | '"' | '\\')
                            || (quote.is_none() && next == ' ') =>
                    {
                        word.push(next);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => open_quote = Some((c, at)),
                _ if quote == Some(c) => open_quote = None,
                _ => word.push(c),
            }
        }
        if let Some((quote, at)) = open_quote {
            return Err(LineError {
                column: column_at(text, at),
                message: format!(
                    "the quote {quote} opened here is not closed; add the closing {quote}"
                ),
            });
        }
        args.push(Arg {
            text: word,
            column: column_at(text, start),
        });
    }
    Ok(args)
}

// ---------------------------------------------------------------------------
// Parsing directives

fn parse_directive(keyword: Keyword, line: &Line<'_>) -> Result<Directive, LineError> {
    let setting = match keyword {
        Keyword::Host => return parse_host(line).map(Directive::Host),
        Keyword::Match => return parse_match(line).map(Directive::Match),
        Keyword::HostName => Setting::HostName(single_arg(line)?.text.clone()),
        Keyword::User => Setting::User(single_arg(line)?.text.clone()),
        Keyword::Port => Setting::Port(parse_port(single_arg(line)?)?),
        Keyword::IdentityFile => Setting::IdentityFile(single_arg(line)?.text.clone()),
        Keyword::IdentitiesOnly => Setting::IdentitiesOnly(parse_flag(line)?),
        Keyword::IdentityAgent => Setting::IdentityAgent(single_arg(line)?.text.clone()),
        Keyword::ProxyJump => Setting::ProxyJump(parse_proxy_jump(line)?),
        Keyword::UserKnownHostsFile => Setting::UserKnownHostsFiles(parse_file_list(line)?),
        Keyword::GlobalKnownHostsFile => Setting::GlobalKnownHostsFiles(parse_file_list(line)?),
        Keyword::ConnectTimeout => Setting::ConnectTimeout(parse_time(single_arg(line)?)?),
        Keyword::ServerAliveInterval => {
            Setting::ServerAliveInterval(parse_time(single_arg(line)?)?)
        }
        Keyword::ServerAliveCountMax => {
            Setting::ServerAliveCountMax(parse_count(single_arg(line)?)?)
        }
        Keyword::CertificateFile => Setting::CertificateFile(single_arg(line)?.text.clone()),
        Keyword::StrictHostKeyChecking => {
            Setting::StrictHostKeyChecking(parse_strict_host_key_checking(single_arg(line)?)?)
        }
        Keyword::ProxyCommand => Setting::ProxyCommand(raw_value(line).to_owned()),
        Keyword::HostKeyAlias => Setting::HostKeyAlias(single_arg(line)?.text.clone()),
    };
    Ok(Directive::Set(setting))
}

/// The only argument of a line; missing, empty or extra arguments are errors.
fn single_arg<'l>(line: &'l Line<'_>) -> Result<&'l Arg, LineError> {
    let keyword = line.keyword;
    let Some(arg) = line.args.first() else {
        return Err(no_value(keyword, line.raw_column));
    };
    if arg.text.is_empty() {
        return Err(arg.error(format!(
            "{keyword} has an empty value; write a value between the quotes"
        )));
    }
    if let Some(extra) = line.args.get(1) {
        return Err(extra.error(format!(
            "{keyword} takes one value, but more follow; quote a value that contains spaces"
        )));
    }
    Ok(arg)
}

fn no_value(keyword: &str, column: usize) -> LineError {
    LineError {
        column,
        message: format!("{keyword} has no value; write `{keyword} VALUE` or delete the line"),
    }
}

/// The unsplit rest of the line, as ssh takes it for ProxyCommand.
fn raw_value<'l>(line: &'l Line<'_>) -> &'l str {
    line.raw_args
        .trim_start_matches([' ', '\t', '\r', '\n', '='])
}

fn parse_host(line: &Line<'_>) -> Result<Vec<HostPattern>, LineError> {
    line.args
        .iter()
        .map(|arg| {
            if arg.text.is_empty() {
                return Err(arg.error("Host has an empty pattern; remove the empty quotes"));
            }
            Ok(match arg.text.strip_prefix('!') {
                Some(pattern) => HostPattern {
                    pattern: pattern.to_owned(),
                    negated: true,
                },
                None => HostPattern {
                    pattern: arg.text.clone(),
                    negated: false,
                },
            })
        })
        .collect()
}

fn parse_match(line: &Line<'_>) -> Result<Vec<Criterion>, LineError> {
    let mut criteria = Vec::new();
    let mut args = line.args.iter().peekable();
    while let Some(arg) = args.next() {
        let (negated, name) = match arg.text.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, arg.text.as_str()),
        };
        let name = name.to_ascii_lowercase();
        let test = match name.as_str() {
            "all" => {
                if criteria.len() > 1 || args.peek().is_some() {
                    return Err(arg.error(
                        "Match all cannot be combined with other criteria; remove `all` or the other criteria",
                    ));
                }
                Test::All
            }
            "canonical" | "final" => Test::Unsupported(arg.text.clone()),
            _ => {
                let Some(value) = args.next().filter(|value| !value.text.is_empty()) else {
                    return Err(arg.error(format!(
                        "Match {name} needs an argument, e.g. `Match {name} PATTERN`"
                    )));
                };
                let value_text = value.text.clone();
                match name.as_str() {
                    "host" => Test::Host(value_text),
                    "originalhost" => Test::OriginalHost(value_text),
                    "user" => Test::User(value_text),
                    "localuser" => Test::LocalUser(value_text),
                    _ => Test::Unsupported(format!("{} {value_text}", arg.text)),
                }
            }
        };
        criteria.push(Criterion { negated, test });
    }
    if criteria.is_empty() {
        return Err(LineError {
            column: line.raw_column,
            message: "Match needs at least one criterion, e.g. `Match host PATTERN` or `Match all`"
                .to_owned(),
        });
    }
    Ok(criteria)
}

fn parse_port(arg: &Arg) -> Result<u16, LineError> {
    match arg.text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(arg.error(format!(
            "Port must be a number from 1 to 65535, not \"{}\"",
            arg.text
        ))),
    }
}

fn parse_flag(line: &Line<'_>) -> Result<bool, LineError> {
    let arg = single_arg(line)?;
    match arg.text.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(arg.error(format!(
            "{} must be yes or no, not \"{}\"",
            line.keyword, arg.text
        ))),
    }
}

fn parse_strict_host_key_checking(arg: &Arg) -> Result<String, LineError> {
    let normalized = match arg.text.to_ascii_lowercase().as_str() {
        "yes" | "true" => "yes",
        "no" | "false" | "off" => "no",
        "ask" => "ask",
        "accept-new" => "accept-new",
        _ => {
            return Err(arg.error(format!(
                "StrictHostKeyChecking must be yes, no, ask or accept-new, not \"{}\"",
                arg.text
            )));
        }
    };
    Ok(normalized.to_owned())
}

/// A time like ssh's: `none`, or numbers each with an optional unit
/// (`s`, `m`, `h`, `d`, `w`; seconds without one), summed: `1m30s`.
fn parse_time(arg: &Arg) -> Result<Option<Duration>, LineError> {
    if arg.text == "none" {
        return Ok(None);
    }
    seconds_of(&arg.text)
        .map(|seconds| Some(Duration::from_secs(seconds)))
        .ok_or_else(|| {
            arg.error(format!(
                "\"{}\" is not a time; write seconds (30) or a time with units (1m30s)",
                arg.text
            ))
        })
}

fn seconds_of(text: &str) -> Option<u64> {
    const LIMIT: u64 = i32::MAX as u64;
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let number: u64 = rest[..digits].parse().ok()?;
        let mut unit_chars = rest[digits..].chars();
        let multiplier = match unit_chars.next() {
            None => 1,
            Some(unit) => match unit.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 60 * 60,
                'd' => 24 * 60 * 60,
                'w' => 7 * 24 * 60 * 60,
                _ => return None,
            },
        };
        total = total.checked_add(number.checked_mul(multiplier)?)?;
        if total > LIMIT {
            return None;
        }
        rest = unit_chars.as_str();
    }
    Some(total)
}

fn parse_count(arg: &Arg) -> Result<u32, LineError> {
    match arg.text.parse::<u32>() {
        Ok(count) if count <= i32::MAX as u32 => Ok(count),
        _ => Err(arg.error(format!(
            "{} is not a count; write a whole number such as 3",
            arg.text
        ))),
    }
}

/// Known-hosts files: one or more paths, or `none` alone (an empty list).
fn parse_file_list(line: &Line<'_>) -> Result<Vec<String>, LineError> {
    let keyword = line.keyword;
    let Some(first) = line.args.first() else {
        return Err(no_value(keyword, line.raw_column));
    };
    for arg in &line.args {
        if arg.text.is_empty() {
            return Err(arg.error(format!(
                "{keyword} has an empty file name; remove the empty quotes"
            )));
        }
        if arg.text.eq_ignore_ascii_case("none") && line.args.len() > 1 {
            return Err(arg.error(format!(
                "{keyword} none must stand alone; remove either none or the files"
            )));
        }
    }
    if first.text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    Ok(line.args.iter().map(|arg| arg.text.clone()).collect())
}

/// ProxyJump's hops, or an empty list for `none`. Like ssh, the value is
/// taken as written up to a `#`, and each hop must be `[user@]host[:port]`
/// or `ssh://[user@]host[:port]`.
fn parse_proxy_jump(line: &Line<'_>) -> Result<Vec<String>, LineError> {
    let raw = raw_value(line);
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let value = raw.split('#').next().unwrap_or_default().trim_end();
    let hops: Vec<String> = value.split(',').map(str::to_owned).collect();
    match hops.iter().find(|hop| !is_valid_jump_hop(hop)) {
        Some(bad) => Err(LineError {
            column: line.raw_column,
            message: format!(
                "ProxyJump hop \"{bad}\" is not [user@]host[:port]; write hops like admin@bastion:2222, separated by commas"
            ),
        }),
        None => Ok(hops),
    }
}

fn is_valid_jump_hop(hop: &str) -> bool {
    let (address, port_delimiters): (&str, &[char]) = match hop.strip_prefix("ssh://") {
        Some(uri) => (uri.strip_suffix('/').unwrap_or(uri), &[':']),
        None => (hop, &[':', '/']),
    };
    let host_port = match address.rsplit_once('@') {
        Some(("", _)) => return false,
        Some((_, host_port)) => host_port,
        None => address,
    };
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, after)) => match after.strip_prefix(port_delimiters) {
                Some(port) => (host, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match host_port.split_once(port_delimiters) {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port_is_valid = match port {
        None | Some("") => true,
        Some(port) => port.parse::<u16>().is_ok_and(|port| port > 0),
    };
    !host.is_empty() && port_is_valid
}

// ---------------------------------------------------------------------------
// Resolving an alias

struct Resolution<'a> {
    alias: &'a str,
    context: &'a MatchContext,
    resolved: Resolved,
    seen_identity_files: HashSet<(FileKind, String)>,
    seen_certificate_files: HashSet<(FileKind, String)>,
    /// ssh's "proxy command is set": by ProxyCommand, or by a ProxyJump other
    /// than `none`; either then ignores the other.
    proxy_taken: bool,
    warned_keywords: HashSet<&'static str>,
}

impl<'a> Resolution<'a> {
    fn new(alias: &'a str, context: &'a MatchContext) -> Self {
        Resolution {
            alias,
            context,
            resolved: Resolved::default(),
            seen_identity_files: HashSet::new(),
            seen_certificate_files: HashSet::new(),
            proxy_taken: false,
            warned_keywords: HashSet::new(),
        }
    }

    /// Applies one file's entries. A file included from a block that does not
    /// apply is only parsed: nothing in it applies, whatever its own blocks say.
    fn apply_file(&mut self, entries: &[Entry], starts_active: bool) {
        let can_apply = starts_active;
        let mut active = starts_active;
        for entry in entries {
            match &entry.directive {
                Directive::Host(patterns) => {
                    active = can_apply && host_patterns_match(patterns, self.alias);
                }
                Directive::Match(criteria) => {
                    active = can_apply && self.match_applies(criteria, &entry.origin);
                }
                Directive::Include(files) => {
                    for file in files {
                        self.apply_file(file, active);
                    }
                }
                Directive::Set(setting) if active => self.set(setting, entry),
                Directive::Ignored(ignored) if active => self.warn_ignored(*ignored, &entry.origin),
                Directive::Set(_) | Directive::Ignored(_) => {}
            }
        }
    }

    /// Whether a `Match` line applies. A criterion fleetroll cannot evaluate
    /// makes the block not apply, with a warning when the other criteria hold.
    fn match_applies(&mut self, criteria: &[Criterion], origin: &Origin) -> bool {
        let mut holds = true;
        let mut unsupported = None;
        for criterion in criteria {
            match self.test(&criterion.test) {
                Some(result) => holds &= result != criterion.negated,
                None => {
                    unsupported.get_or_insert(criterion);
                }
            }
        }
        match unsupported {
            Some(criterion) if holds => {
                let Test::Unsupported(text) = &criterion.test else {
                    unreachable!("only unsupported criteria are left unevaluated");
                };
                self.resolved.warnings.push(format!(
                    "{origin}: `Match {text}` cannot be evaluated by fleetroll (it evaluates only all, host, originalhost, user and localuser, and never runs commands), so the block is ignored; if it should apply, move its settings into a Host block"
                ));
                false
            }
            _ => holds,
        }
    }

    /// `None` when fleetroll cannot evaluate the criterion.
    fn test(&self, test: &Test) -> Option<bool> {
        Some(match test {
            Test::All => true,
            Test::Host(patterns) => pattern_list_matches(&self.host_for_match(), patterns, true),
            Test::OriginalHost(patterns) => pattern_list_matches(self.alias, patterns, true),
            Test::User(patterns) => pattern_list_matches(self.remote_user(), patterns, false),
            Test::LocalUser(patterns) => {
                pattern_list_matches(&self.context.local_user, patterns, false)
            }
            Test::Unsupported(_) => return None,
        })
    }

    /// The host `Match host` sees: the HostName obtained so far, or the alias.
    fn host_for_match(&self) -> String {
        match &self.resolved.host_name {
            Some(host_name) => {
                expand_host_name(&host_name.value, self.alias).unwrap_or(host_name.value.clone())
            }
            None => self.alias.to_owned(),
        }
    }

    /// The user `Match user` sees: the caller's, the one obtained so far, or
    /// the local user.
    fn remote_user(&self) -> &str {
        self.context
            .user
            .as_deref()
            .or(self.resolved.user.as_ref().map(|user| user.value.as_str()))
            .unwrap_or(&self.context.local_user)
    }

    fn set(&mut self, setting: &Setting, entry: &Entry) {
        let origin = &entry.origin;
        let resolved = &mut self.resolved;
        match setting {
            Setting::HostName(value) => keep_first(&mut resolved.host_name, value, origin),
            Setting::User(value) => {
                if self.context.user.is_none() {
                    keep_first(&mut resolved.user, value, origin);
                }
            }
            Setting::Port(value) => keep_first(&mut resolved.port, value, origin),
            Setting::IdentityFile(path) => {
                if self.seen_identity_files.insert((entry.kind, path.clone())) {
                    resolved.identity_files.push(value_at(path, origin));
                }
            }
            Setting::IdentitiesOnly(value) => {
                keep_first(&mut resolved.identities_only, value, origin);
            }
            Setting::IdentityAgent(value) => {
                keep_first(&mut resolved.identity_agent, value, origin)
            }
            Setting::ProxyJump(hops) => self.set_proxy_jump(hops, origin),
            Setting::UserKnownHostsFiles(files) => {
                keep_first(&mut resolved.user_known_hosts_files, files, origin);
            }
            Setting::GlobalKnownHostsFiles(files) => {
                keep_first(&mut resolved.global_known_hosts_files, files, origin);
            }
            Setting::ConnectTimeout(Some(value)) => {
                keep_first(&mut resolved.connect_timeout, value, origin);
            }
            Setting::ServerAliveInterval(Some(value)) => {
                keep_first(&mut resolved.server_alive_interval, value, origin);
            }
            Setting::ConnectTimeout(None) | Setting::ServerAliveInterval(None) => {}
            Setting::ServerAliveCountMax(value) => {
                keep_first(&mut resolved.server_alive_count_max, value, origin);
            }
            Setting::CertificateFile(path) => {
                if self
                    .seen_certificate_files
                    .insert((entry.kind, path.clone()))
                {
                    resolved.certificate_files.push(value_at(path, origin));
                }
            }
            Setting::StrictHostKeyChecking(value) => {
                keep_first(&mut resolved.strict_host_key_checking, value, origin);
            }
            Setting::ProxyCommand(command) => {
                if !self.proxy_taken {
                    self.proxy_taken = true;
                    resolved.proxy_command = Some(value_at(command, origin));
                }
            }
            Setting::HostKeyAlias(value) => keep_first(&mut resolved.host_key_alias, value, origin),
        }
    }

    /// `ProxyJump none` only fixes the jump (a later ProxyCommand still
    /// applies); a real jump also takes the proxy command's place.
    fn set_proxy_jump(&mut self, hops: &[String], origin: &Origin) {
        if self.resolved.proxy_jump.is_some() || (!hops.is_empty() && self.proxy_taken) {
            return;
        }
        self.proxy_taken |= !hops.is_empty();
        self.resolved.proxy_jump = Some(value_at(&hops.to_vec(), origin));
    }

    fn warn_ignored(&mut self, ignored: IgnoredKeyword, origin: &Origin) {
        if self.warned_keywords.insert(ignored.name) {
            self.resolved.warnings.push(format!(
                "{origin}: {} is ignored by fleetroll ({}), though ssh would honour it",
                ignored.name, ignored.consequence
            ));
        }
    }

    fn finish(mut self) -> Resolved {
        if let Some(host_name) = self.resolved.host_name.as_mut() {
            match expand_host_name(&host_name.value, self.alias) {
                Ok(expanded) => host_name.value = lowercase_unless_address(expanded),
                Err(message) => self.resolved.warnings.push(format!(
                    "{}: HostName {message}; ssh refuses such a HostName",
                    host_name.origin
                )),
            }
        }
        self.resolved
    }
}

fn keep_first<T: Clone>(slot: &mut Option<Value<T>>, value: &T, origin: &Origin) {
    if slot.is_none() {
        *slot = Some(value_at(value, origin));
    }
}

fn value_at<T: Clone>(value: &T, origin: &Origin) -> Value<T> {
    Value {
        value: value.clone(),
        origin: origin.clone(),
    }
}

/// HostName accepts only `%h` (the alias) and `%%`.
fn expand_host_name(host_name: &str, alias: &str) -> Result<String, String> {
    percent_expand(host_name, "%% and %h", |token| {
        (token == 'h').then_some(alias)
    })
}

/// Like ssh, host names are lowercased, addresses are not.
fn lowercase_unless_address(host: String) -> String {
    let without_zone = host.split('%').next().unwrap_or_default();
    if without_zone.parse::<IpAddr>().is_ok() {
        host
    } else {
        host.to_ascii_lowercase()
    }
}

// ---------------------------------------------------------------------------
// Expansion and patterns

/// Replaces `%%` and the `%` tokens `value_of` knows; `known` lists them for
/// the error message.
fn percent_expand<'v>(
    text: &str,
    known: &str,
    value_of: impl Fn(char) -> Option<&'v str>,
) -> Result<String, String> {
    let mut expanded = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            expanded.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => expanded.push('%'),
            Some(token) => match value_of(token) {
                Some(value) => expanded.push_str(value),
                None => {
                    return Err(format!(
                        "\"{text}\" has the unknown token %{token}; the known tokens are {known}"
                    ));
                }
            },
            None => {
                return Err(format!(
                    "\"{text}\" ends with a lone %; write %% for a percent sign"
                ));
            }
        }
    }
    Ok(expanded)
}

/// Splits a leading `~` or `~/` off `text`: the home directory, and the rest.
fn split_tilde<'t>(text: &'t str, home: &Path) -> Result<(String, &'t str), String> {
    let Some(after) = text.strip_prefix('~') else {
        return Ok((String::new(), text));
    };
    let home = home.to_string_lossy();
    if after.is_empty() {
        Ok((home.into_owned(), after))
    } else if after.starts_with('/') {
        Ok((home.trim_end_matches('/').to_owned(), after))
    } else {
        Err(format!(
            "\"{text}\" names another user's home directory, which fleetroll does not look up; write the path in full"
        ))
    }
}

/// A `Host` line applies when a positive pattern matches and no negated one
/// does; the alias is matched as typed, case-sensitively, as ssh does.
fn host_patterns_match(patterns: &[HostPattern], alias: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if wildcard_match(alias, &pattern.pattern) {
            if pattern.negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// ssh's `match_pattern_list`: comma-separated patterns, `!` negates one; a
/// negated match wins. `lowercase` compares case-insensitively (host names).
fn pattern_list_matches(text: &str, patterns: &str, lowercase: bool) -> bool {
    let fold = |s: &str| {
        if lowercase {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    let text = fold(text);
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, pattern),
        };
        if wildcard_match(&text, &fold(pattern)) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `*` matches any run of characters, `?` any one; everything else itself.
fn wildcard_match(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    wildcard_match_chars(&text, &pattern)
}

/// `*` (any run) and `?` (any one character), as OpenSSH's `match_pattern`,
/// by the greedy two-index walk: on a mismatch only the latest `*` takes
/// one more character, so `Host *a*a*a…` costs text × pattern steps at
/// worst instead of the exponential time of trying every split.
fn wildcard_match_chars(text: &[char], pattern: &[char]) -> bool {
    let (mut t, mut p) = (0, 0);
    // After the latest `*`: where the pattern resumes, and the text
    // position that `*` has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                star = Some((p, t));
            }
            Some(&expected) if expected == '?' || expected == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((resume, swallowed)) => {
                    p = resume;
                    t = swallowed + 1;
                    star = Some((resume, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
#[path = "ssh_config_tests.rs"]
mod tests;
