//! The `hearth` binary: parses arguments and hands off to a command. Wiring only;
//! the work lives in the library crates.

mod banner;
mod build_info;
mod cli;
mod commands;
mod doctor;
mod logging;
mod output;

use std::process::ExitCode;

use clap::Parser;

// The gateway's hot path is small allocations (headers, JSON, futures); glibc's
// malloc cost about a fifth of its CPU time in the profile (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::run(cli)
}
