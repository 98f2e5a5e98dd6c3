//! Writing the fleetroll inventory: `[defaults]`, zones, hosts.

use super::*;

/// `[defaults]` values: those every host shares.
#[derive(Debug, Default)]
pub(super) struct Defaults {
    pub(super) port: Option<u16>,
    pub(super) user: Option<String>,
    pub(super) identity_file: Option<String>,
    pub(super) jump: Option<String>,
    pub(super) sudo: bool,
}

pub(super) fn shared<T: PartialEq + Clone>(
    hosts: &[OutHost],
    get: impl Fn(&OutHost) -> Option<T>,
) -> Option<T> {
    let first = get(hosts.first()?)?;
    hosts
        .iter()
        .all(|host| get(host).as_ref() == Some(&first))
        .then_some(first)
}

pub(super) fn render(
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

pub(super) fn host_table(host: &OutHost, defaults: &Defaults) -> String {
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
pub(super) fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn toml_value(value: &Value) -> String {
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
