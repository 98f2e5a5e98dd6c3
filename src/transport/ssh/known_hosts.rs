//! known_hosts read the way OpenSSH reads it: parsing and the host key verdict.
//!
//! Pure: text in, entries out; entries plus a presented key in, a verdict
//! out. Reading and appending the file is the client's job.
//!
//! We do not use russh's own known_hosts helpers: they treat any other key of
//! the same type as "changed" (so a rotated key appended to the file breaks
//! the host), and ignore `@revoked`. OpenSSH's rule, followed here, is that a
//! key is trusted when it equals ANY key recorded for the host name.

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::Certificate;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// One usable line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number in the file.
    pub line: usize,
    /// `@revoked`: this key must never be accepted for the matching hosts.
    pub revoked: bool,
    /// `@cert-authority`: host certificates signed by this key are trusted
    /// for the matching hosts; it says nothing of a plain host key.
    pub cert_authority: bool,
    hosts: Hosts,
    /// The key type as written (`ssh-ed25519`, `ecdsa-sha2-nistp256`, …).
    key_type: String,
    /// The key in SSH wire format (the decoded base64 field). `None` when the
    /// field is not valid base64: the line still records that the host is
    /// known, so a broken line makes us refuse rather than add a new key.
    key_blob: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns with `*`/`?` wildcards and `!` negation.
    Patterns(Vec<Pattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negated: bool,
    /// Lowercased, as OpenSSH compares host names case-insensitively.
    glob: String,
}

/// What known_hosts says about a presented host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A recorded key for the host equals the presented one.
    Trusted,
    /// The presented key is listed under `@revoked` for this host.
    Revoked { line: usize },
    /// The host has recorded keys, none equal to the presented one; `line` is
    /// the first entry recorded for the host.
    Changed { line: usize },
    /// Nothing is recorded for the host name.
    Unknown,
}

/// The name OpenSSH looks a host up by: `host`, or `[host]:port` off port 22.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The line to append for a newly accepted key, in OpenSSH's format, without
/// a trailing newline. `None` if the key cannot be encoded.
pub fn format_entry(host: &str, port: u16, key: &PublicKey) -> Option<String> {
    let blob = key.to_bytes().ok()?;
    Some(format!(
        "{} {} {}",
        lookup_name(host, port),
        key.algorithm().as_str(),
        BASE64.encode(&blob)
    ))
}

/// `SHA256:…`, as `ssh` prints fingerprints.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parses a known_hosts file. Lines OpenSSH would skip (comments, blanks,
/// unknown markers, lines missing fields, undecodable hashed names) are
/// left out; line numbers stay those of the file.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| parse_line(index + 1, line))
        .collect()
}

fn parse_line(line: usize, text: &str) -> Option<Entry> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let mut fields = text.split_whitespace();
    let mut first = fields.next()?;
    let (mut revoked, mut cert_authority) = (false, false);
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            "cert-authority" => cert_authority = true,
            // Any other marker is invalid in OpenSSH.
            _ => return None,
        }
        first = fields.next()?;
    }
    let hosts = parse_hosts(first)?;
    let key_type = fields.next()?.to_owned();
    let key_blob = BASE64.decode(fields.next()?.as_bytes()).ok();
    Some(Entry {
        line,
        revoked,
        cert_authority,
        hosts,
        key_type,
        key_blob,
    })
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    if let Some(hashed) = field.strip_prefix("|1|") {
        let (salt, hash) = hashed.split_once('|')?;
        return Some(Hosts::Hashed {
            salt: BASE64.decode(salt.as_bytes()).ok()?,
            hash: BASE64.decode(hash.as_bytes()).ok()?,
        });
    }
    let patterns = field
        .split(',')
        .filter(|pattern| !pattern.is_empty())
        .map(|pattern| match pattern.strip_prefix('!') {
            Some(rest) => Pattern {
                negated: true,
                glob: rest.to_ascii_lowercase(),
            },
            None => Pattern {
                negated: false,
                glob: pattern.to_ascii_lowercase(),
            },
        })
        .collect();
    Some(Hosts::Patterns(patterns))
}

impl Entry {
    fn matches_host(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => {
                let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else {
                    return false;
                };
                mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                // As OpenSSH's match_hostname: a matching negated pattern
                // excludes the host whatever else matches.
                let mut positive = false;
                for pattern in patterns {
                    if glob_match(&pattern.glob, name) {
                        if pattern.negated {
                            return false;
                        }
                        positive = true;
                    }
                }
                positive
            }
        }
    }

    fn has_key(&self, blob: &[u8]) -> bool {
        self.key_blob.as_deref() == Some(blob)
    }
}

/// Checks `key`, presented by `host:port`, against the entries.
pub fn verify(entries: &[Entry], host: &str, port: u16, key: &PublicKey) -> Verdict {
    let name = lookup_name(host, port);
    // An unencodable key matches nothing, so it is refused or reported new.
    let blob = key.to_bytes().unwrap_or_default();
    let for_host: Vec<&Entry> = entries
        .iter()
        .filter(|entry| entry.matches_host(&name))
        .collect();
    // Revocation wins over any other line listing the same key.
    if let Some(entry) = for_host
        .iter()
        .find(|entry| entry.revoked && entry.has_key(&blob))
    {
        return Verdict::Revoked { line: entry.line };
    }
    let mut recorded = for_host
        .iter()
        .filter(|entry| !entry.revoked && !entry.cert_authority)
        .peekable();
    let Some(first) = recorded.peek().map(|entry| entry.line) else {
        return Verdict::Unknown;
    };
    if recorded.any(|entry| entry.has_key(&blob)) {
        Verdict::Trusted
    } else {
        Verdict::Changed { line: first }
    }
}

/// The key types recorded for `host:port` (plain keys, not revoked), in
/// file order: the client offers these host key algorithms first, as
/// OpenSSH does, so that a host recorded with an ECDSA or RSA key presents
/// that key rather than another one that would read as "changed".
pub fn recorded_key_types(entries: &[Entry], host: &str, port: u16) -> Vec<String> {
    let name = lookup_name(host, port);
    let mut types: Vec<String> = Vec::new();
    for entry in entries {
        if !entry.revoked
            && !entry.cert_authority
            && entry.matches_host(&name)
            && !types.contains(&entry.key_type)
        {
            types.push(entry.key_type.clone());
        }
    }
    types
}

/// Whether a `@cert-authority` line covers `host:port`: then the client
/// asks for the host's certificate.
pub fn has_authority(entries: &[Entry], host: &str, port: u16) -> bool {
    let name = lookup_name(host, port);
    entries
        .iter()
        .any(|entry| entry.cert_authority && entry.matches_host(&name))
}

/// What known_hosts says about a presented host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVerdict {
    /// Signed by a `@cert-authority` of the host, valid now, for this host.
    Trusted,
    /// The certificate's key or its CA is `@revoked` for the host.
    Revoked { line: usize },
    /// Signed by a CA of the host, but not valid: why, and the CA's line.
    Invalid { reason: String, line: usize },
    /// No `@cert-authority` of the host signed it: the certificate's key is
    /// then checked as a plain key.
    NoAuthority,
}

/// Checks a host certificate presented by `host:port` at `now` (Unix
/// seconds) as OpenSSH does: a CA listed for the host signed it, it is a
/// host certificate, within its validity window, naming the host among its
/// principals (wildcards allowed), with no critical option.
pub fn verify_certificate(
    entries: &[Entry],
    host: &str,
    port: u16,
    certificate: &Certificate,
    now: u64,
) -> CertVerdict {
    let name = lookup_name(host, port);
    let for_host: Vec<&Entry> = entries
        .iter()
        .filter(|entry| entry.matches_host(&name))
        .collect();
    let ca_blob = PublicKey::from(certificate.signature_key().clone())
        .to_bytes()
        .unwrap_or_default();
    let key_blob = PublicKey::from(certificate.public_key().clone())
        .to_bytes()
        .unwrap_or_default();
    if let Some(entry) = for_host
        .iter()
        .find(|entry| entry.revoked && (entry.has_key(&ca_blob) || entry.has_key(&key_blob)))
    {
        return CertVerdict::Revoked { line: entry.line };
    }
    let Some(authority) = for_host
        .iter()
        .find(|entry| entry.cert_authority && entry.has_key(&ca_blob))
    else {
        return CertVerdict::NoAuthority;
    };
    let invalid = |reason: String| CertVerdict::Invalid {
        reason,
        line: authority.line,
    };
    if certificate.cert_type() != CertType::Host {
        return invalid("it is a user certificate, not a host certificate".to_owned());
    }
    if certificate.verify_signature().is_err() {
        return invalid("its signature does not verify".to_owned());
    }
    if now < certificate.valid_after() {
        return invalid(format!(
            "it is not valid before {}",
            unix_time(certificate.valid_after())
        ));
    }
    if now >= certificate.valid_before() {
        return invalid(format!(
            "it expired at {}",
            unix_time(certificate.valid_before())
        ));
    }
    let host_name = host.to_ascii_lowercase();
    if !certificate
        .valid_principals()
        .iter()
        .any(|principal| glob_match(&principal.to_ascii_lowercase(), &host_name))
    {
        return invalid(format!(
            "it is not issued for {host_name} (principals: {})",
            if certificate.valid_principals().is_empty() {
                "none".to_owned()
            } else {
                certificate.valid_principals().join(", ")
            }
        ));
    }
    if let Some((option, _)) = certificate.critical_options().iter().next() {
        return invalid(format!(
            "it has the critical option {option}, unknown to fleetroll"
        ));
    }
    CertVerdict::Trusted
}

/// Now, in Unix seconds, as certificates count time.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A certificate's time (Unix seconds) for a message; `forever` past what
/// a timestamp holds (`ssh-keygen` writes u64::MAX for "no end").
pub fn unix_time(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| "forever".to_owned(), |t| t.to_string())
}

/// OpenSSH's `match_pattern`: `*` matches any run of characters, `?` exactly
/// one, everything else itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and the text position it currently absorbs up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, absorbed)) => {
                    p = star + 1;
                    t = absorbed + 1;
                    backtrack = Some((star, absorbed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};

    use super::*;

    fn key(seed: u8) -> PublicKey {
        PublicKey::new(KeyData::Ed25519(Ed25519PublicKey([seed; 32])), "")
    }

    /// `keytype base64` for a test key.
    fn key_text(seed: u8) -> String {
        let key = key(seed);
        format!(
            "{} {}",
            key.algorithm().as_str(),
            BASE64.encode(&key.to_bytes().unwrap())
        )
    }

    /// A hashed host field made the way `ssh-keygen -H` makes it.
    fn hashed(name: &str, salt: &[u8]) -> String {
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).unwrap();
        let hash = mac.chain_update(name.as_bytes()).finalize().into_bytes();
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(&hash))
    }

    /// Regression: `@cert-authority` lines were skipped; now parsed, they
    /// must still say nothing of a plain key (unknown, not "changed").
    #[test]
    fn a_cert_authority_line_neither_trusts_nor_contradicts_a_plain_key() {
        let entries = parse(&format!("@cert-authority *.example.com {}\n", key_text(1)));
        assert_eq!(entries.len(), 1);
        assert!(entries[0].cert_authority);
        assert_eq!(
            verify(&entries, "web.example.com", 22, &key(1)),
            Verdict::Unknown
        );
        assert_eq!(
            verify(&entries, "web.example.com", 22, &key(2)),
            Verdict::Unknown
        );
        assert!(has_authority(&entries, "web.example.com", 22));
        assert!(!has_authority(&entries, "db.example.org", 22));
        assert!(recorded_key_types(&entries, "web.example.com", 22).is_empty());
    }

    #[test]
    fn recorded_key_types_are_the_hosts_own_in_file_order() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=";
        let text = format!(
            "web1 {ecdsa}\nweb1,web2 {}\n@revoked web1 ssh-rsa AAAAB3NzaC1yc2E=\nweb3 ssh-rsa AAAAB3NzaC1yc2E=\n",
            key_text(1)
        );
        let entries = parse(&text);
        assert_eq!(
            recorded_key_types(&entries, "web1", 22),
            ["ecdsa-sha2-nistp256", "ssh-ed25519"]
        );
        assert_eq!(recorded_key_types(&entries, "web2", 22), ["ssh-ed25519"]);
    }

    #[test]
    fn verdicts_follow_openssh() {
        let k1 = key_text(1);
        let k2 = key_text(2);
        let k3 = key_text(3);
        let hashed_web = hashed("web.example.com", &[7; 20]);
        let hashed_port = hashed("[10.0.0.9]:2222", &[9; 20]);
        let cases: Vec<(&str, String, &str, u16, u8, Verdict)> = vec![
            (
                "plain name",
                format!("web1 {k1}"),
                "web1",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "names are case-insensitive",
                format!("Web1 {k1}"),
                "WEB1",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "second name in a list",
                format!("web0,web1,10.0.0.1 {k1} comment here"),
                "web1",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "unknown host",
                format!("web1 {k1}"),
                "web2",
                22,
                1,
                Verdict::Unknown,
            ),
            ("empty file", String::new(), "web1", 22, 1, Verdict::Unknown),
            (
                "changed key reports the first line for the host",
                format!("# comment\n\nother {k1}\nweb1 {k2}\nweb1 {k3}\n"),
                "web1",
                22,
                1,
                Verdict::Changed { line: 4 },
            ),
            (
                "rotated key appended: any recorded key matches",
                format!("web1 {k1}\nweb1 {k2}\n"),
                "web1",
                22,
                2,
                Verdict::Trusted,
            ),
            (
                "a key of another type for the host does not stop a match",
                format!("web1 {k2}\nweb1 {k1}\n"),
                "web1",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "non-default port needs the bracketed form",
                format!("[10.0.0.9]:2222 {k1}"),
                "10.0.0.9",
                2222,
                1,
                Verdict::Trusted,
            ),
            (
                "a bare name does not cover another port",
                format!("10.0.0.9 {k1}"),
                "10.0.0.9",
                2222,
                1,
                Verdict::Unknown,
            ),
            (
                "the bracketed form does not cover port 22",
                format!("[10.0.0.9]:2222 {k1}"),
                "10.0.0.9",
                22,
                1,
                Verdict::Unknown,
            ),
            (
                "hashed entry",
                format!("{hashed_web} {k1}"),
                "web.example.com",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "hashed entry with a port",
                format!("{hashed_port} {k1}"),
                "10.0.0.9",
                2222,
                1,
                Verdict::Trusted,
            ),
            (
                "hashed entry for another host",
                format!("{hashed_web} {k1}"),
                "db.example.com",
                22,
                1,
                Verdict::Unknown,
            ),
            (
                "hashed entry with another key is a change",
                format!("# hashed\n{hashed_web} {k2}"),
                "web.example.com",
                22,
                1,
                Verdict::Changed { line: 2 },
            ),
            (
                "wildcard",
                format!("*.example.com {k1}"),
                "web.example.com",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "question mark matches one character",
                format!("web? {k1}"),
                "web7",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "question mark does not match two",
                format!("web? {k1}"),
                "web17",
                22,
                1,
                Verdict::Unknown,
            ),
            (
                "wildcard on a bracketed port",
                format!("[10.0.0.*]:2222 {k1}"),
                "10.0.0.42",
                2222,
                1,
                Verdict::Trusted,
            ),
            (
                "negation excludes a host the wildcard covers",
                format!("*.example.com,!db.example.com {k1}"),
                "db.example.com",
                22,
                2,
                Verdict::Unknown,
            ),
            (
                "negation leaves other hosts matched",
                format!("*.example.com,!db.example.com {k1}"),
                "web.example.com",
                22,
                2,
                Verdict::Changed { line: 1 },
            ),
            (
                "revoked key refused even when also listed",
                format!("web1 {k1}\n@revoked * {k1}\n"),
                "web1",
                22,
                1,
                Verdict::Revoked { line: 2 },
            ),
            (
                "revoked line for another key does not matter",
                format!("web1 {k1}\n@revoked * {k2}\n"),
                "web1",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "a revoked line alone does not make the host known",
                format!("@revoked web1 {k2}\n"),
                "web1",
                22,
                1,
                Verdict::Unknown,
            ),
            (
                "cert-authority lines are ignored",
                format!("@cert-authority *.example.com {k2}\n"),
                "web.example.com",
                22,
                1,
                Verdict::Unknown,
            ),
            (
                "unknown markers are skipped",
                format!("@bogus web1 {k2}\nweb1 {k1}\n"),
                "web1",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "indented comments, tabs and CRLF",
                format!("  # note\r\n\tweb1\t{k1}\r\n"),
                "web1",
                22,
                1,
                Verdict::Trusted,
            ),
            (
                "a corrupt key still marks the host as known",
                "web1 ssh-ed25519 not*base64\n".to_owned(),
                "web1",
                22,
                1,
                Verdict::Changed { line: 1 },
            ),
            (
                "lines missing the key are skipped",
                "web1 ssh-ed25519\n".to_owned(),
                "web1",
                22,
                1,
                Verdict::Unknown,
            ),
        ];
        for (name, text, host, port, seed, expected) in cases {
            let entries = parse(&text);
            assert_eq!(verify(&entries, host, port, &key(seed)), expected, "{name}");
        }
    }

    #[test]
    fn appended_entry_is_recognised() {
        let line = format_entry("10.0.0.9", 2200, &key(5)).unwrap();
        assert!(
            line.starts_with("[10.0.0.9]:2200 ssh-ed25519 AAAA"),
            "{line}"
        );
        let entries = parse(&line);
        assert_eq!(
            verify(&entries, "10.0.0.9", 2200, &key(5)),
            Verdict::Trusted
        );
        assert_eq!(
            verify(&entries, "10.0.0.9", 2200, &key(6)),
            Verdict::Changed { line: 1 }
        );
        let line = format_entry("web1", 22, &key(5)).unwrap();
        assert!(line.starts_with("web1 ssh-ed25519 "), "{line}");
    }

    #[test]
    fn glob_matches_like_match_pattern() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a*b", "ab", true),
            ("a*b", "axxb", true),
            ("a*b", "axxbx", false),
            ("*.example.com", "example.com", false),
            ("a*b*c", "abbbc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**x", "yx", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}
