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
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A paging cursor that this store did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
}
