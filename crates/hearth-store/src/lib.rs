//! Conversations and messages of the chat UI, stored in SQLite through `sqlx`.
//!
//! This crate owns the schema (versioned, forward-only migrations in `migrations/`),
//! the connection settings (WAL, foreign keys, busy timeout) and every query the
//! `/api/hearth/conversations` handlers need. It knows nothing of HTTP or of models: the
//! HTTP layer validates input and turns [`StoreError`] into client errors.
//!
//! The SQL is the subset SQLite and Postgres share (TEXT UUID ids, BIGINT
//! millisecond times, `$n` parameters, `LIKE ... ESCAPE`), so that a Postgres
//! store can follow with the same queries.
//!
//! # Layout
//! - [`model`]: the rows ([`Conversation`], [`Message`]) and the inputs that create or change them.
//! - [`store`]: [`Store`], the pool and the queries.
//! - `error`: [`StoreError`].

mod error;
pub mod model;
mod store;

pub use error::StoreError;
pub use model::{
    Conversation, ConversationPatch, FinishReason, ListQuery, Message, NewConversation, NewMessage,
    Page, ReplyUpdate,
};
pub use store::{DB_FILE, MAX_PAGE, Store, UNDO_WINDOW, title_from};

/// Milliseconds since the Unix epoch: the unit of every stored time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
