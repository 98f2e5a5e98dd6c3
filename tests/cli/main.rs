//! The one integration-test binary: drives the real CLI end to end.

#[path = "../fixture/mod.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the fixture serves several test binaries; each uses a subset"
)]
mod fixture;

mod bastion;
mod demo;
mod diagnostics;
mod examples;
mod history;
mod http_stub;
mod import;
mod install;
mod live;
#[path = "../aws/moto.rs"]
#[expect(
    dead_code,
    reason = "the S3 tests use moto_server, not the failure proxy"
)]
mod moto;
mod openssh;
mod plan;
mod promises;
mod report;
mod rollout;
mod s3_state;
mod scale;
mod seams;
mod secrets;
mod state;
mod support;
mod unattended;
mod watch;
