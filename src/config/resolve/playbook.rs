//! Raw playbook → [`Playbook`]: defaults applied, each table checked.

use std::time::Duration;

use jiff::civil::{Time, Weekday};
use toml::Spanned;

use super::vars::resolve_vars;
use crate::config::checker::{Checker, span_of};
use crate::config::raw::{
    RawDrain, RawGate, RawHealth, RawNotify, RawPlaybook, RawProbe, RawStep, RawStrategy, RawWatch,
    RawWindow,
};
use crate::model::amount::Amount;
use crate::model::playbook::{
    DrainPolicy, HealthPolicy, OnFailure, Playbook, Probe, ProbeKind, Step, StepAction, Strategy,
    WatchPolicy, Window, ZoneMode,
};
use crate::model::redact::redact_url;
use crate::model::template::Template;

/// A playbook whose fleet-level strings (gates) still need the final vars.
#[derive(Debug)]
pub struct ResolvedPlaybook {
    pub playbook: Playbook,
    pub gates: Vec<Spanned<RawGate>>,
}

pub fn resolve_playbook(raw: RawPlaybook, checker: &mut Checker<'_>) -> ResolvedPlaybook {
    let RawPlaybook {
        name,
        vars,
        strategy,
        window,
        drain,
        steps,
        health,
        probes,
        gates,
        rollback,
        notify,
        asg_standby,
        watch,
    } = raw;
    let name_text = checker.word(&name, "playbook name").unwrap_or_default();
    let vars = resolve_vars(vars.as_ref(), checker);
    let strategy = strategy.map_or_else(Strategy::default, |s| resolve_strategy(s, checker));
    let window = window.and_then(|w| resolve_window(w, checker));
    let drain = drain.map_or_else(DrainPolicy::default, |d| resolve_drain(d, checker));

    let steps = match steps {
        Some(steps) if steps.get_ref().is_empty() => {
            checker.error(steps.span(), "the playbook has no steps", "empty list");
            Vec::new()
        }
        Some(steps) => resolve_steps(steps.into_inner(), checker),
        None => {
            checker
                .error(name.span(), "the playbook has no steps", "no [[steps]] in this playbook")
                .set_help("add a [[steps]] table with run = \"...\", reboot = true or replace = \"aws-asg\"");
            Vec::new()
        }
    };
    let rollback = resolve_steps(rollback.unwrap_or_default(), checker);
    if strategy.on_failure == OnFailure::Rollback && rollback.is_empty() {
        checker
            .error(
                name.span(),
                "on_failure = \"rollback\" but the playbook has no [[rollback]] steps",
                "nothing to roll back with",
            )
            .set_help("add [[rollback]] steps, or set on_failure = \"halt\"");
    }

    let health = health.map_or_else(HealthPolicy::default, |h| resolve_health(h, checker));
    let probes_written = probes.as_ref().is_some_and(|p| !p.is_empty());
    let probes: Vec<Probe> = probes
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(index, probe)| resolve_probe(index, probe, checker))
        .collect();
    if !probes_written {
        checker.warn(
            name.span(),
            "the playbook has no [[probes]]",
            "hosts return to service as soon as their steps succeed",
        );
    }
    let webhooks = notify
        .map(|n| resolve_notify(n, checker))
        .unwrap_or_default();
    let watch = watch.and_then(|w| resolve_watch(w, checker));

    ResolvedPlaybook {
        playbook: Playbook {
            name: name_text,
            vars,
            strategy,
            window,
            drain,
            steps,
            health,
            probes,
            gates: Vec::new(),
            rollback,
            webhooks,
            asg_standby: asg_standby.is_some_and(|s| s.into_inner()),
            watch,
        },
        gates: gates.unwrap_or_default(),
    }
}

fn resolve_strategy(raw: RawStrategy, checker: &mut Checker<'_>) -> Strategy {
    let RawStrategy {
        batch,
        zones,
        zone_order,
        max_unavailable,
        max_unavailable_per_zone,
        pause,
        max_failed,
        max_failed_per_zone,
        on_failure,
        min_healthy,
        skip_if,
    } = raw;
    let defaults = Strategy::default();
    let batch = match batch {
        None => defaults.batch,
        Some(list) if list.get_ref().is_empty() => {
            checker.error(
                list.span(),
                "`batch` is empty",
                "expected sizes such as [1, \"10%\", \"25%\"]",
            );
            defaults.batch
        }
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|entry| {
                let amount = checker.amount(entry)?;
                if amount.is_zero() {
                    checker.error(
                        entry.span(),
                        "a batch of zero hosts",
                        "a batch needs at least one host",
                    );
                    return None;
                }
                Some(amount)
            })
            .collect(),
    };
    let zones = match zones.as_ref().map(|z| (z.get_ref().as_str(), z.span())) {
        None | Some(("one-at-a-time", _)) => ZoneMode::OneAtATime,
        Some(("spread", _)) => ZoneMode::Spread,
        Some((other, span)) => {
            checker.error(
                span,
                format!("unknown zone mode `{other}`"),
                "expected \"one-at-a-time\" or \"spread\"",
            );
            ZoneMode::OneAtATime
        }
    };
    let mut seen = Vec::new();
    for zone in zone_order.iter().flatten() {
        if seen.contains(zone.get_ref()) {
            checker.error(
                zone.span(),
                format!("zone `{}` is listed twice", zone.get_ref()),
                "duplicate",
            );
        } else {
            seen.push(zone.get_ref().clone());
        }
    }
    let mut cap = |value: &Option<Spanned<_>>, key: &str| {
        let value = value.as_ref()?;
        let amount = checker.amount(value)?;
        if amount.is_zero() {
            checker
                .error(
                    value.span(),
                    format!("`{key}` of 0 lets no host out of service"),
                    "nothing could ever be updated",
                )
                .set_help("remove the key to leave batches uncapped, or allow at least 1");
            return None;
        }
        Some(amount)
    };
    let max_unavailable = cap(&max_unavailable, "max_unavailable");
    let max_unavailable_per_zone = cap(&max_unavailable_per_zone, "max_unavailable_per_zone");
    let on_failure = match on_failure
        .as_ref()
        .map(|o| (o.get_ref().as_str(), o.span()))
    {
        None | Some(("halt", _)) => OnFailure::Halt,
        Some(("rollback", _)) => OnFailure::Rollback,
        Some((other, span)) => {
            checker.error(
                span,
                format!("unknown on_failure `{other}`"),
                "expected \"halt\" or \"rollback\"",
            );
            OnFailure::Halt
        }
    };
    let min_healthy = min_healthy.as_ref().and_then(|value| {
        let amount = checker.amount(value)?;
        if amount == Amount::Percent(Amount::HUNDRED_PERCENT) {
            checker
                .error(
                    value.span(),
                    "min_healthy = \"100%\" leaves no room to drain any host",
                    "impossible",
                )
                .set_help("allow some capacity out of service, e.g. min_healthy = \"75%\"");
            return None;
        }
        Some(amount)
    });
    Strategy {
        batch,
        zones,
        zone_order: seen,
        max_unavailable,
        max_unavailable_per_zone,
        pause: checker.duration(pause.as_ref(), defaults.pause),
        max_failed: max_failed
            .as_ref()
            .and_then(|m| checker.amount(m))
            .unwrap_or(defaults.max_failed),
        max_failed_per_zone: max_failed_per_zone.as_ref().and_then(|m| checker.amount(m)),
        on_failure,
        min_healthy,
        skip_if: skip_if.as_ref().and_then(|s| checker.shell_template(s)),
    }
}

fn resolve_window(raw: Spanned<RawWindow>, checker: &mut Checker<'_>) -> Option<Window> {
    let span = raw.span();
    let RawWindow {
        days,
        start,
        end,
        timezone,
    } = raw.into_inner();
    let mut resolved_days = Vec::new();
    for day in days.iter().flatten() {
        match parse_weekday(day.get_ref()) {
            Some(weekday) if !resolved_days.contains(&weekday) => resolved_days.push(weekday),
            Some(_) => {
                checker.error(
                    day.span(),
                    format!("`{}` is listed twice", day.get_ref()),
                    "duplicate",
                );
            }
            None => {
                checker.error(
                    day.span(),
                    format!("`{}` is not a day", day.get_ref()),
                    "expected mon, tue, wed, thu, fri, sat or sun",
                );
            }
        }
    }
    let mut time = |value: &Spanned<String>| {
        let parsed = parse_clock(value.get_ref());
        if parsed.is_none() {
            checker.error(
                value.span(),
                format!("`{}` is not a time of day", value.get_ref()),
                "expected HH:MM on a 24-hour clock, such as \"02:00\"",
            );
        }
        parsed
    };
    let (start_time, end_time) = (time(&start), time(&end));
    if let (Some(a), Some(b)) = (start_time, end_time)
        && a == b
    {
        checker.error(
            end.span(),
            "the window starts and ends at the same time",
            "an empty window",
        );
    }
    let timezone = match timezone {
        None => {
            checker
                .error(span, "the window has no time zone", "`timezone` missing")
                .set_help("add timezone = \"Europe/Berlin\" (an IANA name), or \"UTC\"");
            None
        }
        Some(zone) if jiff::tz::TimeZone::get(zone.get_ref()).is_ok() => Some(zone.into_inner()),
        Some(zone) => {
            checker.error(
                zone.span(),
                format!("unknown time zone `{}`", zone.get_ref()),
                "expected an IANA time zone name such as \"Europe/Berlin\" or \"UTC\"",
            );
            None
        }
    };
    Some(Window {
        days: resolved_days,
        start: start_time?,
        end: end_time?,
        timezone: timezone?,
    })
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    let lower = text.to_ascii_lowercase();
    let day = match lower.get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    };
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    (lower.len() == 3 || full.contains(&lower.as_str())).then_some(day)
}

fn parse_clock(text: &str) -> Option<Time> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    Time::new(hours.parse().ok()?, minutes.parse().ok()?, 0, 0).ok()
}

fn resolve_drain(raw: RawDrain, checker: &mut Checker<'_>) -> DrainPolicy {
    let RawDrain {
        timeout,
        settle,
        return_timeout,
    } = raw;
    let defaults = DrainPolicy::default();
    DrainPolicy {
        timeout: checker.duration(timeout.as_ref(), defaults.timeout),
        settle: checker.duration(settle.as_ref(), defaults.settle),
        return_timeout: return_timeout
            .as_ref()
            .map(|text| checker.duration(Some(text), Duration::ZERO)),
    }
}

fn resolve_steps(raw: Vec<Spanned<RawStep>>, checker: &mut Checker<'_>) -> Vec<Step> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(index, step)| resolve_step(index, step, checker))
        .collect()
}

fn resolve_step(index: usize, raw: Spanned<RawStep>, checker: &mut Checker<'_>) -> Option<Step> {
    let span = raw.span();
    let RawStep {
        name,
        run,
        reboot,
        replace,
        surge,
        only_if,
        timeout,
        retries,
        estimate,
        reboot_command,
        boot_id_file,
    } = raw.into_inner();
    let reboot_on = reboot.as_ref().is_some_and(|r| *r.get_ref());
    let actions =
        usize::from(run.is_some()) + usize::from(reboot_on) + usize::from(replace.is_some());
    if actions != 1 {
        let message = if actions == 0 {
            "the step does nothing"
        } else {
            "the step has more than one action"
        };
        checker
            .error(
                span.clone(),
                message,
                "expected exactly one of `run`, `reboot = true`, `replace`",
            )
            .set_help("split it into one [[steps]] table per action");
        return None;
    }
    if !reboot_on {
        for (key, value) in [
            ("reboot_command", &reboot_command),
            ("boot_id_file", &boot_id_file),
        ] {
            if let Some(value) = value {
                checker.error(
                    value.span(),
                    format!("`{key}` only applies to `reboot = true` steps"),
                    "remove it",
                );
            }
        }
    }
    if let Some(surge) = &surge
        && replace.is_none()
    {
        checker.error(
            surge.span(),
            "`surge` only applies to `replace` steps",
            "remove it",
        );
    }
    // Every key is checked even when the action is broken, so that one
    // pass over the file reports every problem in the step.
    let (action, default_timeout, default_estimate) = if let Some(run) = &run {
        (
            checker.shell_template(run).map(StepAction::Run),
            Duration::from_secs(600),
            Duration::from_secs(30),
        )
    } else if reboot_on {
        let command = match &reboot_command {
            Some(command) => checker.shell_template(command),
            None => Template::parse("systemctl reboot").ok(),
        };
        let boot_id = match &boot_id_file {
            Some(path) => checker.shell_template(path),
            None => Template::parse("/proc/sys/kernel/random/boot_id").ok(),
        };
        (
            command
                .zip(boot_id)
                .map(|(command, boot_id_file)| StepAction::Reboot {
                    command,
                    boot_id_file,
                }),
            Duration::from_secs(600),
            Duration::from_secs(180),
        )
    } else {
        let replace = replace.as_ref()?;
        let action = if replace.get_ref() == "aws-asg" {
            Some(StepAction::ReplaceAsg {
                surge: surge.as_ref().is_some_and(|s| *s.get_ref()),
            })
        } else {
            checker.error(
                replace.span(),
                format!("unknown replacement `{}`", replace.get_ref()),
                "expected replace = \"aws-asg\"",
            );
            None
        };
        (action, Duration::from_secs(1200), Duration::from_secs(300))
    };
    let timeout = checker.duration(timeout.as_ref(), default_timeout);
    let estimate_value = checker.duration(estimate.as_ref(), default_estimate.min(timeout));
    if estimate_value > timeout
        && let Some(estimate) = &estimate
    {
        checker.error(
            estimate.span(),
            "the estimate is longer than the step's timeout",
            "raise `timeout` or lower `estimate`",
        );
    }
    let retries = match &retries {
        None => 0,
        Some(value) => match u32::try_from(*value.get_ref()) {
            Ok(retries) if retries <= 100 => retries,
            _ => {
                checker.error(
                    value.span(),
                    format!("{} retries", value.get_ref()),
                    "expected a number from 0 to 100",
                );
                0
            }
        },
    };
    let only_if = only_if.as_ref().and_then(|o| checker.shell_template(o));
    let action = action?;
    let name = match &name {
        Some(name) => name.get_ref().clone(),
        None => default_step_name(index, &action),
    };
    Some(Step {
        name,
        only_if,
        action,
        timeout,
        retries,
        estimate: estimate_value.min(timeout),
    })
}

fn default_step_name(index: usize, action: &StepAction) -> String {
    match action {
        StepAction::Run(command) => {
            let first_line = command.as_str().lines().next().unwrap_or_default();
            let short: String = first_line.chars().take(48).collect();
            if short.len() < first_line.len() || command.as_str().contains('\n') {
                format!("{short}…")
            } else {
                short
            }
        }
        StepAction::Reboot { .. } => "reboot".to_owned(),
        StepAction::ReplaceAsg { .. } => format!("replace instance (step {})", index + 1),
    }
}

fn resolve_watch(raw: Spanned<RawWatch>, checker: &mut Checker<'_>) -> Option<WatchPolicy> {
    let span = raw.span();
    let RawWatch {
        duration,
        source,
        prometheus,
        errors,
        requests,
        min_requests,
        max_error_ratio,
        baseline_factor,
        max_latency_factor,
    } = raw.into_inner();
    let defaults = WatchPolicy::default();
    let mut ok = true;
    match source.as_ref().map_or("balancer", |s| s.get_ref().as_str()) {
        "balancer" => {
            for (key, value) in [
                ("prometheus", span_of(&prometheus)),
                ("errors", span_of(&errors)),
                ("requests", span_of(&requests)),
            ] {
                if let Some(at) = value {
                    ok = false;
                    checker
                        .error(
                            at,
                            format!("`{key}` belongs to source = \"prometheus\""),
                            "the balancer's own counters need no query",
                        )
                        .set_help("remove it, or set source = \"prometheus\"");
                }
            }
        }
        "prometheus" => {
            ok = false;
            let at = source.as_ref().map_or(span.clone(), Spanned::span);
            checker
                .error(
                    at,
                    "source = \"prometheus\" is not supported by this fleetroll yet",
                    "only the balancer's own counters can judge a host so far",
                )
                .set_help("use source = \"balancer\" (HAProxy's per-server counters)");
        }
        other => {
            ok = false;
            if let Some(source) = &source {
                checker.error(
                    source.span(),
                    format!("unknown watch source `{other}`"),
                    "expected \"balancer\" or \"prometheus\"",
                );
            }
        }
    }
    let duration_value = checker.duration(duration.as_ref(), defaults.duration);
    if duration_value.is_zero() {
        ok = false;
        let at = duration.as_ref().map_or(span.clone(), Spanned::span);
        checker.error(
            at,
            "a watch of zero",
            "expected a duration above zero, e.g. for = \"60s\"",
        );
    }
    let min_requests_value = match &min_requests {
        None => defaults.min_requests,
        Some(value) => u64::try_from(*value.get_ref()).unwrap_or_else(|_| {
            ok = false;
            checker.error(
                value.span(),
                format!("min_requests = {}", value.get_ref()),
                "expected 0 or more",
            );
            defaults.min_requests
        }),
    };
    let max_error_ratio_value = match &max_error_ratio {
        None => defaults.max_error_ratio,
        Some(value) => match parse_share(value.get_ref()) {
            Some(share) => share,
            None => {
                ok = false;
                checker.error(
                    value.span(),
                    format!("max_error_ratio = \"{}\"", value.get_ref()),
                    "expected a share of requests such as \"1%\" or \"0.5%\"",
                );
                defaults.max_error_ratio
            }
        },
    };
    let mut factor = |value: &Option<Spanned<f64>>, key: &str, default: f64| -> f64 {
        match value {
            None => default,
            Some(v) if v.get_ref().is_finite() && *v.get_ref() >= 1.0 => *v.get_ref(),
            Some(v) => {
                ok = false;
                checker.error(
                    v.span(),
                    format!("{key} = {}", v.get_ref()),
                    "expected a factor of 1.0 or more (2.0: twice the baseline's)",
                );
                default
            }
        }
    };
    let baseline_factor_value = factor(
        &baseline_factor,
        "baseline_factor",
        defaults.baseline_factor,
    );
    let max_latency_factor_value = max_latency_factor
        .as_ref()
        .map(|_| factor(&max_latency_factor, "max_latency_factor", 1.5));
    ok.then_some(WatchPolicy {
        duration: duration_value,
        min_requests: min_requests_value,
        max_error_ratio: max_error_ratio_value,
        baseline_factor: baseline_factor_value,
        max_latency_factor: max_latency_factor_value,
    })
}

/// "1%" → 0.01, "0.5%" → 0.005; a share above 100% is no share.
fn parse_share(text: &str) -> Option<f64> {
    let percent: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    (percent.is_finite() && (0.0..=100.0).contains(&percent)).then_some(percent / 100.0)
}

fn resolve_health(raw: RawHealth, checker: &mut Checker<'_>) -> HealthPolicy {
    let RawHealth {
        interval,
        healthy_after,
        timeout,
    } = raw;
    let defaults = HealthPolicy::default();
    let interval_value = checker.duration(interval.as_ref(), defaults.interval);
    if interval_value.is_zero()
        && let Some(interval) = &interval
    {
        checker.error(
            interval.span(),
            "a probe interval of zero",
            "expected a duration above zero",
        );
    }
    let healthy_after = match &healthy_after {
        None => defaults.healthy_after,
        Some(value) => match u32::try_from(*value.get_ref()) {
            Ok(rounds) if rounds >= 1 => rounds,
            _ => {
                checker.error(
                    value.span(),
                    format!("healthy_after = {}", value.get_ref()),
                    "expected at least 1 round",
                );
                defaults.healthy_after
            }
        },
    };
    let timeout_value = checker.duration(timeout.as_ref(), defaults.timeout);
    let needed = interval_value * healthy_after.saturating_sub(1);
    if timeout_value <= needed
        && let Some(timeout) = &timeout
    {
        checker.error(
            timeout.span(),
            "the health timeout is too short for healthy_after rounds",
            format!(
                "{} passing rounds at {:?} take at least {:?}",
                healthy_after, interval_value, needed
            ),
        );
    }
    HealthPolicy {
        interval: interval_value,
        healthy_after,
        timeout: timeout_value,
    }
}

fn resolve_probe(index: usize, raw: Spanned<RawProbe>, checker: &mut Checker<'_>) -> Option<Probe> {
    let span = raw.span();
    let RawProbe {
        name,
        http,
        tcp,
        command,
        expect_status,
        expect_body,
    } = raw.into_inner();
    let kinds = [http.is_some(), tcp.is_some(), command.is_some()];
    if kinds.iter().filter(|&&k| k).count() != 1 {
        checker.error(
            span,
            format!(
                "probe {} needs exactly one of `http`, `tcp`, `command`",
                index + 1
            ),
            "here",
        );
        return None;
    }
    if http.is_none() {
        for (key, value) in [
            ("expect_status", span_of(&expect_status)),
            ("expect_body", span_of(&expect_body)),
        ] {
            if let Some(value) = value {
                checker.error(
                    value,
                    format!("`{key}` only applies to http probes"),
                    "remove it",
                );
            }
        }
    }
    let kind = if let Some(url) = &http {
        let template = checker.template(url)?;
        if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://")) {
            checker.error(
                url.span(),
                "an http probe needs an http:// or https:// URL",
                "such as \"http://{address}:8080/healthz\"",
            );
            return None;
        }
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
        ProbeKind::Http {
            url: template,
            expect_status,
            expect_body: expect_body.as_ref().and_then(|b| checker.template(b)),
        }
    } else if let Some(target) = &tcp {
        let template = checker.template(target)?;
        let port_ok = target
            .get_ref()
            .rsplit_once(':')
            .is_some_and(|(host, port)| {
                // A port from a placeholder is checked when it is rendered.
                let templated = port.starts_with('{') && port.ends_with('}');
                !host.is_empty() && (templated || port.parse::<u16>().is_ok_and(|p| p != 0))
            });
        if !port_ok {
            checker.error(
                target.span(),
                "a tcp probe needs HOST:PORT",
                "such as \"{address}:5432\"",
            );
            return None;
        }
        ProbeKind::Tcp { target: template }
    } else {
        ProbeKind::Command {
            command: checker.shell_template(command.as_ref()?)?,
        }
    };
    let name = name
        .map(Spanned::into_inner)
        .unwrap_or_else(|| match &kind {
            // Userinfo and query may hold secrets even as written.
            ProbeKind::Http { url, .. } => format!("http {}", redact_url(url.as_str())),
            ProbeKind::Tcp { target } => format!("tcp {target}"),
            ProbeKind::Command { command } => format!("command {command}"),
        });
    Some(Probe { name, kind })
}

fn resolve_notify(raw: RawNotify, checker: &mut Checker<'_>) -> Vec<String> {
    let RawNotify { webhooks } = raw;
    webhooks
        .iter()
        .flatten()
        .filter_map(|url| checker.http_url(url, "a webhook"))
        .collect()
}
