//! Maintenance-window arithmetic: is the window open at a given instant, and when does it next open or close. Pure.
//!
//! The clock is never read here: callers pass `now`, so the dispatcher and
//! `plan` agree on one instant and tests can pin it.
//!
//! An *opening* belongs to the local day it starts on: it starts at `start`
//! (local time in the window's time zone) on a day listed in `days` (every
//! day when `days` is empty) and ends at `end` on the same day when
//! `end > start`, otherwise on the next day (the window crosses midnight).
//! So a Saturday 22:00–04:00 window is open until Sunday 04:00, even though
//! Sunday is not listed.
//!
//! Daylight-saving changes follow jiff's "compatible" disambiguation, the
//! behaviour of RFC 5545 and of most schedulers:
//! - a local time that does not exist (spring-forward gap) is moved forward
//!   by the length of the gap: in Europe/Berlin on 2026-03-29, 02:30 becomes
//!   03:30 CEST;
//! - a local time that occurs twice (autumn fold) means the earlier one.
//!
//! The window therefore keeps its wall-clock edges and its real length
//! changes on those days: 01:30–03:30 lasts one hour on the spring change day
//! and three hours on the autumn one.

use std::time::Duration;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::model::playbook::Window;

/// Where `now` stands relative to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Inside an opening that ends at `closes_at`.
    Open { closes_at: Timestamp },
    /// Between openings; the next one runs from `opens_at` to `closes_at`.
    Closed {
        opens_at: Timestamp,
        closes_at: Timestamp,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("unknown time zone \"{name}\" in [window]")]
    UnknownTimeZone {
        name: String,
        #[source]
        source: jiff::Error,
    },
    /// Only near the ends of jiff's supported range (years -9999 and 9999).
    #[error("the maintenance window around {now} is outside the supported date range")]
    OutOfRange {
        now: Timestamp,
        #[source]
        source: jiff::Error,
    },
    /// Cannot happen with a valid `Window` (any weekday recurs within the
    /// search), but the search is bounded, so its end is an error, not a panic.
    #[error("the maintenance window does not open in the 8 days after {now}")]
    NoOpening { now: Timestamp },
}

/// How many days after today to look for the next opening; a weekly window
/// always opens within 7.
const SEARCH_DAYS: i32 = 8;

/// Whether the window is open at `now`, and its next edges.
pub fn window_state(window: &Window, now: Timestamp) -> Result<WindowState, WindowError> {
    let tz = time_zone(window)?;
    let out_of_range = |source| WindowError::OutOfRange { now, source };
    let today = now.to_zoned(tz.clone()).date();
    // Start from yesterday: an opening that started yesterday and crosses
    // midnight may still be open now.
    let mut day = today.yesterday().map_err(out_of_range)?;
    // Openings start in day order and never overlap (each is at most 24 h
    // of wall-clock time), so the first one that has not ended yet is either
    // the one we are in or the next one.
    for _ in 0..SEARCH_DAYS + 2 {
        if opens_on(window, day.weekday()) {
            let (opens_at, closes_at) = opening(window, &tz, day).map_err(out_of_range)?;
            if now < closes_at {
                return Ok(if now >= opens_at {
                    WindowState::Open { closes_at }
                } else {
                    WindowState::Closed {
                        opens_at,
                        closes_at,
                    }
                });
            }
        }
        day = day.tomorrow().map_err(out_of_range)?;
    }
    Err(WindowError::NoOpening { now })
}

/// Whether a batch expected to take `expected` can start at `now` and still
/// finish by `closes_at`. A batch that would overrun is not started: a host
/// left half-patched when the window closes is worse than a later start.
pub fn fits(state_closes_at: Timestamp, now: Timestamp, expected: Duration) -> bool {
    SignedDuration::try_from(expected)
        .ok()
        .and_then(|expected| now.checked_add(expected).ok())
        .is_some_and(|finish| finish <= state_closes_at)
}

/// One line for humans about the window's next edge, e.g.
/// "opens sat 2026-11-28 02:00 Europe/Berlin (in 5d 3h)" or
/// "open until sun 2026-11-29 05:00 Europe/Berlin (closes in 2h 10m)".
pub fn describe_next(window: &Window, now: Timestamp) -> String {
    let state = match window_state(window, now) {
        Ok(state) => state,
        Err(error) => return error.to_string(),
    };
    // `window_state` succeeded, so the zone exists.
    let Ok(tz) = time_zone(window) else {
        return format!("unknown time zone \"{}\"", window.timezone);
    };
    match state {
        WindowState::Open { closes_at } => format!(
            "open until {} (closes in {})",
            local(closes_at, &tz, &window.timezone),
            human_duration(now.duration_until(closes_at))
        ),
        WindowState::Closed { opens_at, .. } => format!(
            "opens {} (in {})",
            local(opens_at, &tz, &window.timezone),
            human_duration(now.duration_until(opens_at))
        ),
    }
}

fn time_zone(window: &Window) -> Result<TimeZone, WindowError> {
    TimeZone::get(&window.timezone).map_err(|source| WindowError::UnknownTimeZone {
        name: window.timezone.clone(),
        source,
    })
}

fn opens_on(window: &Window, weekday: Weekday) -> bool {
    window.days.is_empty() || window.days.contains(&weekday)
}

/// The opening that starts on local `day`, as instants.
fn opening(
    window: &Window,
    tz: &TimeZone,
    day: Date,
) -> Result<(Timestamp, Timestamp), jiff::Error> {
    let end_day = if window.end > window.start {
        day
    } else {
        day.tomorrow()?
    };
    let start = tz
        .to_ambiguous_timestamp(day.to_datetime(window.start))
        .compatible()?;
    let end = tz
        .to_ambiguous_timestamp(end_day.to_datetime(window.end))
        .compatible()?;
    Ok((start, end))
}

fn local(at: Timestamp, tz: &TimeZone, name: &str) -> String {
    let zoned = at.to_zoned(tz.clone());
    format!(
        "{} {} {name}",
        weekday_label(zoned.weekday()),
        zoned.strftime("%Y-%m-%d %H:%M")
    )
}

/// The spelling the playbook uses for `days`.
fn weekday_label(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

/// The two largest units, which is as precise as a person planning
/// around a window needs: "5d 3h", "2h 10m", "45m", "30s".
fn human_duration(span: SignedDuration) -> String {
    let secs = span.as_secs().max(0);
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::Time;

    use super::*;

    fn window(days: &[Weekday], start: (i8, i8), end: (i8, i8), tz: &str) -> Window {
        Window {
            days: days.to_vec(),
            start: Time::constant(start.0, start.1, 0, 0),
            end: Time::constant(end.0, end.1, 0, 0),
            timezone: tz.into(),
        }
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn open(closes_at: &str) -> WindowState {
        WindowState::Open {
            closes_at: ts(closes_at),
        }
    }

    fn closed(opens_at: &str, closes_at: &str) -> WindowState {
        WindowState::Closed {
            opens_at: ts(opens_at),
            closes_at: ts(closes_at),
        }
    }

    #[test]
    fn window_state_table() {
        use Weekday::*;
        let weekend = window(&[Saturday, Sunday], (2, 0), (5, 0), "Europe/Berlin");
        let nightly = window(&[], (22, 0), (4, 0), "Europe/Berlin");
        let saturday_night = window(&[Saturday], (22, 0), (4, 0), "UTC");
        let spring = window(&[], (1, 30), (3, 30), "Europe/Berlin");
        let spring_gap = window(&[], (2, 30), (4, 0), "Europe/Berlin");
        let saturday = window(&[Saturday], (2, 0), (5, 0), "Europe/Berlin");
        // (name, window, now, expected); Berlin is UTC+1 in winter, UTC+2 in summer.
        let cases = [
            (
                "inside",
                &weekend,
                "2026-11-28T02:30:00Z", // sat 03:30 CET
                open("2026-11-28T04:00:00Z"),
            ),
            (
                "opens at its start instant",
                &weekend,
                "2026-11-28T01:00:00Z",
                open("2026-11-28T04:00:00Z"),
            ),
            (
                "before, same day",
                &weekend,
                "2026-11-28T00:00:00Z", // sat 01:00 CET
                closed("2026-11-28T01:00:00Z", "2026-11-28T04:00:00Z"),
            ),
            (
                "after, next opening is tomorrow",
                &weekend,
                "2026-11-28T04:00:00Z", // sat 05:00 CET: closed at its end instant
                closed("2026-11-29T01:00:00Z", "2026-11-29T04:00:00Z"),
            ),
            (
                "day not listed",
                &weekend,
                "2026-11-25T02:30:00Z", // wed 03:30 CET
                closed("2026-11-28T01:00:00Z", "2026-11-28T04:00:00Z"),
            ),
            (
                "crossing midnight, opened yesterday, still open at 01:00",
                &nightly,
                "2026-11-25T00:00:00Z", // wed 01:00 CET
                open("2026-11-25T03:00:00Z"),
            ),
            (
                "crossing midnight, Sunday morning belongs to Saturday's opening",
                &saturday_night,
                "2026-11-29T03:00:00Z",
                open("2026-11-29T04:00:00Z"),
            ),
            (
                "crossing midnight, closed in the afternoon",
                &nightly,
                "2026-11-25T14:00:00Z",
                closed("2026-11-25T21:00:00Z", "2026-11-26T03:00:00Z"),
            ),
            (
                // 01:30 CET = 00:30Z to 03:30 CEST = 01:30Z: one hour of real time.
                "spring change shortens the opening",
                &spring,
                "2026-03-29T00:00:00Z",
                closed("2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"),
            ),
            (
                // 02:30 does not exist on 2026-03-29; it moves to 03:30 CEST.
                "spring gap start moves forward",
                &spring_gap,
                "2026-03-29T00:00:00Z",
                closed("2026-03-29T01:30:00Z", "2026-03-29T02:00:00Z"),
            ),
            (
                // 01:30 CEST = 23:30Z to 03:30 CET = 02:30Z: three hours.
                "autumn change lengthens the opening",
                &spring,
                "2026-10-24T23:00:00Z",
                closed("2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z"),
            ),
            (
                "autumn change, still open in the repeated hour",
                &spring,
                "2026-10-25T01:15:00Z", // 02:15 CET, the second 02:15
                open("2026-10-25T02:30:00Z"),
            ),
            (
                "Saturday-only window seen on a Monday opens the coming Saturday",
                &saturday,
                "2026-11-23T09:00:00Z", // mon
                closed("2026-11-28T01:00:00Z", "2026-11-28T04:00:00Z"),
            ),
        ];
        for (name, window, now, expected) in cases {
            let got = window_state(window, ts(now)).unwrap();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn fixture_weekdays_are_what_the_table_says() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let day = |t: &str| ts(t).to_zoned(berlin.clone()).weekday();
        assert_eq!(day("2026-11-23T09:00:00Z"), Weekday::Monday);
        assert_eq!(day("2026-11-28T09:00:00Z"), Weekday::Saturday);
        assert_eq!(day("2026-03-29T09:00:00Z"), Weekday::Sunday);
        assert_eq!(day("2026-10-25T09:00:00Z"), Weekday::Sunday);
    }

    #[test]
    fn fits_only_when_the_batch_ends_before_the_window() {
        let closes_at = ts("2026-11-28T04:00:00Z");
        let now = ts("2026-11-28T03:30:00Z");
        let cases = [
            (Duration::from_secs(20 * 60), true),
            (Duration::from_secs(30 * 60), true), // ends exactly at close
            (Duration::from_secs(31 * 60), false),
            (Duration::MAX, false),
        ];
        for (expected, fits_in) in cases {
            assert_eq!(fits(closes_at, now, expected), fits_in, "{expected:?}");
        }
    }

    #[test]
    fn unknown_time_zone_is_an_error() {
        let bad = window(&[], (2, 0), (5, 0), "Mars/Olympus_Mons");
        let error = window_state(&bad, ts("2026-11-28T00:00:00Z")).unwrap_err();
        assert!(matches!(error, WindowError::UnknownTimeZone { .. }));
        assert!(error.to_string().contains("Mars/Olympus_Mons"));
    }

    #[test]
    fn describe_next_table() {
        use Weekday::*;
        let weekend = window(&[Saturday, Sunday], (2, 0), (5, 0), "Europe/Berlin");
        let cases = [
            (
                "2026-11-22T22:00:00Z", // sun 23:00 CET
                "opens sat 2026-11-28 02:00 Europe/Berlin (in 5d 3h)",
            ),
            (
                "2026-11-29T01:50:00Z", // sun 02:50 CET
                "open until sun 2026-11-29 05:00 Europe/Berlin (closes in 2h 10m)",
            ),
            (
                "2026-11-28T00:15:00Z",
                "opens sat 2026-11-28 02:00 Europe/Berlin (in 45m)",
            ),
            (
                "2026-11-28T00:59:30Z",
                "opens sat 2026-11-28 02:00 Europe/Berlin (in 30s)",
            ),
        ];
        for (now, expected) in cases {
            assert_eq!(describe_next(&weekend, ts(now)), expected, "{now}");
        }
    }
}
