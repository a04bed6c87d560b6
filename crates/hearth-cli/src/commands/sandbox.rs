//! `hearth sandbox`: owned by the sandbox work (run, check).

use std::process::ExitCode;

use crate::output;

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {}

pub fn run(_args: SandboxArgs) -> ExitCode {
    output::err("error: `hearth sandbox` is not available in this build yet");
    ExitCode::FAILURE
}
