//! Domain types: what the files mean once defaults and references are resolved.

pub mod amount;
pub mod duration;
pub mod inventory;
pub mod playbook;
pub mod redact;
pub mod shell_context;
pub mod template;
