//! `fleetroll import ansible FILE`: the conversion, then where it goes.

use std::io::Write as _;

use super::{AppError, Exit};
use crate::cli::AnsibleImportArgs;
use crate::config::diagnostics::Diagnostic;
use crate::import::ansible::{ZoneFrom, import};

pub fn ansible(args: &AnsibleImportArgs) -> Result<Exit, AppError> {
    let invalid = |message: String, help: &str| {
        AppError::Invalid(Diagnostic::plain(message).with_help(help.to_owned()).into())
    };
    let zone_from = match &args.zone_from {
        None => ZoneFrom::None,
        Some(text) => text.parse().map_err(|message: String| {
            invalid(
                format!("--zone-from {text}: {message}"),
                "give --zone-from group:PREFIX or --zone-from var:NAME",
            )
        })?,
    };
    if let Some(output) = &args.output
        && output.exists()
    {
        return Err(invalid(
            format!("{} exists; nothing was written", output.display()),
            "give -o a new file name, or move the existing one aside",
        ));
    }
    let imported = import(&args.file, &zone_from).map_err(|error| {
        invalid(
            error.to_string(),
            "fix the Ansible inventory, or convert the part fleetroll can read",
        )
    })?;
    for warning in &imported.warnings {
        tracing::warn!("{warning}");
    }
    match &args.output {
        Some(output) => {
            crate::report::metrics::write_atomically(output, &imported.toml).map_err(|error| {
                invalid(
                    format!("cannot write {}: {error}", output.display()),
                    "check that its directory exists and is writable",
                )
            })?;
            tracing::info!(
                "wrote {}: {} hosts in {} zones; check it with fleetroll validate -i {} -p PLAYBOOK",
                output.display(),
                imported.hosts,
                imported.zones,
                output.display()
            );
        }
        None => {
            let _ = std::io::stdout().lock().write_all(imported.toml.as_bytes());
        }
    }
    Ok(Exit::Success)
}
