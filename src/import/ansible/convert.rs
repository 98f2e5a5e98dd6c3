//! From Ansible's hosts and variables to fleetroll's hosts and zones.

use super::*;

/// A host as it will be written.
#[derive(Debug)]
pub(super) struct OutHost {
    pub(super) name: String,
    pub(super) ansible_name: String,
    pub(super) groups: Vec<String>,
    pub(super) zone: String,
    pub(super) address: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) user: Option<String>,
    pub(super) identity_file: Option<String>,
    pub(super) jump: Option<String>,
    pub(super) sudo: bool,
    pub(super) vars: BTreeMap<String, Value>,
}

/// Whether a variable is carried into `vars` as it is.
pub(super) fn plain_var(name: &str, value: &Value) -> bool {
    setting(name) == Setting::Plain && why_not_carried(name, value).is_none()
}

pub(super) fn first_set<'a>(vars: &'a Vars, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| vars.get(*name))
}

/// Lines "origin: reason", the hosts that share an inline reason gathered
/// into one line.
pub(super) fn not_carried_over(
    inventory: &Inventory,
    files: &VarsFiles,
    label: &str,
) -> Vec<String> {
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
pub(super) fn safe_host_name(name: &str, taken: &mut HashSet<String>) -> String {
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
pub(super) fn host_list(hosts: &[String]) -> String {
    hosts
        .iter()
        .map(|h| format!("`{h}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A host's variables, flattened with Ansible's precedence (lowest first):
/// `all`'s inline variables, its groups' (in `groups` order), then
/// group_vars/all and its groups' files, its inline variables, host_vars.
pub(super) fn host_vars_by_precedence(
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
pub(super) fn zone_for(
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

pub(super) fn convert(
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
