//! A private `sshd` for the tests that deploy over SSH: a free loopback port,
//! a temp host key, a temp client key allowed in, a known_hosts that pins
//! the host key, all in a folder the test owns. The "remote" side is this
//! machine, as the test's own user: nothing is written outside temp folders.
//!
//! Without `/usr/sbin/sshd` a test is skipped with a printed reason; with
//! `HEARTH_TEST_SSHD_REQUIRED=1` (`make unit`) it fails instead.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hearth-test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running sshd (killed on drop) and what a client needs to log in.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub user: String,
    /// Keys, config, known_hosts and `sshd.log`.
    pub dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Starts one with its files in `dir`; None (the reason printed) when
    /// sshd is missing and not required.
    pub fn start(dir: &Path) -> Option<Sshd> {
        Sshd::start_with_path(dir, None)
    }

    /// The same, with `bin` first on the PATH of its sessions (sshd's
    /// `SetEnv`): a stand-in for a program the host would have, such as a
    /// container engine.
    pub fn start_with_path(dir: &Path, bin: Option<&Path>) -> Option<Sshd> {
        if !Path::new(SSHD).is_file() {
            let how = "apt-get install openssh-server; `make unit` installs it";
            if std::env::var("HEARTH_TEST_SSHD_REQUIRED").as_deref() == Ok("1") {
                panic!("{SSHD} is required (HEARTH_TEST_SSHD_REQUIRED=1) but not installed: {how}");
            }
            eprintln!("skipped: {SSHD} is not installed ({how})");
            return None;
        }
        let d = dir;
        // sshd refuses to start without its privilege-separation folder.
        if !Path::new("/run/sshd").is_dir() {
            let _ = Command::new("mkdir")
                .args(["-m", "0755", "/run/sshd"])
                .status();
        }
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let config = format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             UsePAM no\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             LogLevel INFO\n\
             Subsystem sftp internal-sftp\n\
             {path}",
            d = d.display(),
            path = bin.map_or_else(String::new, |b| format!(
                "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin\n",
                b.display()
            )),
        );
        fs::write(d.join("sshd_config"), config).unwrap();
        let host_pub = fs::read_to_string(d.join("host_key.pub")).unwrap();
        fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_pub.trim()),
        )
        .unwrap();
        let log = fs::File::create(d.join("sshd.log")).unwrap();
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "sshd exited with {status}: {}",
                    fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        Some(Sshd {
            child,
            port,
            user,
            dir: d.to_path_buf(),
        })
    }

    pub fn identity(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Cuts every connection, as a network failure or a rebooted host would,
    /// and stops listening: the processes this sshd forked for its
    /// connections (found through their parent pids) are killed, then it.
    pub fn cut(&mut self) {
        let mut parent = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok();
            if let (Some(pid), Some(ppid)) = (pid, ppid) {
                parent.push((pid, ppid));
            }
        }
        let mut tree = vec![self.child.id()];
        let mut i = 0;
        while i < tree.len() {
            let p = tree[i];
            tree.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        for pid in tree.iter().skip(1) {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
