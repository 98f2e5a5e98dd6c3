//! Telling an INI inventory from a YAML one.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Ini,
    Yaml,
}

pub(super) fn detect_format(text: &str, path: &Path) -> Result<Format, ImportError> {
    let unsupported = |message: String| ImportError::Unsupported {
        path: path.to_owned(),
        message,
    };
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        return Err(unsupported(format!(
            "is encrypted with ansible-vault: import a decrypted copy (`ansible-vault decrypt \
             --output plain {}`); its secrets will not be copied",
            path.display()
        )));
    }
    if text.starts_with("#!") {
        return Err(unsupported(format!(
            "is an inventory script: run `ansible-inventory -i {} --list --yaml --export > \
             static.yml` and import static.yml",
            path.display()
        )));
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("yml" | "yaml" | "json") => return Ok(Format::Yaml),
        Some("ini" | "cfg") => return Ok(Format::Ini),
        _ => {}
    }
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with(';') || line.starts_with('[') {
            return Ok(Format::Ini);
        }
        if line.starts_with("---") || line.starts_with('{') || line.starts_with('%') {
            return Ok(Format::Yaml);
        }
        let yaml_key = line.find(':').is_some_and(|colon| {
            let (key, after) = (&line[..colon], &line[colon + 1..]);
            !key.is_empty()
                && !key.contains(char::is_whitespace)
                && !key.contains('=')
                && (after.is_empty() || after.starts_with([' ', '\t']))
        });
        return Ok(if yaml_key { Format::Yaml } else { Format::Ini });
    }
    Ok(Format::Ini)
}
