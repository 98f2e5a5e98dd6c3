//! One run at a time per inventory: a lock with holder and heartbeat, a
//! file in a local state directory ([`FileLock`], here) or an object in a
//! bucket (`crate::state::lease`), held as a [`RunLock`].
//!
//! The lock is a JSON file created with `O_EXCL`, so two controllers can
//! never both hold it. It names the holder (host, pid, run id, since) and
//! carries a heartbeat the holder refreshes; a holder that died is told
//! apart from a live one by its pid (same machine) or a stale heartbeat,
//! and only `unlock --force` (or `resume` of the same run, whose process
//! is certainly gone) removes its lock. Every check of a lock and the change
//! that depends on it happen under one [`LockGuard`], so that two fleetrolls
//! cannot both break the same dead holder's lock, or one break the fresh
//! lock of the other.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How old a heartbeat may be before its holder is presumed dead.
pub const HEARTBEAT_EXPIRY: Duration = Duration::from_secs(90);
/// How often a holder refreshes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    pub run_id: String,
    pub inventory: String,
    /// RFC 3339.
    pub since: String,
    /// RFC 3339.
    pub heartbeat: String,
    /// How long after its last heartbeat the holder is presumed dead, in
    /// seconds; absent: [`HEARTBEAT_EXPIRY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_s: Option<u64>,
}

impl LockInfo {
    /// How long a silent holder keeps the lock.
    pub fn lease(&self) -> Duration {
        self.lease_s.map_or(HEARTBEAT_EXPIRY, Duration::from_secs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{inventory} is locked by run {} (pid {} on {}, since {}, last heartbeat {}){}", .holder.run_id, .holder.pid, .holder.host, .holder.since, .holder.heartbeat, stale_note(.stale))]
    Held {
        inventory: String,
        holder: Box<LockInfo>,
        stale: Option<String>,
    },
    #[error(
        "{path} exists but cannot be read ({reason}); if no run is active, remove it with `fleetroll unlock --force`"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot write the lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the lock {path} is no longer this run's: {now}")]
    Lost { path: PathBuf, now: String },
    #[error("cannot reach the lock {location}: {reason}")]
    Store { location: String, reason: String },
    #[error(
        "these hosts are being driven by run {} (pid {} on {}, since {}), of the inventory {} with its state in {state}: one run at a time per fleet on this machine, whatever copy of the inventory or state directory it is started with; wait for that run, or stop it",
        .holder.run_id, .holder.pid, .holder.host, .holder.since, .holder.inventory
    )]
    FleetHeld {
        holder: Box<LockInfo>,
        state: String,
    },
}

fn stale_note(stale: &Option<String>) -> String {
    match stale {
        Some(reason) => format!(
            "; the holder looks dead ({reason}): break the lock with `fleetroll unlock --force`"
        ),
        None => String::new(),
    }
}

/// The lock a run holds, in a directory or in a bucket.
#[derive(Debug)]
pub enum RunLock {
    File(FileLock),
    Lease(crate::state::lease::LeaseLock),
}

impl RunLock {
    pub fn info(&self) -> &LockInfo {
        match self {
            RunLock::File(lock) => lock.info(),
            RunLock::Lease(lock) => lock.info(),
        }
    }

    /// How often [`RunLock::heartbeat`] must be called.
    pub fn heartbeat_every(&self) -> Duration {
        match self {
            RunLock::File(_) => HEARTBEAT_EVERY,
            RunLock::Lease(lock) => lock.heartbeat_every(),
        }
    }

    /// Refreshes the heartbeat; [`LockError::Lost`] if the lock is no longer
    /// this run's.
    pub fn heartbeat(&mut self, now: jiff::Timestamp) -> Result<(), LockError> {
        match self {
            RunLock::File(lock) => lock.heartbeat(now),
            RunLock::Lease(lock) => lock.heartbeat(now),
        }
    }

    /// Releases the lock if it is still this run's; whether it did.
    pub fn release(self) -> bool {
        match self {
            RunLock::File(lock) => lock.release(),
            RunLock::Lease(lock) => lock.release(),
        }
    }
}

/// A held lock file; released on [`FileLock::release`] (a crash leaves it,
/// which is what makes a dead holder detectable).
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    info: LockInfo,
}

/// FNV-1a of `bytes`: a stable, dependency-free name for a lock;
/// collisions only merge locks.
pub fn name_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The lock file for an inventory: one per inventory path.
pub fn lock_path(state_dir: &Path, inventory: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(inventory).unwrap_or_else(|_| inventory.to_path_buf());
    let hash = name_hash(canonical.display().to_string().bytes());
    let stem = canonical.file_stem().map_or_else(
        || "inventory".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    state_dir
        .join("locks")
        .join(format!("{stem}-{hash:016x}.lock"))
}

impl FileLock {
    /// Creates the lock, or names its holder.
    pub fn acquire(path: &Path, info: LockInfo, now: jiff::Timestamp) -> Result<Self, LockError> {
        LockGuard::take(path)?.create(path, info, now)
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Whether `holder` is this lock.
    fn is(&self, holder: &LockInfo) -> bool {
        same_holder(holder, &self.info)
    }

    /// Refreshes the heartbeat: write a sibling file, then rename over. A
    /// lock that someone broke (`unlock --force`) or took over is not
    /// written again: the holder has lost it, and must stop. Under the
    /// guard, so that nobody breaks the lock between the check and the
    /// rename (which would put this lock back over theirs).
    pub fn heartbeat(&mut self, now: jiff::Timestamp) -> Result<(), LockError> {
        let guard = LockGuard::take(&self.path)?;
        let lost = |now: String| LockError::Lost {
            path: self.path.clone(),
            now,
        };
        match read(&self.path) {
            Ok(holder) if self.is(&holder) => {}
            Ok(holder) => {
                return Err(lost(format!(
                    "held by run {} (pid {} on {})",
                    holder.run_id, holder.pid, holder.host
                )));
            }
            Err(LockError::Unreadable { reason, .. }) => {
                return Err(lost(format!("it was removed or is unreadable ({reason})")));
            }
            Err(error) => return Err(error),
        }
        self.info.heartbeat = now.to_string();
        let tmp = self.path.with_extension("lock.tmp");
        let io_error = |source| LockError::Io {
            path: self.path.clone(),
            source,
        };
        let text =
            serde_json::to_vec_pretty(&self.info).map_err(|e| io_error(io::Error::other(e)))?;
        std::fs::write(&tmp, text).map_err(io_error)?;
        std::fs::rename(&tmp, &self.path).map_err(io_error)?;
        drop(guard);
        Ok(())
    }

    /// Removes the lock if it is still this one: a lock that was broken and
    /// taken by another run is theirs now. When the guard cannot be taken
    /// the lock stays; a dead holder's lock is detected and can be broken,
    /// while removing a live holder's cannot be undone.
    pub fn release(self) -> bool {
        let Ok(guard) = LockGuard::take(&self.path) else {
            return false;
        };
        read(&self.path).is_ok_and(|holder| self.is(&holder)) && guard.remove(&self.path).is_ok()
    }
}

/// The journal's proof that a [`FileLock`] is still its run's: a turn at
/// the guard, holding off `unlock --force` and takeovers while a group of
/// records is written.
#[derive(Debug)]
pub struct FileFence {
    path: PathBuf,
    holder: LockInfo,
}

impl FileLock {
    pub fn fence(&self) -> FileFence {
        FileFence {
            path: self.path.clone(),
            holder: self.info.clone(),
        }
    }
}

impl crate::journal::store::Fence for FileFence {
    fn turn(&self) -> Result<crate::journal::store::FenceTurn, crate::journal::store::FenceError> {
        use crate::journal::store::FenceError;
        let guard = LockGuard::take(&self.path).map_err(|error| match error {
            LockError::Io { source, .. } => FenceError::Unchecked(source),
            other => FenceError::Unchecked(io::Error::other(other.to_string())),
        })?;
        match read(&self.path) {
            Ok(now) if same_holder(&now, &self.holder) => Ok(Box::new(guard)),
            Ok(now) => Err(FenceError::Lost(format!(
                "the lock {} is held by run {} (pid {} on {}, since {})",
                self.path.display(),
                now.run_id,
                now.pid,
                now.host,
                now.since
            ))),
            Err(_) => Err(FenceError::Lost(format!(
                "the lock {} was broken",
                self.path.display()
            ))),
        }
    }
}

/// Whether two readings of a lock are the same holding: the same run,
/// process and start (the heartbeat moves on).
fn same_holder(a: &LockInfo, b: &LockInfo) -> bool {
    a.run_id == b.run_id && a.pid == b.pid && a.host == b.host && a.since == b.since
}

/// How long to wait for another fleetroll's short turn at the guard.
const GUARD_WAIT: Duration = Duration::from_secs(5);

/// Exclusive use of the lock files of one state directory, held for the
/// few microseconds of a check and the change that depends on it (create,
/// heartbeat, release, break, take over), so that no other fleetroll can
/// change a lock in between. An advisory `flock` on `locks/.guard`, which
/// the kernel releases when its holder dies; the file is never removed,
/// since a new file would be a second, independent guard.
#[derive(Debug)]
pub struct LockGuard {
    _file: std::fs::File,
}

impl LockGuard {
    /// Takes the guard of the directory holding the lock `path`.
    pub fn take(path: &Path) -> Result<Self, LockError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let guard_path = dir.join(".guard");
        let io_error = |source| LockError::Io {
            path: guard_path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&guard_path)
            .map_err(io_error)?;
        let deadline = std::time::Instant::now() + GUARD_WAIT;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Self { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(errno) => {
                    return Err(io_error(io::Error::from_raw_os_error(errno.raw_os_error())));
                }
            }
        }
    }

    /// Creates the lock `path` for `info`, or names its holder.
    pub fn create(
        &self,
        path: &Path,
        info: LockInfo,
        now: jiff::Timestamp,
    ) -> Result<FileLock, LockError> {
        let io_error = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut file) => {
                let text =
                    serde_json::to_vec_pretty(&info).map_err(|e| io_error(io::Error::other(e)))?;
                file.write_all(&text).map_err(io_error)?;
                file.sync_all().map_err(io_error)?;
                Ok(FileLock {
                    path: path.to_path_buf(),
                    info,
                })
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let holder = read(path)?;
                let stale = staleness(&holder, now, Some(&this_host()));
                Err(LockError::Held {
                    inventory: info.inventory,
                    holder: Box::new(holder),
                    stale,
                })
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// Removes the lock `path`, whoever holds it: the caller checked, under
    /// this guard, that it is the one to remove.
    pub fn remove(&self, path: &Path) -> Result<(), LockError> {
        std::fs::remove_file(path).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Reads a lock file's holder.
pub fn read(path: &Path) -> Result<LockInfo, LockError> {
    let text = std::fs::read_to_string(path).map_err(|error| LockError::Unreadable {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|error| LockError::Unreadable {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// Why the holder is presumed dead, or `None` if it may be alive. On
/// `this_host` (a local lock) a pid that is gone says so at once; shared
/// state (`None`) judges by the heartbeat alone.
pub fn staleness(
    holder: &LockInfo,
    now: jiff::Timestamp,
    this_host: Option<&str>,
) -> Option<String> {
    if let Some(this_host) = this_host
        && holder.host == this_host
        && !pid_alive(holder.pid)
    {
        return Some(format!("pid {} is not running on {this_host}", holder.pid));
    }
    let heartbeat: jiff::Timestamp = holder.heartbeat.parse().ok()?;
    let age = now.duration_since(heartbeat);
    let expiry = jiff::SignedDuration::try_from(holder.lease()).ok()?;
    (age > expiry).then(|| format!("last heartbeat {}s ago", age.as_secs()))
}

pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // EPERM: the process exists but belongs to someone else.
        Err(error) => error == rustix::io::Errno::PERM,
    }
}

pub fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Every lock file in the state directory.
pub fn all_locks(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("locks")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "lock"))
        .collect();
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, heartbeat: &str) -> LockInfo {
        LockInfo {
            host: "ctl".into(),
            pid,
            run_id: "r".into(),
            inventory: "inv.toml".into(),
            since: heartbeat.into(),
            heartbeat: heartbeat.into(),
            lease_s: None,
        }
    }

    #[test]
    fn a_second_acquire_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mine = info(std::process::id(), "2026-01-01T00:00:00Z");
        let lock = FileLock::acquire(&path, mine.clone(), now).unwrap();
        let Err(LockError::Held { holder, stale, .. }) = FileLock::acquire(&path, mine, now) else {
            panic!("second acquire must fail");
        };
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(stale, None);
        lock.release();
        assert!(!path.exists());
    }

    #[test]
    fn a_holder_whose_lock_was_broken_finds_out_at_its_next_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut lock =
            FileLock::acquire(&path, info(std::process::id(), "2026-01-01T00:00:00Z"), now)
                .unwrap();
        lock.heartbeat(now).unwrap();
        std::fs::remove_file(&path).unwrap();
        let other = LockInfo {
            run_id: "other".into(),
            ..info(1, "2026-01-01T00:00:00Z")
        };
        let _theirs = FileLock::acquire(&path, other, now).unwrap();
        let Err(LockError::Lost { now: why, .. }) = lock.heartbeat(now) else {
            panic!("the heartbeat must see the lock is lost");
        };
        assert!(why.contains("run other"), "{why}");
        assert_eq!(read(&path).unwrap().run_id, "other", "theirs is left alone");
    }

    /// Regression: `release` removed whatever lock was at its path, so a
    /// run whose lock had been broken and taken by another run removed the
    /// other run's lock when it ended.
    #[test]
    fn releasing_a_lock_someone_else_took_leaves_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mine = FileLock::acquire(&path, info(std::process::id(), "2026-01-01T00:00:00Z"), now)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let other = LockInfo {
            run_id: "other".into(),
            ..info(1, "2026-01-01T00:00:00Z")
        };
        let _theirs = FileLock::acquire(&path, other, now).unwrap();
        mine.release();
        assert_eq!(read(&path).unwrap().run_id, "other");
    }

    /// Regression (issue 17): a holder frozen past its heartbeat's age
    /// whose lock was broken (`unlock --force`) and taken by a resume went
    /// on appending to the journal the resume writes when it woke.
    #[test]
    fn a_journal_fenced_by_a_lock_taken_by_another_run_writes_nothing_more() {
        use crate::events::{Envelope, Event};
        use crate::journal::store::{JournalError, JournalWriter, run_path};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let lock = FileLock::acquire(&path, info(std::process::id(), "2026-01-01T00:00:00Z"), now)
            .unwrap();
        let record = |message: &str| {
            Envelope::now(
                "r",
                Event::Warning {
                    host: None,
                    message: message.into(),
                },
            )
        };
        let mut journal = JournalWriter::open(dir.path(), "r").unwrap();
        journal.fence_with(std::sync::Arc::new(lock.fence()));
        journal.append(&record("while held")).unwrap();
        journal.sync().unwrap();
        let written = std::fs::read(run_path(dir.path(), "r")).unwrap();
        assert!(String::from_utf8_lossy(&written).contains("while held"));

        // Broken and taken by another run.
        std::fs::remove_file(&path).unwrap();
        let other = LockInfo {
            run_id: "other".into(),
            ..info(1, "2026-01-01T00:00:00Z")
        };
        let _theirs = FileLock::acquire(&path, other, now).unwrap();
        journal.append(&record("after the break")).unwrap();
        let Err(JournalError::Fenced { why, .. }) = journal.sync() else {
            panic!("a write after the lock was taken must be fenced");
        };
        assert!(why.contains("run other"), "{why}");
        journal.append(&record("left pending")).unwrap();
        drop(journal);
        assert_eq!(
            std::fs::read(run_path(dir.path(), "r")).unwrap(),
            written,
            "the fenced writer wrote to the journal"
        );
    }

    #[test]
    fn the_guard_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let guard = LockGuard::take(&path).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let second = LockGuard::take(&path);
                sender.send(()).unwrap();
                second.map(drop)
            })
        };
        assert!(
            receiver.recv_timeout(Duration::from_millis(200)).is_err(),
            "a second guard was taken while the first was held"
        );
        drop(guard);
        receiver.recv_timeout(Duration::from_secs(5)).unwrap();
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn dead_pids_and_old_heartbeats_are_stale() {
        let now: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        // A pid far above pid_max is never alive.
        let dead = info(4_000_000, "2026-01-01T00:09:59Z");
        assert!(
            staleness(&dead, now, Some("ctl"))
                .unwrap()
                .contains("not running")
        );
        // On another machine the pid says nothing; the heartbeat decides.
        assert_eq!(staleness(&dead, now, Some("elsewhere")), None);
        let old = info(4_000_000, "2026-01-01T00:00:00Z");
        assert!(staleness(&old, now, None).unwrap().contains("600s ago"));
        let live = info(std::process::id(), "2026-01-01T00:09:59Z");
        assert_eq!(staleness(&live, now, Some("ctl")), None);
    }
}
