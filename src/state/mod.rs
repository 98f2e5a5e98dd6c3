//! Where an inventory's lock and run journals live while fleetroll works:
//! a directory on this machine, or an S3 bucket every controller shares
//! (the inventory's `[state]`, see `crate::model::inventory::StateStore`).

pub mod bucket;
pub mod lease;
pub mod owner;
pub mod segments;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::events::Envelope;
use crate::journal::store::{self, Journal, JournalError, JournalWriter, decode_records};
use bucket::{Bucket, ObjectError};

#[derive(Debug, Clone)]
pub enum Store {
    /// `runs/RUN_ID.jsonl` and `locks/` under a directory.
    Dir(PathBuf),
    /// `runs/RUN_ID/NNNNNN.jsonl` and `lock.json` under a bucket's prefix;
    /// a holder silent for `lease` is presumed dead.
    Bucket {
        bucket: Arc<Bucket>,
        lease: std::time::Duration,
    },
}

impl Store {
    /// The directory or `s3://bucket/prefix`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Store::Dir(dir) => dir.display().to_string(),
            Store::Bucket { bucket, .. } => bucket.location(),
        }
    }

    /// The host whose process ids the lock's holders can be checked
    /// against: this one for a local directory, none for shared state
    /// (another machine's pid means nothing here).
    pub fn pid_host(&self) -> Option<String> {
        match self {
            Store::Dir(_) => Some(crate::lock::this_host()),
            Store::Bucket { .. } => None,
        }
    }

    /// Whether a run recorded for `recorded` (a canonical inventory path)
    /// is a run of `inventory`. A directory may hold the runs of several
    /// inventories; in a bucket, each machine keeps the inventory at a path
    /// of its own, and its file name is what they share (see
    /// [`owner`]: a prefix belongs to one inventory).
    pub fn same_inventory(&self, recorded: &str, inventory: &str) -> bool {
        match self {
            Store::Dir(_) => recorded == inventory,
            Store::Bucket { .. } => {
                owner::inventory_name(recorded) == owner::inventory_name(inventory)
            }
        }
    }

    pub fn open_journal(&self, run_id: &str) -> Result<JournalWriter, JournalError> {
        match self {
            Store::Dir(dir) => JournalWriter::open(dir, run_id),
            Store::Bucket { bucket, .. } => JournalWriter::open_in_bucket(bucket, run_id),
        }
    }

    /// Every complete record of a run.
    pub fn read_journal(&self, run_id: &str) -> Result<Journal, JournalError> {
        match self {
            Store::Dir(dir) => store::read_journal(dir, run_id),
            Store::Bucket { bucket, .. } => {
                let location = bucket.url_of(&format!("{}{run_id}/", segments::RUNS_DIR));
                let bytes = segments::read_run(bucket, run_id)
                    .map_err(|error| read_error(&location, error))?
                    .ok_or_else(|| JournalError::NoSuchRun {
                        run_id: run_id.to_owned(),
                        dir: bucket.url_of(segments::RUNS_DIR).into(),
                    })?;
                let mut records = Vec::new();
                let torn = decode_records(bytes.as_slice(), Path::new(&location), |envelope| {
                    records.push(envelope);
                    true
                })?;
                Ok(Journal { records, torn })
            }
        }
    }

    pub fn read_run(&self, run_id: &str) -> Result<Vec<Envelope>, JournalError> {
        self.read_journal(run_id).map(|journal| journal.records)
    }

    /// Every run id, oldest first.
    pub fn run_ids(&self) -> Result<Vec<String>, JournalError> {
        match self {
            Store::Dir(dir) => Ok(store::run_ids(dir)),
            Store::Bucket { bucket, .. } => segments::run_ids(bucket)
                .map_err(|error| read_error(&bucket.url_of(segments::RUNS_DIR), error)),
        }
    }

    /// The most recent run of `inventory` (its canonical path), or of any
    /// inventory without one.
    pub fn latest_run_of(&self, inventory: Option<&str>) -> Result<String, JournalError> {
        match self {
            Store::Dir(dir) => store::latest_run_of(dir, inventory),
            Store::Bucket { bucket, .. } => {
                let ids = self.run_ids()?;
                let no_runs = || JournalError::NoRuns {
                    dir: bucket.url_of(segments::RUNS_DIR).into(),
                };
                let Some(inventory) = inventory else {
                    return ids.into_iter().next_back().ok_or_else(no_runs);
                };
                for id in ids.into_iter().rev() {
                    let of = self.read_run(&id)?.into_iter().find_map(|e| match e.event {
                        crate::events::Event::RunStarted { settings, .. } => {
                            Some(settings.inventory)
                        }
                        _ => None,
                    });
                    if of.is_some_and(|of| self.same_inventory(&of, inventory)) {
                        return Ok(id);
                    }
                }
                Err(JournalError::NoRunsOf {
                    inventory: inventory.to_owned(),
                    dir: bucket.url_of(segments::RUNS_DIR).into(),
                })
            }
        }
    }
}

fn read_error(location: &str, error: ObjectError) -> JournalError {
    JournalError::Read {
        path: location.into(),
        source: std::io::Error::other(error),
    }
}
