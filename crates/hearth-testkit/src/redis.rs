//! A private Redis server for tests: Debian's `redis-server` on a free loopback
//! port, its files in a temporary folder, nothing saved, stopped on drop. Never
//! the machine's own Redis.
//!
//! Where `redis-server` is missing, [`PrivateRedis::start`] says SKIPPED and gives
//! `None`, unless `HEARTH_TEST_REDIS_REQUIRED=1` (which `make test` sets), when the
//! test fails instead.
// Test support: a server the test cannot get fails it loudly, with the reason.
#![allow(clippy::panic, clippy::expect_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What makes a missing `redis-server` a failure rather than a skip.
pub const REQUIRED: &str = "HEARTH_TEST_REDIS_REQUIRED";

/// A running private `redis-server`.
#[derive(Debug)]
pub struct PrivateRedis {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one without a password. `None` (after printing why) when
    /// `redis-server` is not installed and [`REQUIRED`] is not set.
    pub fn start() -> Option<PrivateRedis> {
        Self::start_with(None)
    }

    /// Starts one that asks for `password` (`requirepass`).
    pub fn start_with(password: Option<&str>) -> Option<PrivateRedis> {
        let Some(bin) = find("redis-server") else {
            let why = "redis-server is not installed (Debian package redis-server; `make test` installs it)";
            assert!(std::env::var(REQUIRED).as_deref() != Ok("1"), "{why}");
            eprintln!("SKIPPED: {why}");
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hearth-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut r = PrivateRedis {
            bin,
            dir,
            port: free_port(),
            password: password.map(str::to_owned),
            child: None,
        };
        r.run();
        Some(r)
    }

    /// `redis://[:password@]127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: as a crash or a network cut looks to a client).
    /// Its port stays this server's: [`PrivateRedis::restart`] comes back on it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty (nothing was saved).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Sends one command (inline form, arguments without spaces) and returns the
    /// raw reply: enough for a test to look at what Hearth stored.
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut line = String::new();
        if let Some(p) = &self.password {
            line.push_str(&format!("AUTH {p}\r\n"));
        }
        line.push_str(&args.join(" "));
        line.push_str("\r\nQUIT\r\n");
        s.write_all(line.as_bytes()).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let out = out.strip_suffix("+OK\r\n").unwrap_or(&out);
        match &self.password {
            Some(_) => out.strip_prefix("+OK\r\n").unwrap_or(out).to_owned(),
            None => out.to_owned(),
        }
    }

    fn run(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--logfile", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.bin.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "redis-server exited at start ({status}); is port {} taken?",
                    self.port
                );
            }
            if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port free right now (the kernel's pick).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `name` on `PATH`, or in the sbin folders a non-root `PATH` may lack.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
