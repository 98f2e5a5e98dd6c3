//! Executing a plan: a dispatcher that owns the run, a task per host.

pub mod dispatcher;
pub mod env;
pub mod host_task;
pub mod messages;
pub mod signals;
