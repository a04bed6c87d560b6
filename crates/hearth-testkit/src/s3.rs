//! A private S3-compatible server for tests: moto's `moto_server` (PyPI
//! `moto[server]`, pinned by mk/objects.mk) on a free loopback port, started in a
//! temporary folder with one bucket made, stopped on drop. Never a shared server.
//!
//! The binary is `HEARTH_MOTO_SERVER` (make points it at the venv's), else the
//! repository's `.venv-objects`, else `moto_server` on `PATH`. Where none is found,
//! [`PrivateS3::start`] says SKIPPED and gives `None`, unless
//! `HEARTH_TEST_S3_REQUIRED=1` (which `make unit` sets): then the test fails.
//!
//! moto accepts any access key (it checks no signature unless told to), so these
//! tests prove that Hearth speaks S3 and shares a bucket, not that a server
//! refuses a wrong key; the harness sets a key pair all the same, as a real one
//! would need.
// Test support: a server the test cannot get fails it loudly, with the reason.
#![allow(clippy::panic, clippy::expect_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What makes a missing `moto_server` a failure rather than a skip.
pub const REQUIRED: &str = "HEARTH_TEST_S3_REQUIRED";
/// The `moto_server` to run.
pub const BIN: &str = "HEARTH_MOTO_SERVER";
/// The key pair tests give Hearth (moto takes any).
pub const ACCESS_KEY: &str = "hearth-test-access";
pub const SECRET_KEY: &str = "hearth-test-secret-do-not-log";
/// The bucket [`PrivateS3::start`] makes.
pub const BUCKET: &str = "hearth-test";

/// A running private `moto_server`.
#[derive(Debug)]
pub struct PrivateS3 {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateS3 {
    /// Starts one and makes the bucket [`BUCKET`]. `None` (after printing why) when
    /// `moto_server` is not installed and [`REQUIRED`] is not set.
    pub fn start() -> Option<PrivateS3> {
        let Some(bin) = find() else {
            let why = format!(
                "moto_server is not installed (PyPI moto[server]; `make objects-server` puts it \
                 in .venv-objects, or set {BIN})"
            );
            assert!(std::env::var(REQUIRED).as_deref() != Ok("1"), "{why}");
            eprintln!("SKIPPED: {why}");
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hearth-s3-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let port = free_port();
        let log = std::fs::File::create(dir.join("moto.log")).expect("moto.log");
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(&dir)
            // Its own state only: no profile or region of the machine's user.
            .env("HOME", &dir)
            .env_remove("AWS_PROFILE")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("moto.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default();
                panic!("moto_server exited at start ({status}); is port {port} taken?\n{log}");
            }
            if request(port, "GET", "/").is_some_and(|(status, _)| status == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let s3 = PrivateS3 {
            dir,
            port,
            child: Some(child),
        };
        s3.create_bucket(BUCKET);
        Some(s3)
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give Hearth (path-style).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Makes another bucket.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) =
            request(self.port, "PUT", &format!("/{name}")).expect("moto answers PUT bucket");
        assert!(status == 200, "creating bucket {name}: {status} {body}");
    }

    /// The keys in `bucket` (up to 1000), as the server lists them.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (status, body) = request(self.port, "GET", &format!("/{bucket}?list-type=2"))
            .expect("moto answers a listing");
        assert!(status == 200, "listing {bucket}: {status} {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect()
    }

    /// Kills the server (a crash or an outage, as a client sees it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One plain HTTP/1.1 request without a body or a signature (moto takes it):
/// its status and body, or `None` when nothing answers.
fn request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A loopback port free right now (the kernel's pick).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `HEARTH_MOTO_SERVER`, the repository's `.venv-objects`, or `PATH`'s.
fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(BIN) {
        let p = PathBuf::from(p);
        return is_executable(&p).then_some(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-objects/bin/moto_server");
    if is_executable(&venv) {
        return Some(venv);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
