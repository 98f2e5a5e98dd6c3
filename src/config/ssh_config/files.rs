//! Reading ssh_config files: permissions, `Include` and its globs.

use super::*;

pub(super) fn read_top_level(file: &ConfigFile) -> Result<Option<String>, SshConfigError> {
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
pub(super) fn read_config_text(
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
pub(super) fn writable_by_others(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o002 != 0
}

#[cfg(not(unix))]
pub(super) fn writable_by_others(_metadata: &fs::Metadata) -> bool {
    false
}

/// Parses one file's text into entries, reading its includes.
pub(super) struct FileParser<'a> {
    pub(super) path: &'a Path,
    pub(super) kind: FileKind,
    pub(super) home: &'a Path,
    pub(super) depth: usize,
}

impl FileParser<'_> {
    pub(super) fn parse(&self, text: &str) -> Result<Vec<Entry>, SshConfigError> {
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

    pub(super) fn directive(
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

    pub(super) fn include(
        &self,
        line: &Line<'_>,
        line_number: usize,
    ) -> Result<Directive, SshConfigError> {
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

    pub(super) fn syntax(&self, line: usize, error: LineError) -> SshConfigError {
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
pub(super) fn include_pattern(arg: &str, kind: FileKind, home: &Path) -> Result<PathBuf, String> {
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
pub(super) fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
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
pub(super) struct ComponentMatcher {
    pub(super) glob: GlobMatcher,
    pub(super) matches_dot_files: bool,
}

impl ComponentMatcher {
    /// `None` when the component has no wildcard (or is not a valid pattern,
    /// which glob(3) then takes literally).
    pub(super) fn new(component: &str) -> Option<ComponentMatcher> {
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

    pub(super) fn children_of(&self, dir: &Path) -> Vec<PathBuf> {
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
