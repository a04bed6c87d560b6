//! `hearth status`: what the running Hearth says of itself in its status file
//! (`server.status_file`), the same lines the login banner shows.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::output;

/// Where a deployed host keeps it (the installer sets `server.status_file`).
const DEFAULT: &str = "/run/hearth/status";
/// "Not running", as `systemctl status` and LSB init scripts say it.
const NOT_RUNNING: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The status file Hearth writes (`server.status_file`).
    #[arg(long, env = "HEARTH_STATUS_FILE", default_value = DEFAULT, value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(args: StatusArgs) -> ExitCode {
    match std::fs::read_to_string(&args.file) {
        Ok(text) => {
            output::line(text.trim_end());
            if text.contains(": serving") {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(NOT_RUNNING)
            }
        }
        Err(e) => {
            output::err(format!(
                "Hearth has not written {} ({e}): it is not running, or `server.status_file` is not set. \
                 `systemctl status hearth` says whether it runs; `hearth doctor` checks the host.",
                args.file.display()
            ));
            ExitCode::from(NOT_RUNNING)
        }
    }
}
