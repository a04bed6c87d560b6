//! What the CLI test files share.

use std::process::Command;

/// The real `hearth` binary, with none of the caller's `HEARTH_*` variables in
/// its environment (keys, config, log level and format, and what `make test`
/// sets for the tests themselves).
pub fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HEARTH_") {
            c.env_remove(name);
        }
    }
    c
}
