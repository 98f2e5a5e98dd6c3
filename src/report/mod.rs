//! Reporters: they read events and the run record, and decide nothing.

pub mod history;
pub mod html;
pub mod human;
pub mod json;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod summary;
pub mod timeline;

/// `41.2s`, `3m12s`, `1h02m`: how history and the live view show a
/// length of time.
pub(crate) fn human_seconds(value: f64) -> String {
    let whole = value.round() as u64;
    if value < 60.0 {
        format!("{value:.1}s")
    } else if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    }
}
