//! Which inventory a bucket's prefix belongs to: `inventory.json`, written
//! by the first run under the prefix.
//!
//! Everything under a prefix is one inventory's: its lock, and runs whose
//! drained hosts a later run takes over by name. Two inventories pointed at
//! the same bucket and prefix (the prefix defaults to the bucket's root)
//! would share one lock and adopt each other's hosts, so the prefix is
//! claimed for the inventory's file name (the same on every machine that
//! keeps the inventory in one repository, whatever the directory) and a run
//! of another inventory is refused before it touches anything.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::bucket::{Bucket, ObjectError};

pub const OWNER_KEY: &str = "inventory.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The inventory's file name, `web.toml`.
    pub inventory: String,
    /// The run that claimed the prefix.
    pub run_id: String,
}

/// The name an inventory is known by under a prefix: its file name.
pub fn inventory_name(inventory: &str) -> String {
    Path::new(inventory).file_name().map_or_else(
        || inventory.to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Claims the prefix for `inventory` if nobody has, and checks it is
/// `inventory`'s otherwise: `Err` says whose it is and what to do.
pub fn claim_or_check(bucket: &Bucket, inventory: &str, run_id: &str) -> Result<(), String> {
    let ours = inventory_name(inventory);
    let unreadable = |error: &dyn std::fmt::Display| {
        format!(
            "cannot read {}, which names the inventory this prefix belongs to: {error}",
            bucket.url_of(OWNER_KEY)
        )
    };
    let owner = match bucket.get(OWNER_KEY).map_err(|e| unreadable(&e))? {
        Some(object) => {
            serde_json::from_slice::<Owner>(&object.body).map_err(|e| unreadable(&e))?
        }
        None => {
            let claim = Owner {
                inventory: ours.clone(),
                run_id: run_id.to_owned(),
            };
            let body = serde_json::to_vec_pretty(&claim).map_err(|e| unreadable(&e))?;
            match bucket.create(OWNER_KEY, body) {
                Ok(_) => return Ok(()),
                // Claimed meanwhile: judge the claim that won.
                Err(ObjectError::Changed { .. }) => {
                    return claim_or_check(bucket, inventory, run_id);
                }
                Err(error) => return Err(unreadable(&error)),
            }
        }
    };
    if owner.inventory == ours {
        return Ok(());
    }
    Err(format!(
        "{} holds the lock and runs of another inventory, {} (claimed by run {}); this one is {ours}. \
         Two inventories that share a prefix would share one lock and take over each other's drained hosts: \
         give this one a prefix of its own in its [state] (prefix = \"{}/\"). \
         If {ours} is {} renamed, rename it back, or delete {} to let it claim the prefix",
        bucket.location(),
        owner.inventory,
        owner.run_id,
        ours.trim_end_matches(".toml"),
        owner.inventory,
        bucket.url_of(OWNER_KEY)
    ))
}
