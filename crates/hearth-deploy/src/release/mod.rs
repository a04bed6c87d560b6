//! The release core: a folder per version, a `current` link, a lock per host, a
//! health wait, rollback to the previous release, and an append-only history.
//!
//! [`apply`], [`rollback`] and [`status`] are what `hearth deploy apply /
//! rollback / status` call. They work on any [`Host`]: [`LocalHost`] on this
//! machine, [`SshHost`] on a server reached with the system `ssh` client.
//! The layout on a host, under its install root:
//!
//! ```text
//! opt/hearth/releases/<version>/{bin/hearth, RELEASE}
//! opt/hearth/current -> releases/<version>
//! opt/hearth/deploy.lock
//! var/lib/hearth/deploy-history.jsonl
//! ```
//!
//! # Layout
//! - `host`: the [`Host`] trait, the operations the core needs.
//! - `local`: [`LocalHost`], those operations on this machine.
//! - `ssh`: [`SshHost`], the same operations as short `sh` scripts over `ssh`.
//! - `health`: the `/ready` wait, a bare HTTP/1.1 GET.
//! - `history`: the JSON-lines history.
//! - `version`: version checks and ordering.
//! - `error`: [`DeployError`].

mod error;
mod health;
mod history;
mod host;
mod local;
mod ssh;
mod version;

use std::path::Path;
use std::time::Duration;

pub use error::DeployError;
pub use health::{Health, check as check_health, wait_ready};
pub use history::{Action, EventOutcome, HistoryEntry, now_rfc3339};
pub use host::{Host, ReleaseInfo};
pub use local::{LocalGuard, LocalHost, Restart};
pub use ssh::{RemoteLog, SshGuard, SshHost, sh_quote};
pub use version::{compare as compare_versions, validate as validate_version};

/// A release to apply: its version and tarball
/// (`hearth-VERSION-TARGET.tar.gz` holding `hearth-VERSION/bin/hearth`).
#[derive(Debug, Clone, Copy)]
pub struct NewRelease<'a> {
    pub version: &'a str,
    pub tarball: &'a Path,
    /// The expected sha256 of the tarball, hex.
    pub sha256: &'a str,
}

/// How to judge and keep releases.
#[derive(Debug, Clone)]
pub struct Options {
    /// The readiness URL, e.g. `http://127.0.0.1:8080/ready`.
    pub health_url: String,
    /// How long a restarted release has to answer 200.
    pub health_timeout: Duration,
    pub poll_interval: Duration,
    /// Releases kept on the host; current and previous are kept regardless.
    pub keep: usize,
    /// Log lines carried in [`DeployError::NotReady`].
    pub log_lines: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            health_url: "http://127.0.0.1:8080/ready".to_string(),
            health_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            keep: 5,
            log_lines: 20,
        }
    }
}

/// What a successful [`apply`] or [`rollback`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// None when the release was already current and nothing was done.
    pub action: Option<Action>,
    pub from: Option<String>,
    pub to: String,
    pub waited: Duration,
    /// Releases deleted to keep at most [`Options::keep`].
    pub pruned: Vec<String>,
}

/// What [`status`] reports.
#[derive(Debug, Clone)]
pub struct Status {
    pub host: String,
    /// Oldest version first.
    pub releases: Vec<ReleaseInfo>,
    pub current: Option<String>,
    /// Where [`rollback`] would go.
    pub previous: Option<String>,
    /// The last history entries, oldest first.
    pub history: Vec<HistoryEntry>,
    pub health: Health,
}

/// Installs or upgrades to `release`: stage it beside the others, switch
/// `current`, restart, wait for ready. If it is not ready in time, switch back
/// to the release that was current, restart that, record an `auto-rollback`,
/// and fail with [`DeployError::NotReady`] carrying the new release's last log
/// lines. Holds the host's lock throughout.
pub fn apply<H: Host>(
    host: &H,
    release: NewRelease<'_>,
    opts: &Options,
) -> Result<Outcome, DeployError> {
    version::validate(release.version)?;
    apply_with(
        host,
        release.version,
        opts,
        // Checked here, once, whatever the host: a bad download is never
        // unpacked nor uploaded.
        || local::verify_tarball(release.tarball, release.sha256),
        |expected| host.stage_release(release.version, release.tarball, expected),
    )
}

/// [`apply`] for any kind of release: `digest` identifies its content (what
/// `RELEASE` records as `sha256`), and `stage` puts it beside the others under
/// its version's name (called only when no release of that version is
/// installed). The GitOps services use it with a folder of files instead of a
/// tarball. Holds the host's lock throughout.
pub fn apply_staged<H: Host>(
    host: &H,
    version: &str,
    digest: &str,
    opts: &Options,
    stage: impl FnOnce() -> Result<(), DeployError>,
) -> Result<Outcome, DeployError> {
    version::validate(version)?;
    apply_with(host, version, opts, || Ok(digest.to_string()), |_| stage())
}

/// The core of [`apply`]: under the host's lock, learn the release's digest,
/// stage it unless it is there, switch, restart, wait, roll back if need be.
fn apply_with<H: Host>(
    host: &H,
    version: &str,
    opts: &Options,
    digest: impl FnOnce() -> Result<String, DeployError>,
    stage: impl FnOnce(&str) -> Result<(), DeployError>,
) -> Result<Outcome, DeployError> {
    let _guard = host.lock()?;
    let from = host.current()?;
    let digest = digest()?;
    match host.releases()?.into_iter().find(|r| r.version == version) {
        // Staged before (an apply that was rolled back, a re-run): nothing to copy.
        Some(r) if r.sha256 == digest => {}
        Some(r) => {
            return Err(DeployError::ReleaseConflict {
                host: host.name().to_string(),
                version: version.to_string(),
                installed: r.sha256,
                given: digest,
            });
        }
        None => stage(&digest)?,
    }
    let to = version.to_string();
    if from.as_deref() == Some(version) {
        return Ok(Outcome {
            action: None,
            from,
            to,
            waited: Duration::ZERO,
            pruned: Vec::new(),
        });
    }
    let action = if from.is_some() {
        Action::Upgrade
    } else {
        Action::Install
    };

    host.switch_current(&to)?;
    let health = host.restart_and_wait(opts);
    if health.ready {
        host.append_history(&HistoryEntry::now(
            action,
            from.clone(),
            &to,
            EventOutcome::Ok,
            format!("ready after {:.1}s", health.waited.as_secs_f64()),
        ))?;
        let pruned = prune(host, &to, from.as_deref(), opts.keep)?;
        return Ok(Outcome {
            action: Some(action),
            from,
            to,
            waited: health.waited,
            pruned,
        });
    }

    // Read the log before the old release starts writing to it again.
    let last_lines = host.last_log_lines(opts.log_lines).unwrap_or_default();
    let not_ready = format!(
        "{to} not ready after {:.1}s ({})",
        health.waited.as_secs_f64(),
        health.last
    );
    let Some(prev) = from else {
        // A first install has nothing to go back to; `current` stays on it so
        // that the operator can look at it, and the next apply replaces it.
        host.append_history(&HistoryEntry::now(
            Action::Install,
            None,
            &to,
            EventOutcome::Failed,
            not_ready,
        ))?;
        return Err(DeployError::NotReady {
            version: to,
            waited: health.waited,
            last_status: health.last,
            rolled_back_to: None,
            last_lines,
        });
    };
    host.switch_current(&prev)?;
    let back = host.restart_and_wait(opts);
    let (outcome, message) = if back.ready {
        (EventOutcome::Ok, format!("{not_ready}; {prev} ready again"))
    } else {
        (
            EventOutcome::Failed,
            format!("{not_ready}; {prev} not ready either ({})", back.last),
        )
    };
    host.append_history(&HistoryEntry::now(
        Action::AutoRollback,
        Some(to.clone()),
        &prev,
        outcome,
        message,
    ))?;
    Err(DeployError::NotReady {
        version: to,
        waited: health.waited,
        last_status: health.last,
        rolled_back_to: Some(prev),
        last_lines,
    })
}

/// Goes back one release (or to `to`, if given): switch `current`, restart,
/// wait for ready. A rollback that is not ready stays where it is, since the
/// release it left is the one being rolled away from.
pub fn rollback<H: Host>(
    host: &H,
    to: Option<&str>,
    opts: &Options,
) -> Result<Outcome, DeployError> {
    let _guard = host.lock()?;
    let current = host
        .current()?
        .ok_or_else(|| DeployError::NothingInstalled {
            host: host.name().to_string(),
        })?;
    let target = match to {
        Some(v) => {
            version::validate(v)?;
            v.to_string()
        }
        None => previous(host, &current)?.ok_or_else(|| DeployError::NoPrevious {
            host: host.name().to_string(),
            current: current.clone(),
        })?,
    };
    host.switch_current(&target)?;
    let health = host.restart_and_wait(opts);
    let (outcome, message) = if health.ready {
        (
            EventOutcome::Ok,
            format!("ready after {:.1}s", health.waited.as_secs_f64()),
        )
    } else {
        (
            EventOutcome::Failed,
            format!(
                "not ready after {:.1}s ({})",
                health.waited.as_secs_f64(),
                health.last
            ),
        )
    };
    host.append_history(&HistoryEntry::now(
        Action::Rollback,
        Some(current.clone()),
        &target,
        outcome,
        message,
    ))?;
    if !health.ready {
        return Err(DeployError::NotReady {
            version: target,
            waited: health.waited,
            last_status: health.last,
            rolled_back_to: None,
            last_lines: host.last_log_lines(opts.log_lines).unwrap_or_default(),
        });
    }
    Ok(Outcome {
        action: Some(Action::Rollback),
        from: Some(current),
        to: target,
        waited: health.waited,
        pruned: Vec::new(),
    })
}

/// The releases, which is current and previous, the last `history_len`
/// history entries, and one `/ready` probe. Takes no lock: it only reads.
pub fn status<H: Host>(
    host: &H,
    opts: &Options,
    history_len: usize,
) -> Result<Status, DeployError> {
    let releases = host.releases()?;
    let current = host.current()?;
    let previous = match &current {
        Some(c) => previous(host, c)?,
        None => None,
    };
    let mut history = host.history()?;
    let skip = history.len().saturating_sub(history_len);
    history.drain(..skip);
    let timeout = opts.health_timeout.min(Duration::from_secs(5));
    Ok(Status {
        host: host.name().to_string(),
        releases,
        current,
        previous,
        history,
        health: health::check(&opts.health_url, timeout),
    })
}

/// The release [`rollback`] goes to from `current`: the one the last
/// successful install or upgrade to `current` came from, so a rollback undoes
/// the last apply even when it was a downgrade; failing that (no history, or
/// that release deleted), the highest installed version below `current`.
pub fn previous<H: Host>(host: &H, current: &str) -> Result<Option<String>, DeployError> {
    let releases = host.releases()?;
    let installed = |v: &str| releases.iter().any(|r| r.version == v);
    let from_history = host
        .history()?
        .into_iter()
        .rev()
        .find(|e| {
            e.to == current
                && e.outcome == EventOutcome::Ok
                && matches!(e.action, Action::Install | Action::Upgrade)
        })
        .and_then(|e| e.from)
        .filter(|v| v != current && installed(v));
    if from_history.is_some() {
        return Ok(from_history);
    }
    Ok(releases
        .iter()
        .rev()
        .find(|r| version::compare(&r.version, current).is_lt())
        .map(|r| r.version.clone()))
}

/// Deletes the oldest releases beyond `keep`, never `current` nor `previous`.
fn prune<H: Host>(
    host: &H,
    current: &str,
    previous: Option<&str>,
    keep: usize,
) -> Result<Vec<String>, DeployError> {
    let releases = host.releases()?;
    let mut excess = releases.len().saturating_sub(keep);
    let mut pruned = Vec::new();
    for r in &releases {
        if excess == 0 {
            break;
        }
        if r.version == current || Some(r.version.as_str()) == previous {
            continue;
        }
        host.remove_release(&r.version)?;
        pruned.push(r.version.clone());
        excess -= 1;
    }
    Ok(pruned)
}
