//! Raw TOML structs → model, one file at a time.

pub mod gate;
pub mod inventory;
pub mod playbook;
pub mod state;
pub mod vars;
