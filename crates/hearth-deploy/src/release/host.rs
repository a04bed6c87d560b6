//! The operations the core needs from a host.
//!
//! The core in `mod.rs` only speaks to [`Host`], so the same apply, rollback
//! and status run on this machine (`local.rs`) and over SSH (`ssh.rs`).

use std::path::Path;

use std::time::Duration;

use super::{DeployError, Health, HistoryEntry, Options, health};

/// One installed release, as read from its `RELEASE` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub version: String,
    pub sha256: String,
    /// When it was staged (RFC 3339 UTC), empty if unknown.
    pub installed: String,
}

impl ReleaseInfo {
    /// Reads a `RELEASE` file's `key=value` lines; a missing key reads as empty.
    pub(crate) fn parse(version: &str, text: &str) -> ReleaseInfo {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        ReleaseInfo {
            version: version.to_string(),
            sha256: field("sha256"),
            installed: field("installed"),
        }
    }
}

/// A host's release layout under its install root (see `docs/deploy.md`).
pub trait Host {
    /// Held while a deploy runs; dropping it releases the host's lock.
    type Guard;

    /// The host's name, for messages and the lock file.
    fn name(&self) -> &str;

    /// Takes the host's deploy lock without waiting, or fails with
    /// [`DeployError::LockHeld`] naming the holder.
    fn lock(&self) -> Result<Self::Guard, DeployError>;

    /// The version `current` points at, None before the first install.
    fn current(&self) -> Result<Option<String>, DeployError>;

    /// The installed releases, oldest version first.
    fn releases(&self) -> Result<Vec<ReleaseInfo>, DeployError>;

    /// Unpacks the tarball beside the other releases and only then gives it its
    /// version's name, so a failed or partial upload never looks like a release.
    /// The core has checked the tarball against `sha256` and that no release of
    /// this version is there; a host that copies it elsewhere checks it again
    /// where it lands.
    fn stage_release(&self, version: &str, tarball: &Path, sha256: &str)
    -> Result<(), DeployError>;

    /// Points `current` at an installed release in one atomic rename.
    fn switch_current(&self, version: &str) -> Result<(), DeployError>;

    /// Restarts the service so that it runs what `current` points at.
    fn restart(&self) -> Result<(), DeployError>;

    /// Deletes an installed release (never called for current or previous).
    fn remove_release(&self, version: &str) -> Result<(), DeployError>;

    /// Appends one line to the history.
    fn append_history(&self, entry: &HistoryEntry) -> Result<(), DeployError>;

    /// The whole history, oldest first.
    fn history(&self) -> Result<Vec<HistoryEntry>, DeployError>;

    /// The service's last `n` log lines, to show why a release did not come up.
    fn last_log_lines(&self, n: usize) -> Result<Vec<String>, DeployError>;

    /// Restarts the service and waits until it is healthy. The default: note
    /// which process answers `opts.health_url` now, [`Host::restart`], then
    /// poll the URL until another process answers 200. A host whose services
    /// are judged otherwise (a command, retries) overrides it.
    fn restart_and_wait(&self, opts: &Options) -> Health {
        // Which process answers now: after a restart by handover (`systemctl reload`)
        // the old one keeps answering until the new one takes over, so only another
        // process's 200 says the switch happened.
        let before = health::check(&opts.health_url, Duration::from_secs(2)).instance;
        if let Err(e) = self.restart() {
            return Health {
                ready: false,
                last: e.to_string(),
                waited: Duration::ZERO,
                instance: None,
            };
        }
        health::wait_ready(
            &opts.health_url,
            opts.health_timeout,
            opts.poll_interval,
            before.as_deref(),
        )
    }
}
