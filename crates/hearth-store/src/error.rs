//! Why a store operation failed.

/// A failure of the database or of its migrations. Not-found is not an error:
/// queries return `Option` or `bool` for it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    /// The disk (or the file system's quota) holding the database is full. SQLite
    /// rolled the change back: the database is intact, and works again once there
    /// is room.
    #[error("the disk holding the database is full; the change was not saved")]
    StorageFull,
    /// The database file is damaged (found by the check at open, or by a query).
    #[error(
        "the database {path} is damaged ({detail}). Stop Hearth, move {path} (and any \
         -wal and -shm file beside it) aside, then restore the latest copy made by \
         `hearth backup` in its place (see docs/operations.md), or start again with an \
         empty history"
    )]
    Corrupt { path: String, detail: String },
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A newer Hearth migrated the database with a change this one cannot run on
    /// (its floor, `schema_floor`, is above this Hearth's newest migration).
    #[error(
        "the database {what} was migrated by a newer Hearth (migrations {unknown} are \
         unknown to this one), and migration {floor} changed tables that older releases \
         read. Run that newer release (or a later one) again, or restore the backup \
         taken before the upgrade (see docs/operations.md)"
    )]
    TooNew {
        what: String,
        unknown: String,
        floor: i64,
    },
    /// A paging cursor that this store did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
    /// There is no database file to copy.
    #[error("no database at {path}; is `storage.data_dir` in the config the server's?")]
    NoDatabase { path: String },
    /// `hearth backup` was asked to write over a file without `--force`.
    #[error("{path} already exists; pass --force to replace it")]
    BackupExists { path: String },
    #[error("cannot write the backup {path}: {source}")]
    BackupIo {
        path: String,
        source: std::io::Error,
    },
    /// `storage.database_url` is not a Postgres URL Hearth can use.
    #[error("storage.database_url: {0}")]
    BadUrl(String),
    /// The database server did not answer (down, wrong host or port, a firewall).
    /// `server` is the URL without its password.
    #[error(
        "cannot reach the database server {server}: {detail}. Is it running and reachable \
         from here, and are the host and port in `storage.database_url` \
         (HEARTH_DATABASE_URL) right?"
    )]
    Unreachable { server: String, detail: String },
    /// The TLS handshake failed (an untrusted certificate, a server without TLS
    /// under `sslmode=require`).
    #[error(
        "the TLS connection to the database server {server} failed: {detail}. Check \
         `sslmode` and `sslrootcert` (the CA that signed the server's certificate) in \
         `storage.database_url` (HEARTH_DATABASE_URL)"
    )]
    Tls { server: String, detail: String },
    /// The server answered but refused this user, password or database.
    #[error(
        "the database server {server} refused the connection: {detail}. Check the user, \
         password and database name in `storage.database_url` (HEARTH_DATABASE_URL)"
    )]
    Refused { server: String, detail: String },
    /// `hearth db import-sqlite` from a database a running Hearth still writes.
    #[error(
        "a Hearth is still running on {path}: stop it first (systemctl stop hearth), so \
         that nothing it writes after the copy is lost"
    )]
    InUse { path: String },
    /// `hearth db import-sqlite` into a database that already holds conversations or
    /// jobs.
    #[error(
        "the database {server} already holds {conversations} conversations and {jobs} jobs; \
         the import copies into an empty database only (point storage.database_url at a \
         new database, or empty this one first)"
    )]
    NotEmpty {
        server: String,
        conversations: i64,
        jobs: i64,
    },
}

/// SQLite's primary result codes this crate tells apart (the low byte of an
/// extended code).
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_NOTADB: i64 = 26;

/// Postgres's SQLSTATE for a full disk (`disk_full`, class 53: insufficient resources).
const PG_DISK_FULL: &str = "53100";

/// The primary SQLite result code of `e`, when SQLite gave one.
fn sqlite_code(e: &sqlx::Error) -> Option<i64> {
    let db = e.as_database_error()?;
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    db.code()?.parse::<i64>().ok().map(|c| c & 0xff)
}

/// The SQLSTATE of `e`, when Postgres gave one.
pub(crate) fn pg_code(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    db.code().map(|c| c.into_owned())
}

impl From<sqlx::Error> for StoreError {
    /// A full disk gets its own variant wherever it strikes, so that the HTTP layer
    /// can tell the client what happened instead of "internal error".
    fn from(e: sqlx::Error) -> Self {
        if sqlite_code(&e) == Some(SQLITE_FULL) || pg_code(&e).as_deref() == Some(PG_DISK_FULL) {
            return StoreError::StorageFull;
        }
        StoreError::Database(e)
    }
}

impl StoreError {
    /// `e` as it reads for the database file at `path`: damage named as such.
    pub(crate) fn at(path: &std::path::Path, e: sqlx::Error) -> StoreError {
        match sqlite_code(&e) {
            Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StoreError::Corrupt {
                path: path.display().to_string(),
                detail: e
                    .as_database_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            },
            _ => StoreError::from(e),
        }
    }

    /// Whether the disk is full (worth its own message to a client).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corrupt_message_says_what_to_do() {
        let e = StoreError::Corrupt {
            path: "/d/hearth.db".into(),
            detail: "file is not a database".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("/d/hearth.db is damaged (file is not a database)"),
            "{s}"
        );
        assert!(s.contains("hearth backup") && s.contains("move"), "{s}");
    }
}
