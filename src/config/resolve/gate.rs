//! `[[gates]]`: fleet-level checks between batches.
//!
//! Gates run once for the whole fleet, so only `{vars.NAME}` means anything
//! in them; they are rendered as soon as the final variables are known.

use std::time::Duration;

use toml::Spanned;

use crate::config::checker::Checker;
use crate::config::raw::RawGate;
use crate::model::playbook::{Gate, GateKind};
use crate::model::redact::redact_url;
use crate::model::template::{Quoting, Template, TemplateContext, Vars};

pub fn resolve_gate(
    index: usize,
    raw: Spanned<RawGate>,
    vars: &Vars,
    checker: &mut Checker<'_>,
) -> Option<Gate> {
    let span = raw.span();
    let RawGate {
        name,
        command,
        http,
        expect_status,
        expect_body,
        prometheus,
        query,
        max,
        min,
        timeout,
    } = raw.into_inner();
    let kinds = [command.is_some(), http.is_some(), prometheus.is_some()];
    if kinds.iter().filter(|&&k| k).count() != 1 {
        checker.error(
            span,
            format!(
                "gate {} needs exactly one of `command`, `http`, `prometheus`",
                index + 1
            ),
            "here",
        );
        return None;
    }
    let is_prometheus = prometheus.is_some();
    for (key, value, applies) in [
        (
            "expect_status",
            expect_status.as_ref().map(Spanned::span),
            http.is_some(),
        ),
        (
            "expect_body",
            expect_body.as_ref().map(Spanned::span),
            http.is_some(),
        ),
        ("query", query.as_ref().map(Spanned::span), is_prometheus),
        ("max", max.as_ref().map(Spanned::span), is_prometheus),
        ("min", min.as_ref().map(Spanned::span), is_prometheus),
    ] {
        if let (Some(value), false) = (value, applies) {
            checker.error(
                value,
                format!("`{key}` does not apply to this kind of gate"),
                "remove it",
            );
        }
    }
    let kind = if let Some(command) = &command {
        if let Ok(template) = Template::parse(command.get_ref()) {
            checker.check_shell_quoting(&template, command)?;
        }
        GateKind::Command {
            command: render(command, vars, Quoting::Shell, checker)?,
        }
    } else if let Some(url) = &http {
        let expect_status = match &expect_status {
            None => 200,
            Some(status) => match u16::try_from(*status.get_ref()) {
                Ok(code) if (100..=599).contains(&code) => code,
                _ => {
                    checker.error(
                        status.span(),
                        format!("{} is not an HTTP status", status.get_ref()),
                        "expected 100 to 599",
                    );
                    return None;
                }
            },
        };
        let url = render(url, vars, Quoting::Raw, checker)
            .filter(|_| checker.http_url(url, "an http gate").is_some())?;
        GateKind::Http {
            url,
            expect_status,
            expect_body: match &expect_body {
                Some(body) => Some(render(body, vars, Quoting::Raw, checker)?),
                None => None,
            },
        }
    } else {
        let url = prometheus.as_ref()?;
        let query = match &query {
            Some(query) => render(query, vars, Quoting::Raw, checker),
            None => {
                checker.error(
                    span.clone(),
                    "a prometheus gate needs a `query`",
                    "`query` missing",
                );
                None
            }
        };
        if max.is_none() && min.is_none() {
            checker.error(
                span.clone(),
                "a prometheus gate needs `max`, `min` or both",
                "no threshold",
            );
        }
        let url = render(url, vars, Quoting::Raw, checker)
            .filter(|_| checker.http_url(url, "prometheus").is_some())?;
        GateKind::Prometheus {
            url,
            query: query?,
            max: max.map(Spanned::into_inner),
            min: min.map(Spanned::into_inner),
        }
    };
    // Named as written, not as rendered: a `{vars.*}` value may be a
    // secret, and names go into events, the journal and halt reasons.
    let written = |value: &Option<Spanned<String>>| {
        value
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or_default()
    };
    let name = name
        .map(Spanned::into_inner)
        .unwrap_or_else(|| match &kind {
            GateKind::Command { .. } => format!("command {}", written(&command)),
            GateKind::Http { .. } => format!("http {}", redact_url(&written(&http))),
            GateKind::Prometheus { .. } => format!("prometheus {}", written(&query)),
        });
    Some(Gate {
        name,
        kind,
        timeout: checker.duration(timeout.as_ref(), Duration::from_secs(30)),
    })
}

/// Renders a fleet-level string with the final variables.
fn render(
    value: &Spanned<String>,
    vars: &Vars,
    quoting: Quoting,
    checker: &mut Checker<'_>,
) -> Option<String> {
    let Ok(template) = Template::parse(value.get_ref()) else {
        checker.template(value); // reports the unknown placeholder
        return None;
    };
    if template.uses_host_values() {
        checker.error(
            value.span(),
            "gates run once for the whole fleet",
            "{host}, {address} and {zone} have no value here",
        );
        return None;
    }
    let context = TemplateContext {
        host: "",
        address: "",
        zone: "",
        vars,
    };
    match template.render(&context, quoting) {
        Ok(text) => Some(text),
        Err(_) => {
            let missing = template
                .var_names()
                .find(|name| !vars.contains_key(*name))
                .unwrap_or_default()
                .to_owned();
            let span = checker
                .file
                .sub_span(&value.span(), &format!("{{vars.{missing}}}"));
            checker
                .error(
                    span,
                    format!("variable `{missing}` is not defined"),
                    "undefined variable",
                )
                .set_help(format!("define it in [vars] or pass --var {missing}=VALUE"));
            None
        }
    }
}
