//! Where runs live on disk, and appending to a run's journal durably.
//!
//! Layout under the state directory: `runs/<RUN_ID>.jsonl`, one record per
//! line ([`super::format`]). Durability: the journal file and every
//! directory created on the way to it are fsynced into their parents when
//! it is opened, and every record is fsynced before the action it
//! announces is taken. So a kill -9 can only cut the *last* line short:
//! readers drop an unterminated last line (its record was never synced,
//! nothing acted on it) and report it, and a writer truncates it before
//! appending, so the next record does not join it. Any other line that
//! does not parse is corruption, and reading stops there with the file and
//! line number.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::io::{Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use super::format::{self, DecodeError, FORMAT_VERSION};
use crate::events::{Envelope, Event};
use crate::state::bucket::Bucket;
use crate::state::segments::{SegmentError, SegmentWriter};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the journal {} is corrupt at line {line} ({reason}); only a last line cut short by an interruption is tolerated. Repair or remove that line, or move the file aside",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "the journal {} was written by a newer fleetroll (format version {version} at line {line}; this one reads up to version {FORMAT_VERSION}): use that fleetroll or a newer one",
        path.display()
    )]
    NewerFormat {
        path: PathBuf,
        line: usize,
        version: u32,
    },
    #[error(
        "another fleetroll took over the journal {location} ({why}): this run lost the inventory's lock, so it starts nothing more"
    )]
    Fenced { location: String, why: String },
    #[error("no run {run_id} in {}", dir.display())]
    NoSuchRun { run_id: String, dir: PathBuf },
    #[error("no runs recorded in {}", dir.display())]
    NoRuns { dir: PathBuf },
    #[error("no runs of {inventory} recorded in {}", dir.display())]
    NoRunsOf { inventory: String, dir: PathBuf },
}

/// Where a writer's records go.
#[derive(Debug)]
enum Sink {
    /// Appended to the run's file, fsynced per group.
    File(File),
    /// One segment object per group.
    Segments(SegmentWriter),
}

/// Proof that a writer still holds the inventory's lock, checked before
/// each group of records is written to a file: a lock broken by
/// `unlock --force` and taken by another run fences the old holder at its
/// next write, even if it was frozen past its lease and woke before its
/// heartbeat could tell it. (A journal in a bucket is fenced by its
/// segment numbers instead.)
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// Holds off any change to the lock until the turn is dropped; `Err`
    /// says whose the lock is now.
    fn turn(&self) -> Result<FenceTurn, FenceError>;
}

/// Held while a group is written: nobody can break or take the lock.
pub type FenceTurn = Box<dyn Send>;

#[derive(Debug)]
pub enum FenceError {
    /// The lock is no longer this writer's: why.
    Lost(String),
    /// The lock could not be checked.
    Unchecked(io::Error),
}

/// A run's journal opened for appending.
#[derive(Debug)]
pub struct JournalWriter {
    path: PathBuf,
    sink: Sink,
    /// Checked before every write to a file.
    fence: Option<Arc<dyn Fence>>,
    run_id: String,
    /// Records appended since the last sync: written with one `write` and
    /// one `fdatasync` per group, not one syscall per record (10,000 hosts
    /// append about 170,000 records).
    pending: Vec<u8>,
    /// Tests: appends left before the disk is "full".
    #[cfg(test)]
    room: Option<usize>,
    /// Tests: whole lines the disk still takes, and the share (percent) of
    /// the next line written before the write fails, as on a full disk.
    #[cfg(test)]
    lines_room: Option<(usize, u8)>,
    /// Bytes of a torn last line dropped on opening.
    dropped: Option<u64>,
}

impl JournalWriter {
    /// Opens (creating if needed, durably) the journal of `run_id` for
    /// appending, after dropping a last line that an interruption cut short.
    pub fn open(state_dir: &Path, run_id: &str) -> Result<Self, JournalError> {
        let path = run_path(state_dir, run_id);
        let write_error = |source| JournalError::Write {
            path: path.clone(),
            source,
        };
        let mut file = create_durably(&path, &mut sync_dir).map_err(write_error)?;
        let dropped = drop_torn_tail(&mut file).map_err(write_error)?;
        Ok(Self {
            path,
            sink: Sink::File(file),
            fence: None,
            run_id: run_id.to_owned(),
            pending: Vec::new(),
            #[cfg(test)]
            room: None,
            #[cfg(test)]
            lines_room: None,
            dropped,
        })
    }

    /// Opens the journal of `run_id` in `bucket`, to continue after its
    /// last segment.
    pub fn open_in_bucket(bucket: &Arc<Bucket>, run_id: &str) -> Result<Self, JournalError> {
        let segments = SegmentWriter::open(Arc::clone(bucket), run_id).map_err(|error| {
            JournalError::Write {
                path: bucket.location().into(),
                source: io::Error::other(error),
            }
        })?;
        Ok(Self {
            path: segments.location().into(),
            sink: Sink::Segments(segments),
            fence: None,
            run_id: run_id.to_owned(),
            pending: Vec::new(),
            #[cfg(test)]
            room: None,
            #[cfg(test)]
            lines_room: None,
            dropped: None,
        })
    }

    /// From now on every group is written only while `fence` says the
    /// inventory's lock is still this writer's.
    pub fn fence_with(&mut self, fence: Arc<dyn Fence>) {
        self.fence = Some(fence);
    }

    /// The fence, for acts that write no record (a re-applied drain):
    /// they too must hold a turn of it.
    pub fn fence(&self) -> Option<Arc<dyn Fence>> {
        self.fence.clone()
    }

    /// Tests: every append after the next `records` fails as a full disk.
    #[cfg(test)]
    pub fn full_after(mut self, records: usize) -> Self {
        self.room = Some(records);
        self
    }

    /// Tests: the disk fills after `lines` more whole lines and `percent`
    /// of the next one (counted in lines, not bytes: a record's length
    /// depends on its timestamp).
    #[cfg(test)]
    pub fn full_after_lines(mut self, lines: usize, percent: u8) -> Self {
        self.lines_room = Some((lines, percent));
        self
    }

    /// Tests: how many bytes of `pending` the disk takes.
    #[cfg(test)]
    fn room_for(&mut self, pending: &[u8]) -> Option<usize> {
        let (lines, percent) = self.lines_room?;
        let mut starts = std::iter::once(0).chain(
            pending
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let cut = match starts.nth(lines) {
            Some(start) if start < pending.len() => {
                let end = pending[start..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(pending.len(), |at| start + at + 1);
                start + (end - start) * usize::from(percent) / 100
            }
            _ => {
                let written = pending.iter().filter(|b| **b == b'\n').count();
                self.lines_room = Some((lines - written, percent));
                return None;
            }
        };
        self.lines_room = Some((0, 0));
        Some(cut)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes of a torn last line [`JournalWriter::open`] dropped.
    pub fn dropped_torn_line(&self) -> Option<u64> {
        self.dropped
    }

    /// Appends a record without writing it; call [`JournalWriter::sync`]
    /// before acting on any record appended.
    pub fn append(&mut self, envelope: &Envelope) -> Result<(), JournalError> {
        #[cfg(test)]
        if let Some(room) = &mut self.room {
            if *room == 0 {
                return Err(self.write_error(io::Error::from_raw_os_error(28))); // ENOSPC
            }
            *room -= 1;
        }
        tracing::trace!("journal {}: {:?}", self.path.display(), envelope.event);
        format::encode_into(&mut self.pending, envelope)
            .map_err(|error| self.write_error(io::Error::other(error)))
    }

    /// Writes every appended record and makes it durable. On an error the
    /// records not written are dropped: the run stops on a broken journal.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let _turn = match &self.fence {
            Some(fence) if matches!(self.sink, Sink::File(_)) && !self.pending.is_empty() => {
                Some(fence.turn().map_err(|error| self.fence_error(error))?)
            }
            _ => None,
        };
        let mut pending = std::mem::take(&mut self.pending);
        #[cfg(test)]
        let room = self.room_for(&pending);
        #[cfg(not(test))]
        let room = None;
        let written = match &mut self.sink {
            Sink::File(file) => write_whole_lines(file, &pending, room),
            Sink::Segments(_) if pending.is_empty() => Ok(()),
            Sink::Segments(segments) => match segments.write(std::mem::take(&mut pending)) {
                Ok(()) => Ok(()),
                Err(SegmentError::Taken { url, number }) => {
                    return Err(JournalError::Fenced {
                        location: url,
                        why: format!("its segment {number} exists"),
                    });
                }
                Err(SegmentError::Failed(error)) => Err(io::Error::other(error)),
            },
        };
        written.map_err(|source| self.write_error(source))?;
        // The buffer is kept for the next group.
        pending.clear();
        self.pending = pending;
        Ok(())
    }

    fn write_error(&self, source: io::Error) -> JournalError {
        JournalError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn fence_error(&self, error: FenceError) -> JournalError {
        match error {
            FenceError::Lost(why) => JournalError::Fenced {
                location: self.path.display().to_string(),
                why,
            },
            FenceError::Unchecked(source) => self.write_error(source),
        }
    }
}

impl Drop for JournalWriter {
    /// Records appended but never synced are still written (not made
    /// durable), as an unbuffered writer would have left them; a fenced
    /// writer writes nothing more.
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let _turn = match &self.fence {
            Some(fence) => match fence.turn() {
                Ok(turn) => Some(turn),
                Err(_) => return,
            },
            None => None,
        };
        if let Sink::File(file) = &mut self.sink {
            let _ = file.write_all(&self.pending);
        }
    }
}

/// Opens `path` for reading and appending, creating it and the directories
/// leading to it; `sync_dir` makes each new entry durable in its directory
/// (outermost first), and is called on the file's directory every time: a
/// creator that died before that sync left an entry only it makes durable.
pub(crate) fn create_durably(
    path: &Path,
    sync_dir: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> io::Result<File> {
    let parent = non_empty(path.parent());
    let mut missing = Vec::new();
    let mut dir = Some(parent);
    while let Some(current) = dir {
        if current.as_os_str().is_empty() || current.is_dir() {
            break;
        }
        missing.push(current);
        dir = current.parent();
    }
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        sync_dir(non_empty(dir.parent()))?;
    }
    // Owner only: a journal holds the tails of step output.
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    sync_dir(parent)?;
    Ok(file)
}

/// Appends `lines` and makes them durable, or leaves the file as it was:
/// a write cut short (ENOSPC) is cut off again, so that a later write that
/// succeeds does not leave a partial line in the middle of the journal,
/// which every later read would refuse as corrupt.
fn write_whole_lines(file: &mut File, lines: &[u8], room: Option<usize>) -> io::Result<()> {
    let before = file.metadata()?.len();
    let written = match room {
        // Tests: the disk fills part-way (see `full_after_bytes`).
        Some(room) if room < lines.len() => file
            .write_all(&lines[..room])
            .and_then(|()| Err(io::Error::from_raw_os_error(28))),
        _ => file.write_all(lines).and_then(|()| file.sync_data()),
    };
    if written.is_err() {
        let _ = file.set_len(before).and_then(|()| file.sync_data());
    }
    written
}

/// `.` for the parent of a bare relative name.
fn non_empty(dir: Option<&Path>) -> &Path {
    match dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Truncates the file after its last newline; returns the bytes dropped.
fn drop_torn_tail(file: &mut File) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0_u8; 8192];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        if let Some(at) = buf.iter().rposition(|&b| b == b'\n') {
            break start + at as u64 + 1;
        }
        end = start;
    };
    if keep == len {
        return Ok(None);
    }
    file.set_len(keep)?;
    file.sync_all()?;
    // Appends go to the end whatever the position; keep it honest anyway.
    file.seek(io::SeekFrom::End(0))?;
    Ok(Some(len - keep))
}

pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

pub fn run_path(state_dir: &Path, run_id: &str) -> PathBuf {
    runs_dir(state_dir).join(format!("{run_id}.jsonl"))
}

/// A run's journal as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    pub records: Vec<Envelope>,
    /// A last line without its newline, cut short by an interruption (or
    /// being written right now); it is not among the records.
    pub torn: Option<TornLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornLine {
    /// 1-based.
    pub line: usize,
    pub bytes: usize,
}

/// Reads every complete record of a run: see [`read_records`].
pub fn read_journal(state_dir: &Path, run_id: &str) -> Result<Journal, JournalError> {
    let mut records = Vec::new();
    let torn = read_records(state_dir, run_id, |envelope| {
        records.push(envelope);
        true
    })?;
    Ok(Journal { records, torn })
}

/// The records of a run, oldest first.
pub fn read_run(state_dir: &Path, run_id: &str) -> Result<Vec<Envelope>, JournalError> {
    read_journal(state_dir, run_id).map(|journal| journal.records)
}

/// Feeds each complete record to `each` until it returns false. A last
/// line without a newline is torn and returned, not fed; any other line
/// that does not parse, or that a newer format wrote, is an error.
fn read_records(
    state_dir: &Path,
    run_id: &str,
    each: impl FnMut(Envelope) -> bool,
) -> Result<Option<TornLine>, JournalError> {
    let path = run_path(state_dir, run_id);
    let read_error = |source| JournalError::Read {
        path: path.clone(),
        source,
    };
    let file = File::open(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            JournalError::NoSuchRun {
                run_id: run_id.to_owned(),
                dir: runs_dir(state_dir),
            }
        } else {
            read_error(source)
        }
    })?;
    decode_records(BufReader::new(file), &path, each)
}

/// Feeds each complete record of `reader` (the journal at `path`) to
/// `each`: see [`read_records`].
pub(crate) fn decode_records(
    mut reader: impl BufRead,
    path: &Path,
    mut each: impl FnMut(Envelope) -> bool,
) -> Result<Option<TornLine>, JournalError> {
    let read_error = |source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_error)? == 0 {
            return Ok(None);
        }
        number += 1;
        if line.pop() != Some(b'\n') {
            return Ok(Some(TornLine {
                line: number,
                bytes: line.len() + 1,
            }));
        }
        match format::decode(&line) {
            Ok(envelope) => {
                if !each(envelope) {
                    return Ok(None);
                }
            }
            Err(DecodeError::Newer { version }) => {
                return Err(JournalError::NewerFormat {
                    path: path.to_path_buf(),
                    line: number,
                    version,
                });
            }
            Err(DecodeError::Malformed(reason)) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: number,
                    reason,
                });
            }
        }
    }
}

/// The inventory a run was started for, from its start record; `None` for
/// a run that died before writing one.
pub fn run_inventory(state_dir: &Path, run_id: &str) -> Result<Option<String>, JournalError> {
    let mut inventory = None;
    read_records(state_dir, run_id, |envelope| match envelope.event {
        Event::RunStarted { settings, .. } => {
            inventory = Some(settings.inventory);
            false
        }
        _ => true,
    })?;
    Ok(inventory)
}

/// Every run id in the state directory, oldest first. Ids sort by the
/// second their run started; runs started in the same second (a run that
/// fails at once and the next one, say) by their first record's time.
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
    let second = |id: &str| id.split_once('-').map_or(id, |(time, _)| time).to_owned();
    let mut start = 0;
    while start < ids.len() {
        let this = second(&ids[start]);
        let end = ids[start..]
            .iter()
            .position(|id| second(id) != this)
            .map_or(ids.len(), |len| start + len);
        if end - start > 1 {
            ids[start..end].sort_by_cached_key(|id| (first_record_time(state_dir, id), id.clone()));
        }
        start = end;
    }
    ids
}

/// When a run's first record was written; `None` for an empty or unreadable
/// journal.
fn first_record_time(state_dir: &Path, run_id: &str) -> Option<jiff::Timestamp> {
    let file = File::open(run_path(state_dir, run_id)).ok()?;
    let mut line = String::new();
    BufReader::new(file).read_line(&mut line).ok()?;
    let record: serde_json::Value = serde_json::from_str(&line).ok()?;
    record["ts"].as_str()?.parse().ok()
}

/// The most recent run, of `inventory` (as recorded: its canonical path)
/// when given, else of any inventory.
pub fn latest_run_of(state_dir: &Path, inventory: Option<&str>) -> Result<String, JournalError> {
    let dir = runs_dir(state_dir);
    let ids = run_ids(state_dir);
    let Some(inventory) = inventory else {
        return ids
            .into_iter()
            .next_back()
            .ok_or(JournalError::NoRuns { dir });
    };
    for id in ids.into_iter().rev() {
        if run_inventory(state_dir, &id)?.as_deref() == Some(inventory) {
            return Ok(id);
        }
    }
    Err(JournalError::NoRunsOf {
        inventory: inventory.to_owned(),
        dir,
    })
}

/// A new run id: UTC start time, then a few random hex digits so two runs
/// started in the same second on different inventories do not collide.
pub fn new_run_id(now: jiff::Timestamp, entropy: u32) -> String {
    let time = now.strftime("%Y%m%dT%H%M%SZ");
    format!("{time}-{:04x}", entropy & 0xffff)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
