//! `hearth serve`: load config, build backends, run the HTTP server.

use std::process::ExitCode;

use crate::cli::ServeArgs;
use crate::output;

pub fn run(args: ServeArgs) -> ExitCode {
    let _ = args;
    output::err("error: serve is being built");
    ExitCode::FAILURE
}
