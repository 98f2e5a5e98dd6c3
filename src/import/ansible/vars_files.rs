//! `group_vars/` and `host_vars/` next to the inventory.

use super::*;

#[derive(Debug)]
pub(super) struct VarsFile {
    /// `group_vars/web/10-base.yml`, for messages.
    pub(super) label: String,
    pub(super) vars: Vars,
}

#[derive(Debug, Default)]
pub(super) struct VarsFiles {
    pub(super) groups: HashMap<String, Vec<VarsFile>>,
    pub(super) hosts: HashMap<String, Vec<VarsFile>>,
}

pub(super) const VARS_EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

/// `base/kind/NAME[.yml|.yaml|.json]` or `base/kind/NAME/**` for each name.
pub(super) fn read_vars_files(
    base: &Path,
    kind: &str,
    names: &[&str],
    notes: &mut Vec<String>,
) -> Result<HashMap<String, Vec<VarsFile>>, ImportError> {
    let dir = base.join(kind);
    let mut found = HashMap::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    let label_of = |path: &Path| {
        let relative = path.strip_prefix(base).unwrap_or(path);
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    for name in names {
        if name.contains(['/', '\\']) || *name == "." || *name == ".." {
            continue;
        }
        let candidates: Vec<PathBuf> = std::iter::once(dir.join(name))
            .chain(
                VARS_EXTENSIONS
                    .iter()
                    .map(|ext| dir.join(format!("{name}.{ext}"))),
            )
            .filter(|candidate| candidate.exists())
            .collect();
        let Some((chosen, ignored)) = candidates.split_first() else {
            continue;
        };
        for other in ignored {
            notes.push(format!(
                "{} is not read: {} comes first (Ansible reads only the first of NAME, NAME.yml, \
                 NAME.yaml, NAME.json)",
                label_of(other),
                label_of(chosen)
            ));
        }
        let mut paths = Vec::new();
        if chosen.is_dir() {
            files_in(chosen, &mut paths)?;
        } else {
            paths.push(chosen.clone());
        }
        let mut files = Vec::new();
        for path in paths {
            let label = label_of(&path);
            if let Some(vars) = read_vars_file(&path, &label, notes)? {
                files.push(VarsFile { label, vars });
            }
        }
        found.insert((*name).to_owned(), files);
    }
    let known: HashSet<&str> = names.iter().copied().collect();
    for entry in sorted_entries(&dir)? {
        let file_name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name.starts_with('.') || file_name.ends_with('~') {
            continue;
        }
        let stem = match file_name.rsplit_once('.') {
            Some((stem, ext)) if !entry.is_dir() && VARS_EXTENSIONS.contains(&ext) => stem,
            _ => file_name.as_str(),
        };
        if !known.contains(stem) {
            let what = if kind == "group_vars" {
                "group"
            } else {
                "host"
            };
            notes.push(format!(
                "{} is not read: the inventory has no {what} `{stem}`",
                label_of(&entry)
            ));
        }
    }
    Ok(found)
}

pub(super) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let read_error = |source| ImportError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_error)? {
        entries.push(entry.map_err(read_error)?.path());
    }
    entries.sort();
    Ok(entries)
}

/// A group_vars/host_vars directory's files, as Ansible takes them: sorted,
/// recursively (directories without an extension), hidden and `~` files
/// skipped, files with no extension or .yml, .yaml or .json.
pub(super) fn files_in(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    for path in sorted_entries(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let extension = path.extension().map(|e| e.to_string_lossy().into_owned());
        if path.is_dir() {
            if extension.is_none() {
                files_in(&path, files)?;
            }
        } else if extension.is_none_or(|ext| VARS_EXTENSIONS.contains(&ext.as_str())) {
            files.push(path);
        }
    }
    Ok(())
}

pub(super) fn read_vars_file(
    path: &Path,
    label: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Vars>, ImportError> {
    let text = fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        notes.push(format!(
            "{label} is encrypted with ansible-vault: none of its variables were imported"
        ));
        return Ok(None);
    }
    let file = YamlFile { path };
    let Some(root) = load_yaml(text, path)? else {
        return Ok(None);
    };
    file.vars(&root, "a vars file").map(Some)
}
