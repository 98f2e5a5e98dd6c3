//! Reporters: they read events and the run record, and decide nothing.

pub mod history;
pub mod html;
pub mod human;
pub mod json;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod summary;
pub mod timeline;
