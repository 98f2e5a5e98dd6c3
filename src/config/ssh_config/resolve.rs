//! Resolving an alias: which block applies, first value wins.

use super::*;

pub(super) struct Resolution<'a> {
    pub(super) alias: &'a str,
    pub(super) context: &'a MatchContext,
    pub(super) resolved: Resolved,
    pub(super) seen_identity_files: HashSet<(FileKind, String)>,
    pub(super) seen_certificate_files: HashSet<(FileKind, String)>,
    /// ssh's "proxy command is set": by ProxyCommand, or by a ProxyJump other
    /// than `none`; either then ignores the other.
    pub(super) proxy_taken: bool,
    pub(super) warned_keywords: HashSet<&'static str>,
}

impl<'a> Resolution<'a> {
    pub(super) fn new(alias: &'a str, context: &'a MatchContext) -> Self {
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
    pub(super) fn apply_file(&mut self, entries: &[Entry], starts_active: bool) {
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
    pub(super) fn match_applies(&mut self, criteria: &[Criterion], origin: &Origin) -> bool {
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
    pub(super) fn test(&self, test: &Test) -> Option<bool> {
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
    pub(super) fn host_for_match(&self) -> String {
        match &self.resolved.host_name {
            Some(host_name) => {
                expand_host_name(&host_name.value, self.alias).unwrap_or(host_name.value.clone())
            }
            None => self.alias.to_owned(),
        }
    }

    /// The user `Match user` sees: the caller's, the one obtained so far, or
    /// the local user.
    pub(super) fn remote_user(&self) -> &str {
        self.context
            .user
            .as_deref()
            .or(self.resolved.user.as_ref().map(|user| user.value.as_str()))
            .unwrap_or(&self.context.local_user)
    }

    pub(super) fn set(&mut self, setting: &Setting, entry: &Entry) {
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
    pub(super) fn set_proxy_jump(&mut self, hops: &[String], origin: &Origin) {
        if self.resolved.proxy_jump.is_some() || (!hops.is_empty() && self.proxy_taken) {
            return;
        }
        self.proxy_taken |= !hops.is_empty();
        self.resolved.proxy_jump = Some(value_at(&hops.to_vec(), origin));
    }

    pub(super) fn warn_ignored(&mut self, ignored: IgnoredKeyword, origin: &Origin) {
        if self.warned_keywords.insert(ignored.name) {
            self.resolved.warnings.push(format!(
                "{origin}: {} is ignored by fleetroll ({}), though ssh would honour it",
                ignored.name, ignored.consequence
            ));
        }
    }

    pub(super) fn finish(mut self) -> Resolved {
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

pub(super) fn keep_first<T: Clone>(slot: &mut Option<Value<T>>, value: &T, origin: &Origin) {
    if slot.is_none() {
        *slot = Some(value_at(value, origin));
    }
}

pub(super) fn value_at<T: Clone>(value: &T, origin: &Origin) -> Value<T> {
    Value {
        value: value.clone(),
        origin: origin.clone(),
    }
}

/// HostName accepts only `%h` (the alias) and `%%`.
pub(super) fn expand_host_name(host_name: &str, alias: &str) -> Result<String, String> {
    percent_expand(host_name, "%% and %h", |token| {
        (token == 'h').then_some(alias)
    })
}

/// Like ssh, host names are lowercased, addresses are not.
pub(super) fn lowercase_unless_address(host: String) -> String {
    let without_zone = host.split('%').next().unwrap_or_default();
    if without_zone.parse::<IpAddr>().is_ok() {
        host
    } else {
        host.to_ascii_lowercase()
    }
}
