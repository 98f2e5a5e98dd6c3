//! The imported inventory: groups, hosts and their variables, as Ansible merges them.

use super::*;

#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) vars: Vars,
    pub(super) children: IndexSet<String>,
    pub(super) parents: IndexSet<String>,
    pub(super) depth: usize,
    pub(super) priority: i64,
}

#[derive(Debug, Default)]
pub(super) struct HostEntry {
    pub(super) vars: Vars,
    /// The groups the host was put in (not the inherited ones).
    pub(super) groups: IndexSet<String>,
}

#[derive(Debug, Default)]
pub(super) struct Inventory {
    pub(super) groups: IndexMap<String, Group>,
    pub(super) hosts: IndexMap<String, HostEntry>,
    pub(super) notes: Vec<String>,
}

impl Inventory {
    pub(super) fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_owned()).or_default()
    }

    pub(super) fn add_child(&mut self, parent: &str, child: &str) {
        self.group(parent).children.insert(child.to_owned());
        self.group(child).parents.insert(parent.to_owned());
    }

    pub(super) fn add_host(&mut self, name: &str, group: &str, vars: &Vars) {
        self.group(group);
        let host = self.hosts.entry(name.to_owned()).or_default();
        host.groups.insert(group.to_owned());
        for (key, value) in vars {
            host.vars.insert(key.clone(), value.clone());
        }
    }

    /// What Ansible's `reconcile_inventory` does: `all` and `ungrouped`
    /// exist, groups without parents are `all`'s children, hosts in no group
    /// are in `ungrouped` (and only those); then depths and priorities.
    pub(super) fn finish(&mut self, path: &Path) -> Result<(), ImportError> {
        self.group("all");
        self.group("ungrouped");
        for host in self.hosts.values_mut() {
            host.groups.shift_remove("all");
            if host.groups.is_empty() {
                host.groups.insert("ungrouped".to_owned());
            } else if host.groups.len() > 1 {
                host.groups.shift_remove("ungrouped");
            }
        }
        let orphans: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, group)| *name != "all" && group.parents.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for orphan in orphans {
            self.add_child("all", &orphan);
        }
        let mut depths: HashMap<&str, usize> = HashMap::new();
        for name in self.groups.keys() {
            let mut trail = Vec::new();
            depth_of(&self.groups, name, &mut depths, &mut trail).map_err(|cycle| {
                ImportError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "groups {} contain each other (a loop of children): Ansible refuses \
                         this too; take one out of the other's children",
                        cycle
                            .iter()
                            .map(|g| format!("`{g}`"))
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                }
            })?;
        }
        let depths: HashMap<String, usize> = depths
            .into_iter()
            .map(|(name, depth)| (name.to_owned(), depth))
            .collect();
        let label = file_label(path);
        for (name, group) in &mut self.groups {
            group.depth = depths.get(name.as_str()).copied().unwrap_or_default();
            group.priority = 1;
            if let Some(value) = group.vars.shift_remove("ansible_group_priority") {
                let priority = match &value {
                    Value::Int(number) => Some(*number),
                    Value::Str(text) => text.trim().parse().ok(),
                    _ => None,
                };
                match priority {
                    Some(priority) => group.priority = priority,
                    None => self.notes.push(format!(
                        "group `{name}` ({label}): `ansible_group_priority` is not an integer; \
                         ignored"
                    )),
                }
            }
        }
        Ok(())
    }

    /// A host's groups with the inherited ones, `all` left out, in the
    /// order Ansible applies their variables: depth, priority, name.
    pub(super) fn host_groups<'a>(&'a self, host: &'a HostEntry) -> Vec<&'a str> {
        let mut found: IndexSet<&str> = IndexSet::new();
        let mut stack: Vec<&str> = host.groups.iter().map(String::as_str).collect();
        while let Some(name) = stack.pop() {
            if name == "all" || !found.insert(name) {
                continue;
            }
            if let Some(group) = self.groups.get(name) {
                stack.extend(group.parents.iter().map(String::as_str));
            }
        }
        let mut groups: Vec<&str> = found.into_iter().collect();
        groups.sort_by_key(|name| {
            let group = &self.groups[*name];
            (group.depth, group.priority, *name)
        });
        groups
    }

    /// Whether `ancestor` is among `group`'s parents, or theirs…
    pub(super) fn is_ancestor(&self, ancestor: &str, group: &str) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![group];
        while let Some(name) = stack.pop() {
            let Some(entry) = self.groups.get(name) else {
                continue;
            };
            for parent in &entry.parents {
                if parent == ancestor {
                    return true;
                }
                if seen.insert(parent.as_str()) {
                    stack.push(parent);
                }
            }
        }
        false
    }
}

/// The longest distance from `all` (Ansible's group depth); a loop is an
/// error naming its groups.
pub(super) fn depth_of<'a>(
    groups: &'a IndexMap<String, Group>,
    name: &'a str,
    depths: &mut HashMap<&'a str, usize>,
    trail: &mut Vec<&'a str>,
) -> Result<usize, Vec<String>> {
    if let Some(depth) = depths.get(name) {
        return Ok(*depth);
    }
    if let Some(at) = trail.iter().position(|g| *g == name) {
        let mut cycle: Vec<String> = trail[at..].iter().map(|g| (*g).to_owned()).collect();
        cycle.push(name.to_owned());
        return Err(cycle);
    }
    trail.push(name);
    let mut depth = 0;
    if let Some(group) = groups.get(name) {
        for parent in &group.parents {
            depth = depth.max(depth_of(groups, parent, depths, trail)? + 1);
        }
    }
    trail.pop();
    depths.insert(name, depth);
    Ok(depth)
}

pub(super) fn file_label(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}
