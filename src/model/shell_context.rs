//! Where a placeholder sits in a shell command, and whether quoting its
//! value keeps it one literal word there.
//!
//! Values are shell-quoted for a plain command line (`'…'`, or `"…"` with
//! `\` escapes when the value holds a `'`). That quoting only holds where the
//! shell reads a plain word: at the top level of the command, or inside a
//! `$(…)`, which starts a new command with quoting of its own, even within
//! double quotes. Elsewhere it breaks: inside `"…"` the value's own single
//! quotes are literal and a `$(…)` in it runs; inside `'…'` the value's
//! quotes close and reopen the user's; inside backquotes backslashes are
//! removed first; in a here-document and in arithmetic (`$((…))`,
//! `((…))`), read as if inside double quotes, `$(…)` runs. A `\` or `$`
//! right before a placeholder turns the value's opening quote into
//! something else.
//!
//! So `validate` refuses a placeholder in those places rather than trying to
//! quote for each of them: the user drops the quotes (values are quoted for
//! them) or moves the value into a plain word.
//!
//! This is a scanner of the POSIX shell grammar's quoting, not a parser: it
//! follows quotes, backslashes, `$(`, backquotes, `$((`/`((`, comments and
//! here-documents. Where it could lose track (a `case` pattern's `)` inside
//! `$(…)`) it errs towards refusing. Templates without placeholders are not
//! scanned at all.

use super::template::{Template, placeholder_at};

/// A place where a shell-quoted value does not stay one literal word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellTrap {
    DoubleQuotes,
    SingleQuotes,
    Backquotes,
    Arithmetic,
    HereDocument,
    AfterBackslash,
    AfterDollar,
}

impl ShellTrap {
    /// "inside double quotes", for "`{vars.x}` is inside double quotes".
    pub fn place(self) -> &'static str {
        match self {
            ShellTrap::DoubleQuotes => "inside double quotes",
            ShellTrap::SingleQuotes => "inside single quotes",
            ShellTrap::Backquotes => "inside backquotes",
            ShellTrap::Arithmetic => "inside arithmetic",
            ShellTrap::HereDocument => "inside a here-document",
            ShellTrap::AfterBackslash => "right after a backslash",
            ShellTrap::AfterDollar => "right after a `$`",
        }
    }

    /// What to write instead.
    pub fn help(self) -> &'static str {
        match self {
            ShellTrap::DoubleQuotes => {
                "values are shell-quoted for you, and that quoting does not hold inside \
                 double quotes (a `$(…)` in the value would run): drop the double quotes \
                 around the placeholder; `echo \"text: \"{vars.x}` keeps both"
            }
            ShellTrap::SingleQuotes => {
                "values are shell-quoted for you, and the value's quotes would end yours: \
                 drop the single quotes around the placeholder"
            }
            ShellTrap::Backquotes => {
                "backquotes strip the backslashes that quote the value: write $(…) instead, \
                 inside which values are quoted correctly"
            }
            ShellTrap::Arithmetic => {
                "arithmetic reads the value as if inside double quotes, so its quoting is \
                 literal and a `$(…)` in it runs: do the arithmetic in a script that takes \
                 the value as an argument and checks it is a number"
            }
            ShellTrap::HereDocument => {
                "a here-document expands `$(…)` in the value: write the value with \
                 printf '%s\\n' {vars.x} instead"
            }
            ShellTrap::AfterBackslash => {
                "the backslash escapes the value's opening quote: remove it, values are \
                 quoted for you"
            }
            ShellTrap::AfterDollar => {
                "{vars.NAME} is fleetroll's placeholder, not a shell variable: remove the `$`"
            }
        }
    }
}

/// The first placeholder of a shell command that sits in a trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misquoted {
    /// As written, braces included: `{vars.x}`.
    pub placeholder: String,
    /// Byte offset of the placeholder in the template text.
    pub offset: usize,
    pub trap: ShellTrap,
}

/// One unit of the template text as the shell scanner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Char(char),
    Placeholder { text: &'a str, offset: usize },
}

/// A quoting context that nests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// The top level, or inside `$(…)`: plain words. `parens` counts the
    /// `(` opened inside it (subshells), so the right `)` closes it.
    Command {
        parens: u32,
    },
    /// `$((…))` or `((…))`.
    Arithmetic {
        parens: u32,
    },
    Double,
    Backquote,
}

/// A here-document whose body starts at the next newline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HereDoc {
    /// `None` when the delimiter could not be read: the body never ends.
    delimiter: Option<String>,
    strip_tabs: bool,
}

/// The first misquoted placeholder of `template`, read as a shell command.
pub fn misquoted_placeholder(template: &Template) -> Option<Misquoted> {
    if !template.has_placeholders() {
        return None;
    }
    let tokens = tokens(template.as_str());
    Scanner::default().scan(&tokens)
}

/// The template text as characters and placeholders, `{{` and `}}` as the
/// literal braces they write (as [`Template::parse`] reads them).
fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        let tail = &text[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            tokens.push(Token::Char(tail.as_bytes()[0] as char));
            at += 2;
            continue;
        }
        if let Some((_, after)) = placeholder_at(tail) {
            let end = text.len() - after.len();
            tokens.push(Token::Placeholder {
                text: &text[at..end],
                offset: at,
            });
            at = end;
            continue;
        }
        let c = tail.chars().next().unwrap_or_default();
        tokens.push(Token::Char(c));
        at += c.len_utf8().max(1);
    }
    tokens
}

#[derive(Debug)]
struct Scanner {
    frames: Vec<Frame>,
    single: bool,
    comment: bool,
    /// Whether the next character starts a word (for `#` and `((`).
    word_start: bool,
    pending: Vec<HereDoc>,
    body: Option<HereDoc>,
    line: String,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            frames: vec![Frame::Command { parens: 0 }],
            single: false,
            comment: false,
            word_start: true,
            pending: Vec::new(),
            body: None,
            line: String::new(),
        }
    }
}

impl Scanner {
    fn scan(mut self, tokens: &[Token<'_>]) -> Option<Misquoted> {
        let mut i = 0;
        while i < tokens.len() {
            match self.step(tokens, i) {
                Ok(next) => i = next,
                Err(found) => return Some(found),
            }
        }
        None
    }

    fn top(&self) -> Frame {
        self.frames
            .last()
            .copied()
            .unwrap_or(Frame::Command { parens: 0 })
    }

    /// Handles the token at `i`; returns the index of the next one, or the
    /// misquoted placeholder found.
    fn step(&mut self, tokens: &[Token<'_>], i: usize) -> Result<usize, Misquoted> {
        let trap = |token: Token<'_>, trap: ShellTrap| match token {
            Token::Placeholder { text, offset } => Err(Misquoted {
                placeholder: text.to_owned(),
                offset,
                trap,
            }),
            Token::Char(_) => Ok(i + 1),
        };
        let token = tokens[i];
        let char_at = |j: usize| match tokens.get(j) {
            Some(Token::Char(c)) => Some(*c),
            _ => None,
        };
        if let Some(body) = &self.body {
            let Token::Char(c) = token else {
                return trap(token, ShellTrap::HereDocument);
            };
            if c == '\n' {
                let line = if body.strip_tabs {
                    self.line.trim_start_matches('\t')
                } else {
                    self.line.as_str()
                };
                if body.delimiter.as_deref() == Some(line) {
                    self.body = (!self.pending.is_empty()).then(|| self.pending.remove(0));
                }
                self.line.clear();
            } else {
                self.line.push(c);
            }
            return Ok(i + 1);
        }
        if self.comment {
            if token == Token::Char('\n') {
                self.comment = false;
                return Ok(self.newline(i));
            }
            return Ok(i + 1);
        }
        if self.single {
            if token == Token::Char('\'') {
                self.single = false;
            }
            return trap(token, ShellTrap::SingleQuotes);
        }
        let word_start = std::mem::replace(&mut self.word_start, false);
        match self.top() {
            Frame::Double => match token {
                Token::Placeholder { .. } => trap(token, ShellTrap::DoubleQuotes),
                Token::Char('\\') => match tokens.get(i + 1) {
                    Some(next @ Token::Placeholder { .. }) => trap(*next, ShellTrap::DoubleQuotes),
                    _ => Ok(i + 2),
                },
                Token::Char('"') => {
                    self.frames.pop();
                    Ok(i + 1)
                }
                Token::Char('$') if char_at(i + 1) == Some('(') => Ok(self.open_dollar(tokens, i)),
                Token::Char('`') => {
                    self.frames.push(Frame::Backquote);
                    Ok(i + 1)
                }
                Token::Char(_) => Ok(i + 1),
            },
            Frame::Backquote => match token {
                Token::Placeholder { .. } => trap(token, ShellTrap::Backquotes),
                Token::Char('\\') => Ok(i + 2),
                Token::Char('`') => {
                    self.frames.pop();
                    Ok(i + 1)
                }
                Token::Char(_) => Ok(i + 1),
            },
            frame @ (Frame::Command { .. } | Frame::Arithmetic { .. }) => {
                self.unquoted(tokens, i, frame, word_start)
            }
        }
    }

    /// A token outside quotes, at the top level, in `$(…)` or in arithmetic.
    fn unquoted(
        &mut self,
        tokens: &[Token<'_>],
        i: usize,
        frame: Frame,
        word_start: bool,
    ) -> Result<usize, Misquoted> {
        let char_at = |j: usize| match tokens.get(j) {
            Some(Token::Char(c)) => Some(*c),
            _ => None,
        };
        let placeholder_trap = |j: usize, trap: ShellTrap| match tokens.get(j) {
            Some(Token::Placeholder { text, offset }) => Err(Misquoted {
                placeholder: (*text).to_owned(),
                offset: *offset,
                trap,
            }),
            _ => Ok(()),
        };
        let c = match tokens[i] {
            Token::Placeholder { .. } if matches!(frame, Frame::Arithmetic { .. }) => {
                placeholder_trap(i, ShellTrap::Arithmetic)?;
                return Ok(i + 1);
            }
            Token::Placeholder { .. } => return Ok(i + 1),
            Token::Char(c) => c,
        };
        match c {
            '\\' => {
                placeholder_trap(i + 1, ShellTrap::AfterBackslash)?;
                Ok(i + 2)
            }
            '$' => {
                placeholder_trap(i + 1, ShellTrap::AfterDollar)?;
                if char_at(i + 1) == Some('(') {
                    Ok(self.open_dollar(tokens, i))
                } else {
                    Ok(i + 1)
                }
            }
            '\'' => {
                self.single = true;
                Ok(i + 1)
            }
            '"' => {
                self.frames.push(Frame::Double);
                Ok(i + 1)
            }
            '`' => {
                self.frames.push(Frame::Backquote);
                Ok(i + 1)
            }
            '#' if word_start => {
                self.comment = true;
                Ok(i + 1)
            }
            '(' if word_start && char_at(i + 1) == Some('(') => {
                // `((…))`: bash's arithmetic command.
                self.frames.push(Frame::Arithmetic { parens: 0 });
                Ok(i + 2)
            }
            '(' => {
                self.adjust_parens(1);
                self.word_start = true;
                Ok(i + 1)
            }
            ')' => Ok(self.close_paren(tokens, i, frame)),
            // In arithmetic, `<<` is a shift.
            '<' if char_at(i + 1) == Some('<') && matches!(frame, Frame::Command { .. }) => {
                Ok(self.here_document(tokens, i))
            }
            '\n' => Ok(self.newline(i)),
            ' ' | '\t' | ';' | '&' | '|' => {
                self.word_start = true;
                Ok(i + 1)
            }
            _ => Ok(i + 1),
        }
    }

    /// At `$(` (or `$((`): opens a command substitution or arithmetic.
    fn open_dollar(&mut self, tokens: &[Token<'_>], i: usize) -> usize {
        if tokens.get(i + 2) == Some(&Token::Char('(')) {
            self.frames.push(Frame::Arithmetic { parens: 0 });
            i + 3
        } else {
            self.frames.push(Frame::Command { parens: 0 });
            self.word_start = true;
            i + 2
        }
    }

    fn adjust_parens(&mut self, by: i32) {
        if let Some(Frame::Command { parens } | Frame::Arithmetic { parens }) =
            self.frames.last_mut()
        {
            *parens = parens.saturating_add_signed(by);
        }
    }

    /// A `)` outside quotes: closes a `(`, a `$(…)`, or (with the next
    /// `)`) an arithmetic expression.
    fn close_paren(&mut self, tokens: &[Token<'_>], i: usize, frame: Frame) -> usize {
        match frame {
            Frame::Command { parens } | Frame::Arithmetic { parens } if parens > 0 => {
                self.adjust_parens(-1);
                i + 1
            }
            Frame::Arithmetic { .. } => {
                self.frames.pop();
                if tokens.get(i + 1) == Some(&Token::Char(')')) {
                    i + 2
                } else {
                    i + 1
                }
            }
            _ if self.frames.len() > 1 => {
                self.frames.pop();
                i + 1
            }
            // An unmatched `)` at the top level: a syntax error for the
            // shell, nothing to track here.
            _ => i + 1,
        }
    }

    /// At `<<`: a here-string (`<<<`), or a here-document whose delimiter
    /// word follows.
    fn here_document(&mut self, tokens: &[Token<'_>], i: usize) -> usize {
        let mut j = i + 2;
        if tokens.get(j) == Some(&Token::Char('<')) {
            return j + 1;
        }
        let strip_tabs = tokens.get(j) == Some(&Token::Char('-'));
        if strip_tabs {
            j += 1;
        }
        while matches!(tokens.get(j), Some(Token::Char(' ' | '\t'))) {
            j += 1;
        }
        let mut word = String::new();
        let mut readable = true;
        while let Some(token) = tokens.get(j) {
            match token {
                Token::Char(' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')') => break,
                // Quoting in the delimiter only says the body is not
                // expanded; the body is refused either way.
                Token::Char('\'' | '"' | '\\') => {}
                Token::Char(c) => word.push(*c),
                Token::Placeholder { .. } => readable = false,
            }
            j += 1;
        }
        if word.is_empty() && readable {
            // `<<` with no word: a syntax error for the shell.
            return j;
        }
        self.pending.push(HereDoc {
            delimiter: readable.then_some(word),
            strip_tabs,
        });
        j
    }

    /// A newline outside quotes: a pending here-document's body begins.
    fn newline(&mut self, i: usize) -> usize {
        self.word_start = true;
        if !self.pending.is_empty() {
            self.body = Some(self.pending.remove(0));
            self.line.clear();
        }
        i + 1
    }
}

#[cfg(test)]
#[path = "shell_context_tests.rs"]
mod tests;
