//! The durable record of a run: written before acting, replayed to resume.

pub mod fingerprint;
pub mod format;
pub mod replay;
pub mod store;
