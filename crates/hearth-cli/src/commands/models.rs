//! `hearth models`: owned by the embedded-engine work (pull, list).

use std::process::ExitCode;

use crate::output;

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {}

pub fn run(_args: ModelsArgs) -> ExitCode {
    output::err("error: `hearth models` is not available in this build yet");
    ExitCode::FAILURE
}
