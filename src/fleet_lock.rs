//! One run at a time per fleet on this machine, whatever copy of the
//! inventory and whichever state directory it is started with.
//!
//! The inventory's own lock ([`crate::lock`]) lives in its state directory,
//! named after the inventory's path: two checkouts of one inventory (cron's
//! and an operator's), or one inventory run with two `--state-dir`s, would
//! each get a lock of their own and drive the same hosts at once, each
//! within its own `max_unavailable`. So a run with local state also holds
//! an advisory `flock` named after its fleet, the sorted `address:port` of
//! every host it may drive, in one directory shared by every user of the
//! machine (`$TMPDIR/fleetroll-locks`). The kernel releases it when its
//! holder dies, even on kill -9, so it never goes stale; the file names its
//! holder for the message of the run it turns away. State in S3 needs none
//! of this: every copy of the inventory names the same bucket and prefix.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::lock::{LockError, LockInfo};
use crate::model::inventory::Host;

/// What the lock file says of its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHolder {
    #[serde(flatten)]
    pub info: LockInfo,
    /// Where the holder keeps its lock and journals.
    pub state: String,
}

/// Held until dropped.
#[derive(Debug)]
pub struct FleetLock {
    _file: std::fs::File,
}

/// The directory every fleetroll on this machine shares.
pub fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("fleetroll-locks")
}

/// A fleet's name: a hash of its hosts' sorted endpoints. An endpoint is
/// `address:port`, reached through its jump hosts, and the instance it is
/// when known: two fleets with the same private addresses (overlapping
/// VPCs, or networks behind different bastions) are not one fleet, while
/// two copies of one inventory still name the same hosts.
pub fn fleet_key<'a>(hosts: impl IntoIterator<Item = &'a Host>) -> String {
    let mut endpoints: Vec<String> = hosts
        .into_iter()
        .map(|host| {
            let mut endpoint = String::new();
            for hop in &host.ssh.jump {
                endpoint.push_str(&format!(
                    "{}@{}:{} > ",
                    hop.user.as_deref().unwrap_or(""),
                    hop.host,
                    hop.port.unwrap_or(22)
                ));
            }
            endpoint.push_str(&format!("{}:{}", host.address, host.ssh.port));
            if let Some(id) = &host.target_id {
                endpoint.push_str(&format!(" {id}"));
            }
            endpoint
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    let hash = crate::lock::name_hash(
        endpoints
            .iter()
            .flat_map(|endpoint| endpoint.bytes().chain([b'\n'])),
    );
    format!("fleet-{hash:016x}")
}

impl FleetLock {
    /// Takes the lock of the fleet `key` for `holder`, or names the run
    /// that holds it. `Ok(None)`: the shared directory cannot be used (say,
    /// another user's file that this one may not open); the run goes on
    /// with its inventory lock alone, and says so.
    pub fn take(key: &str, holder: &FleetHolder) -> Result<Option<FleetLock>, LockError> {
        let dir = lock_dir();
        if std::fs::create_dir_all(&dir).is_ok() {
            // Shared by every user, each removing only their own files.
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        let path = dir.join(format!("{key}.lock"));
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path);
        let mut file = match opened {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(
                    "cannot open {} ({error}): another copy of this inventory could run at the same time",
                    path.display()
                );
                return Ok(None);
            }
        };
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(match serde_json::from_str::<FleetHolder>(&text) {
                    Ok(other) => LockError::FleetHeld {
                        holder: Box::new(other.info),
                        state: other.state,
                    },
                    Err(_) => LockError::Unreadable {
                        path: path.clone(),
                        reason: "another run holds it and has not written its name yet".to_owned(),
                    },
                });
            }
            Err(errno) => {
                return Err(LockError::Io {
                    path,
                    source: std::io::Error::from_raw_os_error(errno.raw_os_error()),
                });
            }
        }
        let text = serde_json::to_vec_pretty(holder).map_err(|e| LockError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(&text));
        if let Err(source) = written {
            return Err(LockError::Io { path, source });
        }
        Ok(Some(FleetLock { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run_id: &str, state: &str) -> FleetHolder {
        FleetHolder {
            info: LockInfo {
                host: "ctl".into(),
                pid: std::process::id(),
                run_id: run_id.into(),
                inventory: "/srv/a/web.toml".into(),
                since: "2026-12-07T02:00:00Z".into(),
                heartbeat: "2026-12-07T02:00:00Z".into(),
                lease_s: None,
            },
            state: state.into(),
        }
    }

    fn host(address: &str, target_id: Option<&str>, jump: Option<&str>) -> Host {
        Host {
            name: "web-01".into(),
            address: address.into(),
            zone: "a".into(),
            ssh: crate::model::inventory::SshSettings {
                user: "deploy".into(),
                port: 22,
                jump: jump
                    .and_then(crate::model::inventory::JumpHost::parse)
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            balancers: Vec::new(),
            lb_server: "web-01".into(),
            target_id: target_id.map(str::to_owned),
            vars: Default::default(),
            aws: None,
        }
    }

    /// The same private address in two VPCs, or behind two bastions, is
    /// two hosts; two copies of one inventory are one fleet.
    #[test]
    fn fleets_are_told_apart_by_instance_and_route_not_address_alone() {
        let key = |host: Host| fleet_key([&host]);
        let plain = key(host("10.0.0.4", None, None));
        assert_eq!(plain, key(host("10.0.0.4", None, None)));
        assert_ne!(
            key(host("10.0.0.4", Some("i-1"), None)),
            key(host("10.0.0.4", Some("i-2"), None))
        );
        assert_ne!(
            key(host("10.0.0.4", None, Some("ops@bastion-a"))),
            key(host("10.0.0.4", None, Some("ops@bastion-b")))
        );
        assert_ne!(plain, key(host("10.0.0.5", None, None)));
    }

    #[test]
    fn a_second_run_of_the_same_fleet_is_turned_away_with_the_first_ones_name() {
        let key = format!(
            "test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let first = FleetLock::take(&key, &holder("r1", "/srv/a/.fleetroll")).unwrap();
        assert!(first.is_some());
        let Err(LockError::FleetHeld {
            holder: other,
            state,
        }) = FleetLock::take(&key, &holder("r2", "/tmp/b"))
        else {
            panic!("the fleet was taken twice");
        };
        assert_eq!(other.run_id, "r1");
        assert_eq!(state, "/srv/a/.fleetroll");
        drop(first);
        assert!(
            FleetLock::take(&key, &holder("r2", "/tmp/b"))
                .unwrap()
                .is_some()
        );
        let _ = std::fs::remove_file(lock_dir().join(format!("{key}.lock")));
    }
}
