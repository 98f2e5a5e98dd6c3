//! The lock in a bucket: one object, `lock.json`, held as a lease.
//!
//! It is created with `If-None-Match: *` (or claimed from a released one
//! with `If-Match`), so two controllers can never both hold it; the holder
//! renews its heartbeat with `If-Match` on the ETag it last wrote, so a
//! holder whose lock was taken over finds out at its next heartbeat and
//! stops starting work. Across machines a pid means nothing: a holder is
//! presumed dead only once its heartbeat is older than its lease. Releasing
//! (and `unlock --force`) replaces the holder with a released marker, again
//! conditionally, so nobody ever removes a lock they did not judge.
//!
//! Whether a holder is silent is judged by the observer's own monotonic
//! clock ([`watch_for_silence`]), never by comparing the holder's
//! timestamps with the observer's wall clock: two machines' clocks may
//! disagree by more than a lease, which would let a resume take over a
//! live run (or wait forever for a dead one).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, ObjectError};
use crate::lock::{LockError, LockInfo};

pub const LOCK_KEY: &str = "lock.json";

/// What the lock object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LockObject {
    Held(LockInfo),
    Released { released: String, by: String },
}

/// The lock object as read, with the ETag that a change must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub object: LockObject,
    pub etag: String,
}

fn store_error(bucket: &Bucket, error: ObjectError) -> LockError {
    LockError::Store {
        location: bucket.url_of(LOCK_KEY),
        reason: error.to_string(),
    }
}

/// The lock object, or `None` if there has never been one.
pub fn read(bucket: &Bucket) -> Result<Option<Read>, LockError> {
    let Some(object) = bucket
        .get(LOCK_KEY)
        .map_err(|error| store_error(bucket, error))?
    else {
        return Ok(None);
    };
    let parsed = serde_json::from_slice(&object.body).map_err(|error| LockError::Unreadable {
        path: bucket.url_of(LOCK_KEY).into(),
        reason: error.to_string(),
    })?;
    Ok(Some(Read {
        object: parsed,
        etag: object.etag,
    }))
}

/// A held lease.
#[derive(Debug)]
pub struct LeaseLock {
    bucket: Arc<Bucket>,
    info: LockInfo,
    etag: String,
}

/// Writes `info` as the lock where `over` was read (`None`: there was no
/// object). `Ok(None)`: someone else changed it first.
pub fn claim(
    bucket: &Arc<Bucket>,
    info: LockInfo,
    over: Option<&Read>,
) -> Result<Option<LeaseLock>, LockError> {
    let body = to_body(&info)?;
    let written = match over {
        None => bucket.create(LOCK_KEY, body),
        Some(read) => bucket.replace(LOCK_KEY, body, &read.etag),
    };
    match written {
        Ok(etag) => Ok(Some(LeaseLock {
            bucket: Arc::clone(bucket),
            info,
            etag,
        })),
        Err(ObjectError::Changed { .. }) => Ok(None),
        Err(error) => Err(store_error(bucket, error)),
    }
}

/// Replaces the lock `judged` (as read) with a released marker; `Ok(false)`
/// if it changed since it was read.
pub fn release_judged(bucket: &Bucket, judged: &Read, by: &str) -> Result<bool, LockError> {
    let marker = LockObject::Released {
        released: jiff::Timestamp::now().to_string(),
        by: by.to_owned(),
    };
    let body = serde_json::to_vec_pretty(&marker).map_err(|error| LockError::Store {
        location: bucket.url_of(LOCK_KEY),
        reason: error.to_string(),
    })?;
    match bucket.replace(LOCK_KEY, body, &judged.etag) {
        Ok(_) => Ok(true),
        Err(ObjectError::Changed { .. }) => Ok(false),
        Err(error) => Err(store_error(bucket, error)),
    }
}

/// What watching a held lock showed.
#[derive(Debug)]
pub enum Watched {
    /// Unchanged for a whole lease, by this machine's monotonic clock: its
    /// holder is dead (or frozen, and fenced when it wakes).
    Silent(Read),
    /// Its holder renewed it: alive.
    Renewed(LockInfo),
    /// It changed otherwise (released, removed, taken by someone else):
    /// to be judged anew.
    Changed,
}

/// Reads the lock `seen` again every `lease / 9` (how often a live holder
/// renews it) until it changes or a whole `lease` has passed since it was
/// seen, measured by this machine's monotonic clock.
pub fn watch_for_silence(
    bucket: &Bucket,
    seen: Read,
    lease: Duration,
) -> Result<Watched, LockError> {
    let LockObject::Held(holder) = &seen.object else {
        return Ok(Watched::Changed);
    };
    let since = std::time::Instant::now();
    let every = (lease / 9).max(Duration::from_millis(100));
    loop {
        let left = lease.saturating_sub(since.elapsed());
        if left.is_zero() {
            return Ok(Watched::Silent(seen));
        }
        pause(every.min(left));
        match read(bucket)? {
            Some(now) if now.etag == seen.etag => {}
            Some(Read {
                object: LockObject::Held(now),
                ..
            }) if same_holder(&now, holder) => return Ok(Watched::Renewed(now)),
            _ => return Ok(Watched::Changed),
        }
    }
}

/// The same run, process and start: only the heartbeat moves on.
fn same_holder(a: &LockInfo, b: &LockInfo) -> bool {
    a.run_id == b.run_id && a.pid == b.pid && a.host == b.host && a.since == b.since
}

/// Sleeps without holding up the runtime's other tasks.
fn pause(duration: Duration) {
    let sleep = || std::thread::sleep(duration);
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(sleep);
        }
        _ => sleep(),
    }
}

fn to_body(info: &LockInfo) -> Result<Vec<u8>, LockError> {
    serde_json::to_vec_pretty(&LockObject::Held(info.clone())).map_err(|error| LockError::Store {
        location: LOCK_KEY.to_owned(),
        reason: error.to_string(),
    })
}

impl LeaseLock {
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// How often the heartbeat must be renewed: a ninth of the lease, so
    /// that a few failed renewals in a row still do not let it expire.
    pub fn heartbeat_every(&self) -> Duration {
        (self.info.lease() / 9).max(Duration::from_millis(100))
    }

    /// Renews the heartbeat if the lock is still this one.
    pub fn heartbeat(&mut self, now: jiff::Timestamp) -> Result<(), LockError> {
        let mut renewed = self.info.clone();
        renewed.heartbeat = now.to_string();
        let body = to_body(&renewed)?;
        match self.bucket.replace(LOCK_KEY, body, &self.etag) {
            Ok(etag) => {
                self.etag = etag;
                self.info = renewed;
                Ok(())
            }
            Err(ObjectError::Changed { .. }) => {
                let now = match read(&self.bucket) {
                    Ok(Some(Read {
                        object: LockObject::Held(holder),
                        ..
                    })) => format!(
                        "held by run {} (pid {} on {})",
                        holder.run_id, holder.pid, holder.host
                    ),
                    Ok(Some(Read {
                        object: LockObject::Released { by, .. },
                        ..
                    })) => format!("it was released ({by})"),
                    Ok(None) => "it was removed".to_owned(),
                    Err(error) => format!("it changed, and cannot be read now ({error})"),
                };
                Err(LockError::Lost {
                    path: self.bucket.url_of(LOCK_KEY).into(),
                    now,
                })
            }
            Err(error) => Err(store_error(&self.bucket, error)),
        }
    }

    /// Releases the lock if it is still this one; whether it did.
    pub fn release(self) -> bool {
        let judged = Read {
            object: LockObject::Held(self.info.clone()),
            etag: self.etag.clone(),
        };
        let by = format!("run {} ended", self.info.run_id);
        match release_judged(&self.bucket, &judged, &by) {
            Ok(released) => released,
            Err(error) => {
                tracing::warn!(
                    "{error}; it expires {}s after its last heartbeat",
                    self.info.lease().as_secs()
                );
                false
            }
        }
    }
}
