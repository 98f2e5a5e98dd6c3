//! URLs as they may be shown: in names, events, errors and messages.
//!
//! Probe, gate and webhook URLs often carry secrets: a token in the query
//! string, `user:password@` in front of the host, a `{vars.*}` value that is
//! one. What fleetroll shows of a URL is `scheme://host:port/path`, with the
//! userinfo dropped and the query and fragment replaced by `?…`. It works on
//! the text, so it applies to templates as written (`{address}` stays) as
//! well as to rendered URLs.

/// `url` without userinfo, query or fragment: `http://{address}:8080/healthz?…`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (before_query, cut) = match rest.find(['?', '#']) {
        Some(at) => (&rest[..at], true),
        None => (rest, false),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let (authority, path) = before_query.split_at(authority_end);
    // The host follows the last `@`: a password may contain `@`.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let mut shown = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        shown.push_str(scheme);
        shown.push_str("://");
    }
    shown.push_str(host);
    shown.push_str(path);
    if cut {
        shown.push_str("?…");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scheme_host_port_and_path_and_drops_the_rest() {
        let cases = [
            (
                "http://10.0.0.1:8080/healthz",
                "http://10.0.0.1:8080/healthz",
            ),
            (
                "https://ops:pw@hooks.example.com/h?token=SECRET",
                "https://hooks.example.com/h?…",
            ),
            (
                "http://u:p@ss@{address}:{vars.port}/x#frag",
                "http://{address}:{vars.port}/x?…",
            ),
            ("http://host?token=SECRET", "http://host?…"),
            (
                "http://{vars.user}:{vars.pass}@{address}/",
                "http://{address}/",
            ),
            ("not a url?secret", "not a url?…"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
