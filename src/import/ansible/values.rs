//! A variable's value as Ansible holds it, and reading it as text, number or flag.

use super::*;

/// A variable's value, as Ansible would hold it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// `!vault`-encrypted: never read, never written.
    Vault,
    /// What fleetroll cannot hold: "a list", "a mapping", "a tuple"…
    Other(&'static str),
}

impl Value {
    /// The text of a string or number.
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Value::Str(text) => Some(text.clone()),
            Value::Int(number) => Some(number.to_string()),
            Value::Float(number) => Some(number.to_string()),
            Value::Bool(_) | Value::Null | Value::Vault | Value::Other(_) => None,
        }
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Null => "null (no value)",
            Value::Vault => "encrypted with ansible-vault",
            Value::Other(what) => what,
        }
    }
}

pub(super) type Vars = IndexMap<String, Value>;

/// Ansible's `boolean()`.
pub(super) fn to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Int(1) => Some(true),
        Value::Int(0) => Some(false),
        Value::Float(f) if *f == 1.0 => Some(true),
        Value::Float(f) if *f == 0.0 => Some(false),
        Value::Str(text) => match text.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A value that is a secret whatever its name.
pub(super) fn is_secret_value(value: &Value) -> bool {
    match value {
        Value::Vault => true,
        Value::Str(text) => text.contains("$ANSIBLE_VAULT;") || text.contains("PRIVATE KEY-----"),
        _ => false,
    }
}

/// A variable whose name says it holds a secret. Generous on purpose: a
/// non-secret left out is listed; a secret written out cannot be unwritten.
pub(super) fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(['_', '-', '.']).collect();
    let last = words.last().copied().unwrap_or_default();
    if matches!(last, "file" | "path" | "dir" | "url") {
        return false;
    }
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
    ]
    .iter()
    .any(|word| lower.contains(word))
        || words
            .iter()
            .any(|word| matches!(*word, "pass" | "pwd" | "pw" | "psk" | "apikey"))
        || last == "key"
}

/// fleetroll's variable names (what `validate` accepts).
pub(super) fn is_var_name(name: &str) -> bool {
    crate::model::template::is_identifier(name)
}

/// fleetroll's host names (and, by this importer's choice, zone names).
pub(super) fn is_safe_name(name: &str) -> bool {
    crate::model::inventory::is_safe_name(name)
}

/// A non-empty string or number without spaces (an address, user, path).
pub(super) fn word(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::Str(_) | Value::Int(_) | Value::Float(_) => value.text().unwrap_or_default(),
        other => return Err(format!("is {}", other.describe())),
    };
    if is_template(&text) {
        return Err("is a Jinja2 template, which fleetroll does not evaluate".to_owned());
    }
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err("is not one word (it is empty or has spaces)".to_owned());
    }
    Ok(text)
}

pub(super) fn port(value: &Value) -> Option<u16> {
    match value {
        Value::Int(number) => u16::try_from(*number).ok(),
        Value::Str(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|port| *port != 0)
}

/// A value quoted for a message: short, one line.
pub(super) fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 40 {
        out.push('…');
    }
    format!("`{out}`")
}
