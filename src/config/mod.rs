//! Loading the inventory and playbook: parse, resolve, check, report.

pub mod checker;
pub mod diagnostics;
pub mod load;
pub mod openssh;
pub mod raw;
pub mod resolve;
pub mod source;
pub mod ssh_config;
pub mod values;

#[cfg(test)]
#[path = "docs_tests.rs"]
mod docs_tests;
