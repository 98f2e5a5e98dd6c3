//! A run's journal in a bucket: numbered segment objects, one per group
//! commit, `runs/RUN_ID/000001.jsonl`, `…/000002.jsonl`, each created with
//! `If-None-Match: *`. A record is durable once the PUT of its segment
//! returned. The numbers fence a stale writer: whoever writes to a run
//! after a takeover (the `lock_broken` record of `unlock --force`, then
//! the resume) takes the next number, so the old holder's next segment
//! already exists and its write fails; it learns it lost the run before it
//! acts on anything it could not record.
//!
//! Segments are never overwritten, so a machine keeps a copy of each one it
//! read, named by its ETag (`~/.cache/fleetroll/s3/…`): reading a run again
//! (every `run` looks through the earlier ones for hosts left out of
//! service) lists it and fetches only the segments it has not seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bucket::{Bucket, Listed, ObjectError};

pub const RUNS_DIR: &str = "runs/";

fn run_dir(run_id: &str) -> String {
    format!("{RUNS_DIR}{run_id}/")
}

fn segment_key(run_id: &str, number: u64) -> String {
    format!("{}{number:06}.jsonl", run_dir(run_id))
}

/// The segment number of a key, if it is a segment.
fn number_of(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".jsonl")?.parse().ok()
}

/// The segments of a run, in order, with their numbers.
fn segments(bucket: &Bucket, run_id: &str) -> Result<Vec<(u64, Listed)>, ObjectError> {
    let mut keys: Vec<(u64, Listed)> = bucket
        .list(&run_dir(run_id))?
        .into_iter()
        .filter_map(|listed| Some((number_of(&listed.key)?, listed)))
        .collect();
    keys.sort_by_key(|(number, _)| *number);
    Ok(keys)
}

/// Why a segment could not be written.
#[derive(Debug)]
pub enum SegmentError {
    /// The segment exists: another fleetroll wrote to this run since.
    Taken {
        url: String,
        number: u64,
    },
    Failed(ObjectError),
}

/// Appends segments to one run's journal.
#[derive(Debug)]
pub struct SegmentWriter {
    bucket: Arc<Bucket>,
    run_id: String,
    next: u64,
}

impl SegmentWriter {
    /// Continues `run_id` after its last segment (a new run starts at 1).
    pub fn open(bucket: Arc<Bucket>, run_id: &str) -> Result<Self, ObjectError> {
        let next = segments(&bucket, run_id)?
            .last()
            .map_or(1, |(number, _)| number + 1);
        Ok(Self {
            bucket,
            run_id: run_id.to_owned(),
            next,
        })
    }

    /// `s3://bucket/prefix/runs/RUN_ID/`.
    pub fn location(&self) -> String {
        self.bucket.url_of(&run_dir(&self.run_id))
    }

    /// Writes `records` (whole lines) as the next segment.
    pub fn write(&mut self, records: Vec<u8>) -> Result<(), SegmentError> {
        let key = segment_key(&self.run_id, self.next);
        match self.bucket.create(&key, records.clone()) {
            Ok(etag) => {
                if let Some(path) = cached_path(&self.bucket, &Listed { key, etag }) {
                    keep_copy(&path, &records);
                }
                self.next += 1;
                Ok(())
            }
            Err(ObjectError::Changed { key }) => Err(SegmentError::Taken {
                url: key,
                number: self.next,
            }),
            Err(error) => Err(SegmentError::Failed(error)),
        }
    }
}

/// A run's records as one byte stream (its segments in order), or `None`
/// if the run has none. Segments this machine keeps a copy of, from the
/// first on without a gap, are read from there, and only keys after them
/// are listed and fetched.
pub fn read_run(bucket: &Bucket, run_id: &str) -> Result<Option<Vec<u8>>, ObjectError> {
    let kept = kept_copies(bucket, run_id);
    let newer = match kept.last() {
        Some((number, _)) => bucket.list_after(&run_dir(run_id), &segment_key(run_id, *number))?,
        None => bucket.list(&run_dir(run_id))?,
    };
    let mut newer: Vec<(u64, Listed)> = newer
        .into_iter()
        .filter_map(|listed| Some((number_of(&listed.key)?, listed)))
        .collect();
    newer.sort_by_key(|(number, _)| *number);
    if kept.is_empty() && newer.is_empty() {
        return Ok(None);
    }
    let mut records = Vec::new();
    for (_, path) in &kept {
        match std::fs::read(path) {
            Ok(body) => records.extend_from_slice(&body),
            // A copy gone meanwhile: read the run from the bucket.
            Err(_) => return read_listed(bucket, segments(bucket, run_id)?),
        }
    }
    let fetched = bucket.get_all(newer.iter().map(|(_, l)| l.key.clone()).collect())?;
    for ((_, listed), body) in newer.iter().zip(fetched) {
        if let Some(path) = cached_path(bucket, listed) {
            keep_copy(&path, &body);
        }
        records.extend_from_slice(&body);
    }
    Ok(Some(records))
}

/// Reads `listed` (a run's segments) from the bucket, keeping copies.
fn read_listed(
    bucket: &Bucket,
    listed: Vec<(u64, Listed)>,
) -> Result<Option<Vec<u8>>, ObjectError> {
    if listed.is_empty() {
        return Ok(None);
    }
    let bodies = bucket.get_all(listed.iter().map(|(_, l)| l.key.clone()).collect())?;
    for ((_, listed), body) in listed.iter().zip(&bodies) {
        if let Some(path) = cached_path(bucket, listed) {
            keep_copy(&path, body);
        }
    }
    Ok(Some(bodies.concat()))
}

/// The copies this machine keeps of a run's segments: numbers 1, 2, … up
/// to the first gap, with their files.
fn kept_copies(bucket: &Bucket, run_id: &str) -> Vec<(u64, PathBuf)> {
    let Some(dir) = bucket.cache_dir().map(|cache| cache.join(run_dir(run_id))) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut copies: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            // `000042.jsonl.ETAG`; temporary files have another shape.
            let (segment, etag) = name.rsplit_once('.')?;
            if etag.is_empty() || !etag.chars().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            Some((number_of(segment)?, entry.path()))
        })
        .collect();
    copies.sort();
    copies.dedup_by_key(|(number, _)| *number);
    let contiguous = copies
        .iter()
        .enumerate()
        .take_while(|(i, (number, _))| *number == *i as u64 + 1)
        .count();
    copies.truncate(contiguous);
    copies
}

/// Where this machine keeps its copy of a segment: named by its ETag, so a
/// copy is never mistaken for another object of the same key.
fn cached_path(bucket: &Bucket, listed: &Listed) -> Option<PathBuf> {
    let etag: String = listed
        .etag
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if etag.is_empty() {
        return None;
    }
    Some(bucket.cache_dir()?.join(format!("{}.{etag}", listed.key)))
}

/// Best effort: a cache that cannot be written is only slower.
fn keep_copy(path: &Path, body: &[u8]) {
    let Some(dir) = path.parent() else { return };
    // Not `NAME.ETAG`: a temporary file is never taken for a copy.
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    // Owner only: a segment holds the tails of step output.
    let kept = std::fs::create_dir_all(dir)
        .and_then(|()| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
                .write_all(body)
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if kept.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Every run id in the bucket's prefix, sorted (ids sort by start time).
pub fn run_ids(bucket: &Bucket) -> Result<Vec<String>, ObjectError> {
    bucket.list_dirs(RUNS_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_copies_from_the_first_segment_on_without_a_gap_are_used() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("cache/fleetroll/s3/b/web/runs/r1");
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "000001.jsonl.e1",
            "000002.jsonl.e2",
            "000003.jsonl.tmp-42",
            "000004.jsonl.e4",
        ] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let bucket = Bucket::offline_for_tests("b", "web", home.path().join("cache"));
        let kept: Vec<u64> = kept_copies(&bucket, "r1")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            kept,
            [1, 2],
            "a temporary file is no copy, and 4 follows a gap"
        );
    }

    #[test]
    fn segment_keys_sort_and_parse_back() {
        assert_eq!(segment_key("r1", 42), "runs/r1/000042.jsonl");
        assert_eq!(number_of("runs/r1/000042.jsonl"), Some(42));
        assert_eq!(number_of("runs/r1/1000000.jsonl"), Some(1_000_000));
        assert_eq!(number_of("runs/r1/notes.txt"), None);
    }
}
