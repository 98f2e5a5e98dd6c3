//! Bringing inventories from other tools into fleetroll's format.

pub mod ansible;
pub mod toml_text;
