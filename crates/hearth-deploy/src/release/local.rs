//! [`LocalHost`]: the release layout on this machine, under an install root.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::host::{Host, ReleaseInfo};
use super::{DeployError, HistoryEntry, history, version};

/// How the service is restarted.
pub enum Restart {
    /// A program and its arguments, e.g. `systemctl restart hearth`.
    Command(Vec<String>),
    /// A function, for tests and embedders that own the process themselves.
    Fn(Box<dyn Fn() -> Result<(), String> + Send + Sync>),
}

impl std::fmt::Debug for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Restart::Command(argv) => f.debug_tuple("Command").field(argv).finish(),
            Restart::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// The release layout under `root` (`/` in production, a temp dir in tests):
/// `opt/hearth/{releases/<version>, current, deploy.lock}` and
/// `var/lib/hearth/deploy-history.jsonl`.
#[derive(Debug)]
pub struct LocalHost {
    root: PathBuf,
    /// Where `releases/`, `current` and `deploy.lock` live.
    home: PathBuf,
    history: PathBuf,
    name: String,
    restart: Restart,
    log_file: Option<PathBuf>,
}

/// Holds the host's flock; the kernel drops it with the file, or with the
/// process if it dies, so a lock can never be left stale.
#[derive(Debug)]
pub struct LocalGuard {
    _file: File,
}

impl LocalHost {
    /// A host under `root` restarted with `systemctl reload-or-restart hearth`, named
    /// `localhost`, without a log file.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        LocalHost {
            home: root.join("opt/hearth"),
            history: root.join("var/lib/hearth/deploy-history.jsonl"),
            root,
            name: "localhost".to_string(),
            restart: Restart::Command(vec![
                "systemctl".into(),
                "reload-or-restart".into(),
                "hearth".into(),
            ]),
            log_file: None,
        }
    }

    /// Another layout than Hearth's own: `releases/`, `current` and
    /// `deploy.lock` under `home`, the history in `history` (the GitOps
    /// services keep one such layout each under their state folder).
    pub fn with_layout(mut self, home: impl Into<PathBuf>, history: impl Into<PathBuf>) -> Self {
        self.home = home.into();
        self.history = history.into();
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// The file the service logs to, read for [`Host::last_log_lines`].
    pub fn with_log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn hearth_dir(&self) -> PathBuf {
        self.home.clone()
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.hearth_dir().join("releases")
    }

    pub fn current_link(&self) -> PathBuf {
        self.hearth_dir().join("current")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.hearth_dir().join("deploy.lock")
    }

    pub fn history_path(&self) -> PathBuf {
        self.history.clone()
    }

    fn read_release(&self, version: &str) -> Option<ReleaseInfo> {
        let text = fs::read_to_string(self.releases_dir().join(version).join("RELEASE")).ok()?;
        Some(ReleaseInfo::parse(version, &text))
    }

    fn unpack(
        &self,
        version: &str,
        tarball: &Path,
        sha256: &str,
        partial: &Path,
    ) -> Result<(), DeployError> {
        fs::create_dir_all(partial).map_err(DeployError::io("create", partial))?;
        let bad = |detail: String| DeployError::BadTarball {
            path: tarball.to_path_buf(),
            detail,
        };
        // The system tar, as on the remote side of an SSH host: it handles
        // permissions and links the way the installer's tar does.
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("--strip-components=1")
            .arg("--no-same-owner")
            .arg("-C")
            .arg(partial)
            .output()
            .map_err(|e| bad(format!("cannot run tar: {e}")))?;
        if !out.status.success() {
            return Err(bad(format!(
                "tar exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if !partial.join("bin/hearth").is_file() {
            return Err(bad("it has no hearth-VERSION/bin/hearth".to_string()));
        }
        let release_file = partial.join("RELEASE");
        let text = format!(
            "version={version}\nsha256={sha256}\ninstalled={}\n",
            history::now_rfc3339()
        );
        fs::write(&release_file, text).map_err(DeployError::io("write", &release_file))
    }
}

/// The tarball's sha256 when it is `sha256` (hex, any case), else why not: checked
/// before anything is unpacked or uploaded.
pub(super) fn verify_tarball(tarball: &Path, sha256: &str) -> Result<String, DeployError> {
    let expected = sha256.trim().to_ascii_lowercase();
    let actual = sha256_file(tarball)?;
    if actual != expected {
        return Err(DeployError::ChecksumMismatch {
            path: tarball.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(expected)
}

pub(super) fn sha256_file(path: &Path) -> Result<String, DeployError> {
    let mut file = File::open(path).map_err(DeployError::io("open the tarball", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(DeployError::io("read the tarball", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Host for LocalHost {
    type Guard = LocalGuard;

    fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> Result<LocalGuard, DeployError> {
        let path = self.lock_path();
        let dir = self.hearth_dir();
        fs::create_dir_all(&dir).map_err(DeployError::io("create", &dir))?;
        // No truncate on open: the holder's note must survive a failed attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(DeployError::io("open the lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "a deploy that is just starting".to_string()
                } else {
                    holder.to_string()
                };
                return Err(DeployError::LockHeld {
                    host: self.name.clone(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(DeployError::io("lock", &path)(e)),
        }
        let note = format!(
            "held since {} by pid {} on {}\n",
            history::now_rfc3339(),
            std::process::id(),
            self.name
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(DeployError::io("write the lock file", &path))?;
        Ok(LocalGuard { _file: file })
    }

    fn current(&self) -> Result<Option<String>, DeployError> {
        let link = self.current_link();
        match fs::read_link(&link) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DeployError::io("read the link", &link)(e)),
        }
    }

    fn releases(&self) -> Result<Vec<ReleaseInfo>, DeployError> {
        let dir = self.releases_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DeployError::io("list", &dir)(e)),
        };
        let mut releases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(DeployError::io("list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Dot-names are staging folders; a folder without RELEASE is not ours.
            if name.starts_with('.') {
                continue;
            }
            if let Some(info) = self.read_release(&name) {
                releases.push(info);
            }
        }
        releases.sort_by(|a, b| version::compare(&a.version, &b.version));
        Ok(releases)
    }

    fn stage_release(
        &self,
        version: &str,
        tarball: &Path,
        sha256: &str,
    ) -> Result<(), DeployError> {
        version::validate(version)?;
        let expected = sha256;
        let dir = self.releases_dir();
        let partial = dir.join(format!(".{version}.partial"));
        // A leftover from a crashed upload is garbage by construction.
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(DeployError::io("remove", &partial))?;
        }
        if let Err(e) = self.unpack(version, tarball, expected, &partial) {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        let final_dir = dir.join(version);
        // A folder without RELEASE (not a release by our reading) would make the rename fail.
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(DeployError::io("remove", &final_dir))?;
        }
        if let Err(e) = fs::rename(&partial, &final_dir) {
            let _ = fs::remove_dir_all(&partial);
            return Err(DeployError::io("rename into place", &final_dir)(e));
        }
        Ok(())
    }

    fn switch_current(&self, version: &str) -> Result<(), DeployError> {
        version::validate(version)?;
        if self.read_release(version).is_none() {
            return Err(DeployError::UnknownRelease {
                host: self.name.clone(),
                version: version.to_string(),
            });
        }
        let link = self.current_link();
        let tmp = self.hearth_dir().join("current.new");
        if fs::symlink_metadata(&tmp).is_ok() {
            fs::remove_file(&tmp).map_err(DeployError::io("remove", &tmp))?;
        }
        // Relative, so the tree stays valid when the root is mounted elsewhere.
        std::os::unix::fs::symlink(Path::new("releases").join(version), &tmp)
            .map_err(DeployError::io("create the link", &tmp))?;
        // rename(2) replaces the old link atomically: `current` always exists.
        fs::rename(&tmp, &link).map_err(DeployError::io("switch the link", &link))
    }

    fn restart(&self) -> Result<(), DeployError> {
        let fail = |detail: String| DeployError::Restart {
            host: self.name.clone(),
            detail,
        };
        match &self.restart {
            Restart::Fn(f) => f().map_err(fail),
            Restart::Command(argv) => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| fail("the restart command is empty".to_string()))?;
                let out = Command::new(program)
                    .args(args)
                    .output()
                    .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(fail(format!(
                        "`{}` exited with {}: {}",
                        argv.join(" "),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )))
                }
            }
        }
    }

    fn remove_release(&self, version: &str) -> Result<(), DeployError> {
        version::validate(version)?;
        let dir = self.releases_dir().join(version);
        // Rename first so a half-deleted folder never looks like a release.
        let doomed = self.releases_dir().join(format!(".{version}.removing"));
        // A leftover from a removal that crashed would make the rename fail.
        if doomed.exists() {
            fs::remove_dir_all(&doomed).map_err(DeployError::io("remove", &doomed))?;
        }
        fs::rename(&dir, &doomed).map_err(DeployError::io("rename for removal", &dir))?;
        fs::remove_dir_all(&doomed).map_err(DeployError::io("remove", &doomed))
    }

    fn append_history(&self, entry: &HistoryEntry) -> Result<(), DeployError> {
        let path = self.history_path();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(DeployError::io("create", dir))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(DeployError::io("open the history", &path))?;
        file.write_all(entry.to_line().as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(DeployError::io("append to the history", &path))
    }

    fn history(&self) -> Result<Vec<HistoryEntry>, DeployError> {
        let path = self.history_path();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(history::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DeployError::io("read the history", &path)(e)),
        }
    }

    fn last_log_lines(&self, n: usize) -> Result<Vec<String>, DeployError> {
        let Some(path) = &self.log_file else {
            return Ok(Vec::new());
        };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DeployError::io("open the log", path)(e)),
        };
        // Only the tail matters, and a service log can be large.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(64 * 1024);
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(DeployError::io("read the log", path))?;
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        // The first line of a mid-file read is likely cut; drop it unless it is all we have.
        let lines = if start > 0 && lines.len() > 1 {
            &lines[1..]
        } else {
            &lines[..]
        };
        Ok(lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect())
    }
}
