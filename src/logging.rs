//! Diagnostics through `tracing`: what fleetroll says about itself, apart
//! from the event stream the reporters print.
//!
//! On stderr: info lines as they are, warnings as `fleetroll: warning: …`
//! and errors as `fleetroll: error: …`, so cron mail reads as it always
//! did; debug and trace lines name their module. `-q`, `-v` and `-vv`
//! choose the level, and `RUST_LOG` (the usual `tracing` directives)
//! overrides them. Other crates' diagnostics show from `-v` on.
//!
//! `--log-file F` appends a plain-text, timestamped copy of the run to `F`:
//! every diagnostic at info and above (or what `-v` asks for) and every
//! line the human reporter prints (target [`EVENTS`]), so a cron job keeps
//! its log whether or not its mail is read.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt as tfmt};

/// The target of the human reporter's lines: written to the log file only
/// (the reporter prints them on stderr itself).
pub const EVENTS: &str = "fleetroll::events";

/// How much the command line asked to hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbosity {
    pub quiet: bool,
    pub verbose: u8,
}

impl Verbosity {
    /// The `tracing` directives for stderr, before `RUST_LOG`.
    fn directives(self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "fleetroll=error",
            (false, 0) => "fleetroll=info",
            (false, 1) => "fleetroll=debug,warn",
            (false, 2) => "fleetroll=trace,info",
            (false, _) => "trace",
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open the log file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "RUST_LOG is not a valid filter ({0}); unset it or see the tracing-subscriber EnvFilter syntax"
    )]
    Filter(String),
}

/// Installs the process's subscriber. Call once, first thing.
pub fn init(verbosity: Verbosity, log_file: Option<&Path>) -> Result<(), LoggingError> {
    let chosen = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => directives,
        _ => verbosity.directives().to_owned(),
    };
    let stderr_filter = EnvFilter::try_new(format!("{chosen},{EVENTS}=off"))
        .map_err(|error| LoggingError::Filter(error.to_string()))?;
    let stderr = tfmt::layer()
        .with_writer(std::io::stderr)
        .event_format(Plain)
        .with_filter(stderr_filter);
    let file = match log_file {
        None => None,
        Some(path) => {
            let file = open_append(path)?;
            // At least info, whatever -q says: the file is the record.
            let base = if verbosity.quiet || verbosity.verbose == 0 {
                "fleetroll=info"
            } else {
                verbosity.directives()
            };
            let filter = EnvFilter::try_new(format!("{base},{EVENTS}=info"))
                .map_err(|error| LoggingError::Filter(error.to_string()))?;
            Some(
                tfmt::layer()
                    .with_writer(Mutex::new(file))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(filter),
            )
        }
    };
    // A second init (tests calling `app::run` twice) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(())
}

fn open_append(path: &Path) -> Result<File, LoggingError> {
    let failed = |source| LoggingError::File {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(failed)
}

/// The stderr format: plain for info, prefixed otherwise.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record (russh logs through `log`) carries its real target
        // in fields; name it, not "log".
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        match *metadata.level() {
            Level::ERROR => write!(writer, "fleetroll: error: ")?,
            Level::WARN => write!(writer, "fleetroll: warning: ")?,
            Level::INFO => {}
            Level::DEBUG => write!(writer, "fleetroll: debug: {}: ", metadata.target())?,
            Level::TRACE => write!(writer, "fleetroll: trace: {}: ", metadata.target())?,
        }
        context
            .field_format()
            .format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_onto_levels() {
        let level = |quiet, verbose| Verbosity { quiet, verbose }.directives();
        assert_eq!(level(true, 0), "fleetroll=error");
        assert_eq!(level(false, 0), "fleetroll=info");
        assert_eq!(level(false, 1), "fleetroll=debug,warn");
        assert_eq!(level(false, 2), "fleetroll=trace,info");
        assert_eq!(level(false, 5), "trace");
    }
}
