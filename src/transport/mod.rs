//! The outside world behind small traits: remote shells, balancers, probes.
//!
//! Host tasks only see these traits; `app` picks the real implementations
//! (SSH, HAProxy, HTTP), tests and the demo pick others. Implementations
//! never retry on their own: errors say whether they are retryable, and the
//! caller's bounded poll loop decides. The one exception is the AWS SDK,
//! whose own retries (throttling, 5xx) are bounded to 5 attempts with
//! backoff in `aws/config.rs`.

pub mod aws;
pub mod balancer;
pub mod command_balancer;
pub mod fake;
pub mod gate;
pub mod haproxy;
pub mod http_error;
pub mod probe;
pub mod shell;
pub mod ssh;
pub mod step_guard;

pub use shell::{Connector, ExecOutput, ExitStatus, RemoteShell, ShellError};
