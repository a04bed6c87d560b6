//! Conversations and messages of the chat UI, behind the [`ConversationStore`]
//! trait, and agent jobs with their steps and files, behind the [`JobStore`] trait,
//! stored in SQLite ([`SqliteStore`], the default) or in Postgres ([`PgStore`],
//! for several replicas) through `sqlx`.
//!
//! This crate owns the schema (versioned, forward-only migrations: SQLite's in
//! `migrations/`, Postgres's in `migrations/postgres/`; an older Hearth runs on
//! a database a newer one migrated unless a migration raised its floor), the
//! connection settings
//! (WAL, foreign keys, busy timeout; Postgres's pool limits and statement timeout)
//! and every query the
//! `/api/hearth/conversations` handlers need. It knows nothing of HTTP or of models:
//! the HTTP layer validates input and turns [`StoreError`] into client errors.
//!
//! Three promises every implementation keeps, so that several Hearth processes can
//! share one database:
//! - **Owners.** Every conversation belongs to the principal that made it; reads,
//!   changes and deletes take a [`Scope`] (an owner, or all for an admin key).
//! - **Leased replies.** A streaming reply is leased by the store that writes it and
//!   renewed while it streams; only a reply whose lease ran out, or whose writer's
//!   process is gone (SQLite: its lock file in `hearth.db-leases/` is free: a
//!   `kill -9`), is marked interrupted, never one another live process is writing.
//!   Job claims work the same way (Postgres: `FOR UPDATE SKIP LOCKED`).
//! - **No lost updates.** Changes are single statements or transactions, never a
//!   read, a change in memory and a write back.
//!
//! And for the file itself: a damaged one is refused at open (`quick_check`) with
//! what to do, rather than served until a query trips on the damage; a full disk is
//! its own error ([`StoreError::StorageFull`]), so that clients can be told; the
//! write-ahead log is checkpointed and kept bounded.
//!
//! The SQL is the subset SQLite and Postgres share (TEXT UUID ids, BIGINT
//! millisecond times, `$n` parameters, `LIKE ... ESCAPE`, `RETURNING`): both stores
//! run the same queries, but for what only one of them has.
//!
//! # Layout
//! - [`model`]: the rows ([`Conversation`], [`Message`]), the inputs that create or
//!   change them, and [`Scope`].
//! - `sqlite`: [`SqliteStore`], the pool, the check at open, the lease keeper (which
//!   also checkpoints the write-ahead log) and the queries.
//! - `holders`: lock files that tell at once that a lease owner's process is gone
//!   (a `kill -9`), so its replies and jobs end at the next start, not a lease later.
//! - `backup`: [`backup`], a consistent copy of a live database (`hearth backup`),
//!   and [`integrity_check`].
//! - [`jobs`]: the job rows ([`Job`], [`JobStep`], [`JobFile`]), their inputs, and
//!   [`JobStore`]; `sqlite_jobs`: its queries.
//! - `postgres`: [`PgStore`] ([`PgOptions`]: pool limits, statement timeout), its
//!   lease keeper, [`pg_status`] (what `hearth doctor` reports) and
//!   [`redact_url`]; `postgres_jobs`: its job queries.
//! - `usage`: [`UsageStore`], the tokens each API key used per budget period.
//! - `import`: [`import_sqlite`], a SQLite data folder's rows copied into Postgres.
//! - `schema`: which Hearth may run on a database (applied migrations it does not
//!   know, and the floor), read before migrating.
//! - `error`: [`StoreError`].

mod backup;
mod error;
mod holders;
mod import;
pub mod jobs;
pub mod model;
mod notify;
mod postgres;
mod postgres_jobs;
mod schema;
mod sqlite;
mod sqlite_jobs;
mod usage;

use async_trait::async_trait;

pub use backup::{Backup, backup, integrity_check};
pub use error::StoreError;
pub use import::{Imported, import_sqlite};
pub use jobs::{
    FilesLock, Job, JobEnd, JobFile, JobListQuery, JobPage, JobStatus, JobStep, JobStore, NewFile,
    NewJob, NewStep, StepEnd, StepStatus,
};
pub use model::{
    Conversation, ConversationPatch, FinishReason, ListQuery, Message, NewConversation, NewMessage,
    Page, ReplyUpdate, Scope,
};
pub use notify::{MAX_PAYLOAD, PgChannel};
pub use postgres::{
    PG_ACQUIRE_TIMEOUT, PG_MAX_CONNECTIONS, PG_STATEMENT_TIMEOUT, PgOptions, PgStatus, PgStore,
    is_postgres_url, pg_status, redact_url,
};
pub use schema::SchemaStatus;
pub use sqlite::{
    DB_FILE, MAX_PAGE, Options, REPLY_LEASE, SqliteStore, UNDO_WINDOW, WAL_SIZE_LIMIT,
    sqlite_status, title_from,
};
pub use usage::UsageStore;

/// Conversations and their messages. Message operations take a conversation id the
/// caller has already checked against its [`Scope`] (with
/// [`ConversationStore::conversation`]).
#[async_trait]
pub trait ConversationStore: Send + Sync + std::fmt::Debug + 'static {
    async fn create_conversation(
        &self,
        owner: &str,
        new: NewConversation,
    ) -> Result<Conversation, StoreError>;

    /// A live (not deleted) conversation the scope may see.
    async fn conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Newest first, paged by `(updated_at, id)` so a page costs the same at any depth.
    async fn list_conversations(
        &self,
        scope: &Scope<'_>,
        q: &ListQuery,
    ) -> Result<Page, StoreError>;

    /// Applies `patch`; `None` when there is no such live conversation in scope.
    async fn update_conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
        patch: ConversationPatch,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Moves a conversation to the trash, from where
    /// [`ConversationStore::restore_conversation`] brings it back within
    /// [`UNDO_WINDOW`]. False when there was none in scope.
    async fn delete_conversation(&self, scope: &Scope<'_>, id: &str) -> Result<bool, StoreError>;

    /// Undoes a delete. `None` when it is not in the trash (never was, or purged).
    async fn restore_conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<Option<Conversation>, StoreError>;

    /// Every message of a conversation, in order.
    async fn messages(&self, conversation_id: &str) -> Result<Vec<Message>, StoreError>;

    async fn message(&self, id: &str) -> Result<Option<Message>, StoreError>;

    /// Appends a message at the end of the conversation and moves the conversation
    /// to the top of the list. A conversation with no title takes the first line of
    /// its first user message. An assistant message without a finish reason is a
    /// reply that starts streaming now: this store leases it. `None` when the
    /// conversation does not exist.
    async fn append_message(
        &self,
        conversation_id: &str,
        new: NewMessage,
    ) -> Result<Option<Message>, StoreError>;

    /// Writes the current state of a streaming reply (renewing its lease), and its
    /// end when `finish_reason` is set (ending the lease).
    async fn update_reply(&self, message_id: &str, u: &ReplyUpdate) -> Result<(), StoreError>;

    /// Deletes the messages from position `seq` on (edit-and-resend, regenerate).
    async fn truncate_from(&self, conversation_id: &str, seq: i64) -> Result<u64, StoreError>;

    /// Marks interrupted the streaming replies whose writer's lease ran out. The
    /// store does this on its own as it runs; returns how many.
    async fn recover_interrupted(&self) -> Result<u64, StoreError>;

    /// Stops the store: the replies it was writing are marked interrupted, and its
    /// connections close.
    async fn close(&self);
}

/// Milliseconds since the Unix epoch: the unit of every stored time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
