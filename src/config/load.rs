//! Reads both files, resolves them, and checks what spans the two.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::checker::{Checker, TemplateSite};
use super::diagnostics::{Diagnostic, Diagnostics};
use super::openssh::{LocalUser, OpenSsh, group_warnings};
use super::raw::{RawInventory, RawPlaybook};
use super::resolve::gate::resolve_gate;
use super::resolve::inventory::{PathContext, resolve_inventory};
use super::resolve::playbook::resolve_playbook;
use super::source::SourceFile;
use crate::model::inventory::{BalancerKind, Host, Inventory, Zone};
use crate::model::playbook::{Playbook, StepAction};
use crate::model::template::{Vars, is_identifier};

/// Both files, resolved and checked against each other.
#[derive(Debug, Clone)]
pub struct Config {
    pub inventory: Inventory,
    pub playbook: Playbook,
    pub inventory_file: SourceFile,
    pub playbook_file: SourceFile,
    /// Problems that do not stop a run (an unused balancer, no probes).
    pub warnings: Diagnostics,
    /// `--var` values, which every host's variables end with.
    pub overrides: Vars,
    /// What resolving hosts had to say (ssh_config settings not honoured,
    /// a `Name` tag refused as a host name); shown or journalled by the app.
    pub host_warnings: Vec<String>,
    /// The OpenSSH client configuration, applied to every host (discovered
    /// ones too); `None` when not read.
    pub openssh: Option<Arc<OpenSsh>>,
}

impl Config {
    /// Adds hosts discovered from `[sources]` (AWS) into their zones (by
    /// availability zone; new zones after the inventory's own), with the
    /// same variable precedence as static hosts. A discovered host named
    /// like another host is refused: two hosts must never share a name.
    pub fn add_discovered(&mut self, hosts: Vec<Host>) -> Result<(), String> {
        // Names and zones are looked up by hash, kept up to date as hosts
        // are added (a discovered host may also clash with one found just
        // before it): scanning the inventory for each host was O(n²) for
        // a large Auto Scaling fleet.
        let mut names: HashSet<String> = self.inventory.hosts().map(|h| h.name.clone()).collect();
        let mut zones: HashMap<String, usize> = zone_indices(&self.inventory.zones);
        for mut host in hosts {
            if let Some(openssh) = &self.openssh {
                let found = openssh.settle(&mut host)?;
                let named = found.into_iter().map(|w| (host.name.clone(), w)).collect();
                self.host_warnings.extend(group_warnings(named));
            }
            if !names.insert(host.name.clone()) {
                return Err(format!(
                    "discovered host {} has the name of a host already in the inventory",
                    host.name
                ));
            }
            let mut vars = self.inventory.vars.clone();
            vars.extend(self.playbook.vars.clone());
            vars.extend(std::mem::take(&mut host.vars));
            vars.extend(self.overrides.clone());
            host.vars = vars;
            let zone_list = &mut self.inventory.zones;
            match zones.get(&host.zone) {
                Some(&index) => zone_list[index].hosts.push(host),
                None => {
                    zones.insert(host.zone.clone(), zone_list.len());
                    zone_list.push(Zone {
                        name: host.zone.clone(),
                        hosts: vec![host],
                    });
                }
            }
        }
        Ok(())
    }
}

/// Each zone's position in `zones`, by name (the first, should two share
/// one, as a search from the front would find).
fn zone_indices(zones: &[Zone]) -> HashMap<String, usize> {
    let mut indices = HashMap::with_capacity(zones.len());
    for (index, zone) in zones.iter().enumerate() {
        indices.entry(zone.name.clone()).or_insert(index);
    }
    indices
}

/// What loading needs from the environment, passed in so loading stays pure.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions<'a> {
    /// `--var KEY=VALUE`, in command-line order; later ones win.
    pub overrides: &'a [(String, String)],
    pub home: Option<&'a Path>,
    /// Apply the OpenSSH client configuration (`[defaults] ssh_config`,
    /// else `~/.ssh/config` and `/etc/ssh/ssh_config`) to the hosts.
    pub read_ssh_config: bool,
}

/// Loads both files from disk.
pub fn load(
    inventory: &Path,
    playbook: &Path,
    options: &LoadOptions<'_>,
) -> Result<Config, Diagnostics> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|error| {
            Diagnostic::plain(format!("cannot read {}: {error}", path.display()))
                .with_help("check the path given with -i / -p")
        })
    };
    let (inventory_text, playbook_text) = match (read(inventory), read(playbook)) {
        (Ok(i), Ok(p)) => (i, p),
        (i, p) => {
            let mut diagnostics = Diagnostics::default();
            for error in [i.err(), p.err()].into_iter().flatten() {
                diagnostics.push(error);
            }
            return Err(diagnostics);
        }
    };
    let base_dir = inventory.parent().unwrap_or(Path::new("."));
    let mut config = load_from_text(
        SourceFile::new(inventory.display().to_string(), inventory_text),
        SourceFile::new(playbook.display().to_string(), playbook_text),
        base_dir,
        options,
    )?;
    if options.read_ssh_config {
        let home = options.home.unwrap_or(Path::new("/"));
        apply_openssh(&mut config, LocalUser::from_env(home)).map_err(|message| {
            Diagnostics::from(Diagnostic::plain(message).with_help(
                "fix the ssh_config file, or set ssh_config = false in the inventory's [defaults] to leave it out",
            ))
        })?;
    }
    Ok(config)
}

/// Reads the ssh_config the inventory chose and applies it to every host.
pub fn apply_openssh(config: &mut Config, local: LocalUser) -> Result<(), String> {
    let Some(openssh) =
        OpenSsh::load(&config.inventory.ssh_config, local).map_err(|error| error.to_string())?
    else {
        return Ok(());
    };
    let mut warnings = Vec::new();
    for zone in &mut config.inventory.zones {
        for host in &mut zone.hosts {
            let found = openssh.settle(host)?;
            warnings.extend(found.into_iter().map(|w| (host.name.clone(), w)));
        }
    }
    config.host_warnings.extend(group_warnings(warnings));
    config.openssh = Some(Arc::new(openssh));
    Ok(())
}

/// Reads only the inventory's `[state]`, for the commands that need no
/// more of it; warnings are dropped (the caller acts on the result).
pub fn load_state(
    inventory: &Path,
    home: Option<&Path>,
) -> Result<crate::model::inventory::StateStore, Diagnostics> {
    let text = std::fs::read_to_string(inventory).map_err(|error| {
        Diagnostics::from(
            Diagnostic::plain(format!("cannot read {}: {error}", inventory.display()))
                .with_help("check the path given with -i"),
        )
    })?;
    let file = SourceFile::new(inventory.display().to_string(), text);
    let mut diagnostics = Diagnostics::default();
    let raw: Option<super::raw::RawStateOnly> = parse(&file, &mut diagnostics);
    let Some(raw) = raw else {
        return Err(diagnostics);
    };
    let mut checker = Checker::new(&file, &mut diagnostics);
    let state = super::resolve::state::resolve_state(
        raw.state,
        &mut checker,
        PathContext {
            base_dir: inventory.parent().unwrap_or(Path::new(".")),
            home,
        },
    );
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    Ok(state)
}

/// Loads both files from text; `base_dir` anchors the inventory's relative paths.
pub fn load_from_text(
    inventory_file: SourceFile,
    playbook_file: SourceFile,
    base_dir: &Path,
    options: &LoadOptions<'_>,
) -> Result<Config, Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    for (key, _) in options.overrides {
        if !is_identifier(key) {
            diagnostics.push(Diagnostic::plain(format!(
                "--var {key}=…: `{key}` cannot name a variable (letters, digits, `_` and `-`, starting with a letter)"
            )));
        }
    }
    let raw_inventory: Option<RawInventory> = parse(&inventory_file, &mut diagnostics);
    let raw_playbook: Option<RawPlaybook> = parse(&playbook_file, &mut diagnostics);

    let mut inventory_checker = Checker::new(&inventory_file, &mut diagnostics);
    let inventory = raw_inventory.map(|raw| {
        resolve_inventory(
            raw,
            &mut inventory_checker,
            PathContext {
                base_dir,
                home: options.home,
            },
        )
    });
    let inventory_templates = std::mem::take(&mut inventory_checker.templates);

    let mut playbook_checker = Checker::new(&playbook_file, &mut diagnostics);
    let resolved = raw_playbook.map(|raw| resolve_playbook(raw, &mut playbook_checker));
    let playbook_templates = std::mem::take(&mut playbook_checker.templates);

    let (Some(mut inventory), Some(resolved)) = (inventory, resolved) else {
        return Err(diagnostics);
    };
    let mut playbook = resolved.playbook;

    // Variables, lowest precedence first: inventory, playbook, host, --var.
    let mut fleet_vars = inventory.vars.clone();
    fleet_vars.extend(playbook.vars.clone());
    let overrides: Vars = options.overrides.iter().cloned().collect();
    fleet_vars.extend(overrides.clone());

    let mut playbook_checker = Checker::new(&playbook_file, &mut diagnostics);
    playbook.gates = resolved
        .gates
        .into_iter()
        .enumerate()
        .filter_map(|(index, gate)| resolve_gate(index, gate, &fleet_vars, &mut playbook_checker))
        .collect();
    check_zone_order(&inventory, &playbook, &playbook_file, &mut diagnostics);
    check_replace_steps(&inventory, &playbook, &playbook_file, &mut diagnostics);
    check_watch_source(&inventory, &playbook, &playbook_file, &mut diagnostics);
    let sites = inventory_templates.iter().chain(&playbook_templates);
    check_template_vars(sites, &inventory, &fleet_vars, &mut diagnostics);

    for zone in &mut inventory.zones {
        for host in &mut zone.hosts {
            let mut vars = inventory.vars.clone();
            vars.extend(playbook.vars.clone());
            vars.extend(std::mem::take(&mut host.vars));
            vars.extend(overrides.clone());
            host.vars = vars;
        }
    }

    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    Ok(Config {
        inventory,
        playbook,
        inventory_file,
        playbook_file,
        warnings: diagnostics,
        overrides,
        host_warnings: Vec::new(),
        openssh: None,
    })
}

fn parse<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> Option<T> {
    match toml::from_str(file.text()) {
        Ok(value) => Some(value),
        Err(error) => {
            let message = error.message().trim().to_owned();
            let diagnostic = match error.span() {
                Some(span) => Diagnostic::at(file, span, message, "here"),
                None => Diagnostic::plain(format!("{}: {message}", file.name())),
            };
            diagnostics.push(diagnostic);
            None
        }
    }
}

/// A zone named in `zone_order` must exist, unless sources may bring it.
fn check_zone_order(
    inventory: &Inventory,
    playbook: &Playbook,
    file: &SourceFile,
    diagnostics: &mut Diagnostics,
) {
    if !inventory.sources.is_empty() {
        return;
    }
    for zone in &playbook.strategy.zone_order {
        if inventory.zones.iter().any(|z| &z.name == zone) {
            continue;
        }
        let span = find_quoted(file, "zone_order", zone);
        let known: Vec<&str> = inventory.zones.iter().map(|z| z.name.as_str()).collect();
        let diagnostic = match span {
            Some(span) => Diagnostic::at(
                file,
                span,
                format!("zone `{zone}` in zone_order has no hosts in the inventory"),
                "unknown zone",
            ),
            None => Diagnostic::plain(format!(
                "zone `{zone}` in zone_order has no hosts in the inventory"
            )),
        };
        diagnostics
            .push(diagnostic.with_help(format!("the inventory's zones: {}", known.join(", "))));
    }
}

/// `replace = "aws-asg"` needs instances in a group, not hand-listed VMs.
fn check_replace_steps(
    inventory: &Inventory,
    playbook: &Playbook,
    file: &SourceFile,
    diagnostics: &mut Diagnostics,
) {
    if !playbook
        .steps
        .iter()
        .any(|s| matches!(s.action, StepAction::ReplaceAsg { .. }))
    {
        return;
    }
    if let Some(host) = inventory.hosts().find(|h| h.target_id.is_none()) {
        let message = format!(
            "replace = \"aws-asg\" needs instances from an aws-asg source, but `{}` is a static host without target_id",
            host.name
        );
        let diagnostic = match find_quoted(file, "replace", "aws-asg") {
            Some(span) => Diagnostic::at(file, span, message, "cannot replace a static host"),
            None => Diagnostic::plain(message),
        };
        diagnostics.push(diagnostic.with_help("use an inventory with [sources.NAME] kind = \"aws-asg\", or patch in place with `run` steps"));
    }
}

/// `[watch]` reads the balancers' per-server counters: every host must sit
/// behind at least one balancer that keeps them (HAProxy).
fn check_watch_source(
    inventory: &Inventory,
    playbook: &Playbook,
    file: &SourceFile,
    diagnostics: &mut Diagnostics,
) {
    if playbook.watch.is_none() {
        return;
    }
    let counts = |name: &String| {
        inventory
            .balancers
            .iter()
            .any(|b| &b.name == name && matches!(b.kind, BalancerKind::Haproxy { .. }))
    };
    let hosts = inventory
        .hosts()
        .map(|h| (format!("host `{}`", h.name), &h.balancers))
        .chain(
            inventory
                .sources
                .iter()
                .map(|s| (format!("the hosts of source `{}`", s.name), &s.balancers)),
        );
    for (who, balancers) in hosts {
        if balancers.iter().any(counts) {
            continue;
        }
        let behind = if balancers.is_empty() {
            "no balancer".to_owned()
        } else {
            format!(
                "balancer {} only, which keeps no per-server response counters",
                balancers
                    .iter()
                    .map(|b| format!("`{b}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let message = format!(
            "[watch] judges hosts by their balancer's counters, but {who} is behind {behind}"
        );
        let text = file.text();
        let diagnostic = match text.find("[watch]") {
            Some(at) => Diagnostic::at(
                file,
                at..at + "[watch]".len(),
                message,
                "no traffic to judge",
            ),
            None => Diagnostic::plain(message),
        };
        diagnostics.push(
            diagnostic.with_help("put the host behind a HAProxy balancer, or remove [watch]"),
        );
        return;
    }
}

/// Every `{vars.NAME}` a host will render must have a value for that host.
fn check_template_vars<'a>(
    sites: impl Iterator<Item = &'a TemplateSite>,
    inventory: &Inventory,
    fleet_vars: &Vars,
    diagnostics: &mut Diagnostics,
) {
    for site in sites {
        for name in site.template.var_names() {
            if fleet_vars.contains_key(name) {
                continue;
            }
            let placeholder = format!("{{vars.{name}}}");
            let span = site.file.sub_span(&site.span, &placeholder);
            let lacking = inventory
                .hosts()
                .find(|h| !h.vars.contains_key(name))
                .map(|h| format!("host `{}`", h.name))
                .or_else(|| {
                    inventory
                        .sources
                        .iter()
                        .find(|s| !s.vars.contains_key(name))
                        .map(|s| format!("hosts of source `{}`", s.name))
                });
            let Some(lacking) = lacking else { continue };
            diagnostics.push(
                Diagnostic::at(&site.file, span, format!("variable `{name}` is not defined for {lacking}"), "undefined variable")
                    .with_help(format!(
                        "define `{name}` in the playbook's or the inventory's [vars], in every host's vars, or pass --var {name}=VALUE"
                    )),
            );
        }
    }
}

/// The span of `"value"` on the first line that mentions `key`, for errors
/// about values that were resolved without keeping their own spans.
fn find_quoted(file: &SourceFile, key: &str, value: &str) -> Option<std::ops::Range<usize>> {
    let quoted = format!("\"{value}\"");
    let text = file.text();
    let key_at = text.find(key)?;
    let value_at = text[key_at..].find(&quoted)? + key_at;
    Some(value_at..value_at + quoted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVENTORY: &str = r#"
[zones.a]
hosts = [{ name = "web-01", address = "10.0.0.1" }]
"#;

    /// Loads `playbook` with the small inventory above and `--var` values.
    pub(crate) fn load_playbook(
        playbook: &str,
        overrides: &[(String, String)],
    ) -> Result<Config, Diagnostics> {
        load_from_text(
            SourceFile::new("inventory.toml", INVENTORY.to_owned()),
            SourceFile::new("playbook.toml", playbook.to_owned()),
            Path::new("."),
            &LoadOptions {
                overrides,
                home: None,
                read_ssh_config: false,
            },
        )
    }

    /// The small inventory with a playbook of one step.
    fn one_step_config() -> Config {
        load_playbook("name = \"p\"\n[[steps]]\nrun = \"true\"\n", &[]).expect("valid")
    }

    /// The inventory's one host renamed and moved, as a discovered host.
    fn discovered(config: &Config, name: &str, zone: &str) -> Host {
        let mut host = config.inventory.hosts().next().expect("a host").clone();
        host.name = name.to_owned();
        host.zone = zone.to_owned();
        host
    }

    #[test]
    fn discovered_hosts_join_their_zone_or_a_new_one_in_order() {
        let mut config = one_step_config();
        let hosts = ["i-1", "i-2", "i-3", "i-4"]
            .iter()
            .zip(["b", "a", "c", "b"])
            .map(|(name, zone)| discovered(&config, name, zone))
            .collect();
        config.add_discovered(hosts).expect("no clash");
        let zones: Vec<(&str, Vec<&str>)> = config
            .inventory
            .zones
            .iter()
            .map(|z| {
                (
                    z.name.as_str(),
                    z.hosts.iter().map(|h| h.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            zones,
            [
                ("a", vec!["web-01", "i-2"]),
                ("b", vec!["i-1", "i-4"]),
                ("c", vec!["i-3"]),
            ]
        );
    }

    #[test]
    fn a_discovered_host_may_not_take_a_name_already_used() {
        let message = "has the name of a host already in the inventory";
        let mut config = one_step_config();
        let static_clash = vec![discovered(&config, "web-01", "b")];
        let error = config.add_discovered(static_clash).expect_err("clash");
        assert_eq!(error, format!("discovered host web-01 {message}"));

        let mut config = one_step_config();
        let twice = vec![
            discovered(&config, "i-1", "b"),
            discovered(&config, "i-1", "c"),
        ];
        let error = config.add_discovered(twice).expect_err("clash");
        assert_eq!(error, format!("discovered host i-1 {message}"));
    }

    #[test]
    fn probes_and_gates_are_named_by_their_template_without_secrets() {
        let playbook = r#"name = "p"
[[steps]]
run = "true"
[[probes]]
http = "http://ops:pa55-SECRET@{address}:8080/healthz?token={vars.token}"
[[gates]]
http = "http://ops:pa55-SECRET@gate.example:80/ok?token={vars.token}"
[[gates]]
prometheus = "http://prom:9090"
query = "up{job='{vars.token}'}"
max = 1
[[gates]]
command = "check --token {vars.token}"
"#;
        let overrides = [("token".to_owned(), "t0ken-SECRET".to_owned())];
        let config = load_playbook(playbook, &overrides).expect("valid");
        let names: Vec<&str> = config
            .playbook
            .probes
            .iter()
            .map(|p| p.name.as_str())
            .chain(config.playbook.gates.iter().map(|g| g.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                "http http://{address}:8080/healthz?…",
                "http http://gate.example:80/ok?…",
                "prometheus up{job='{vars.token}'}",
                "command check --token {vars.token}",
            ]
        );
    }
}
