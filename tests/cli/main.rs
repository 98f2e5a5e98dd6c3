//! The one integration-test binary: drives the real CLI end to end.

mod diagnostics;
mod examples;
mod plan;
mod support;
