//! What the store's tests share: the two backends every test of the suite runs on
//! ([`Db`], [`both!`]), a database as an earlier release left it, and a
//! conversation whose reply is streaming.
//!
//! `both!(name, ...)` turns each `async fn name(db: Db)` into two tests,
//! `name::sqlite` (a file in a temp folder) and `name::postgres` (a fresh database
//! of the private server `hearth_testkit::postgres` runs; SKIPPED without
//! PostgreSQL unless `HEARTH_TEST_POSTGRES_REQUIRED=1`).
#![allow(dead_code, unused_macros, unused_imports)] // each test binary uses its part

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hearth_store::{
    ConversationStore, JobStore, Options, PgOptions, PgStore, SqliteStore, StoreError, UsageStore,
};

/// The SQLite migrations this crate ships, in order.
pub const MIGRATIONS: &[&str] = &[
    "0001_conversations.sql",
    "0002_owners_and_reply_leases.sql",
    "0003_jobs.sql",
    "0004_job_files_by_digest.sql",
    "0005_message_reasoning.sql",
    "0006_schema_floor.sql",
    "0007_message_reasoning_ms.sql",
    "0008_key_usage.sql",
];

/// The Postgres migrations: the same, and its own indexes.
pub const PG_MIGRATIONS: &[&str] = &[
    "0001_conversations.sql",
    "0002_owners_and_reply_leases.sql",
    "0003_jobs.sql",
    "0004_job_files_by_digest.sql",
    "0005_lease_sweeps.sql",
    "0006_message_reasoning.sql",
    "0007_schema_floor.sql",
    "0008_message_reasoning_ms.sql",
    "0009_key_usage.sql",
];

/// The schema version a SQLite store opened now reaches.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Both stores, with what the tests call beyond the traits.
#[async_trait]
pub trait TestStore: ConversationStore + JobStore + UsageStore {
    async fn schema_version(&self) -> Result<i64, StoreError>;
    async fn purge_deleted(&self, older_than: Duration) -> Result<u64, StoreError>;
}

#[async_trait]
impl TestStore for SqliteStore {
    async fn schema_version(&self) -> Result<i64, StoreError> {
        SqliteStore::schema_version(self).await
    }
    async fn purge_deleted(&self, older_than: Duration) -> Result<u64, StoreError> {
        SqliteStore::purge_deleted(self, older_than).await
    }
}

#[async_trait]
impl TestStore for PgStore {
    async fn schema_version(&self) -> Result<i64, StoreError> {
        PgStore::schema_version(self).await
    }
    async fn purge_deleted(&self, older_than: Duration) -> Result<u64, StoreError> {
        PgStore::purge_deleted(self, older_than).await
    }
}

pub type Store = Arc<dyn TestStore>;

/// Where a test's stores live: opening twice is two processes on one database.
#[derive(Debug)]
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(hearth_testkit::postgres::Database),
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None` (the test is SKIPPED) without PostgreSQL.
    pub fn postgres(test: &str) -> Option<Db> {
        let server = hearth_testkit::postgres::shared_for(test)?;
        Some(Db::Postgres(server.database()))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// The schema version a store opened now reaches.
    pub fn current(&self) -> i64 {
        match self {
            Db::Sqlite(_) => MIGRATIONS.len() as i64,
            Db::Postgres(_) => PG_MIGRATIONS.len() as i64,
        }
    }

    pub async fn open(&self) -> Store {
        self.open_with(hearth_store::REPLY_LEASE, true).await
    }

    pub async fn open_with(&self, lease: Duration, keeper: bool) -> Store {
        self.try_open_with(lease, keeper).await.unwrap()
    }

    /// As [`Db::open`], for a test of what the store refuses.
    pub async fn try_open(&self) -> Result<Store, StoreError> {
        self.try_open_with(hearth_store::REPLY_LEASE, true).await
    }

    async fn try_open_with(&self, lease: Duration, keeper: bool) -> Result<Store, StoreError> {
        Ok(match self {
            Db::Sqlite(dir) => Arc::new(
                SqliteStore::open_with(
                    dir.path(),
                    Options {
                        lease,
                        keeper,
                        ..Options::default()
                    },
                )
                .await?,
            ),
            Db::Postgres(db) => Arc::new(
                PgStore::connect(
                    &db.url(),
                    PgOptions {
                        lease,
                        keeper,
                        ..PgOptions::default()
                    },
                )
                .await?,
            ),
        })
    }

    /// The database as the release whose newest migration was `version` left it
    /// (its first `version` migrations), and a connection to write old rows with.
    /// Close it before opening a store.
    pub async fn at_version(&self, version: usize) -> Raw {
        let old = tempfile::tempdir().unwrap();
        let (shipped, names) = match self {
            Db::Sqlite(_) => ("migrations", MIGRATIONS),
            Db::Postgres(_) => ("migrations/postgres", PG_MIGRATIONS),
        };
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(shipped);
        for f in &names[..version] {
            std::fs::copy(shipped.join(f), old.path().join(f)).unwrap();
        }
        let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
        let raw = self.raw().await;
        match &raw {
            Raw::Sqlite(pool) => migrator.run(pool).await.unwrap(),
            Raw::Postgres(pool) => migrator.run(pool).await.unwrap(),
        }
        raw
    }

    /// A connection to the database as it is, migrating nothing.
    pub async fn raw(&self) -> Raw {
        match self {
            Db::Sqlite(dir) => {
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("hearth.db").display()
                );
                Raw::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap())
            }
            Db::Postgres(db) => Raw::Postgres(sqlx::PgPool::connect(&db.url()).await.unwrap()),
        }
    }
}

/// A plain connection pool on a test's database.
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    /// Runs `sql` with text parameters `$1`, `$2`...
    pub async fn exec(&self, sql: &str, binds: &[&str]) {
        match self {
            Raw::Sqlite(p) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(p).await.unwrap();
            }
            Raw::Postgres(p) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(p).await.unwrap();
            }
        }
    }

    pub async fn close(self) {
        match self {
            Raw::Sqlite(p) => p.close().await,
            Raw::Postgres(p) => p.close().await,
        }
    }
}

/// Each `async fn NAME(db: Db)` named becomes `NAME::sqlite` and `NAME::postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::common::Db::sqlite()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) = crate::common::Db::postgres(module_path!()) {
                        super::$name(db).await;
                    }
                }
            }
        )*
    };
}
pub(crate) use both;

/// A SQLite database at `data/hearth.db` migrated as the release whose newest
/// migration was `version` left it (the SQLite-only tests').
pub async fn database_at(version: usize, dir: &Path, data: &Path) -> sqlx::SqlitePool {
    let old = dir.join(format!("migrations-{version}"));
    std::fs::create_dir_all(&old).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for f in &MIGRATIONS[..version] {
        std::fs::copy(shipped.join(f), old.join(f)).unwrap();
    }
    std::fs::create_dir_all(data).unwrap();
    let url = format!("sqlite://{}?mode=rwc", data.join("hearth.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

/// A new conversation of `owner` holding one user message, `text`: its id.
pub async fn conversation_with<S: ConversationStore + ?Sized>(
    store: &S,
    owner: &str,
    text: &str,
) -> String {
    use hearth_store::{NewConversation, NewMessage};
    let c = store
        .create_conversation(owner, NewConversation::default())
        .await
        .unwrap();
    store
        .append_message(&c.id, NewMessage::user(text))
        .await
        .unwrap()
        .unwrap();
    c.id
}

/// A new conversation of `owner` with a user's "hi" and an assistant's reply that
/// has begun streaming (empty, not finished): its id and the reply.
pub async fn streaming_reply<S: ConversationStore + ?Sized>(
    store: &S,
    owner: &str,
) -> (String, hearth_store::Message) {
    let id = conversation_with(store, owner, "hi").await;
    let reply = store
        .append_message(&id, hearth_store::NewMessage::reply())
        .await
        .unwrap()
        .unwrap();
    (id, reply)
}
