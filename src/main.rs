//! The `fleetroll` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    fleetroll::app::run(fleetroll::cli::Cli::parse())
}
