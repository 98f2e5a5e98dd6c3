//! Host patterns with ranges, `web[01:20]`, expanded.

/// The most hosts one pattern may expand to.
pub(super) const RANGE_LIMIT: usize = 100_000;

/// A host pattern: `name`, `name:port`, `[v6::addr]:port`, with ranges.
pub(super) fn host_pattern(pattern: &str) -> Result<(Vec<String>, Option<i64>), String> {
    if pattern.is_empty() {
        return Err("empty host name".to_owned());
    }
    let (base, port) = split_port(pattern)?;
    let mut names = Vec::new();
    expand_ranges(base, &mut names)
        .map_err(|why| format!("bad host range in `{pattern}`: {why}"))?;
    Ok((names, port))
}

pub(super) fn split_port(pattern: &str) -> Result<(&str, Option<i64>), String> {
    // `[2001:db8::1]` or `[2001:db8::1]:22`: an IPv6 address, not a range.
    if let Some(inner) = pattern.strip_prefix('[') {
        if let Some((address, after)) = inner.split_once(']') {
            let colons = address.matches(':').count();
            let ipv6 = (address.contains("::") || colons >= 7)
                && address
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
            if ipv6 {
                return match after.strip_prefix(':') {
                    None if after.is_empty() => Ok((address, None)),
                    Some(port) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
                        Ok((
                            address,
                            Some(port.parse().map_err(|_| "port too large".to_owned())?),
                        ))
                    }
                    _ => Err(format!(
                        "`{pattern}` is not an address with an optional :port"
                    )),
                };
            }
        }
    }
    let mut depth = 0i32;
    let mut colons_outside = Vec::new();
    for (at, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons_outside.push(at),
            _ => {}
        }
    }
    match colons_outside.as_slice() {
        [] => Ok((pattern, None)),
        [at] => {
            let (base, port) = (&pattern[..*at], &pattern[at + 1..]);
            if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "`{pattern}`: a host may be followed by `:PORT` only (digits)"
                ));
            }
            Ok((
                base,
                Some(port.parse().map_err(|_| "port too large".to_owned())?),
            ))
        }
        // A bare IPv6 address: no port.
        _ => Ok((pattern, None)),
    }
}

/// Ansible's `expand_hostname_range`: the first `[begin:end(:step)]`
/// expanded, then the rest of each name.
pub(super) fn expand_ranges(pattern: &str, names: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err("a `]` without its `[`".to_owned());
        }
        names.push(pattern.to_owned());
        return Ok(());
    };
    let close = pattern[open..]
        .find(']')
        .map(|at| open + at)
        .ok_or("a `[` without its `]`")?;
    if pattern[..open].contains(']') {
        return Err("a `]` without its `[`".to_owned());
    }
    let (head, spec, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let bounds: Vec<&str> = spec.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "`[{spec}]` is not [begin:end] or [begin:end:step] (write web[01:20] or db-[a:f])"
        ));
    }
    let begin = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("`[{spec}]` has no end"));
    }
    let step = match bounds.get(2) {
        Some(step) => step
            .parse::<usize>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("the step of `[{spec}]` is not a positive whole number"))?,
        None => 1,
    };
    let letters: Vec<char> = ('a'..='z').chain('A'..='Z').collect();
    let letter_index = |text: &str| {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => letters.iter().position(|l| *l == c),
            _ => None,
        }
    };
    let items: Vec<String> = match (letter_index(begin), letter_index(end)) {
        (Some(first), Some(last)) => {
            if first > last {
                return Err(format!("`[{spec}]` begins after it ends"));
            }
            letters[first..=last]
                .iter()
                .step_by(step)
                .map(char::to_string)
                .collect()
        }
        _ => {
            let number = |text: &str| {
                text.parse::<u64>().map_err(|_| {
                    format!("`{text}` in `[{spec}]` is neither a whole number nor a letter")
                })
            };
            let (first, last) = (number(begin)?, number(end)?);
            if first > last {
                return Err(format!("`[{spec}]` begins after it ends"));
            }
            let width = if begin.starts_with('0') && begin.len() > 1 {
                if begin.len() != end.len() {
                    return Err(format!(
                        "`[{spec}]`: a zero-padded range needs a begin and end of the same width, \
                         as in [01:20]"
                    ));
                }
                begin.len()
            } else {
                0
            };
            let count = (last - first) / step as u64 + 1;
            if count > RANGE_LIMIT as u64 {
                return Err(format!("`[{spec}]` makes more than {RANGE_LIMIT} hosts"));
            }
            (first..=last)
                .step_by(step)
                .map(|n| format!("{n:0width$}"))
                .collect()
        }
    };
    for item in items {
        expand_ranges(&format!("{head}{item}{tail}"), names)?;
        if names.len() > RANGE_LIMIT {
            return Err(format!("the pattern makes more than {RANGE_LIMIT} hosts"));
        }
    }
    Ok(())
}
