//! Renderers: pure functions from a [`Manifest`] to the text of one artifact.
//!
//! Every rendering says the same facts (paths, port, version): the installer is
//! the one place that installs, and cloud-init and the StackScript only carry it
//! to the host and run it. `tests/render.rs` checks the shared facts, snapshots
//! each rendering, and runs the real validators.
//!
//! # Layout
//! - [`install_sh`]: the POSIX installer (release download, checksum, layout,
//!   config, key, unit, firewall).
//! - [`systemd`]: the unit and its environment file.
//! - [`cloud_init`]: `#cloud-config` user data that writes and runs the installer.
//! - [`stackscript`]: a Linode StackScript that does the same.
//! - [`compose`]: a compose file for hosts that run containers.

mod cloud_init;
mod compose;
mod install_sh;
mod stackscript;
mod systemd;

use crate::manifest::Manifest;

pub use cloud_init::cloud_init;
pub use compose::compose;
pub use install_sh::install_sh;
pub use stackscript::stackscript;
pub use systemd::{systemd_env, systemd_unit};

/// The kinds of rendering, by the names `hearth deploy render KIND` takes.
pub const KINDS: &[&str] = &[
    "cloud-init",
    "stackscript",
    "install-sh",
    "systemd-unit",
    "systemd-env",
    "hearth-toml",
    "compose",
];

/// Renders `kind` (one of [`KINDS`]); `None` for an unknown kind.
pub fn render(kind: &str, manifest: &Manifest) -> Option<String> {
    Some(match kind {
        "cloud-init" => cloud_init(manifest),
        "stackscript" => stackscript(manifest),
        "install-sh" => install_sh(manifest),
        "systemd-unit" => systemd_unit(manifest),
        "systemd-env" => systemd_env(manifest),
        "hearth-toml" => manifest.hearth_toml(),
        "compose" => compose(manifest),
        _ => return None,
    })
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `text` indented by `n` spaces (empty lines stay empty), for YAML block scalars.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(indent("a\n\nb\n", 2), "  a\n\n  b\n");
    }
}
