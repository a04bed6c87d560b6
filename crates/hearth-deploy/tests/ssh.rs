//! The release core over a real SSH connection: each test starts a private
//! `sshd` on a free loopback port with a temp host key and a temp client key,
//! and deploys with [`SshHost`] into a temp root on this same machine. The
//! fake releases are those of `tests/release.rs` (`common`); the restart
//! command is a script in the temp dir that kills the running fake (pid file)
//! and starts `current/bin/hearth` detached, as `systemctl restart` would.
//!
//! Without `/usr/sbin/sshd` the tests are skipped with a printed reason; with
//! `HEARTH_TEST_SSHD_REQUIRED=1` (`make unit`) they fail instead (`tests/sshd`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test

mod common;
mod sshd;

use common::Site;
use sshd::{Sshd, free_port};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hearth_deploy::release::{
    self, Action, DeployError, EventOutcome, Host, NewRelease, Options, RemoteLog, SshHost,
    sh_quote,
};

/// A private sshd (`tests/sshd`), the fake service's port, and the temp dir
/// holding the keys, the remote root, the log and the restart script.
struct Fixture {
    site: Site,
    sshd: Sshd,
    ssh_port: u16,
    user: String,
}

impl std::ops::Deref for Fixture {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(self.dir.path().join("hearth.pid")) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
    }
}

impl Fixture {
    /// None (with the reason printed) when sshd is missing and not required.
    fn new() -> Option<Fixture> {
        let site = Site::new(free_port(), Duration::from_secs(5));
        let sshd = Sshd::start(site.dir.path())?;
        let fx = Fixture {
            ssh_port: sshd.port,
            user: sshd.user.clone(),
            site,
            sshd,
        };
        fx.write_restart_script();
        Some(fx)
    }

    /// Kills the fake named in the pid file (waiting until it is gone or a
    /// zombie, so the port is free) and starts `current/bin/hearth` detached,
    /// its output in the log, so that ssh does not wait for it.
    fn write_restart_script(&self) {
        let q = |p: PathBuf| sh_quote(&p.to_string_lossy());
        let script = format!(
            r#"#!/bin/sh
pidf={pidf}
if [ -f "$pidf" ]; then
  pid=$(cat "$pidf")
  kill -9 "$pid" 2>/dev/null
  i=0
  while [ "$i" -lt 100 ]; do
    s=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)
    if [ -z "$s" ] || [ "$s" = Z ]; then break; fi
    sleep 0.05
    i=$((i + 1))
  done
  rm -f "$pidf"
fi
HEARTH_FAKE_PORT={port} setsid nohup {bin} >> {log} 2>&1 < /dev/null &
echo $! > "$pidf"
"#,
            pidf = q(self.dir.path().join("hearth.pid")),
            port = self.port,
            bin = q(self.root().join("opt/hearth/current/bin/hearth")),
            log = q(self.log()),
        );
        fs::write(self.dir.path().join("restart.sh"), script).unwrap();
    }

    fn host(&self) -> SshHost {
        let d = self.dir.path();
        SshHost::new(format!("{}@127.0.0.1", self.user))
            .with_name("test-host")
            .with_port(self.ssh_port)
            .with_identity(self.sshd.identity())
            .with_known_hosts(self.sshd.known_hosts())
            .with_option("ConnectTimeout=10")
            .with_root(self.root().to_string_lossy())
            .with_restart(format!(
                "sh {}",
                sh_quote(&d.join("restart.sh").to_string_lossy())
            ))
            .with_log(RemoteLog::File(self.log().to_string_lossy().into_owned()))
    }
}

#[test]
fn first_install_over_ssh_creates_the_local_layout() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.host();
    assert_eq!(host.current().unwrap(), None);
    assert!(host.releases().unwrap().is_empty());
    assert!(host.history().unwrap().is_empty());
    let out = fx.apply(&host, "0.1.0", true).unwrap();
    assert_eq!(out.action, Some(Action::Install));
    assert!(fx.ready());

    let root = fx.root();
    assert_eq!(
        fs::read_link(root.join("opt/hearth/current")).unwrap(),
        Path::new("releases/0.1.0"),
        "a relative link, as LocalHost makes it"
    );
    assert!(root.join("opt/hearth/releases/0.1.0/bin/hearth").is_file());
    let release_file = fs::read_to_string(root.join("opt/hearth/releases/0.1.0/RELEASE")).unwrap();
    let (_, sha) = fx.tarball("0.1.0", true);
    assert!(
        release_file.starts_with("version=0.1.0\n"),
        "{release_file}"
    );
    assert!(
        release_file.contains(&format!("sha256={sha}\n")),
        "{release_file}"
    );
    assert!(release_file.contains("installed=20"), "{release_file}");
    assert_eq!(fx.release_dir_names(), ["0.1.0"], "no upload left behind");
    assert!(root.join("opt/hearth/deploy.lock").is_file());
    let text = fs::read_to_string(root.join("var/lib/hearth/deploy-history.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["action"], "install");
    assert_eq!(line["to"], "0.1.0");

    // The same tree reads the same through LocalHost.
    let local = release::LocalHost::new(fx.root());
    assert_eq!(local.releases().unwrap(), host.releases().unwrap());
    assert_eq!(local.history().unwrap(), host.history().unwrap());
    assert_eq!(local.current().unwrap(), host.current().unwrap());
}

/// Connections sshd accepted so far.
fn logins(fx: &Fixture) -> usize {
    fs::read_to_string(fx.dir.path().join("sshd.log"))
        .unwrap_or_default()
        .matches("Accepted publickey")
        .count()
}

/// A deploy's steps (lock, stage, upload, switch, restart, history, health...)
/// share one SSH connection, ended when the host is dropped; without sharing,
/// each step logs in again.
#[test]
fn a_deploy_logs_in_once_and_leaves_no_connection_behind() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.host();
    fx.apply(&host, "0.1.0", true).unwrap();
    fx.apply(&host, "0.2.0", true).unwrap();
    assert_eq!(
        logins(&fx),
        1,
        "{}",
        fs::read_to_string(fx.dir.path().join("sshd.log")).unwrap()
    );
    // This fixture's own (other tests run beside it, each on its own port).
    let pattern = format!("ssh .*-p {} .*ControlMaster=yes.*-N -f", fx.ssh_port);
    let masters = || {
        Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    };
    assert!(
        masters() >= 1,
        "the shared connection runs while the host lives"
    );
    drop(host);
    let start = Instant::now();
    while masters() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the shared connection outlived its host"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let before = logins(&fx);
    let alone = fx.host().without_multiplexing();
    fx.apply(&alone, "0.3.0", true).unwrap();
    assert!(
        logins(&fx) - before > 5,
        "without sharing each step connects"
    );
}

#[test]
fn upgrade_over_ssh_switches_current_and_records_both() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.host();
    fx.apply(&host, "0.9.0", true).unwrap();
    let out = fx.apply(&host, "0.10.0", true).unwrap();
    assert_eq!(out.action, Some(Action::Upgrade));
    assert_eq!(out.from.as_deref(), Some("0.9.0"));
    assert_eq!(host.current().unwrap().as_deref(), Some("0.10.0"));
    assert!(fx.ready());
    assert_eq!(fx.versions(&host), ["0.9.0", "0.10.0"]);
    let actions: Vec<Action> = host.history().unwrap().iter().map(|e| e.action).collect();
    assert_eq!(actions, [Action::Install, Action::Upgrade]);
    let again = fx.apply(&host, "0.10.0", true).unwrap();
    assert_eq!(again.action, None);
    assert_eq!(host.history().unwrap().len(), 2);
}

#[test]
fn a_never_ready_release_is_rolled_back_with_the_remote_log() {
    let Some(fx) = Fixture::new() else { return };
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
    assert!(err.to_string().contains("rolled back to 1.0.0"), "{err}");
    assert_eq!(host.current().unwrap().as_deref(), Some("1.0.0"));
    assert!(fx.ready(), "the old release answers /ready again");
    let last = host.history().unwrap().pop().unwrap();
    assert_eq!(
        (last.action, last.outcome),
        (Action::AutoRollback, EventOutcome::Ok)
    );
    assert_eq!(fx.versions(&host), ["1.0.0", "1.1.0"]);
}

#[test]
fn a_bad_checksum_changes_nothing_remotely() {
    let Some(fx) = Fixture::new() else { return };
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
    assert_eq!(host.current().unwrap().as_deref(), Some("0.1.0"));
    assert_eq!(fx.release_dir_names(), ["0.1.0"], "nothing uploaded");
    assert_eq!(host.history().unwrap().len(), 1);
    assert!(fx.ready());
}

#[test]
fn a_tarball_without_the_binary_leaves_nothing_remotely() {
    let Some(fx) = Fixture::new() else { return };
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
    let sha = common::sha256_hex(&junk);
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
fn rollback_and_status_over_ssh() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.host();
    let s = release::status(&host, &fx.opts(), 10).unwrap();
    assert!(s.releases.is_empty());
    assert_eq!(s.current, None);
    assert!(!s.health.ready);

    fx.apply(&host, "0.1.0", true).unwrap();
    fx.apply(&host, "0.2.0", true).unwrap();
    fx.apply(&host, "0.3.0", true).unwrap();
    let s = release::status(&host, &fx.opts(), 1).unwrap();
    assert_eq!(s.host, "test-host");
    assert_eq!(s.current.as_deref(), Some("0.3.0"));
    assert_eq!(s.previous.as_deref(), Some("0.2.0"));
    assert!(
        s.releases
            .iter()
            .all(|r| r.installed.ends_with('Z') && r.sha256.len() == 64)
    );
    assert_eq!(s.history.len(), 1);
    assert!(s.health.ready, "{:?}", s.health);

    let out = release::rollback(&host, None, &fx.opts()).unwrap();
    assert_eq!(
        (out.from.as_deref(), out.to.as_str()),
        (Some("0.3.0"), "0.2.0")
    );
    assert!(fx.ready());
    let out = release::rollback(&host, None, &fx.opts()).unwrap();
    assert_eq!(out.to, "0.1.0");
    let err = release::rollback(&host, None, &fx.opts()).unwrap_err();
    assert!(matches!(err, DeployError::NoPrevious { .. }), "{err:?}");
    let err = release::rollback(&host, Some("9.9.9"), &fx.opts()).unwrap_err();
    assert!(matches!(err, DeployError::UnknownRelease { .. }), "{err:?}");
    assert_eq!(host.current().unwrap().as_deref(), Some("0.1.0"));
    let last = host.history().unwrap().pop().unwrap();
    assert_eq!(last.action, Action::Rollback);
}

#[test]
fn pruning_over_ssh_leaves_nothing_half_deleted() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.host();
    let opts = Options {
        keep: 2,
        ..fx.opts()
    };
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
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
        .unwrap();
    }
    assert_eq!(fx.release_dir_names(), ["2.0.0", "3.0.0"]);
}

#[test]
fn a_held_lock_names_the_holder_and_is_released_on_drop() {
    let Some(fx) = Fixture::new() else { return };
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
    assert_eq!(fx.release_dir_names(), ["0.1.0"]);
    drop(guard);
    fx.apply(&host, "0.2.0", true).unwrap();
}

#[test]
fn two_concurrent_applies_over_ssh_never_interleave() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.host();
    fx.check_two_concurrent_applies(&host);
}

#[test]
fn a_failing_remote_restart_is_reported() {
    let Some(fx) = Fixture::new() else { return };
    let host = fx.host();
    fx.apply(&host, "0.1.0", true).unwrap();
    let broken = fx
        .host()
        .with_restart("echo unit hearth.service not found >&2; exit 5");
    assert!(matches!(
        broken.restart(),
        Err(DeployError::Restart { ref detail, .. }) if detail.contains("unit hearth.service not found")
    ));
}

/// Needs only the ssh client: nothing listens on the port.
#[test]
fn an_unreachable_host_is_an_ssh_error() {
    if !Path::new("/usr/bin/ssh").is_file() {
        eprintln!("skipped: no ssh client");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = SshHost::new("127.0.0.1")
        .with_name("nowhere")
        .with_port(free_port())
        .with_known_hosts(dir.path().join("known_hosts"))
        .with_option("ConnectTimeout=5");
    let err = host.current().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DeployError::Ssh { .. }), "{err:?}");
    assert!(msg.contains("ssh could not connect"), "{msg}");
    assert!(msg.contains("nowhere"), "{msg}");
    assert!(matches!(host.lock().unwrap_err(), DeployError::Ssh { .. }));
}
