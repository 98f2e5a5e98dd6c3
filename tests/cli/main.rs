//! The one integration-test binary: drives the real CLI end to end.

#[path = "../fixture/mod.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the fixture serves several test binaries; each uses a subset"
)]
mod fixture;

mod demo;
mod diagnostics;
mod examples;
mod history;
mod http_stub;
mod import;
mod install;
mod live;
mod openssh;
mod plan;
mod promises;
mod report;
mod rollout;
mod scale;
mod secrets;
mod state;
mod support;
mod unattended;
