//! The `hearth` binary: parses arguments and hands off to a command. Wiring only;
//! the work lives in the library crates.

mod cli;
mod commands;
mod logging;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::run(cli)
}
