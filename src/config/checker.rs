//! Collects diagnostics for one file while its raw values are converted.
//!
//! Each conversion reports its own problem with the value's span and returns
//! `None`, so resolution carries on and every problem in the file is found.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::source::SourceFile;
use super::values::IntOrString;
use crate::model::amount::Amount;
use crate::model::duration::parse_duration;
use crate::model::inventory::{NAME_MAX, is_safe_name};
use crate::model::shell_context::misquoted_placeholder;
use crate::model::template::{Template, TemplateError};

/// A template together with where it was written, for checks that need
/// both files (variables defined per host, say).
#[derive(Debug, Clone)]
pub struct TemplateSite {
    pub file: SourceFile,
    pub span: Range<usize>,
    pub template: Template,
}

#[derive(Debug)]
pub struct Checker<'a> {
    pub file: &'a SourceFile,
    pub diagnostics: &'a mut Diagnostics,
    pub templates: Vec<TemplateSite>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a SourceFile, diagnostics: &'a mut Diagnostics) -> Self {
        Self {
            file,
            diagnostics,
            templates: Vec::new(),
        }
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::at(self.file, span, message, label))
    }

    pub fn warn(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) {
        self.diagnostics
            .push(Diagnostic::at(self.file, span, message, label).warning());
    }

    pub fn duration(&mut self, value: Option<&Spanned<String>>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        match parse_duration(value.get_ref()) {
            Ok(duration) => duration,
            Err(error) => {
                self.error(
                    value.span(),
                    format!("`{}` is not a duration", value.get_ref()),
                    error.to_string(),
                );
                default
            }
        }
    }

    pub fn amount(&mut self, value: &Spanned<IntOrString>) -> Option<Amount> {
        let parsed = match value.get_ref() {
            IntOrString::Int(number) => Amount::from_int(*number),
            IntOrString::Str(text) => Amount::parse(text),
        };
        match parsed {
            Ok(amount) => Some(amount),
            Err(error) => {
                let shown = match value.get_ref() {
                    IntOrString::Int(number) => number.to_string(),
                    IntOrString::Str(text) => format!("\"{text}\""),
                };
                self.error(
                    value.span(),
                    format!("{shown} is not a host count or percentage"),
                    error.to_string(),
                );
                None
            }
        }
    }

    /// Parses a template that is rendered per host; records where it was
    /// written so that its variables can be checked against every host.
    pub fn template(&mut self, value: &Spanned<String>) -> Option<Template> {
        match Template::parse(value.get_ref()) {
            Ok(template) => {
                self.templates.push(TemplateSite {
                    file: self.file.clone(),
                    span: value.span(),
                    template: template.clone(),
                });
                Some(template)
            }
            Err(TemplateError::UnknownPlaceholder { placeholder }) => {
                let span = self.file.sub_span(&value.span(), &placeholder);
                self.error(
                    span,
                    format!("unknown placeholder `{placeholder}`"),
                    "not a placeholder fleetroll knows",
                )
                .set_help(
                    "placeholders are {host} {address} {zone} and {vars.NAME}; \
                     write {{ and }} for literal braces",
                );
                None
            }
            Err(error) => {
                self.error(value.span(), error.to_string(), "here");
                None
            }
        }
    }

    /// [`Checker::template`] for a shell command: also refuses a
    /// placeholder where shell-quoting its value does not keep it one
    /// literal word (inside double quotes, say; see `model::shell_context`).
    pub fn shell_template(&mut self, value: &Spanned<String>) -> Option<Template> {
        let template = self.template(value)?;
        self.check_shell_quoting(&template, value)?;
        Some(template)
    }

    /// Reports the first misquoted placeholder of `template`, written at
    /// `value`; `None` if there is one.
    pub fn check_shell_quoting(
        &mut self,
        template: &Template,
        value: &Spanned<String>,
    ) -> Option<()> {
        let Some(found) = misquoted_placeholder(template) else {
            return Some(());
        };
        let nth = template.as_str()[..found.offset]
            .matches(found.placeholder.as_str())
            .count();
        let span = self
            .file
            .sub_span_nth(&value.span(), &found.placeholder, nth);
        self.error(
            span,
            format!(
                "placeholder `{}` is {} in a shell command",
                found.placeholder,
                found.trap.place()
            ),
            "the value's quoting does not hold here",
        )
        .set_help(found.trap.help());
        None
    }

    pub fn port(&mut self, value: &Spanned<i64>) -> Option<u16> {
        match u16::try_from(*value.get_ref()) {
            Ok(port) if port != 0 => Some(port),
            _ => {
                self.error(
                    value.span(),
                    format!("{} is not a TCP port", value.get_ref()),
                    "expected a port between 1 and 65535",
                );
                None
            }
        }
    }

    /// A non-empty string without whitespace: names, addresses, regions.
    pub fn word(&mut self, value: &Spanned<String>, what: &str) -> Option<String> {
        let text = value.get_ref();
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            self.error(
                value.span(),
                format!("`{text}` is not a valid {what}"),
                format!(
                    "expected {} {what} without spaces",
                    if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    }
                ),
            );
            return None;
        }
        Some(text.clone())
    }

    /// A name that reaches balancer commands: a host, an HAProxy server or
    /// backend (see [`is_safe_name`]).
    pub fn name(&mut self, value: &Spanned<String>, what: &str) -> Option<String> {
        let text = value.get_ref();
        if is_safe_name(text) {
            return Some(text.clone());
        }
        let problem = if text.len() > NAME_MAX {
            format!("longer than {NAME_MAX} characters")
        } else {
            "expected letters, digits, `.`, `_` and `-`, starting with a letter or digit".to_owned()
        };
        let mut help = "names are sent to balancers (HAProxy's runtime API takes `;` and \
                        newlines as command separators): write a plain name"
            .to_owned();
        if what == "host name" {
            help.push_str(", and `lb_server` if the balancer knows the host by another one");
        }
        self.error(
            value.span(),
            format!("{text:?} cannot be a {what}"),
            problem,
        )
        .set_help(help);
        None
    }

    pub fn http_url(&mut self, value: &Spanned<String>, what: &str) -> Option<String> {
        let text = value.get_ref();
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Some(text.clone()),
            _ => {
                self.error(
                    value.span(),
                    format!("{what} must be an http:// or https:// URL"),
                    "expected a URL such as \"http://10.0.0.1:8080/healthz\"",
                );
                None
            }
        }
    }

    /// Reports each key that is present but does not belong to `kind`.
    pub fn only_keys_of(
        &mut self,
        kind: &str,
        what: &str,
        present: &[(&str, Option<Range<usize>>)],
        allowed: &[&str],
    ) {
        for (key, span) in present {
            if let Some(span) = span
                && !allowed.contains(key)
            {
                self.error(
                    span.clone(),
                    format!("`{key}` is not a key of {kind} {what}"),
                    format!("{kind} {what} takes: {}", allowed.join(", ")),
                );
            }
        }
    }
}

/// The span of an optional spanned value, for key checks.
pub fn span_of<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}
