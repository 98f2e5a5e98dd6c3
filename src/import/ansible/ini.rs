//! Ansible's INI inventory format.

use super::*;

pub(super) fn parse_ini(text: &str, path: &Path) -> Result<Inventory, ImportError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Section {
        Hosts,
        Vars,
        Children,
    }
    let mut inventory = Inventory::default();
    let mut group = "ungrouped".to_owned();
    let mut section = Section::Hosts;
    // Groups with a [name] or [name:children] section.
    let mut declared: HashSet<String> = HashSet::from(["all".to_owned(), "ungrouped".to_owned()]);
    let mut vars_sections: Vec<(String, usize)> = Vec::new();
    let mut children: Vec<(String, String, usize, usize)> = Vec::new();
    let parse_error = |line: usize, column: usize, message: String| ImportError::Parse {
        path: path.to_owned(),
        line,
        column: Some(column),
        message,
    };
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let error =
            |column: usize, message: String| parse_error(line_no, indent + column + 1, message);
        if line.starts_with('[') {
            if let Some((name, kind)) = section_header(line) {
                section = match kind {
                    None => Section::Hosts,
                    Some("vars") => Section::Vars,
                    Some("children") => Section::Children,
                    Some(other) => {
                        return Err(error(
                            0,
                            format!(
                                "section [{name}:{other}] has an unknown type: write [{name}], \
                                 [{name}:vars] or [{name}:children]"
                            ),
                        ));
                    }
                };
                group = name.to_owned();
                inventory.group(name);
                if section == Section::Vars {
                    vars_sections.push((group.clone(), line_no));
                } else {
                    declared.insert(group.clone());
                }
                continue;
            }
            if line.ends_with(']') {
                return Err(error(
                    0,
                    format!(
                        "`{line}` is not a section header: write [group], [group:vars] or \
                         [group:children], without spaces"
                    ),
                ));
            }
        }
        match section {
            Section::Hosts => {
                let words =
                    shell_words(line, true).map_err(|(column, message)| error(column, message))?;
                let Some((first, rest)) = words.split_first() else {
                    continue;
                };
                if first.text.contains('=') {
                    return Err(error(
                        first.column,
                        format!(
                            "`{}` is a variable, not a host: variables go on a host's line after \
                             its name, or in a [{group}:vars] section",
                            first.text.split('=').next().unwrap_or_default()
                        ),
                    ));
                }
                let (names, port) =
                    host_pattern(&first.text).map_err(|message| error(first.column, message))?;
                let mut vars = Vars::new();
                if let Some(port) = port {
                    vars.insert("ansible_port".to_owned(), Value::Int(port));
                }
                for word in rest {
                    let Some((key, value)) = word.text.split_once('=') else {
                        return Err(error(
                            word.column,
                            format!(
                                "expected NAME=VALUE after the host name, found `{}`",
                                word.text
                            ),
                        ));
                    };
                    vars.insert(key.to_owned(), python_value(value));
                }
                for name in names {
                    inventory.add_host(&name, &group, &vars);
                }
            }
            Section::Vars => {
                let Some((key, value)) = line.split_once('=') else {
                    return Err(error(
                        0,
                        format!("expected NAME=VALUE in [{group}:vars], found `{line}`"),
                    ));
                };
                inventory
                    .group(&group)
                    .vars
                    .insert(key.trim().to_owned(), python_value(value.trim()));
            }
            Section::Children => {
                let child = child_name(line).ok_or_else(|| {
                    error(
                        0,
                        format!("expected a group name in [{group}:children], found `{line}`"),
                    )
                })?;
                children.push((child.to_owned(), group.clone(), line_no, indent + 1));
                inventory.add_child(&group, child);
            }
        }
    }
    if let Some((name, line)) = vars_sections
        .iter()
        .find(|(name, _)| !declared.contains(name))
    {
        return Err(parse_error(
            *line,
            1,
            format!(
                "[{name}:vars] is for a group that has no [{name}] or [{name}:children] section: \
                 add one (it may be empty)"
            ),
        ));
    }
    if let Some((child, parent, line, column)) = children
        .iter()
        .find(|(child, ..)| !declared.contains(child))
    {
        return Err(parse_error(
            *line,
            *column,
            format!(
                "[{parent}:children] lists `{child}`, which has no [{child}] section: add one \
                 (it may be empty)"
            ),
        ));
    }
    Ok(inventory)
}

/// `[name]`, `[name:type]`, maybe followed by a `#` comment.
pub(super) fn section_header(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let end = rest.find(|c: char| c == ':' || c == ']' || c.is_whitespace())?;
    let (name, mut rest) = rest.split_at(end);
    if name.is_empty() {
        return None;
    }
    let mut kind = None;
    if let Some(after) = rest.strip_prefix(':') {
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if end == 0 {
            return None;
        }
        kind = Some(&after[..end]);
        rest = &after[end..];
    }
    let rest = rest.strip_prefix(']')?.trim_start();
    (rest.is_empty() || rest.starts_with('#')).then_some((name, kind))
}

/// A `[group:children]` line: a group name, maybe a `#` comment.
pub(super) fn child_name(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| c == ':' || c == ']' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_start();
    (!name.is_empty() && (rest.is_empty() || rest.starts_with('#'))).then_some(name)
}

/// A word of a shell-like line and the (0-based, in characters) column it
/// starts at.
#[derive(Debug)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) column: usize,
}

/// Python's `shlex.split(text, comments=comments)`: POSIX quoting, `\`
/// escapes, and with `comments` a `#` outside quotes ends the line (even
/// in the middle of a word, as in shlex).
pub(super) fn shell_words(text: &str, comments: bool) -> Result<Vec<Word>, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let blank = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if blank(chars[i]) {
            i += 1;
            continue;
        }
        if comments && chars[i] == '#' {
            break;
        }
        let start = i;
        let mut word = String::new();
        while i < chars.len() && !blank(chars[i]) {
            match chars[i] {
                '#' if comments => {
                    i = chars.len();
                    break;
                }
                '\\' => {
                    let escaped = *chars
                        .get(i + 1)
                        .ok_or((i, "a `\\` ends the line, escaping nothing".to_owned()))?;
                    word.push(escaped);
                    i += 2;
                }
                '\'' => {
                    let close = chars[i + 1..]
                        .iter()
                        .position(|c| *c == '\'')
                        .ok_or((i, "this `'` is never closed".to_owned()))?;
                    word.extend(&chars[i + 1..i + 1 + close]);
                    i += close + 2;
                }
                '"' => {
                    let open = i;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err((open, "this `\"` is never closed".to_owned())),
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                                word.push(chars[i + 1]);
                                i += 2;
                            }
                            Some(c) => {
                                word.push(*c);
                                i += 1;
                            }
                        }
                    }
                }
                c => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        words.push(Word {
            text: word,
            column: start,
        });
    }
    Ok(words)
}

/// Ansible's INI `_parse_value`: `ast.literal_eval`, else the text as it is.
pub(super) fn python_value(text: &str) -> Value {
    Python::literal(text).unwrap_or_else(|| Value::Str(text.to_owned()))
}

/// Enough of Python's literal syntax to tell what `ast.literal_eval` makes
/// of a value: numbers, strings, `True`, `False`, `None`, and the
/// containers (whose content only has to be valid).
#[derive(Debug)]
pub(super) struct Python {
    pub(super) chars: Vec<char>,
    pub(super) at: usize,
}

impl Python {
    pub(super) fn literal(text: &str) -> Option<Value> {
        let mut parser = Python {
            chars: text.chars().collect(),
            at: 0,
        };
        parser.blanks();
        let first = parser.value()?;
        parser.blanks();
        let value = if parser.peek() == Some(',') {
            // `a, b`: a tuple without parentheses.
            while parser.eat(',') {
                parser.blanks();
                if parser.peek().is_none_or(|c| c == '#') {
                    break;
                }
                parser.value()?;
                parser.blanks();
            }
            Value::Other("a tuple")
        } else {
            first
        };
        parser.blanks();
        if parser.peek() == Some('#') {
            parser.at = parser.chars.len();
        }
        (parser.at == parser.chars.len()).then_some(value)
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    pub(super) fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        if found {
            self.at += 1;
        }
        found
    }

    pub(super) fn blanks(&mut self) {
        while self
            .peek()
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\x0c'))
        {
            self.at += 1;
        }
    }

    pub(super) fn value(&mut self) -> Option<Value> {
        self.blanks();
        match self.peek()? {
            '[' => {
                self.at += 1;
                self.items(']')?;
                Some(Value::Other("a list"))
            }
            '(' => {
                self.at += 1;
                self.blanks();
                if self.eat(')') {
                    return Some(Value::Other("a tuple"));
                }
                let inner = self.value()?;
                self.blanks();
                if self.eat(')') {
                    return Some(inner);
                }
                if !self.eat(',') {
                    return None;
                }
                self.items(')')?;
                Some(Value::Other("a tuple"))
            }
            '{' => self.braces(),
            '\'' | '"' => self.strings(String::new()),
            '-' | '+' => {
                let negative = self.peek() == Some('-');
                self.at += 1;
                self.blanks();
                match self.number()? {
                    Value::Int(n) if negative => Some(Value::Int(-n)),
                    Value::Float(f) if negative => Some(Value::Float(-f)),
                    other => Some(other),
                }
            }
            c if c.is_ascii_digit() || c == '.' => self.number(),
            c if c.is_alphabetic() || c == '_' => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.at += 1;
                }
                let name: String = self.chars[start..self.at].iter().collect();
                match name.as_str() {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    prefix
                        if prefix.len() <= 2
                            && prefix.chars().all(|c| "rRbBuU".contains(c))
                            && matches!(self.peek(), Some('\'' | '"')) =>
                    {
                        self.strings(name.clone())
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Values separated by commas up to `close` (a trailing comma allowed).
    pub(super) fn items(&mut self, close: char) -> Option<()> {
        loop {
            self.blanks();
            if self.eat(close) {
                return Some(());
            }
            self.value()?;
            self.blanks();
            if self.eat(close) {
                return Some(());
            }
            if !self.eat(',') {
                return None;
            }
        }
    }

    /// A dict or a set, after its `{`.
    pub(super) fn braces(&mut self) -> Option<Value> {
        self.at += 1;
        self.blanks();
        if self.eat('}') {
            return Some(Value::Other("a dict"));
        }
        self.value()?;
        self.blanks();
        if !self.eat(':') {
            if self.eat('}') {
                return Some(Value::Other("a set"));
            }
            if !self.eat(',') {
                return None;
            }
            self.items('}')?;
            return Some(Value::Other("a set"));
        }
        loop {
            self.value()?;
            self.blanks();
            if self.eat('}') {
                return Some(Value::Other("a dict"));
            }
            if !self.eat(',') {
                return None;
            }
            self.blanks();
            if self.eat('}') {
                return Some(Value::Other("a dict"));
            }
            self.value()?;
            self.blanks();
            if !self.eat(':') {
                return None;
            }
        }
    }

    /// One string literal or several side by side (Python joins them).
    pub(super) fn strings(&mut self, mut prefix: String) -> Option<Value> {
        let mut text = String::new();
        let mut bytes = None;
        loop {
            let is_bytes = prefix.contains(['b', 'B']);
            if bytes.is_some_and(|b| b != is_bytes) {
                return None;
            }
            bytes = Some(is_bytes);
            text.push_str(&self.string(prefix.contains(['r', 'R']), is_bytes)?);
            self.blanks();
            let start = self.at;
            while self.peek().is_some_and(|c| "rRbBuU".contains(c)) && self.at - start < 2 {
                self.at += 1;
            }
            if !matches!(self.peek(), Some('\'' | '"')) {
                self.at = start;
                break;
            }
            prefix = self.chars[start..self.at].iter().collect();
        }
        if bytes == Some(true) {
            Some(Value::Other("bytes"))
        } else {
            Some(Value::Str(text))
        }
    }

    pub(super) fn string(&mut self, raw: bool, bytes: bool) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let triple =
            self.chars.get(self.at) == Some(&quote) && self.chars.get(self.at + 1) == Some(&quote);
        if triple {
            self.at += 2;
        }
        let mut text = String::new();
        loop {
            let c = *self.chars.get(self.at)?;
            if c == quote {
                if !triple {
                    self.at += 1;
                    return Some(text);
                }
                if self.chars.get(self.at + 1) == Some(&quote)
                    && self.chars.get(self.at + 2) == Some(&quote)
                {
                    self.at += 3;
                    return Some(text);
                }
            }
            if c != '\\' {
                text.push(c);
                self.at += 1;
                continue;
            }
            let escaped = *self.chars.get(self.at + 1)?;
            self.at += 2;
            if raw {
                text.push('\\');
                text.push(escaped);
                continue;
            }
            match escaped {
                '\n' => {}
                '\\' | '\'' | '"' => text.push(escaped),
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                'a' => text.push('\x07'),
                'b' => text.push('\x08'),
                'f' => text.push('\x0c'),
                'v' => text.push('\x0b'),
                '0'..='7' => {
                    let mut code = escaped.to_digit(8)?;
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(digit) => {
                                code = code * 8 + digit;
                                self.at += 1;
                            }
                            None => break,
                        }
                    }
                    text.push(char::from_u32(code)?);
                }
                'x' => text.push(self.hex(2)?),
                'u' if !bytes => text.push(self.hex(4)?),
                'U' if !bytes => text.push(self.hex(8)?),
                'N' if !bytes => return None,
                other => {
                    text.push('\\');
                    text.push(other);
                }
            }
        }
    }

    pub(super) fn hex(&mut self, digits: usize) -> Option<char> {
        let end = self.at + digits;
        let hex: String = self.chars.get(self.at..end)?.iter().collect();
        self.at = end;
        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
    }

    pub(super) fn number(&mut self) -> Option<Value> {
        let start = self.at;
        while let Some(c) = self.peek() {
            let exponent_sign = matches!(c, '+' | '-')
                && matches!(self.chars.get(self.at - 1), Some('e' | 'E'))
                && !self.chars[start..].starts_with(&['0', 'x'])
                && !self.chars[start..].starts_with(&['0', 'X']);
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || exponent_sign {
                self.at += 1;
            } else {
                break;
            }
        }
        let text: String = self.chars[start..self.at].iter().collect();
        python_number(&text.to_ascii_lowercase())
    }
}

/// Digits with single `_` between them, the `_` removed.
pub(super) fn digits_without_underscores(
    text: &str,
    is_digit: impl Fn(char) -> bool,
) -> Option<String> {
    if text.is_empty() || text.starts_with('_') || text.ends_with('_') || text.contains("__") {
        return None;
    }
    text.chars()
        .all(|c| c == '_' || is_digit(c))
        .then(|| text.replace('_', ""))
}

pub(super) fn whole_number(number: i128) -> Value {
    i64::try_from(number).map_or(
        Value::Other("an integer too large for fleetroll"),
        Value::Int,
    )
}

/// A Python number literal (lower-cased), without its sign.
pub(super) fn python_number(text: &str) -> Option<Value> {
    if let Some(real) = text.strip_suffix('j') {
        return python_number(real).map(|_| Value::Other("a complex number"));
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = text.strip_prefix(prefix) {
            let digits = digits.strip_prefix('_').unwrap_or(digits);
            let digits = digits_without_underscores(digits, |c| c.is_digit(radix))?;
            return Some(whole_number(i128::from_str_radix(&digits, radix).ok()?));
        }
    }
    if text.contains(['.', 'e']) {
        let (mantissa, exponent) = match text.split_once('e') {
            Some((mantissa, exponent)) => (mantissa, Some(exponent)),
            None => (text, None),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let part = |digits: &str| {
            if digits.is_empty() {
                Some("0".to_owned())
            } else {
                digits_without_underscores(digits, |c| c.is_ascii_digit())
            }
        };
        let mut number = format!("{}.{}", part(whole)?, part(fraction)?);
        if let Some(exponent) = exponent {
            let sign = if exponent.starts_with('-') { "-" } else { "" };
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            let digits = digits_without_underscores(digits, |c| c.is_ascii_digit())?;
            write!(number, "e{sign}{digits}").ok()?;
        }
        return number.parse().ok().map(Value::Float);
    }
    let digits = digits_without_underscores(text, |c| c.is_ascii_digit())?;
    if digits.len() > 1 && digits.starts_with('0') && digits.chars().any(|c| c != '0') {
        // `0755` is a syntax error in Python 3: Ansible keeps the text.
        return None;
    }
    Some(whole_number(digits.parse().ok()?))
}
