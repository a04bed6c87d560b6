//! Asking the host: run a program with a deadline, find one on `PATH`, free disk space.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished program printed and how it exited.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last non-empty line of stderr, else of stdout: where tools put the error.
    pub fn last_line(&self) -> String {
        last_line(&self.stderr)
            .or_else(|| last_line(&self.stdout))
            .unwrap_or_default()
    }
}

fn last_line(s: &str) -> Option<String> {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
}

#[derive(Debug)]
pub enum RunError {
    NotFound,
    Timeout(Duration),
    Other(std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NotFound => f.write_str("not found"),
            RunError::Timeout(t) => write!(f, "no answer within {} s", t.as_secs()),
            RunError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// Runs `program args` with `env` added, killing it after `timeout`. A hung driver or
/// a Python import that never ends must not hang the doctor.
pub fn run(
    program: impl AsRef<OsStr>,
    args: &[&str],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Ran, RunError> {
    let mut child = Command::new(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RunError::NotFound,
            _ => RunError::Other(e),
        })?;
    // Read both pipes on threads so a chatty program cannot block on a full pipe.
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(RunError::Other)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader threads are left to end with the pipes.
                return Err(RunError::Timeout(timeout));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok(Ran {
        code: status.code(),
        stdout: join(out),
        stderr: join(err),
    })
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// `name` as the shell would find it: a path with a `/` as is, else the first
/// executable file of that name on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Bytes available to an unprivileged user on the filesystem holding `path` (or its
/// nearest existing parent: a cache folder may not exist yet). `df -P` is POSIX, which
/// spares a dependency, and `unsafe` (statvfs) is not allowed in this crate.
pub fn free_bytes(path: &Path) -> Result<u64, String> {
    let existing = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(Path::new("."));
    let Some(arg) = existing.to_str() else {
        return Err(format!("{} is not UTF-8", existing.display()));
    };
    let ran = run(
        "df",
        &["-Pk", arg],
        &BTreeMap::new(),
        Duration::from_secs(10),
    )
    .map_err(|e| format!("df: {e}"))?;
    if !ran.success() {
        return Err(format!("df: {}", ran.last_line()));
    }
    parse_df(&ran.stdout).ok_or_else(|| format!("df: unexpected output {:?}", ran.stdout))
}

/// The `Available` column (1024-byte blocks) of `df -Pk`'s one data line, in bytes.
fn parse_df(out: &str) -> Option<u64> {
    let line = out.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Bytes as people read them: `18.4 GiB`, `512 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_df_output() {
        let out = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                   /dev/nvme0n1p2   959862832 412233484 498776888      46% /\n";
        assert_eq!(parse_df(out), Some(498_776_888 * 1024));
        assert_eq!(parse_df("Filesystem\n"), None);
    }

    #[test]
    fn finds_free_space_and_programs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(&dir.path().join("not/yet/there")).unwrap() > 0);
        assert!(which("sh").is_some());
        assert!(which("/definitely/not/here").is_none());
    }

    #[test]
    fn kills_what_overstays() {
        let e = run(
            "sleep",
            &["5"],
            &BTreeMap::new(),
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(matches!(e, RunError::Timeout(_)));
        let ran = run(
            "sh",
            &["-c", "echo out; echo oops >&2; exit 3"],
            &BTreeMap::new(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!((ran.code, ran.last_line()), (Some(3), "oops".to_owned()));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(20 << 30), "20.0 GiB");
        assert_eq!(human_bytes(512 << 20), "512 MiB");
    }
}
