//! Executing a plan: a dispatcher that owns the run, a task per host.

pub mod admission;
pub mod dispatcher;
pub mod env;
pub mod heartbeat;
pub mod host_machine;
pub mod host_task;
pub mod messages;
pub mod replacements;
pub mod retry;
pub mod signals;
pub mod watch;

#[cfg(test)]
mod simulation;
