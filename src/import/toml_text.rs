//! Writing TOML by hand: quoted strings and keys, for files fleetroll
//! generates (an imported inventory; the tests' fixtures).

use std::fmt::Write as _;

/// `text` as a TOML basic string: quotes, backslashes and control
/// characters escaped.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key` bare when TOML allows it, quoted otherwise.
pub fn key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        string(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_keys_read_back_as_written() {
        for text in [
            "plain",
            "a \"quoted\" \\ path",
            "tab\tnew\nline\u{7}bell",
            "",
        ] {
            let line = format!("{} = {}", key(text), string(text));
            let table: toml::Table = toml::from_str(&line).unwrap();
            assert_eq!(table[text].as_str(), Some(text), "{line}");
        }
        assert_eq!(key("web-01_a"), "web-01_a");
        assert_eq!(key("web.01"), "\"web.01\"");
    }
}
