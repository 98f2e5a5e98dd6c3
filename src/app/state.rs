//! Where a command's runs are: the inventory's `[state]`, or `--state-dir`.
//!
//! The lock and journals belong to the inventory, not to the working
//! directory, so that cron in `/` and an operator in their home directory
//! share one lock and one history. `run` learns the place from the
//! inventory it loads anyway; `resume`, `status`, `rollback` and `unlock`
//! read only the inventory's `[state]` (`-i INV`), or are pointed at a
//! directory (`--state-dir`).

use std::path::{Path, PathBuf};

use super::AppError;
use super::rollout::{absolute, load_journal};
use crate::cli::RunsArgs;
use crate::config::diagnostics::Diagnostic;
use crate::config::load::load_state;
use crate::config::resolve::state::S3_NOT_SUPPORTED;
use crate::journal::replay::RunRecord;
use crate::journal::store::{TornLine, latest_run_of};
use crate::model::inventory::StateStore;

/// The state directory of `inventory` whose `[state]` is `store`, unless
/// `--state-dir` overrides it. S3 state is refused, even with an override:
/// a local directory would not be the place other controllers look.
pub fn state_dir_of(
    store: &StateStore,
    inventory: &Path,
    override_dir: Option<&Path>,
) -> Result<PathBuf, AppError> {
    match store {
        StateStore::S3 { .. } => Err(AppError::Invalid(
            Diagnostic::plain(format!(
                "{}: {S3_NOT_SUPPORTED} by this fleetroll",
                inventory.display()
            ))
            .with_help(
                "keep the state in a directory every controller shares: \
                 [state] backend = \"local\", dir = \"…\"",
            )
            .into(),
        )),
        StateStore::Local { dir } => {
            Ok(override_dir.map_or_else(|| dir.clone(), Path::to_path_buf))
        }
    }
}

/// The runs a command works with.
#[derive(Debug, Clone)]
pub struct Runs {
    pub dir: PathBuf,
    /// The inventory, as runs record it (its canonical path); `None` for
    /// the runs of every inventory in `dir`.
    pub inventory: Option<String>,
}

impl Runs {
    /// From `-i INV` and/or `--state-dir DIR` (one is required).
    pub fn locate(args: &RunsArgs) -> Result<Self, AppError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match (&args.inventory, &args.state_dir) {
            (Some(inventory), override_dir) => {
                let store = load_state(inventory, home.as_deref()).map_err(AppError::Invalid)?;
                Ok(Self {
                    dir: state_dir_of(&store, inventory, override_dir.as_deref())?,
                    inventory: Some(absolute(inventory).display().to_string()),
                })
            }
            (None, Some(dir)) => Ok(Self {
                dir: dir.clone(),
                inventory: None,
            }),
            (None, None) => Err(AppError::Invalid(
                Diagnostic::plain("which runs? give -i INV (or --state-dir DIR)").into(),
            )),
        }
    }

    /// `given`, or the newest run of the inventory (of any, without one).
    pub fn run_id(&self, given: Option<&str>) -> Result<String, AppError> {
        match given {
            Some(id) => Ok(id.to_owned()),
            None => latest_run_of(&self.dir, self.inventory.as_deref()).map_err(AppError::Journal),
        }
    }

    /// A run's record, refused if it is another inventory's.
    pub fn load(&self, run_id: &str) -> Result<(RunRecord, Option<TornLine>), AppError> {
        let (record, torn) = load_journal(&self.dir, run_id)?;
        if let (Some(inventory), Some(settings)) = (&self.inventory, &record.settings)
            && settings.inventory != *inventory
        {
            return Err(AppError::Invalid(
                Diagnostic::plain(format!(
                    "run {run_id} is a run of {}, not of {inventory}",
                    settings.inventory
                ))
                .with_help("give the run's own inventory with -i, or leave out the run id")
                .into(),
            ));
        }
        Ok((record, torn))
    }
}
