//! fleetroll rolls a change across a fleet of VMs without taking the service
//! down.
//!
//! Data flows one way:
//!
//! ```text
//! files ─▶ config (parse, resolve, check) ─▶ model ─▶ plan (pure) ─▶ render
//! ```
//!
//! `config` turns the TOML files into the `model`, reporting every problem
//! with file, line and column. `plan` is a pure function from the model to
//! ordered batches; nothing in it reads the clock, the environment or disk.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod events;
pub mod exec;
pub mod fleet_lock;
pub mod import;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod model;
pub mod plan;
pub mod report;
pub mod sim;
pub mod state;
pub mod transport;
