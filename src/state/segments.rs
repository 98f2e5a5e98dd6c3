//! A run's journal in a bucket: numbered segment objects, one per group
//! commit, `runs/RUN_ID/000001.jsonl`, `…/000002.jsonl`, each created with
//! `If-None-Match: *`. A record is durable once the PUT of its segment
//! returned. The numbers fence a stale writer: whoever writes to a run
//! after a takeover (the `lock_broken` record of `unlock --force`, then
//! the resume) takes the next number, so the old holder's next segment
//! already exists and its write fails; it learns it lost the run before it
//! acts on anything it could not record.

use std::sync::Arc;

use super::bucket::{Bucket, ObjectError};

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

/// The segment keys of a run, in order.
fn segments(bucket: &Bucket, run_id: &str) -> Result<Vec<(u64, String)>, ObjectError> {
    let mut keys: Vec<(u64, String)> = bucket
        .list(&run_dir(run_id))?
        .into_iter()
        .filter_map(|key| Some((number_of(&key)?, key)))
        .collect();
    keys.sort();
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
        let next = segments(&bucket, run_id)?.last().map_or(1, |(n, _)| n + 1);
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
        match self.bucket.create(&key, records) {
            Ok(_) => {
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
/// if the run has none.
pub fn read_run(bucket: &Bucket, run_id: &str) -> Result<Option<Vec<u8>>, ObjectError> {
    let keys: Vec<String> = segments(bucket, run_id)?
        .into_iter()
        .map(|(_, key)| key)
        .collect();
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(bucket.get_all(keys)?.concat()))
}

/// The first segment of a run only (its start record), or `None`.
pub fn read_first_segment(bucket: &Bucket, run_id: &str) -> Result<Option<Vec<u8>>, ObjectError> {
    match segments(bucket, run_id)?.into_iter().next() {
        Some((_, key)) => Ok(bucket.get(&key)?.map(|object| object.body)),
        None => Ok(None),
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
    fn segment_keys_sort_and_parse_back() {
        assert_eq!(segment_key("r1", 42), "runs/r1/000042.jsonl");
        assert_eq!(number_of("runs/r1/000042.jsonl"), Some(42));
        assert_eq!(number_of("runs/r1/1000000.jsonl"), Some(1_000_000));
        assert_eq!(number_of("runs/r1/notes.txt"), None);
    }
}
