//! The `keyhole` binary: parses the command line and hands over to
//! [`keyhole::cli`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keyhole::cli::run(keyhole::cli::Cli::parse())
}
