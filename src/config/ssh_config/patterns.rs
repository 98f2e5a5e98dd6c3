//! `%` tokens, `~`, and ssh's wildcard patterns.

use super::*;

/// Replaces `%%` and the `%` tokens `value_of` knows; `known` lists them for
/// the error message.
pub(super) fn percent_expand<'v>(
    text: &str,
    known: &str,
    value_of: impl Fn(char) -> Option<&'v str>,
) -> Result<String, String> {
    let mut expanded = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            expanded.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => expanded.push('%'),
            Some(token) => match value_of(token) {
                Some(value) => expanded.push_str(value),
                None => {
                    return Err(format!(
                        "\"{text}\" has the unknown token %{token}; the known tokens are {known}"
                    ));
                }
            },
            None => {
                return Err(format!(
                    "\"{text}\" ends with a lone %; write %% for a percent sign"
                ));
            }
        }
    }
    Ok(expanded)
}

/// Splits a leading `~` or `~/` off `text`: the home directory, and the rest.
pub(super) fn split_tilde<'t>(text: &'t str, home: &Path) -> Result<(String, &'t str), String> {
    let Some(after) = text.strip_prefix('~') else {
        return Ok((String::new(), text));
    };
    let home = home.to_string_lossy();
    if after.is_empty() {
        Ok((home.into_owned(), after))
    } else if after.starts_with('/') {
        Ok((home.trim_end_matches('/').to_owned(), after))
    } else {
        Err(format!(
            "\"{text}\" names another user's home directory, which fleetroll does not look up; write the path in full"
        ))
    }
}

/// A `Host` line applies when a positive pattern matches and no negated one
/// does; the alias is matched as typed, case-sensitively, as ssh does.
pub(super) fn host_patterns_match(patterns: &[HostPattern], alias: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if wildcard_match(alias, &pattern.pattern) {
            if pattern.negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// ssh's `match_pattern_list`: comma-separated patterns, `!` negates one; a
/// negated match wins. `lowercase` compares case-insensitively (host names).
pub(super) fn pattern_list_matches(text: &str, patterns: &str, lowercase: bool) -> bool {
    let fold = |s: &str| {
        if lowercase {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    let text = fold(text);
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, pattern),
        };
        if wildcard_match(&text, &fold(pattern)) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `*` matches any run of characters, `?` any one; everything else itself.
pub(super) fn wildcard_match(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    wildcard_match_chars(&text, &pattern)
}

/// `*` (any run) and `?` (any one character), as OpenSSH's `match_pattern`,
/// by the greedy two-index walk: on a mismatch only the latest `*` takes
/// one more character, so `Host *a*a*a…` costs text × pattern steps at
/// worst instead of the exponential time of trying every split.
pub(super) fn wildcard_match_chars(text: &[char], pattern: &[char]) -> bool {
    let (mut t, mut p) = (0, 0);
    // After the latest `*`: where the pattern resumes, and the text
    // position that `*` has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                star = Some((p, t));
            }
            Some(&expected) if expected == '?' || expected == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((resume, swallowed)) => {
                    p = resume;
                    t = swallowed + 1;
                    star = Some((resume, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}
