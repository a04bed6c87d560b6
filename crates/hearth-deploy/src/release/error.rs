//! What can go wrong in a deploy, each error saying what to do about it.

use std::path::PathBuf;
use std::time::Duration;

/// An error from the release core. Every message names the host or the path
/// involved and the next step, because the CLI prints it as is.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Another deploy holds the host's lock; flock is released when its process
    /// dies, so a held lock always means a live deploy.
    #[error(
        "another deploy holds the lock on {host} ({holder}); wait for it to finish and try again"
    )]
    LockHeld { host: String, holder: String },

    #[error(
        "release version {version:?} is not usable as a folder name: use letters, digits, '.', '-', '+' or '_', not starting with '.'"
    )]
    InvalidVersion { version: String },

    #[error(
        "the tarball {path} has sha256 {actual}, but {expected} was expected: the download is corrupt or the checksum is for another file; download it again"
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error(
        "release {version} is already installed on {host} with sha256 {installed}, not {given}: give the new build a new version"
    )]
    ReleaseConflict {
        host: String,
        version: String,
        installed: String,
        given: String,
    },

    #[error(
        "the tarball {path} could not be unpacked: {detail}; it must be hearth-VERSION/bin/hearth inside a .tar.gz"
    )]
    BadTarball { path: PathBuf, detail: String },

    #[error(
        "release {version} is not installed on {host}: `hearth deploy status` lists the installed releases"
    )]
    UnknownRelease { host: String, version: String },

    #[error("nothing is installed on {host} yet: run `hearth deploy apply` first")]
    NothingInstalled { host: String },

    #[error(
        "there is no release to roll back to on {host} (current is {current}): roll forward with `hearth deploy apply`"
    )]
    NoPrevious { host: String, current: String },

    #[error(
        "the restart command on {host} failed: {detail}; check the service with `systemctl status hearth`"
    )]
    Restart { host: String, detail: String },

    /// The new release did not answer ready in time. `rolled_back_to` is the
    /// release now running again (None on a first install: nothing to go back to).
    #[error("{}", not_ready_message(.version, .waited, .last_status, .rolled_back_to, .last_lines))]
    NotReady {
        version: String,
        waited: Duration,
        last_status: String,
        rolled_back_to: Option<String>,
        last_lines: Vec<String>,
    },

    /// An SSH host could not be reached, or a remote step failed for a reason
    /// the other variants do not cover.
    #[error(
        "{action} on {host} over ssh failed: {detail}; check that `ssh` reaches {host} with the same port, key and known_hosts, without a prompt"
    )]
    Ssh {
        host: String,
        action: &'static str,
        detail: String,
    },

    #[error("{action} on {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DeployError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| DeployError::Io {
            action,
            path,
            source,
        }
    }
}

fn not_ready_message(
    version: &str,
    waited: &Duration,
    last_status: &str,
    rolled_back_to: &Option<String>,
    last_lines: &[String],
) -> String {
    let mut msg = format!(
        "release {version} was not ready after {:.1}s (last answer: {last_status})",
        waited.as_secs_f64()
    );
    match rolled_back_to {
        Some(prev) => msg.push_str(&format!("; rolled back to {prev}")),
        None => msg.push_str("; there was no earlier release to roll back to"),
    }
    if last_lines.is_empty() {
        msg.push_str("; its log is empty");
    } else {
        msg.push_str("; its last log lines:");
        for line in last_lines {
            msg.push_str("\n  ");
            msg.push_str(line);
        }
    }
    msg
}
