//! The `keyhole` binary: parses the command line and hands over to
//! [`keyhole::cli`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: fewer instructions per allocation
/// on the request path, and memory freed by closed connections goes back
/// to the system (docs/PERFORMANCE.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    keyhole::cli::run(keyhole::cli::Cli::parse())
}
