//! The release core on real files and real processes: each fake release's
//! `bin/hearth` is a shell script that execs a python3 HTTP server answering
//! `/ready` with 200 (a good release) or 503 forever (a broken one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{Site, sha256_hex};
use hearth_deploy::release::{
    self, Action, DeployError, EventOutcome, Host, LocalHost, NewRelease, Options, Restart,
};

/// The service a test deploys to: the running fake (killed on drop), the
/// install root, and the port it serves on.
struct Fixture {
    site: Site,
    child: Arc<Mutex<Option<Child>>>,
}

impl std::ops::Deref for Fixture {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Fixture {
    fn new() -> Fixture {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Fixture {
            site: Site::new(port, Duration::from_secs(3)),
            child: Arc::new(Mutex::new(None)),
        }
    }

    /// A host whose restart kills the running fake and starts `current/bin/hearth`,
    /// as `systemctl restart hearth` would.
    fn host(&self) -> LocalHost {
        let child = Arc::clone(&self.child);
        let bin = self.root().join("opt/hearth/current/bin/hearth");
        let log = self.log();
        let port = self.port;
        LocalHost::new(self.root())
            .with_name("test-host")
            .with_log_file(self.log())
            .with_restart(Restart::Fn(Box::new(move || {
                let mut slot = child.lock().map_err(|e| e.to_string())?;
                if let Some(mut old) = slot.take() {
                    let _ = old.kill();
                    let _ = old.wait();
                }
                let out = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(|e| e.to_string())?;
                let err = out.try_clone().map_err(|e| e.to_string())?;
                let new = Command::new(&bin)
                    .env("HEARTH_FAKE_PORT", port.to_string())
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| format!("start {}: {e}", bin.display()))?;
                *slot = Some(new);
                Ok(())
            })))
    }
}

fn link_target(root: &Path) -> PathBuf {
    fs::read_link(root.join("opt/hearth/current")).unwrap()
}

#[test]
fn first_install_creates_the_layout_and_serves() {
    let fx = Fixture::new();
    let host = fx.host();
    let out = fx.apply(&host, "0.1.0", true).unwrap();
    assert_eq!(out.action, Some(Action::Install));
    assert_eq!(out.from, None);
    assert_eq!(out.to, "0.1.0");
    assert!(fx.ready());

    let root = fx.root();
    assert_eq!(
        link_target(&root),
        Path::new("releases/0.1.0"),
        "a relative link"
    );
    assert!(root.join("opt/hearth/releases/0.1.0/bin/hearth").is_file());
    let release_file = fs::read_to_string(root.join("opt/hearth/releases/0.1.0/RELEASE")).unwrap();
    assert!(release_file.contains("version=0.1.0\n"), "{release_file}");
    assert!(release_file.contains("sha256="), "{release_file}");
    assert!(root.join("opt/hearth/deploy.lock").is_file());
    let history = host.history().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].action, Action::Install);
    assert_eq!(history[0].outcome, EventOutcome::Ok);
    assert_eq!(history[0].to, "0.1.0");
    // The file on disk is JSON lines with the documented field names.
    let text = fs::read_to_string(root.join("var/lib/hearth/deploy-history.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for key in ["time", "action", "from", "to", "outcome", "message"] {
        assert!(line.get(key).is_some(), "history line lacks {key}: {line}");
    }
}

#[test]
fn upgrade_switches_current_and_records_both() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "0.9.0", true).unwrap();
    let out = fx.apply(&host, "0.10.0", true).unwrap();
    assert_eq!(out.action, Some(Action::Upgrade));
    assert_eq!(out.from.as_deref(), Some("0.9.0"));
    assert_eq!(host.current().unwrap().as_deref(), Some("0.10.0"));
    assert!(fx.ready());
    // Numeric order, not lexical ("0.10.0" < "0.9.0" as strings).
    assert_eq!(fx.versions(&host), ["0.9.0", "0.10.0"]);
    let actions: Vec<Action> = host.history().unwrap().iter().map(|e| e.action).collect();
    assert_eq!(actions, [Action::Install, Action::Upgrade]);

    // Applying the current release again does nothing.
    let again = fx.apply(&host, "0.10.0", true).unwrap();
    assert_eq!(again.action, None);
    assert_eq!(host.history().unwrap().len(), 2);
}

#[test]
fn a_release_that_never_becomes_ready_is_rolled_back() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "1.0.0", true).unwrap();
    let err = fx.apply(&host, "1.1.0", false).unwrap_err();
    match &err {
        DeployError::NotReady {
            version,
            last_status,
            rolled_back_to,
            last_lines,
            ..
        } => {
            assert_eq!(version, "1.1.0");
            assert_eq!(last_status, "HTTP 503");
            assert_eq!(rolled_back_to.as_deref(), Some("1.0.0"));
            let joined = last_lines.join("\n");
            assert!(joined.contains("cannot open the model store"), "{joined}");
            assert!(joined.contains("hearth 1.1.0"), "{joined}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("rolled back to 1.0.0"), "{msg}");
    assert!(msg.contains("model store"), "{msg}");

    assert_eq!(host.current().unwrap().as_deref(), Some("1.0.0"));
    assert!(fx.ready(), "the old release answers /ready again");
    let last = host.history().unwrap().pop().unwrap();
    assert_eq!(last.action, Action::AutoRollback);
    assert_eq!(last.from.as_deref(), Some("1.1.0"));
    assert_eq!(last.to, "1.0.0");
    assert_eq!(last.outcome, EventOutcome::Ok);
    // The broken release stays on disk for inspection, but is not "previous".
    assert_eq!(fx.versions(&host), ["1.0.0", "1.1.0"]);
}

#[test]
fn a_bad_checksum_changes_nothing() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "0.1.0", true).unwrap();
    let (tarball, _) = fx.tarball("0.2.0", true);
    let err = release::apply(
        &host,
        NewRelease {
            version: "0.2.0",
            tarball: &tarball,
            sha256: &"0".repeat(64),
        },
        &fx.opts(),
    )
    .unwrap_err();
    assert!(
        matches!(err, DeployError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("download it again"), "{err}");
    assert_eq!(host.current().unwrap().as_deref(), Some("0.1.0"));
    assert_eq!(fx.release_dir_names(), ["0.1.0"], "no partial folder left");
    assert_eq!(host.history().unwrap().len(), 1);
    assert!(fx.ready());
}

#[test]
fn a_tarball_without_the_binary_leaves_no_partial_folder() {
    let fx = Fixture::new();
    let host = fx.host();
    let junk = fx.dir.path().join("junk.tar.gz");
    fs::write(fx.dir.path().join("readme"), "not a release").unwrap();
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&junk)
        .arg("-C")
        .arg(fx.dir.path())
        .arg("readme")
        .status()
        .unwrap();
    assert!(status.success());
    let sha = sha256_hex(&junk);
    let err = release::apply(
        &host,
        NewRelease {
            version: "0.3.0",
            tarball: &junk,
            sha256: &sha,
        },
        &fx.opts(),
    )
    .unwrap_err();
    assert!(matches!(err, DeployError::BadTarball { .. }), "{err:?}");
    assert!(
        fx.release_dir_names().is_empty(),
        "{:?}",
        fx.release_dir_names()
    );
    assert_eq!(host.current().unwrap(), None);
}

#[test]
fn rollback_goes_back_one_release_at_a_time() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "0.1.0", true).unwrap();
    fx.apply(&host, "0.2.0", true).unwrap();
    fx.apply(&host, "0.3.0", true).unwrap();

    let out = release::rollback(&host, None, &fx.opts()).unwrap();
    assert_eq!(
        (out.from.as_deref(), out.to.as_str()),
        (Some("0.3.0"), "0.2.0")
    );
    assert_eq!(host.current().unwrap().as_deref(), Some("0.2.0"));
    assert!(fx.ready());
    let out = release::rollback(&host, None, &fx.opts()).unwrap();
    assert_eq!(out.to, "0.1.0");
    let err = release::rollback(&host, None, &fx.opts()).unwrap_err();
    assert!(matches!(err, DeployError::NoPrevious { .. }), "{err:?}");

    let last = host.history().unwrap().pop().unwrap();
    assert_eq!(last.action, Action::Rollback);
    assert_eq!(
        (last.from.as_deref(), last.to.as_str()),
        (Some("0.2.0"), "0.1.0")
    );

    // An explicit target works too, forwards as well as back.
    let out = release::rollback(&host, Some("0.3.0"), &fx.opts()).unwrap();
    assert_eq!(out.to, "0.3.0");
    let err = release::rollback(&host, Some("9.9.9"), &fx.opts()).unwrap_err();
    assert!(matches!(err, DeployError::UnknownRelease { .. }), "{err:?}");
    assert_eq!(host.current().unwrap().as_deref(), Some("0.3.0"));
}

#[test]
fn rollback_undoes_a_downgrade() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "2.0.0", true).unwrap();
    fx.apply(&host, "1.5.0", true).unwrap();
    let out = release::rollback(&host, None, &fx.opts()).unwrap();
    assert_eq!(out.to, "2.0.0", "back to where the last apply came from");
}

#[test]
fn status_shows_releases_current_previous_history_and_health() {
    let fx = Fixture::new();
    let host = fx.host();
    let s = release::status(&host, &fx.opts(), 10).unwrap();
    assert!(s.releases.is_empty());
    assert_eq!(s.current, None);
    assert!(!s.health.ready);

    fx.apply(&host, "0.1.0", true).unwrap();
    fx.apply(&host, "0.2.0", true).unwrap();
    let s = release::status(&host, &fx.opts(), 1).unwrap();
    assert_eq!(s.host, "test-host");
    let versions: Vec<&str> = s.releases.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["0.1.0", "0.2.0"]);
    assert!(
        s.releases
            .iter()
            .all(|r| r.installed.ends_with('Z') && r.sha256.len() == 64)
    );
    assert_eq!(s.current.as_deref(), Some("0.2.0"));
    assert_eq!(s.previous.as_deref(), Some("0.1.0"));
    assert_eq!(s.history.len(), 1);
    assert_eq!(s.history[0].action, Action::Upgrade);
    assert!(s.health.ready, "{:?}", s.health);
    assert_eq!(s.health.last, "HTTP 200");
}

#[test]
fn a_held_lock_refuses_a_second_deploy_and_names_the_holder() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "0.1.0", true).unwrap();
    let guard = host.lock().unwrap();
    let err = fx.apply(&host, "0.2.0", true).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DeployError::LockHeld { .. }), "{err:?}");
    assert!(
        msg.contains("another deploy holds the lock on test-host"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("by pid {}", std::process::id())),
        "{msg}"
    );
    assert!(msg.contains("since 20"), "{msg}");
    let err = release::rollback(&host, None, &fx.opts()).unwrap_err();
    assert!(matches!(err, DeployError::LockHeld { .. }), "{err:?}");
    assert_eq!(fx.release_dir_names(), ["0.1.0"]);
    drop(guard);
    fx.apply(&host, "0.2.0", true).unwrap();
}

#[test]
fn two_concurrent_applies_never_interleave() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.check_two_concurrent_applies(&host);
}

#[test]
fn pruning_keeps_current_and_previous() {
    let fx = Fixture::new();
    let host = fx.host();
    let opts = Options {
        keep: 2,
        ..fx.opts()
    };
    let apply = |v: &str| {
        let (tarball, sha) = fx.tarball(v, true);
        release::apply(
            &host,
            NewRelease {
                version: v,
                tarball: &tarball,
                sha256: &sha,
            },
            &opts,
        )
    };
    apply("3.0.0").unwrap();
    apply("1.0.0").unwrap(); // a downgrade: previous (3.0.0) is the newest
    let out = apply("2.0.0").unwrap();
    // keep=2 with current 2.0.0 and previous 1.0.0: 3.0.0 goes, though newest.
    assert_eq!(out.pruned, ["3.0.0"]);
    assert_eq!(fx.versions(&host), ["1.0.0", "2.0.0"]);
    let out = apply("4.0.0").unwrap();
    assert_eq!(out.pruned, ["1.0.0"]);
    assert_eq!(fx.versions(&host), ["2.0.0", "4.0.0"]);
    assert_eq!(
        fx.release_dir_names(),
        ["2.0.0", "4.0.0"],
        "nothing half-deleted left"
    );
}

#[test]
fn a_failing_restart_command_is_reported_and_rolled_back() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "0.1.0", true).unwrap();
    // A command host, as in production, whose command fails.
    let cmd_host = LocalHost::new(fx.root())
        .with_name("cmd-host")
        .with_restart(Restart::Command(vec![
            "sh".into(),
            "-c".into(),
            "echo unit hearth.service not found >&2; exit 5".into(),
        ]));
    let (tarball, sha) = fx.tarball("0.2.0", true);
    let opts = Options {
        health_timeout: Duration::from_millis(300),
        ..fx.opts()
    };
    // The old fake still answers, so stop it: a failed restart means nothing runs.
    drop(fx.child.lock().unwrap().take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    }));
    let err = release::apply(
        &cmd_host,
        NewRelease {
            version: "0.2.0",
            tarball: &tarball,
            sha256: &sha,
        },
        &opts,
    )
    .unwrap_err();
    match &err {
        DeployError::NotReady {
            last_status,
            rolled_back_to,
            ..
        } => {
            assert!(
                last_status.contains("unit hearth.service not found"),
                "{last_status}"
            );
            assert_eq!(rolled_back_to.as_deref(), Some("0.1.0"));
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert_eq!(cmd_host.current().unwrap().as_deref(), Some("0.1.0"));
    let last = cmd_host.history().unwrap().pop().unwrap();
    assert_eq!(last.action, Action::AutoRollback);
    assert_eq!(
        last.outcome,
        EventOutcome::Failed,
        "the old one did not come back either"
    );
}

#[test]
fn a_different_build_under_an_installed_version_is_refused() {
    let fx = Fixture::new();
    let host = fx.host();
    fx.apply(&host, "0.1.0", true).unwrap();
    let other = fx.dir.path().join("other.tar.gz");
    let (tarball, _) = fx.tarball("0.1.0", true);
    // Same content, another gzip header: a different build.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | gzip -n -9 > '{}'",
            tarball.display(),
            other.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let sha = sha256_hex(&other);
    let err = release::apply(
        &host,
        NewRelease {
            version: "0.1.0",
            tarball: &other,
            sha256: &sha,
        },
        &fx.opts(),
    )
    .unwrap_err();
    assert!(
        matches!(err, DeployError::ReleaseConflict { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("give the new build a new version"),
        "{err}"
    );
}

#[test]
fn a_failed_first_install_has_nothing_to_roll_back_to() {
    let fx = Fixture::new();
    let host = fx.host();
    let opts = Options {
        health_timeout: Duration::from_millis(800),
        ..fx.opts()
    };
    let (tarball, sha) = fx.tarball("0.1.0", false);
    let err = release::apply(
        &host,
        NewRelease {
            version: "0.1.0",
            tarball: &tarball,
            sha256: &sha,
        },
        &opts,
    )
    .unwrap_err();
    match &err {
        DeployError::NotReady { rolled_back_to, .. } => assert_eq!(*rolled_back_to, None),
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert!(err.to_string().contains("no earlier release"), "{err}");
    let last = host.history().unwrap().pop().unwrap();
    assert_eq!(
        (last.action, last.outcome),
        (Action::Install, EventOutcome::Failed)
    );
    // The next apply replaces it as an upgrade from the broken one.
    let out = fx.apply(&host, "0.1.1", true).unwrap();
    assert_eq!(out.from.as_deref(), Some("0.1.0"));
    assert!(fx.ready());
}

#[test]
fn a_crashed_upload_is_not_a_release_and_is_replaced() {
    let fx = Fixture::new();
    let host = fx.host();
    let partial = fx.root().join("opt/hearth/releases/.0.1.0.partial");
    fs::create_dir_all(partial.join("bin")).unwrap();
    fs::write(partial.join("bin/hearth"), "half a binary").unwrap();
    assert!(host.releases().unwrap().is_empty());
    fx.apply(&host, "0.1.0", true).unwrap();
    assert_eq!(fx.release_dir_names(), ["0.1.0"]);
    assert!(fx.ready());
}
