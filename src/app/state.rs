//! Where a command's runs are: the inventory's `[state]`, or `--state-dir`.
//!
//! The lock and journals belong to the inventory, not to the working
//! directory, so that cron in `/` and an operator in their home directory
//! share one lock and one history. `run` learns the place from the
//! inventory it loads anyway; `resume`, `status`, `rollback` and `unlock`
//! read only the inventory's `[state]` (`-i INV`), or are pointed at a
//! directory (`--state-dir`). S3 state is shared by every machine: there
//! the bucket's prefix, not a path, says which inventory a run belongs to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::AppError;
use super::rollout::{absolute, load_journal};
use crate::cli::RunsArgs;
use crate::config::diagnostics::Diagnostic;
use crate::config::load::load_state;
use crate::journal::replay::RunRecord;
use crate::journal::store::TornLine;
use crate::model::inventory::StateStore;
use crate::state::Store;
use crate::state::bucket::Bucket;

/// Where the runs of `inventory`, whose `[state]` is `config`, live.
/// `--state-dir` overrides a local directory; it cannot stand in for a
/// bucket, which is the place every other controller looks.
pub fn open_store(
    config: &StateStore,
    inventory: &Path,
    override_dir: Option<&Path>,
) -> Result<Store, AppError> {
    match config {
        StateStore::Local { dir } => Ok(Store::Dir(
            override_dir.map_or_else(|| dir.clone(), Path::to_path_buf),
        )),
        StateStore::S3 { .. } if override_dir.is_some() => Err(AppError::Invalid(
            Diagnostic::plain(format!(
                "{}: its runs are kept in S3 ([state] backend = \"s3\"), so --state-dir would hide them from every other controller",
                inventory.display()
            ))
            .with_help("leave out --state-dir")
            .into(),
        )),
        StateStore::S3 {
            bucket,
            prefix,
            region,
            endpoint_url,
            lease,
        } => {
            let bucket = Bucket::connect(bucket, prefix, region.as_deref(), endpoint_url.as_deref())
                .map_err(|error| {
                    AppError::Invalid(
                        Diagnostic::plain(format!("cannot start the S3 client: {error}")).into(),
                    )
                })?;
            Ok(Store::Bucket {
                bucket: Arc::new(bucket),
                lease: *lease,
            })
        }
    }
}

/// The runs a command works with.
#[derive(Debug, Clone)]
pub struct Runs {
    pub store: Store,
    /// The inventory, as runs record it (its canonical path); `None` for
    /// the runs of every inventory in `store`.
    pub inventory: Option<String>,
    /// The inventory file as given with `-i`.
    pub inventory_path: Option<PathBuf>,
}

impl Runs {
    /// From `-i INV` and/or `--state-dir DIR` (one is required).
    pub fn locate(args: &RunsArgs) -> Result<Self, AppError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match (&args.inventory, &args.state_dir) {
            (Some(inventory), override_dir) => {
                let config = load_state(inventory, home.as_deref()).map_err(AppError::Invalid)?;
                Ok(Self {
                    store: open_store(&config, inventory, override_dir.as_deref())?,
                    inventory: Some(absolute(inventory).display().to_string()),
                    inventory_path: Some(inventory.clone()),
                })
            }
            (None, Some(dir)) => Ok(Self {
                store: Store::Dir(dir.clone()),
                inventory: None,
                inventory_path: None,
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
            None => self
                .store
                .latest_run_of(self.inventory.as_deref())
                .map_err(AppError::Journal),
        }
    }

    /// A run's record, refused if it is another inventory's.
    pub fn load(&self, run_id: &str) -> Result<(RunRecord, Option<TornLine>), AppError> {
        let (record, torn) = load_journal(&self.store, run_id)?;
        if let (Some(inventory), Some(settings)) = (&self.inventory, &record.settings)
            && !self.store.same_inventory(&settings.inventory, inventory)
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
