//! A simulated fleet, all in process, for `fleetroll demo`: real SSH servers,
//! real HTTP apps and a drain-aware balancer speaking HAProxy's runtime API,
//! so that a demo run goes through exactly the code a real run does.
//!
//! `host` is one VM's state and shell, `app` its web app, `ssh_server` its
//! SSH daemon; `balancer` spreads traffic over the apps; `traffic` is the
//! load a demo measures; `fleet` starts it all and writes the inventory and
//! playbook.

mod app;
mod balancer;
mod fleet;
mod host;
mod ssh_server;
mod traffic;

#[cfg(test)]
mod tests;

pub use balancer::Balancer;
pub use fleet::{BAD_RELEASE_FAIL_PERCENT, BackgroundFleet, SimFleet, SimHostInfo, SimSpec};
pub use host::{AppHealth, AppState, SimHost};
pub use traffic::{Traffic, TrafficReport};
