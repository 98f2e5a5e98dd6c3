//! Strings with placeholders: `{host}`, `{address}`, `{zone}`, `{vars.NAME}`.
//!
//! Templates are parsed when the files are loaded, so an unknown placeholder
//! is reported by `validate`, not at 3 a.m. A placeholder is a `{` followed by
//! a name and `}`; any other brace is literal, so PromQL label matchers and
//! shell code pass through untouched. `{{` and `}}` write a literal brace.

use std::collections::BTreeMap;
use std::fmt;

/// Variables by name, after every override has been applied.
pub type Vars = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Host,
    Address,
    Zone,
    Var(String),
}

/// How substituted values are written into the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Shell commands: each value is quoted so that it stays one word.
    Shell,
    /// URLs, addresses, expected bodies: values are inserted as they are.
    Raw,
}

/// The values a template is rendered with, for one host.
#[derive(Debug, Clone, Copy)]
pub struct TemplateContext<'a> {
    pub host: &'a str,
    pub address: &'a str,
    pub zone: &'a str,
    pub vars: &'a Vars,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder `{placeholder}`")]
    UnknownPlaceholder { placeholder: String },
    #[error("variable `{name}` is not defined for host {host}")]
    UndefinedVar { name: String, host: String },
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
}

impl Template {
    /// Parses `text`; the error names the first unknown placeholder, braces included.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(index) = rest.find(['{', '}']) {
            literal.push_str(&rest[..index]);
            let tail = &rest[index..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push(tail.as_bytes()[0] as char);
                rest = &tail[2..];
                continue;
            }
            if let Some((name, after)) = placeholder_at(tail) {
                let segment = match name {
                    "host" => Segment::Host,
                    "address" => Segment::Address,
                    "zone" => Segment::Zone,
                    _ => match name.strip_prefix("vars.") {
                        Some(var) if is_identifier(var) => Segment::Var(var.to_owned()),
                        _ => {
                            return Err(TemplateError::UnknownPlaceholder {
                                placeholder: format!("{{{name}}}"),
                            });
                        }
                    },
                };
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(segment);
                rest = after;
            } else {
                literal.push(tail.as_bytes()[0] as char);
                rest = &tail[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The text as written in the file.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether anything is substituted into the template.
    pub fn has_placeholders(&self) -> bool {
        self.segments
            .iter()
            .any(|s| !matches!(s, Segment::Literal(_)))
    }

    /// Whether the template reads `{host}`, `{address}` or `{zone}`.
    pub fn uses_host_values(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Host | Segment::Address | Segment::Zone))
    }

    /// Names of the variables this template reads, in order of appearance.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Var(name) => Some(name.as_str()),
            _ => None,
        })
    }

    pub fn render(
        &self,
        context: &TemplateContext<'_>,
        quoting: Quoting,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.text.len());
        for segment in &self.segments {
            let value = match segment {
                Segment::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Segment::Host => context.host,
                Segment::Address => context.address,
                Segment::Zone => context.zone,
                Segment::Var(name) => {
                    context
                        .vars
                        .get(name)
                        .ok_or_else(|| TemplateError::UndefinedVar {
                            name: name.clone(),
                            host: context.host.to_owned(),
                        })?
                }
            };
            match quoting {
                Quoting::Raw => out.push_str(value),
                Quoting::Shell => out.push_str(&shell_quote(value)),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Quotes a value for POSIX `sh` so that it stays one word and nothing in it
/// is expanded. A value with a NUL byte cannot be passed to a shell at all;
/// it becomes an empty word rather than a truncated one.
pub fn shell_quote(value: &str) -> String {
    shlex::try_quote(value).map_or_else(|_| "''".to_owned(), |quoted| quoted.into_owned())
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// At a `{`, the placeholder name and the text after its `}`, if this brace
/// opens a placeholder: a name made of letters, digits, `_`, `-` and `.`.
pub(super) fn placeholder_at(tail: &str) -> Option<(&str, &str)> {
    let body = tail.strip_prefix('{')?;
    let end = body.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))?;
    if end == 0 || !body[end..].starts_with('}') {
        return None;
    }
    Some((&body[..end], &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("version", "1.2.3"), ("note", "it's a 'test'; rm -rf /")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn render(text: &str, quoting: Quoting) -> Result<String, TemplateError> {
        let vars = vars();
        let context = TemplateContext {
            host: "web-01",
            address: "10.0.0.1",
            zone: "eu-west-1a",
            vars: &vars,
        };
        Template::parse(text)?.render(&context, quoting)
    }

    #[test]
    fn renders_placeholders() {
        let cases = [
            (
                "apt-get install -y myapp={vars.version}",
                "apt-get install -y myapp=1.2.3",
            ),
            (
                "echo {host} {address} {zone}",
                "echo web-01 10.0.0.1 eu-west-1a",
            ),
            ("echo {vars.note}", r#"echo "it's a 'test'; rm -rf /""#),
            ("awk '{{print $1}}'", "awk '{print $1}'"),
            (
                "sum(rate(x{code=~'5..'}[2m]))",
                "sum(rate(x{code=~'5..'}[2m]))",
            ),
            ("{ echo; }", "{ echo; }"),
            ("{}", "{}"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                render(text, Quoting::Shell).as_deref(),
                Ok(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn raw_quoting_inserts_values_verbatim() {
        assert_eq!(
            render("http://{address}:8080/v/{vars.version}", Quoting::Raw).as_deref(),
            Ok("http://10.0.0.1:8080/v/1.2.3")
        );
    }

    #[test]
    fn refuses_unknown_placeholders() {
        for text in ["{hostname}", "echo {vars.}", "{vars.a.b}", "{print}"] {
            assert!(
                matches!(
                    Template::parse(text),
                    Err(TemplateError::UnknownPlaceholder { .. })
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn reports_undefined_variables_with_the_host() {
        assert_eq!(
            render("{vars.missing}", Quoting::Raw),
            Err(TemplateError::UndefinedVar {
                name: "missing".into(),
                host: "web-01".into()
            })
        );
    }

    #[test]
    fn lists_the_variables_it_reads() {
        let template = Template::parse("{vars.a} {host} {vars.b}").unwrap();
        assert_eq!(template.var_names().collect::<Vec<_>>(), ["a", "b"]);
    }
}
