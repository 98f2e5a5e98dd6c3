//! `fleetroll history` (every journal of the inventory, folded and summed;
//! a journal that cannot be read is reported and skipped, never fatal) and
//! `fleetroll report` (one run's page).

use std::io::Write as _;

use super::state::Runs;
use super::{AppError, Exit};
use crate::cli::{HistoryArgs, ReportArgs};
use crate::config::diagnostics::Diagnostic;
use crate::events::Event;
use crate::journal::replay::replay;
use crate::report::history::{History, facts};

pub fn history(args: &HistoryArgs) -> Result<Exit, AppError> {
    let runs = Runs::locate(&args.runs)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut all = Vec::new();
    let mut unreadable = Vec::new();
    let mut other_inventories = 0;
    for run_id in runs.store.run_ids().map_err(AppError::Journal)? {
        let records = match runs.store.read_run(&run_id) {
            Ok(records) => records,
            Err(error) => {
                unreadable.push((run_id, error.to_string()));
                continue;
            }
        };
        let inventory = records.iter().find_map(|envelope| match &envelope.event {
            Event::RunStarted { settings, .. } => Some(settings.inventory.clone()),
            _ => None,
        });
        match (&runs.inventory, inventory) {
            (_, None) => {
                unreadable.push((
                    run_id,
                    "no run_started record: not the journal of a fleetroll run".to_owned(),
                ));
                continue;
            }
            (Some(ours), Some(theirs)) if !runs.store.same_inventory(&theirs, ours) => {
                other_inventories += 1;
                continue;
            }
            _ => {}
        }
        let record = replay(&run_id, &records);
        let outcome = super::commands::live_outcome(&runs.store, &record);
        let run = facts(&record, &records, outcome);
        if since.is_some_and(|since| run.started.is_none_or(|started| started < since)) {
            continue;
        }
        all.push(run);
    }
    let history = History::of(&all, unreadable, other_inventories);
    if let Some(path) = &args.metrics_file
        && let Err(error) = crate::report::metrics::write_atomically(path, &history.metrics())
    {
        tracing::warn!("cannot write the metrics file {}: {error}", path.display());
    }
    let text = if args.json {
        serde_json::to_string(&history).unwrap_or_default() + "\n"
    } else {
        history.render()
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(Exit::Success)
}

/// `2026-11-01` (midnight UTC) or a full timestamp.
fn parse_since(text: &str) -> Result<jiff::Timestamp, AppError> {
    text.parse::<jiff::Timestamp>()
        .or_else(|_| {
            text.parse::<jiff::civil::Date>()
                .map_err(|e| e.to_string())
                .and_then(|date| {
                    date.to_zoned(jiff::tz::TimeZone::UTC)
                        .map(|zoned| zoned.timestamp())
                        .map_err(|e| e.to_string())
                })
        })
        .map_err(|_| {
            AppError::Invalid(
                Diagnostic::plain(format!("--since {text}: not a date or a time"))
                    .with_help(
                        "give a date such as 2026-11-01 or a time such as 2026-11-01T02:00:00Z",
                    )
                    .into(),
            )
        })
}

pub fn report(args: &ReportArgs) -> Result<Exit, AppError> {
    let runs = Runs::locate(&args.runs)?;
    let run_id = runs.run_id(args.run_id.as_deref())?;
    let (record, _) = runs.load(&run_id)?;
    let records = runs.store.read_run(&run_id).map_err(AppError::Journal)?;
    let outcome = super::commands::live_outcome(&runs.store, &record);
    let page = crate::report::html::render(&crate::report::timeline::timeline(
        &run_id, &records, outcome,
    ));
    crate::report::metrics::write_atomically(&args.html, &page).map_err(|error| {
        AppError::Invalid(
            Diagnostic::plain(format!("cannot write {}: {error}", args.html.display()))
                .with_help("check that its directory exists and is writable")
                .into(),
        )
    })?;
    tracing::info!(
        "wrote the report of run {run_id} to {} ({} KB)",
        args.html.display(),
        page.len().div_ceil(1024)
    );
    Ok(Exit::Success)
}
