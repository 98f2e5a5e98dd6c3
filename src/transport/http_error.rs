//! What an HTTP client error may say: its kind and causes, never its URL.
//!
//! reqwest's `Display` ends with `for url (…)`, the whole URL with its query
//! string, which is where tokens live. Probes and gates name their URL by
//! its template instead (see `model::redact`), so the error text drops it.

/// `error` as text without the URL: "timed out", "connection refused or
/// unreachable", or reqwest's message followed by its causes (TLS, DNS…).
pub fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    if error.is_connect() {
        return "connection refused or unreachable".to_owned();
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
