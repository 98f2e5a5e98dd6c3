//! Durations written as in the playbook: `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a duration such as \"500ms\", \"30s\", \"5m\" or \"1h30m\"")]
pub struct DurationError;

/// Parses the friendly duration format; units are required, and calendar
/// units (days and longer) are refused because their length varies.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DurationError);
    }
    let signed: jiff::SignedDuration = text.parse().map_err(|_| DurationError)?;
    Duration::try_from(signed).map_err(|_| DurationError)
}

/// Renders a duration for people: `45s`, `2m 30s`, `1h 5m`, `750ms`.
pub fn human_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 {
        return format!("{}ms", duration.subsec_millis());
    }
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if seconds > 0 && hours == 0 {
        parts.push(format!("{seconds}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("500ms", Some(Duration::from_millis(500))),
            ("30s", Some(Duration::from_secs(30))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("2h", Some(Duration::from_secs(7200))),
            ("30", None),
            ("", None),
            ("5 parsecs", None),
            ("-5s", None),
            ("soon", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn renders_for_people() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(150)), "2m 30s");
        assert_eq!(human_duration(Duration::from_secs(3900)), "1h 5m");
        assert_eq!(human_duration(Duration::from_millis(750)), "750ms");
    }
}
