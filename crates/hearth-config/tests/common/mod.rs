//! What the config test files share.

use hearth_config::{MapEnv, load_str};

/// The diagnostics loading `text` (as `hearth.toml`) with `env` gives, as printed.
pub fn errors(text: &str, env: &MapEnv) -> Vec<String> {
    load_str(text, "hearth.toml", env)
        .unwrap_err()
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect()
}
