//! [`backup`]: a consistent copy of a database that may be in use (`hearth backup`).
//!
//! `VACUUM INTO` reads the database in one read transaction, so the copy is the
//! database as it was at one moment, while the server goes on writing (WAL: the
//! reader and the writer do not wait for each other). The copy is one compact
//! file, with no `-wal` beside it. It is written under a temporary name next to the
//! target, checked (`quick_check`) and synced before it takes the target's name:
//! a failed or interrupted backup never leaves a half copy under the name asked for.

use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::error::StoreError;
use crate::sqlite::{connect_options, quick_check};

/// A backup written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Copies the database `db` to `out`, refusing to replace an existing `out` unless
/// `force`. Safe while a server uses `db`.
pub async fn backup(db: &Path, out: &Path, force: bool) -> Result<Backup, StoreError> {
    if !db.is_file() {
        return Err(StoreError::NoDatabase {
            path: db.display().to_string(),
        });
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::BackupIo { path, source }
    };
    if out.is_dir() {
        return Err(io(out)(std::io::Error::other(
            "it is a folder; name a file",
        )));
    }
    if out.exists() && !force {
        return Err(StoreError::BackupExists {
            path: out.display().to_string(),
        });
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hearth-backup".into());
    let tmp = out.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = copy_checked(db, &tmp).await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(out)(e)
    })?;
    let bytes = std::fs::metadata(out).map_err(io(out))?.len();
    Ok(Backup {
        path: out.to_path_buf(),
        bytes,
    })
}

/// `PRAGMA integrity_check` of the database `db` (the full check: every index
/// against its table too, so slower than the `quick_check` at open), read-only and
/// safe while a server uses it. `Corrupt` with the first problems found.
pub async fn integrity_check(db: &Path) -> Result<(), StoreError> {
    if !db.is_file() {
        return Err(StoreError::NoDatabase {
            path: db.display().to_string(),
        });
    }
    let pool = pool(SqliteConnectOptions::new().filename(db).read_only(true))
        .await
        .map_err(|e| StoreError::at(db, e))?;
    let rows: Result<Vec<String>, _> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&pool)
        .await;
    pool.close().await;
    let rows = rows.map_err(|e| StoreError::at(db, e))?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: db.display().to_string(),
        detail: rows.into_iter().take(3).collect::<Vec<_>>().join("; "),
    })
}

/// `VACUUM INTO tmp`, then `quick_check` on the copy and an fsync of it.
async fn copy_checked(db: &Path, tmp: &Path) -> Result<(), StoreError> {
    let source = pool(connect_options(db))
        .await
        .map_err(|e| StoreError::at(db, e))?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(tmp.to_string_lossy().into_owned())
        .execute(&source)
        .await;
    source.close().await;
    copied.map_err(|e| StoreError::at(db, e))?;

    let copy = pool(SqliteConnectOptions::new().filename(tmp).read_only(true))
        .await
        .map_err(|e| StoreError::at(tmp, e))?;
    let checked = quick_check(&copy, tmp).await;
    copy.close().await;
    checked?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|source| StoreError::BackupIo {
            path: tmp.display().to_string(),
            source,
        })
}

async fn pool(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
}
