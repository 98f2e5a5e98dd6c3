//! Lexing one ssh_config line into a keyword and its arguments.

use super::*;

/// A line split into its keyword and arguments.
#[derive(Debug)]
pub(super) struct Line<'a> {
    pub(super) keyword: &'a str,
    /// Everything after the keyword and its separator, unsplit (ProxyCommand
    /// and ProxyJump take it as written).
    pub(super) raw_args: &'a str,
    pub(super) raw_column: usize,
    pub(super) args: Vec<Arg>,
}

/// One argument, unquoted, with the 1-based column where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Arg {
    pub(super) text: String,
    pub(super) column: usize,
}

impl Arg {
    pub(super) fn error(&self, message: impl Into<String>) -> LineError {
        LineError {
            column: self.column,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LineError {
    pub(super) column: usize,
    pub(super) message: String,
}

/// Splits a line as ssh does; `None` for blank and comment lines.
pub(super) fn lex_line(text: &str) -> Result<Option<Line<'_>>, LineError> {
    let text = text.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    let start = text.len() - text.trim_start_matches(WHITESPACE).len();
    let rest = &text[start..];
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let keyword_len = rest
        .find(|c: char| WHITESPACE.contains(&c) || c == '=')
        .unwrap_or(rest.len());
    let keyword = &rest[..keyword_len];
    let args_start = start + keyword_len + separator_len(&rest[keyword_len..]);
    let raw_column = column_at(text, args_start);
    if args_start == text.len() {
        return Err(no_value(keyword, raw_column));
    }
    Ok(Some(Line {
        keyword,
        raw_args: &text[args_start..],
        raw_column,
        args: split_args(text, args_start)?,
    }))
}

/// The length of what separates a keyword from its value: whitespace, or a
/// single `=` with optional whitespace around it.
pub(super) fn separator_len(after_keyword: &str) -> usize {
    let ended_by_equals = after_keyword.starts_with('=');
    let mut rest = after_keyword
        .strip_prefix('=')
        .unwrap_or(after_keyword)
        .trim_start_matches(WHITESPACE);
    if !ended_by_equals && rest.starts_with('=') {
        rest = rest[1..].trim_start_matches(WHITESPACE);
    }
    after_keyword.len() - rest.len()
}

pub(super) fn column_at(text: &str, byte: usize) -> usize {
    text[..byte].chars().count() + 1
}

/// Splits arguments like ssh's `argv_split`: words separated by spaces or
/// tabs, `"` or `'` quoting (quotes removed), `\` escaping a quote, a
/// backslash or a space, and a `#` starting a word ends the line.
pub(super) fn split_args(text: &str, from: usize) -> Result<Vec<Arg>, LineError> {
    let mut args = Vec::new();
    let mut chars = text[from..]
        .char_indices()
        .map(|(at, c)| (from + at, c))
        .peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c == ' ' || c == '\t' {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        let mut word = String::new();
        let mut open_quote: Option<(char, usize)> = None;
        while let Some(&(at, c)) = chars.peek() {
            let quote = open_quote.map(|(quote, _)| quote);
            if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.peek() {
                    Some(&(_, next))
                        if matches!(next, '\'' | '"' | '\\')
                            || (quote.is_none() && next == ' ') =>
                    {
                        word.push(next);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => open_quote = Some((c, at)),
                _ if quote == Some(c) => open_quote = None,
                _ => word.push(c),
            }
        }
        if let Some((quote, at)) = open_quote {
            return Err(LineError {
                column: column_at(text, at),
                message: format!(
                    "the quote {quote} opened here is not closed; add the closing {quote}"
                ),
            });
        }
        args.push(Arg {
            text: word,
            column: column_at(text, start),
        });
    }
    Ok(args)
}
