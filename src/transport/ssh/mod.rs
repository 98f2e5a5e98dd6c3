//! The SSH transport: russh behind the `Connector`/`RemoteShell` traits.
//!
//! `known_hosts` decides whether a host key is trusted (pure), `keys` finds
//! and uses client identities, `client` runs connections and commands.

mod client;
mod keys;
pub mod known_hosts;

pub use client::{SshConnector, SshOptions, SshShell};
