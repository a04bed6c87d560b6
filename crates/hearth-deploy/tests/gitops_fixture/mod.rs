//! What the GitOps tests share (issue 14): temporary git repositories made
//! with the real `git`, and `script` services that start real
//! `python3 -m http.server` processes on loopback ports serving a page whose
//! text is the release. The state folder is a temp dir: nothing is written
//! under /etc or /var, and no system service is started.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // helpers fail the test loudly; not every file uses every helper

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use hearth_deploy::gitops::{
    self, ApplyOptions, Finding, GitopsError, Repo, Selection, SshSettings,
};

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn commit(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

pub fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

pub fn write_exec(path: &Path, text: &str) {
    write(path, text);
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub const INFRA: &str = r#"[environments.homelab]
runner = "homelab"

[environments.cloud]
runner = "cloud"
"#;

/// A temp repository with the infra file, committed.
pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("infra");
        let state = tmp.path().join("state");
        fs::create_dir_all(&root).unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        write(&root.join("hearth-infra.toml"), INFRA);
        write(&root.join("README.md"), "# our infra\n");
        commit(&root, "infra");
        Fixture {
            _tmp: tmp,
            root,
            state,
        }
    }

    pub fn repo(&self) -> Repo {
        Repo::load(&self.root).unwrap()
    }

    /// A `script` service serving `www/` with python's http.server on `port`,
    /// its page saying `page`. Healthy when `/health.txt` answers 200 (a
    /// release without it is a broken one). It records the secret it got.
    pub fn site(&self, name: &str, env: &str, port: u16, page: &str, healthy: bool, extra: &str) {
        let dir = self.root.join("services").join(name);
        write(
            &dir.join("service.toml"),
            &format!(
                "environment = \"{env}\"\nkind = \"script\"\n{extra}\n[health]\ncommand = \"./health-check.sh\"\ntimeout = \"2s\"\nretries = 4\ninterval = \"250ms\"\n"
            ),
        );
        write_exec(
            &dir.join("deploy.sh"),
            &format!(
                r#"#!/bin/sh
set -eu
pid_file="$DEPLOY_DATA_DIR/server.pid"
if [ -f "$pid_file" ]; then
  old=$(cat "$pid_file")
  kill "$old" 2>/dev/null || true
  i=0
  while [ -d "/proc/$old" ] && ! grep -q '^[^)]*) Z' "/proc/$old/stat" 2>/dev/null && [ "$i" -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  rm -f "$pid_file"
fi
printf '%s' "${{SITE_TOKEN:-}}" >"$DEPLOY_DATA_DIR/token-seen"
echo "deploying $DEPLOY_RELEASE with token ${{SITE_TOKEN:-none}}"
nohup python3 -m http.server {port} --bind 127.0.0.1 \
  --directory "$DEPLOY_RELEASE_DIR/www" >>"$DEPLOY_DATA_DIR/server.log" 2>&1 &
echo "$!" >"$pid_file"
"#
            ),
        );
        write_exec(
            &dir.join("health-check.sh"),
            &format!(
                r#"#!/bin/sh
set -eu
python3 -c '
import sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:{port}/health.txt", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
'
"#
            ),
        );
        write_exec(
            &dir.join("stop.sh"),
            r#"#!/bin/sh
set -eu
pid_file="$DEPLOY_DATA_DIR/server.pid"
if [ -f "$pid_file" ]; then
  kill "$(cat "$pid_file")" 2>/dev/null || true
  rm -f "$pid_file"
fi
echo "stopped $DEPLOY_SERVICE"
"#,
        );
        write(&dir.join("README.md"), &format!("# {name}\n"));
        write(&dir.join("www/index.html"), page);
        let health = dir.join("www/health.txt");
        if healthy {
            write(&health, "ok\n");
        } else if health.exists() {
            fs::remove_file(health).unwrap();
        }
    }

    pub fn apply(
        &self,
        env: &str,
        selection: Selection,
        secrets: &[(&str, &str)],
    ) -> (Result<(), GitopsError>, Vec<String>) {
        self.run(&self.options(env, selection), secrets)
    }

    /// An apply's options: the state folder is the fixture's.
    pub fn options(&self, env: &str, selection: Selection) -> ApplyOptions {
        ApplyOptions {
            environment: env.to_string(),
            selection,
            state_dir: Some(self.state.clone()),
            lock_timeout: Duration::from_secs(120),
            hearth_bin: None,
            keep: 5,
            keep_removed: false,
            ssh: SshSettings::default(),
        }
    }

    /// Runs an apply with these options and secrets: its result and the lines it said.
    pub fn run(
        &self,
        opts: &ApplyOptions,
        secrets: &[(&str, &str)],
    ) -> (Result<(), GitopsError>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let say = |l: &str| lines.lock().unwrap().push(l.to_string());
        let secret = |n: &str| {
            secrets
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let r = gitops::apply(&self.repo(), opts, &secret, &say);
        (r, lines.into_inner().unwrap())
    }

    pub fn pid(&self, service: &str) -> Option<u32> {
        fs::read_to_string(
            self.state
                .join("services")
                .join(service)
                .join("data/server.pid"),
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
    }

    /// Ends the servers the services started (the test's own processes).
    pub fn stop(&self, service: &str) {
        if let Some(pid) = self.pid(service) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// A test that fails leaves no server behind: every service's is ended.
impl Drop for Fixture {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(self.state.join("services")) else {
            return;
        };
        for e in entries.flatten() {
            if let Ok(pid) = fs::read_to_string(e.path().join("data/server.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The page the service serves now, None when nothing answers.
pub fn page(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    use std::io::Write;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// A secret store with nothing in it.
pub fn no_secrets(_: &str) -> Option<String> {
    None
}

/// Whether the real validators must be here (`make unit` sets it).
pub fn required() -> bool {
    std::env::var("HEARTH_TEST_VALIDATORS_REQUIRED").is_ok_and(|v| v == "1")
}

pub fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skips (saying so) when shellcheck is missing, unless it is required.
pub fn shellcheck_or_skip() -> bool {
    if have("shellcheck", "--version") {
        return true;
    }
    assert!(
        !required(),
        "shellcheck is required (make unit installs it)"
    );
    eprintln!("SKIPPED: shellcheck is not installed");
    false
}

pub fn compose_available() -> bool {
    std::env::var("HEARTH_COMPOSE_BIN").is_ok_and(|b| Path::new(&b).is_file())
        || Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
}

pub fn has(findings: &[Finding], file: &str, line: usize, rule: &str) -> bool {
    findings
        .iter()
        .any(|f| f.file == file && f.line == line && f.rule == rule)
}
