//! What the CLI test files share.

use std::process::Command;

/// The real `hearth` binary, with none of the caller's Hearth settings in its
/// environment (keys, config, log level and format).
pub fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.env_remove("HEARTH_API_KEYS")
        .env_remove("HEARTH_CONFIG")
        .env_remove("HEARTH_LOG")
        .env_remove(hearth_config::env::LOG_FORMAT);
    c
}
