//! Client identities: loading key files, asking ssh-agent, and public-key
//! authentication with them.
//!
//! fleetroll runs unattended, so it never prompts for a passphrase: an
//! encrypted key must be in ssh-agent. No error or message built here ever
//! contains key material; only paths, key types and fingerprints.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{self, AuthResult};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::Certificate;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::net::UnixStream;

/// Where identities come from, fixed when the connector is built so that
/// nothing below reads the environment.
#[derive(Debug, Clone)]
pub struct KeySources {
    /// The user's home directory: `~/.ssh/id_*` live under it.
    pub home: PathBuf,
    /// ssh-agent's socket (`$SSH_AUTH_SOCK`), if there is one.
    pub agent_socket: Option<PathBuf>,
}

/// Default identities tried, in OpenSSH's order, when no identity file is set.
const DEFAULT_IDENTITIES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// A key file as read from disk.
enum KeyFile {
    Ready(Box<PrivateKey>),
    /// Passphrase-protected: usable only through the agent.
    Encrypted,
    Missing,
}

/// Why authentication did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Every identity was refused or none could be used; says which and why.
    Rejected(String),
    /// The connection broke while authenticating.
    ConnectionLost(String),
}

/// Reads a private key file. The error message names the file, never its
/// content.
async fn read_key_file(path: &Path) -> Result<KeyFile, AuthError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(KeyFile::Missing),
        Err(err) => {
            return Err(AuthError::Rejected(format!(
                "cannot read {}: {err}",
                path.display()
            )));
        }
    };
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => Ok(KeyFile::Ready(Box::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => Ok(KeyFile::Encrypted),
        // russh says "encrypted" only for OpenSSH and AES PEM keys; without
        // a passphrase, encrypted PKCS#8 and other PEM ciphers fail to parse
        // instead. Their headers are plain text: recognise them.
        Err(_)
            if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
                || text.contains("Proc-Type: 4,ENCRYPTED") =>
        {
            Ok(KeyFile::Encrypted)
        }
        // Parse errors describe the format problem, not the bytes.
        Err(err) => Err(AuthError::Rejected(format!(
            "cannot load the private key {}: {err}",
            path.display()
        ))),
    }
}

/// What one endpoint authenticates with: identity files (tried in order),
/// whether the agent may offer others (`only` = OpenSSH's IdentitiesOnly),
/// and the agent's socket.
#[derive(Debug, Clone)]
pub struct Identities {
    pub files: Vec<PathBuf>,
    /// OpenSSH user certificates, each offered with the identity file whose
    /// key it certifies; `FILE-cert.pub` next to an identity file is
    /// offered too, as OpenSSH does.
    pub certificates: Vec<PathBuf>,
    pub only: bool,
    pub agent: Option<PathBuf>,
}

/// Authenticates `user` with public keys: the identity files in order (an
/// encrypted one through the agent), then, unless `only`, the agent's
/// identities; with no identity file, the agent's identities and then the
/// default key files.
pub async fn authenticate<H: client::Handler>(
    handle: &mut client::Handle<H>,
    user: &str,
    identities: &Identities,
    sources: &KeySources,
) -> Result<(), AuthError> {
    let mut attempt = Attempt::new(handle, user);
    if identities.files.is_empty() {
        return with_defaults(&mut attempt, identities.agent.as_deref(), sources).await;
    }
    let mut refusals = Vec::new();
    for path in &identities.files {
        match with_file(&mut attempt, path, identities).await? {
            None => return Ok(()),
            Some(refusal) => refusals.push(refusal),
        }
    }
    if !identities.only
        && let Some(socket) = &identities.agent
        && matches!(attempt.agent, AgentOutcome::NotAsked)
    {
        let certificates = identities.certificates_on_disk().await;
        if attempt.with_agent(socket, &certificates).await? {
            return Ok(());
        }
        refusals.push(attempt.agent_note().trim_start_matches("; ").to_owned());
    }
    Err(AuthError::Rejected(refusals.join("; ")))
}

/// One identity file; `Ok(None)` when the server accepted it, otherwise
/// why not.
async fn with_file<H: client::Handler>(
    attempt: &mut Attempt<'_, H>,
    path: &Path,
    identities: &Identities,
) -> Result<Option<String>, AuthError> {
    let agent = identities.agent.as_deref();
    Ok(match read_key_file(path).await? {
        KeyFile::Ready(key) => {
            let key: Arc<PrivateKey> = Arc::from(key);
            let mut refusals = Vec::new();
            let certificates = read_certificates(identities.certificate_paths_for(path)).await;
            for (cert_path, certificate) in certificates
                .into_iter()
                .filter(|(_, certificate)| certifies(certificate, key.public_key()))
            {
                let named = cert_path.display();
                match usable_now(&certificate) {
                    Err(reason) => refusals.push(format!("the certificate {named} {reason}")),
                    Ok(()) => {
                        if attempt
                            .with_certificate(Arc::clone(&key), certificate)
                            .await?
                        {
                            return Ok(None);
                        }
                        refusals.push(format!("the server refused the certificate {named}"));
                    }
                }
            }
            if attempt.with_key(key).await? {
                return Ok(None);
            }
            refusals.push(format!("the server refused the key {}", path.display()));
            Some(refusals.join("; "))
        }
        KeyFile::Missing => Some(format!("identity file {} does not exist", path.display())),
        KeyFile::Encrypted => {
            let Some(socket) = agent else {
                return Ok(Some(format!(
                    "identity file {} is encrypted and fleetroll does not prompt for \
                     passphrases: load it into ssh-agent (ssh-add {}) and set SSH_AUTH_SOCK",
                    path.display(),
                    path.display()
                )));
            };
            // The key itself is in the agent; its certificate may be on
            // disk only (one issued after `ssh-add`, as Vault issues them).
            if matches!(attempt.agent, AgentOutcome::NotAsked) {
                let certificates = identities.certificates_on_disk().await;
                if attempt.with_agent(socket, &certificates).await? {
                    return Ok(None);
                }
            }
            Some(format!(
                "identity file {} is encrypted and no ssh-agent identity was accepted: \
                 load it into ssh-agent (ssh-add {}){}",
                path.display(),
                path.display(),
                attempt.agent_note()
            ))
        }
    })
}

impl Identities {
    /// Where a certificate for the key in `path` may be: the configured
    /// certificates, then `PATH-cert.pub`, as OpenSSH looks.
    fn certificate_paths_for(&self, path: &Path) -> Vec<PathBuf> {
        let mut beside = path.as_os_str().to_owned();
        beside.push("-cert.pub");
        let mut paths = self.certificates.clone();
        paths.push(PathBuf::from(beside));
        paths
    }

    /// Every certificate on disk that may go with an identity file's key.
    async fn certificates_on_disk(&self) -> Vec<(PathBuf, Certificate)> {
        let paths = self
            .files
            .iter()
            .flat_map(|path| self.certificate_paths_for(path))
            .collect();
        read_certificates(paths).await
    }
}

/// The user certificates among `paths`, each read once. One that cannot be
/// read or parsed is not offered (a missing `-cert.pub` is the usual case).
async fn read_certificates(paths: Vec<PathBuf>) -> Vec<(PathBuf, Certificate)> {
    let mut found: Vec<(PathBuf, Certificate)> = Vec::new();
    for cert_path in paths {
        if found.iter().any(|(seen, _)| seen == &cert_path) {
            continue;
        }
        let Ok(text) = tokio::fs::read_to_string(&cert_path).await else {
            continue;
        };
        if let Ok(certificate) = Certificate::from_openssh(text.trim()) {
            found.push((cert_path, certificate));
        }
    }
    found
}

fn certifies(certificate: &Certificate, key: &PublicKey) -> bool {
    certificate.public_key() == key.key_data()
}

/// Whether a user certificate may be offered now; why not, otherwise
/// (an expired certificate is the usual reason a login stops working).
fn usable_now(certificate: &Certificate) -> Result<(), String> {
    if certificate.cert_type() != CertType::User {
        return Err("is a host certificate, not a user certificate".to_owned());
    }
    let now = super::known_hosts::unix_now();
    if now < certificate.valid_after() {
        return Err(format!(
            "is not valid before {}",
            super::known_hosts::unix_time(certificate.valid_after())
        ));
    }
    if now >= certificate.valid_before() {
        return Err(format!(
            "expired at {}: have it signed again",
            super::known_hosts::unix_time(certificate.valid_before())
        ));
    }
    Ok(())
}

/// No identity file: the agent's identities, then `~/.ssh/id_*`.
async fn with_defaults<H: client::Handler>(
    attempt: &mut Attempt<'_, H>,
    agent: Option<&Path>,
    sources: &KeySources,
) -> Result<(), AuthError> {
    if let Some(socket) = agent
        && attempt.with_agent(socket, &[]).await?
    {
        return Ok(());
    }
    let mut encrypted = Vec::new();
    let mut tried = Vec::new();
    for name in DEFAULT_IDENTITIES {
        let path = sources.home.join(".ssh").join(name);
        match read_key_file(&path).await {
            Ok(KeyFile::Ready(key)) => {
                if attempt.with_key(key).await? {
                    return Ok(());
                }
                tried.push(path.display().to_string());
            }
            Ok(KeyFile::Encrypted) => encrypted.push(path.display().to_string()),
            Ok(KeyFile::Missing) => {}
            // A broken default key is noted, not fatal: the next may work.
            Err(AuthError::Rejected(reason) | AuthError::ConnectionLost(reason)) => {
                tried.push(reason);
            }
        }
    }
    let mut reason = String::from("no identity was accepted");
    if agent.is_none() {
        reason.push_str(" (no ssh-agent: SSH_AUTH_SOCK is not set)");
    }
    reason.push_str(&attempt.agent_note());
    if !tried.is_empty() {
        reason.push_str(&format!("; tried {}", tried.join(", ")));
    }
    if !encrypted.is_empty() {
        reason.push_str(&format!(
            "; skipped encrypted keys {} (load them into ssh-agent)",
            encrypted.join(", ")
        ));
    }
    if tried.is_empty() && encrypted.is_empty() {
        reason.push_str(&format!(
            "; no key in {}/.ssh and no identity_file set",
            sources.home.display()
        ));
    }
    Err(AuthError::Rejected(reason))
}

/// One authentication conversation; remembers what the agent said so the
/// final error can explain itself.
struct Attempt<'a, H: client::Handler> {
    handle: &'a mut client::Handle<H>,
    user: &'a str,
    /// Asked once: the server's preferred RSA signature hash.
    rsa_hash: Option<Option<HashAlg>>,
    agent: AgentOutcome,
    /// Certificates not offered or refused while asking the agent, and why.
    agent_refusals: Vec<String>,
}

enum AgentOutcome {
    NotAsked,
    Unreachable(String),
    Offered(usize),
}

impl<'a, H: client::Handler> Attempt<'a, H> {
    fn new(handle: &'a mut client::Handle<H>, user: &'a str) -> Self {
        Self {
            handle,
            user,
            rsa_hash: None,
            agent: AgentOutcome::NotAsked,
            agent_refusals: Vec::new(),
        }
    }

    /// For RSA keys, `rsa-sha2-512`/`-256` when the server advertises them:
    /// modern OpenSSH refuses SHA-1 `ssh-rsa` signatures.
    async fn hash_for(&mut self, key: &PublicKey) -> Option<HashAlg> {
        if !matches!(key.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
            return None;
        }
        if let Some(hash) = self.rsa_hash {
            return hash;
        }
        let hash = self
            .handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        self.rsa_hash = Some(hash);
        hash
    }

    /// `Ok(true)` when the server accepted the key.
    async fn with_key(&mut self, key: impl Into<Arc<PrivateKey>>) -> Result<bool, AuthError> {
        let key: Arc<PrivateKey> = key.into();
        let hash = self.hash_for(key.public_key()).await;
        let key = PrivateKeyWithHashAlg::new(key, hash);
        let result = self
            .handle
            .authenticate_publickey(self.user, key)
            .await
            .map_err(|err| AuthError::ConnectionLost(format!("authentication broke off: {err}")))?;
        Ok(matches!(result, AuthResult::Success))
    }

    /// `Ok(true)` when the server accepted the certificate.
    async fn with_certificate(
        &mut self,
        key: Arc<PrivateKey>,
        certificate: Certificate,
    ) -> Result<bool, AuthError> {
        let result = self
            .handle
            .authenticate_openssh_cert(self.user, key, certificate)
            .await
            .map_err(|err| AuthError::ConnectionLost(format!("authentication broke off: {err}")))?;
        Ok(matches!(result, AuthResult::Success))
    }

    /// Offers every identity the agent holds, in its order: a key (after
    /// any certificate in `on_disk` for it, signed by the agent with the
    /// key) or a certificate the agent holds itself; `Ok(true)` on the
    /// first one accepted. An unreachable agent is noted, not fatal.
    async fn with_agent(
        &mut self,
        socket: &Path,
        on_disk: &[(PathBuf, Certificate)],
    ) -> Result<bool, AuthError> {
        let mut agent = match AgentClient::connect_uds(socket).await {
            Ok(agent) => agent,
            Err(err) => {
                self.agent = AgentOutcome::Unreachable(format!(
                    "cannot reach ssh-agent at {}: {err}",
                    socket.display()
                ));
                return Ok(false);
            }
        };
        let identities = match agent.request_identities().await {
            Ok(identities) => identities,
            Err(err) => {
                self.agent = AgentOutcome::Unreachable(format!(
                    "ssh-agent at {} did not list its keys: {err}",
                    socket.display()
                ));
                return Ok(false);
            }
        };
        self.agent = AgentOutcome::Offered(identities.len());
        for identity in identities {
            let accepted = match identity {
                AgentIdentity::PublicKey { key, .. } => {
                    for (path, certificate) in on_disk
                        .iter()
                        .filter(|(_, certificate)| certifies(certificate, &key))
                    {
                        let named = format!("the certificate {}", path.display());
                        let mut signer = PlainKeySigner(&mut agent);
                        if self
                            .offer_agent_certificate(&mut signer, certificate, &named)
                            .await?
                        {
                            return Ok(true);
                        }
                    }
                    self.offer_agent_key(&mut agent, key).await?
                }
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => {
                    let named = format!(
                        "ssh-agent's certificate {:?} ({})",
                        certificate.key_id(),
                        if comment.is_empty() {
                            "no comment"
                        } else {
                            &comment
                        }
                    );
                    self.offer_agent_certificate(&mut agent, &certificate, &named)
                        .await?
                }
            };
            if accepted {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Offers `certificate` signed through `signer`, unless it is expired
    /// or not yet valid; notes why it was not accepted.
    async fn offer_agent_certificate<S: russh::Signer<Error = russh::AgentAuthError>>(
        &mut self,
        signer: &mut S,
        certificate: &Certificate,
        named: &str,
    ) -> Result<bool, AuthError> {
        if let Err(reason) = usable_now(certificate) {
            self.agent_refusals.push(format!("{named} {reason}"));
            return Ok(false);
        }
        let key = PublicKey::from(certificate.public_key().clone());
        let hash = self.hash_for(&key).await;
        match self
            .handle
            .authenticate_certificate_with(self.user, certificate.clone(), hash, signer)
            .await
        {
            Ok(AuthResult::Success) => Ok(true),
            Ok(AuthResult::Failure { .. }) | Err(russh::AgentAuthError::Key(_)) => {
                self.agent_refusals
                    .push(format!("the server refused {named}"));
                Ok(false)
            }
            Err(err) => Err(AuthError::ConnectionLost(format!(
                "authentication broke off: {err}"
            ))),
        }
    }

    async fn offer_agent_key(
        &mut self,
        agent: &mut AgentClient<UnixStream>,
        key: PublicKey,
    ) -> Result<bool, AuthError> {
        let hash = self.hash_for(&key).await;
        match self
            .handle
            .authenticate_publickey_with(self.user, key, hash, agent)
            .await
        {
            Ok(result) => Ok(matches!(result, AuthResult::Success)),
            // The agent refusing to sign with one key (confirmation denied,
            // key removed meanwhile) should not stop us trying the next; a
            // dead connection will fail the next attempt anyway.
            Err(russh::AgentAuthError::Key(_)) => Ok(false),
            Err(err) => Err(AuthError::ConnectionLost(format!(
                "authentication broke off: {err}"
            ))),
        }
    }

    fn agent_note(&self) -> String {
        let mut note = match &self.agent {
            AgentOutcome::NotAsked => String::new(),
            AgentOutcome::Unreachable(reason) => format!("; {reason}"),
            AgentOutcome::Offered(0) => "; ssh-agent holds no keys".to_owned(),
            AgentOutcome::Offered(count) => {
                format!("; ssh-agent offered {count} identities, none accepted")
            }
        };
        for refusal in &self.agent_refusals {
            note.push_str("; ");
            note.push_str(refusal);
        }
        note
    }
}

/// Has the agent sign with a certificate's plain key: the agent holds the
/// key, while the certificate was read from disk (OpenSSH's client does
/// the same, as an agent only signs for a certificate it was given).
struct PlainKeySigner<'a>(&'a mut AgentClient<UnixStream>);

impl russh::Signer for PlainKeySigner<'_> {
    type Error = russh::AgentAuthError;

    async fn auth_sign(
        &mut self,
        key: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let plain = match key {
            AgentIdentity::Certificate { certificate, .. } => AgentIdentity::PublicKey {
                key: PublicKey::from(certificate.public_key().clone()),
                comment: String::new(),
            },
            identity => identity.clone(),
        };
        self.0.auth_sign(&plain, hash_alg, to_sign).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn key_files_are_classified_without_leaking_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        assert!(matches!(
            read_key_file(&missing).await,
            Ok(KeyFile::Missing)
        ));

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
        let Err(AuthError::Rejected(reason)) = read_key_file(&garbage).await else {
            panic!("garbage loaded as a key");
        };
        assert!(reason.contains("garbage"), "{reason}");
        // "c2VjcmV0" is base64 for "secret".
        assert!(
            !reason.contains("c2VjcmV0") && !reason.contains("secret"),
            "{reason}"
        );

        for encrypted in [
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nc2VjcmV0\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,0011223344556677\n\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
        ] {
            let path = dir.path().join("encrypted");
            std::fs::write(&path, encrypted).unwrap();
            assert!(
                matches!(read_key_file(&path).await, Ok(KeyFile::Encrypted)),
                "{encrypted}"
            );
        }
    }
}
