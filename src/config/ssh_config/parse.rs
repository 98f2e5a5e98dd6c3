//! Parsing one line's arguments into a directive.

use super::*;

pub(super) fn parse_directive(keyword: Keyword, line: &Line<'_>) -> Result<Directive, LineError> {
    let setting = match keyword {
        Keyword::Host => return parse_host(line).map(Directive::Host),
        Keyword::Match => return parse_match(line).map(Directive::Match),
        Keyword::HostName => Setting::HostName(single_arg(line)?.text.clone()),
        Keyword::User => Setting::User(single_arg(line)?.text.clone()),
        Keyword::Port => Setting::Port(parse_port(single_arg(line)?)?),
        Keyword::IdentityFile => Setting::IdentityFile(single_arg(line)?.text.clone()),
        Keyword::IdentitiesOnly => Setting::IdentitiesOnly(parse_flag(line)?),
        Keyword::IdentityAgent => Setting::IdentityAgent(single_arg(line)?.text.clone()),
        Keyword::ProxyJump => Setting::ProxyJump(parse_proxy_jump(line)?),
        Keyword::UserKnownHostsFile => Setting::UserKnownHostsFiles(parse_file_list(line)?),
        Keyword::GlobalKnownHostsFile => Setting::GlobalKnownHostsFiles(parse_file_list(line)?),
        Keyword::ConnectTimeout => Setting::ConnectTimeout(parse_time(single_arg(line)?)?),
        Keyword::ServerAliveInterval => {
            Setting::ServerAliveInterval(parse_time(single_arg(line)?)?)
        }
        Keyword::ServerAliveCountMax => {
            Setting::ServerAliveCountMax(parse_count(single_arg(line)?)?)
        }
        Keyword::CertificateFile => Setting::CertificateFile(single_arg(line)?.text.clone()),
        Keyword::StrictHostKeyChecking => {
            Setting::StrictHostKeyChecking(parse_strict_host_key_checking(single_arg(line)?)?)
        }
        Keyword::ProxyCommand => Setting::ProxyCommand(raw_value(line).to_owned()),
        Keyword::HostKeyAlias => Setting::HostKeyAlias(single_arg(line)?.text.clone()),
    };
    Ok(Directive::Set(setting))
}

/// The only argument of a line; missing, empty or extra arguments are errors.
pub(super) fn single_arg<'l>(line: &'l Line<'_>) -> Result<&'l Arg, LineError> {
    let keyword = line.keyword;
    let Some(arg) = line.args.first() else {
        return Err(no_value(keyword, line.raw_column));
    };
    if arg.text.is_empty() {
        return Err(arg.error(format!(
            "{keyword} has an empty value; write a value between the quotes"
        )));
    }
    if let Some(extra) = line.args.get(1) {
        return Err(extra.error(format!(
            "{keyword} takes one value, but more follow; quote a value that contains spaces"
        )));
    }
    Ok(arg)
}

pub(super) fn no_value(keyword: &str, column: usize) -> LineError {
    LineError {
        column,
        message: format!("{keyword} has no value; write `{keyword} VALUE` or delete the line"),
    }
}

/// The unsplit rest of the line, as ssh takes it for ProxyCommand.
pub(super) fn raw_value<'l>(line: &'l Line<'_>) -> &'l str {
    line.raw_args
        .trim_start_matches([' ', '\t', '\r', '\n', '='])
}

pub(super) fn parse_host(line: &Line<'_>) -> Result<Vec<HostPattern>, LineError> {
    line.args
        .iter()
        .map(|arg| {
            if arg.text.is_empty() {
                return Err(arg.error("Host has an empty pattern; remove the empty quotes"));
            }
            Ok(match arg.text.strip_prefix('!') {
                Some(pattern) => HostPattern {
                    pattern: pattern.to_owned(),
                    negated: true,
                },
                None => HostPattern {
                    pattern: arg.text.clone(),
                    negated: false,
                },
            })
        })
        .collect()
}

pub(super) fn parse_match(line: &Line<'_>) -> Result<Vec<Criterion>, LineError> {
    let mut criteria = Vec::new();
    let mut args = line.args.iter().peekable();
    while let Some(arg) = args.next() {
        let (negated, name) = match arg.text.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, arg.text.as_str()),
        };
        let name = name.to_ascii_lowercase();
        let test = match name.as_str() {
            "all" => {
                if criteria.len() > 1 || args.peek().is_some() {
                    return Err(arg.error(
                        "Match all cannot be combined with other criteria; remove `all` or the other criteria",
                    ));
                }
                Test::All
            }
            "canonical" | "final" => Test::Unsupported(arg.text.clone()),
            _ => {
                let Some(value) = args.next().filter(|value| !value.text.is_empty()) else {
                    return Err(arg.error(format!(
                        "Match {name} needs an argument, e.g. `Match {name} PATTERN`"
                    )));
                };
                let value_text = value.text.clone();
                match name.as_str() {
                    "host" => Test::Host(value_text),
                    "originalhost" => Test::OriginalHost(value_text),
                    "user" => Test::User(value_text),
                    "localuser" => Test::LocalUser(value_text),
                    _ => Test::Unsupported(format!("{} {value_text}", arg.text)),
                }
            }
        };
        criteria.push(Criterion { negated, test });
    }
    if criteria.is_empty() {
        return Err(LineError {
            column: line.raw_column,
            message: "Match needs at least one criterion, e.g. `Match host PATTERN` or `Match all`"
                .to_owned(),
        });
    }
    Ok(criteria)
}

pub(super) fn parse_port(arg: &Arg) -> Result<u16, LineError> {
    match arg.text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(arg.error(format!(
            "Port must be a number from 1 to 65535, not \"{}\"",
            arg.text
        ))),
    }
}

pub(super) fn parse_flag(line: &Line<'_>) -> Result<bool, LineError> {
    let arg = single_arg(line)?;
    match arg.text.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(arg.error(format!(
            "{} must be yes or no, not \"{}\"",
            line.keyword, arg.text
        ))),
    }
}

pub(super) fn parse_strict_host_key_checking(arg: &Arg) -> Result<String, LineError> {
    let normalized = match arg.text.to_ascii_lowercase().as_str() {
        "yes" | "true" => "yes",
        "no" | "false" | "off" => "no",
        "ask" => "ask",
        "accept-new" => "accept-new",
        _ => {
            return Err(arg.error(format!(
                "StrictHostKeyChecking must be yes, no, ask or accept-new, not \"{}\"",
                arg.text
            )));
        }
    };
    Ok(normalized.to_owned())
}

/// A time like ssh's: `none`, or numbers each with an optional unit
/// (`s`, `m`, `h`, `d`, `w`; seconds without one), summed: `1m30s`.
pub(super) fn parse_time(arg: &Arg) -> Result<Option<Duration>, LineError> {
    if arg.text == "none" {
        return Ok(None);
    }
    seconds_of(&arg.text)
        .map(|seconds| Some(Duration::from_secs(seconds)))
        .ok_or_else(|| {
            arg.error(format!(
                "\"{}\" is not a time; write seconds (30) or a time with units (1m30s)",
                arg.text
            ))
        })
}

pub(super) fn seconds_of(text: &str) -> Option<u64> {
    const LIMIT: u64 = i32::MAX as u64;
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let number: u64 = rest[..digits].parse().ok()?;
        let mut unit_chars = rest[digits..].chars();
        let multiplier = match unit_chars.next() {
            None => 1,
            Some(unit) => match unit.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 60 * 60,
                'd' => 24 * 60 * 60,
                'w' => 7 * 24 * 60 * 60,
                _ => return None,
            },
        };
        total = total.checked_add(number.checked_mul(multiplier)?)?;
        if total > LIMIT {
            return None;
        }
        rest = unit_chars.as_str();
    }
    Some(total)
}

pub(super) fn parse_count(arg: &Arg) -> Result<u32, LineError> {
    match arg.text.parse::<u32>() {
        Ok(count) if count <= i32::MAX as u32 => Ok(count),
        _ => Err(arg.error(format!(
            "{} is not a count; write a whole number such as 3",
            arg.text
        ))),
    }
}

/// Known-hosts files: one or more paths, or `none` alone (an empty list).
pub(super) fn parse_file_list(line: &Line<'_>) -> Result<Vec<String>, LineError> {
    let keyword = line.keyword;
    let Some(first) = line.args.first() else {
        return Err(no_value(keyword, line.raw_column));
    };
    for arg in &line.args {
        if arg.text.is_empty() {
            return Err(arg.error(format!(
                "{keyword} has an empty file name; remove the empty quotes"
            )));
        }
        if arg.text.eq_ignore_ascii_case("none") && line.args.len() > 1 {
            return Err(arg.error(format!(
                "{keyword} none must stand alone; remove either none or the files"
            )));
        }
    }
    if first.text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    Ok(line.args.iter().map(|arg| arg.text.clone()).collect())
}

/// ProxyJump's hops, or an empty list for `none`. Like ssh, the value is
/// taken as written up to a `#`, and each hop must be `[user@]host[:port]`
/// or `ssh://[user@]host[:port]`.
pub(super) fn parse_proxy_jump(line: &Line<'_>) -> Result<Vec<String>, LineError> {
    let raw = raw_value(line);
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let value = raw.split('#').next().unwrap_or_default().trim_end();
    let hops: Vec<String> = value.split(',').map(str::to_owned).collect();
    match hops.iter().find(|hop| !is_valid_jump_hop(hop)) {
        Some(bad) => Err(LineError {
            column: line.raw_column,
            message: format!(
                "ProxyJump hop \"{bad}\" is not [user@]host[:port]; write hops like admin@bastion:2222, separated by commas"
            ),
        }),
        None => Ok(hops),
    }
}

pub(super) fn is_valid_jump_hop(hop: &str) -> bool {
    let (address, port_delimiters): (&str, &[char]) = match hop.strip_prefix("ssh://") {
        Some(uri) => (uri.strip_suffix('/').unwrap_or(uri), &[':']),
        None => (hop, &[':', '/']),
    };
    let host_port = match address.rsplit_once('@') {
        Some(("", _)) => return false,
        Some((_, host_port)) => host_port,
        None => address,
    };
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, after)) => match after.strip_prefix(port_delimiters) {
                Some(port) => (host, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match host_port.split_once(port_delimiters) {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port_is_valid = match port {
        None | Some("") => true,
        Some(port) => port.parse::<u16>().is_ok_and(|port| port > 0),
    };
    !host.is_empty() && port_is_valid
}
