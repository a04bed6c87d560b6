//! Fixtures shared by the release tests: a fake release tarball whose
//! `bin/hearth` is a python3 HTTP server answering `/ready` with 200 (a good
//! release) or 503 forever (a broken one).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;
use std::time::Duration;

use hearth_deploy::release::{self, DeployError, Host, NewRelease, Options};

use sha2::{Digest, Sha256};

/// Builds `hearth-VERSION-x86_64-unknown-linux-gnu.tar.gz` with a fake
/// `bin/hearth` and returns its path and sha256.
pub fn fake_tarball(dir: &Path, version: &str, ready: bool) -> (PathBuf, String) {
    let tarball = dir.join(format!("hearth-{version}-x86_64-unknown-linux-gnu.tar.gz"));
    // Built once per version: gzip stamps the time, so a rebuild has
    // another sha256 and the core rightly refuses it as a conflict.
    if tarball.exists() {
        return (tarball.clone(), sha256_hex(&tarball));
    }
    let build = dir.join(format!("build-{version}"));
    let top = build.join(format!("hearth-{version}"));
    fs::create_dir_all(top.join("bin")).unwrap();
    let code = if ready { 200 } else { 503 };
    let script = format!(
        r#"#!/bin/sh
echo "hearth {version} starting on port $HEARTH_FAKE_PORT"
{broken}
exec python3 -u -c '
import http.server, os, sys
code, ver = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        c = code if self.path == "/ready" else 404
        self.send_response(c)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["HEARTH_FAKE_PORT"])), H).serve_forever()
' {code} {version}
"#,
        broken = if ready {
            ""
        } else {
            "echo \"error: cannot open the model store (broken build)\""
        },
    );
    let bin = top.join("bin/hearth");
    fs::write(&bin, script).unwrap();
    let status = Command::new("chmod").arg("755").arg(&bin).status().unwrap();
    assert!(status.success());
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&build)
        .arg(format!("hearth-{version}"))
        .status()
        .unwrap();
    assert!(status.success());
    let sha = sha256_hex(&tarball);
    (tarball, sha)
}

pub fn sha256_hex(path: &Path) -> String {
    Sha256::digest(fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What every release test deploys into, whatever the host: a temp folder (the
/// install root under `root/`, tarballs, the service's log) and the port the
/// fake service answers `/ready` on.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub health_timeout: Duration,
}

impl Site {
    pub fn new(port: u16, health_timeout: Duration) -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
            port,
            health_timeout,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("hearth.log")
    }

    pub fn opts(&self) -> Options {
        Options {
            health_url: format!("http://127.0.0.1:{}/ready", self.port),
            health_timeout: self.health_timeout,
            poll_interval: Duration::from_millis(50),
            keep: 5,
            log_lines: 5,
        }
    }

    /// The fake release `version` (see [`fake_tarball`]): its path and sha256.
    pub fn tarball(&self, version: &str, ready: bool) -> (PathBuf, String) {
        fake_tarball(self.dir.path(), version, ready)
    }

    pub fn apply<H: Host>(
        &self,
        host: &H,
        version: &str,
        ready: bool,
    ) -> Result<release::Outcome, DeployError> {
        let (tarball, sha) = self.tarball(version, ready);
        release::apply(
            host,
            NewRelease {
                version,
                tarball: &tarball,
                sha256: &sha,
            },
            &self.opts(),
        )
    }

    pub fn ready(&self) -> bool {
        release::check_health(&self.opts().health_url, Duration::from_secs(2)).ready
    }

    /// Release 0.1.0 applied, then 0.2.0 and 0.3.0 applied at once from two
    /// threads: they never interleave. Either one holds the host's lock while the
    /// other asks and is refused with `LockHeld`, having staged nothing; or the
    /// first was done before the second asked (a fast host), and they ran one
    /// after the other, the second upgrading from the first.
    pub fn check_two_concurrent_applies<H: Host + Sync>(&self, host: &H) {
        self.apply(host, "0.1.0", true).unwrap();
        let a = self.tarball("0.2.0", true);
        let b = self.tarball("0.3.0", true);
        let barrier = Barrier::new(2);
        let opts = self.opts();
        let results: Vec<Result<release::Outcome, DeployError>> = std::thread::scope(|s| {
            let handles: Vec<_> = [("0.2.0", &a), ("0.3.0", &b)]
                .into_iter()
                .map(|(version, (tarball, sha))| {
                    let (barrier, opts) = (&barrier, &opts);
                    s.spawn(move || {
                        barrier.wait();
                        release::apply(
                            host,
                            NewRelease {
                                version,
                                tarball,
                                sha256: sha,
                            },
                            opts,
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<&release::Outcome> =
            results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let losers: Vec<&DeployError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        match (winners.as_slice(), losers.as_slice()) {
            ([winner], [loser]) => {
                assert!(matches!(loser, DeployError::LockHeld { .. }), "{results:?}");
                assert_eq!(host.current().unwrap().as_ref(), Some(&winner.to));
                assert_eq!(
                    self.versions(host),
                    ["0.1.0", winner.to.as_str()],
                    "the loser staged nothing"
                );
                assert_eq!(host.history().unwrap().len(), 2);
            }
            ([x, y], []) => {
                let (first, second) = if x.from.as_deref() == Some("0.1.0") {
                    (x, y)
                } else {
                    (y, x)
                };
                assert_eq!(first.from.as_deref(), Some("0.1.0"), "{results:?}");
                assert_eq!(
                    second.from.as_ref(),
                    Some(&first.to),
                    "not one after the other: {results:?}"
                );
                assert_eq!(host.current().unwrap().as_ref(), Some(&second.to));
                let mut versions = self.versions(host);
                versions.sort();
                assert_eq!(versions, ["0.1.0", "0.2.0", "0.3.0"]);
                assert_eq!(host.history().unwrap().len(), 3);
            }
            _ => panic!("{results:?}"),
        }
        assert!(self.ready());
    }

    pub fn versions<H: Host>(&self, host: &H) -> Vec<String> {
        host.releases()
            .unwrap()
            .into_iter()
            .map(|r| r.version)
            .collect()
    }

    /// Everything in `releases/`, dot-folders included (read directly: an SSH
    /// test's "remote" root is on this machine too).
    pub fn release_dir_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root().join("opt/hearth/releases"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}
