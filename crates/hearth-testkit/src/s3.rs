//! A private S3-compatible server for tests: moto's `moto_server` (PyPI
//! `moto[server]`, pinned by mk/objects.mk) on a free loopback port, started in a
//! temporary folder with one bucket made, stopped on drop. Never a shared server.
//!
//! The binary is `HEARTH_MOTO_SERVER` (make points it at the venv's), else the
//! repository's `.venv-objects`, else `moto_server` on `PATH`. Where none is found,
//! [`PrivateS3::start`] says SKIPPED and gives `None`, unless
//! `HEARTH_TEST_S3_REQUIRED=1` (which `make unit` sets): then the test fails.
//!
//! [`PrivateS3::start`]'s server accepts any access key (moto checks no signature
//! unless told to); [`PrivateS3::start_authenticating`]'s checks every request's
//! signature against an IAM user's key pair it makes, so a wrong key is refused.
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
    /// The key pair an authenticating server made ([`PrivateS3::start_authenticating`]).
    credentials: Option<(String, String)>,
}

impl PrivateS3 {
    /// Starts one and makes the bucket [`BUCKET`]. `None` (after printing why) when
    /// `moto_server` is not installed and [`REQUIRED`] is not set.
    pub fn start() -> Option<PrivateS3> {
        Self::start_with(false)
    }

    /// Starts one that checks every request's signature and the caller's policy
    /// (moto's IAM, on after the set-up requests): it makes an IAM user allowed
    /// `s3:*`, its key pair ([`PrivateS3::credentials`]) and the bucket [`BUCKET`].
    /// A request signed with any other key is refused. [`PrivateS3::keys`] does not
    /// work on it (its requests are not signed).
    pub fn start_authenticating() -> Option<PrivateS3> {
        Self::start_with(true)
    }

    /// The access key id and secret an authenticating server accepts.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(a, s)| (a.as_str(), s.as_str()))
    }

    fn start_with(authenticating: bool) -> Option<PrivateS3> {
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
        let mut cmd = Command::new(&bin);
        if authenticating {
            // Requests before authentication turns on: the readiness probe, the
            // user, its key, its policy and the bucket.
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "5");
        } else {
            cmd.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
        }
        let mut child = cmd
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
        let mut s3 = PrivateS3 {
            dir,
            port,
            child: Some(child),
            credentials: None,
        };
        if authenticating {
            s3.credentials = Some(s3.iam_user());
        }
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

    /// An IAM user allowed `s3:*`, and its new key pair.
    fn iam_user(&self) -> (String, String) {
        let iam = |form: &str| {
            let (status, body) = post_iam(self.port, form).expect("moto answers IAM");
            assert!(status == 200, "IAM {form}: {status} {body}");
            body
        };
        iam("Action=CreateUser&UserName=hearth&Version=2010-05-08");
        let key = iam("Action=CreateAccessKey&UserName=hearth&Version=2010-05-08");
        let field = |name: &str| {
            key.split(&format!("<{name}>"))
                .nth(1)
                .and_then(|s| s.split('<').next())
                .unwrap_or_else(|| panic!("no {name} in {key}"))
                .to_owned()
        };
        let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3A*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D";
        iam(&format!(
            "Action=PutUserPolicy&UserName=hearth&PolicyName=s3&PolicyDocument={policy}&Version=2010-05-08"
        ));
        (field("AccessKeyId"), field("SecretAccessKey"))
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

/// One IAM query (a form POST); moto routes it by the credential scope of an
/// `Authorization` header it does not check yet.
fn post_iam(port: u16, form: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=SETUP/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
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
