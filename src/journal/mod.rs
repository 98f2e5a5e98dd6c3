//! The durable record of a run: written before acting, replayed to resume.

pub mod replay;
pub mod store;
