//! The parsed form of an ssh_config file: directives, patterns, keywords.

use super::*;

/// One meaningful line of a file.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) origin: Origin,
    pub(super) kind: FileKind,
    pub(super) directive: Directive,
}

#[derive(Debug, Clone)]
pub(super) enum Directive {
    Host(Vec<HostPattern>),
    Match(Vec<Criterion>),
    /// The entries of each included file, in glob order.
    Include(Vec<Vec<Entry>>),
    Set(Setting),
    Ignored(IgnoredKeyword),
}

#[derive(Debug, Clone)]
pub(super) struct HostPattern {
    pub(super) pattern: String,
    pub(super) negated: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Criterion {
    pub(super) negated: bool,
    pub(super) test: Test,
}

#[derive(Debug, Clone)]
pub(super) enum Test {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// A criterion fleetroll does not evaluate, as written.
    Unsupported(String),
}

#[derive(Debug, Clone)]
pub(super) enum Setting {
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
pub(super) enum Keyword {
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
    pub(super) fn from_lowercase(keyword: &str) -> Option<Keyword> {
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
pub(super) struct IgnoredKeyword {
    pub(super) name: &'static str,
    pub(super) consequence: &'static str,
}

/// The ignored keywords, grouped by what fleetroll does instead.
pub(super) const IGNORED_KEYWORDS: &[(&str, &[&str])] = &[
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

pub(super) fn ignored_keyword(keyword: &str) -> Option<IgnoredKeyword> {
    IGNORED_KEYWORDS.iter().find_map(|(consequence, names)| {
        names
            .iter()
            .find(|name| name.eq_ignore_ascii_case(keyword))
            .map(|name| IgnoredKeyword { name, consequence })
    })
}
