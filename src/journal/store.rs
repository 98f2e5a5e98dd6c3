//! Where runs live on disk, and appending to a run's journal durably.
//!
//! Layout under the state directory:
//! `runs/<RUN_ID>.jsonl`, one [`Envelope`] per line. A line cut short by a
//! kill -9 is ignored when reading; every complete line was fsynced before
//! the action it announces was taken.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::events::Envelope;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no run {run_id} in {dir}")]
    NoSuchRun { run_id: String, dir: PathBuf },
    #[error("no runs recorded in {dir}")]
    NoRuns { dir: PathBuf },
}

/// A run's journal opened for appending.
#[derive(Debug)]
pub struct JournalWriter {
    path: PathBuf,
    file: File,
    run_id: String,
    /// Tests: appends left before the disk is "full".
    #[cfg(test)]
    room: Option<usize>,
}

impl JournalWriter {
    /// Opens (creating if needed) the journal of `run_id` for appending.
    pub fn open(state_dir: &Path, run_id: &str) -> Result<Self, JournalError> {
        let path = run_path(state_dir, run_id);
        let open = || -> io::Result<File> {
            std::fs::create_dir_all(path.parent().unwrap_or(state_dir))?;
            OpenOptions::new().create(true).append(true).open(&path)
        };
        let file = open().map_err(|source| JournalError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file,
            run_id: run_id.to_owned(),
            #[cfg(test)]
            room: None,
        })
    }

    /// Tests: every append after the next `records` fails as a full disk.
    #[cfg(test)]
    pub fn full_after(mut self, records: usize) -> Self {
        self.room = Some(records);
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records without syncing; call [`JournalWriter::sync`] before
    /// acting on any of them.
    pub fn append(&mut self, envelope: &Envelope) -> Result<(), JournalError> {
        #[cfg(test)]
        if let Some(room) = &mut self.room {
            if *room == 0 {
                return Err(JournalError::Write {
                    path: self.path.clone(),
                    source: io::Error::from_raw_os_error(28), // ENOSPC
                });
            }
            *room -= 1;
        }
        let mut line = serde_json::to_vec(envelope).map_err(|error| JournalError::Write {
            path: self.path.clone(),
            source: io::Error::other(error),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|source| JournalError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

pub fn run_path(state_dir: &Path, run_id: &str) -> PathBuf {
    runs_dir(state_dir).join(format!("{run_id}.jsonl"))
}

/// Reads every complete record of a run; a torn last line is skipped.
pub fn read_run(state_dir: &Path, run_id: &str) -> Result<Vec<Envelope>, JournalError> {
    let path = run_path(state_dir, run_id);
    let file = File::open(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            JournalError::NoSuchRun {
                run_id: run_id.to_owned(),
                dir: runs_dir(state_dir),
            }
        } else {
            JournalError::Read {
                path: path.clone(),
                source,
            }
        }
    })?;
    let mut records = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| JournalError::Read {
            path: path.clone(),
            source,
        })?;
        // A line that does not parse can only be the one a kill cut short.
        if let Ok(envelope) = serde_json::from_str::<Envelope>(&line) {
            records.push(envelope);
        }
    }
    Ok(records)
}

/// Every run id in the state directory, oldest first (ids sort by start
/// time).
pub fn run_ids(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(runs_dir(state_dir)) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".jsonl").map(str::to_owned)
        })
        .collect();
    ids.sort();
    ids
}

/// The most recent run id (ids sort by start time).
pub fn latest_run(state_dir: &Path) -> Result<String, JournalError> {
    let dir = runs_dir(state_dir);
    let entries = std::fs::read_dir(&dir).map_err(|_| JournalError::NoRuns { dir: dir.clone() })?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".jsonl").map(str::to_owned)
        })
        .max()
        .ok_or(JournalError::NoRuns { dir })
}

/// A new run id: UTC start time, then a few random hex digits so two runs
/// started in the same second on different inventories do not collide.
pub fn new_run_id(now: jiff::Timestamp, entropy: u32) -> String {
    let time = now.strftime("%Y%m%dT%H%M%SZ");
    format!("{time}-{:04x}", entropy & 0xffff)
}
