//! Which lease owners are still alive, known at once rather than when their leases
//! run out.
//!
//! Every owner of leases in this process (the store's own instance, each job
//! worker that claims through it) holds an exclusive lock on
//! `<database>-leases/<owner>.lock`. The kernel drops a lock when its process ends,
//! however it ends (`kill -9` included), so a Hearth restarted after a crash finds
//! the previous one's files unlocked and ends its replies and jobs at once, instead
//! of showing them as streaming (or running) for a lease's length. A lock still
//! held is a live process (another Hearth on the same database): left alone.
//!
//! The locks are `flock`s: per open file, so two stores in one process (the tests'
//! "two processes") exclude each other as two processes do. An owner without a
//! file (a Hearth from before these files, or one that could not write them) is
//! still ended by its lease running out; these files only make it sooner.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

const LOCK: &str = "lock";
/// A file being set up: locked first, then renamed to `.lock`, so that nobody ever
/// sees an unlocked `.lock` of a live owner.
const NEW: &str = "new";

#[derive(Debug)]
pub(crate) struct Holders {
    /// `None` for a database without a file (in memory).
    dir: Option<PathBuf>,
    /// The locks this process holds, by owner.
    held: Mutex<HashMap<String, File>>,
}

/// An owner whose process is gone, its lock now held by us until [`Dead::forget`].
#[derive(Debug)]
pub(crate) struct Dead {
    pub owner: String,
    path: PathBuf,
    _file: File,
}

impl Dead {
    /// Removes its file: its replies and jobs are ended.
    pub fn forget(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot remove a dead owner's lock file");
        }
    }
}

/// Owner names are ours (UUIDs in hex, `w1` in tests): anything else could walk out
/// of the folder, so it gets no file and falls back to its lease.
fn safe(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 64
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Holders {
    pub fn none() -> Holders {
        Holders {
            dir: None,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The folder beside the database file `db`.
    pub fn beside(db: &Path) -> Holders {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push("-leases");
        Holders {
            dir: Some(db.with_file_name(name)),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, File>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `owner`'s lock for as long as this process runs (or until
    /// [`Holders::release_all`]). A failure costs only the quick detection: it is
    /// logged, not returned.
    pub fn hold(&self, owner: &str) {
        let Some(dir) = &self.dir else { return };
        if !safe(owner) || self.held().contains_key(owner) {
            return;
        }
        match lock_new(dir, owner) {
            Ok(file) => {
                self.held().insert(owner.to_owned(), file);
            }
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "cannot write a lease lock file; after a crash, unfinished replies and jobs end when their leases run out"
            ),
        }
    }

    /// Unlocks and removes this process's files (the store is closing: it writes
    /// nothing more).
    pub fn release_all(&self) {
        let Some(dir) = &self.dir else { return };
        for (owner, file) in self.held().drain() {
            let _ = std::fs::remove_file(dir.join(format!("{owner}.{LOCK}")));
            drop(file);
        }
    }

    /// Whether another live process holds a lock here: a Hearth still running on
    /// this database.
    pub fn another_alive(&self) -> bool {
        let Some(dir) = &self.dir else { return false };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            let ours = path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| self.held().contains_key(s));
            !ours
                && path.extension().and_then(|s| s.to_str()) == Some(LOCK)
                && OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .is_ok_and(|f| matches!(f.try_lock(), Err(TryLockError::WouldBlock)))
        })
    }

    /// The owners whose process is gone. Each stays locked by us until forgotten,
    /// so that two processes sweeping at once do not both end the same owner's
    /// work... which would be harmless, but this keeps the log honest.
    pub fn dead(&self) -> Vec<Dead> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut dead = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            if self.held().contains_key(stem) {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            match file.try_lock() {
                Ok(()) if ext == LOCK => dead.push(Dead {
                    owner: stem.to_owned(),
                    path,
                    _file: file,
                }),
                // A file whose owner died while setting it up: it owned nothing yet.
                Ok(()) if ext == NEW => {
                    let _ = std::fs::remove_file(&path);
                }
                Ok(()) | Err(TryLockError::WouldBlock | TryLockError::Error(_)) => {}
            }
        }
        dead
    }
}

fn lock_new(dir: &Path, owner: &str) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let new = dir.join(format!("{owner}.{NEW}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)?;
    file.lock()?;
    std::fs::rename(&new, dir.join(format!("{owner}.{LOCK}")))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_alive_and_a_released_one_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hearth.db");
        let one = Holders::beside(&db);
        let two = Holders::beside(&db);
        one.hold("aaa");
        one.hold("../escape");
        two.hold("bbb");
        assert!(dir.path().join("hearth.db-leases/aaa.lock").exists());
        assert!(!dir.path().join("escape.lock").exists());
        // Each sees the other alive.
        assert!(one.dead().is_empty());
        assert!(two.dead().is_empty());
        // `one`'s process "dies": its locks go with it.
        drop(one);
        let dead = two.dead();
        assert_eq!(
            dead.iter().map(|d| d.owner.as_str()).collect::<Vec<_>>(),
            ["aaa"]
        );
        dead.into_iter().for_each(Dead::forget);
        assert!(!dir.path().join("hearth.db-leases/aaa.lock").exists());
        assert!(two.dead().is_empty());
        two.release_all();
        assert!(!dir.path().join("hearth.db-leases/bbb.lock").exists());
    }
}
