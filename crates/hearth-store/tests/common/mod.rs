//! What the store's tests share: a database as an earlier release left it, and a
//! conversation whose reply is streaming.
#![allow(dead_code)] // each test binary uses its part

use std::path::Path;

/// The migrations this crate ships, in order.
pub const MIGRATIONS: &[&str] = &[
    "0001_conversations.sql",
    "0002_owners_and_reply_leases.sql",
    "0003_jobs.sql",
    "0004_job_files_by_digest.sql",
];

/// The schema version a store opened now reaches.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// A pool on `data/hearth.db`, migrated as the release whose newest migration was
/// `version` left it (the first `version` migrations). Close it before opening the
/// store on `data`.
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

/// A new conversation of `owner` with a user's "hi" and an assistant's reply that
/// has begun streaming (empty, not finished): its id and the reply.
pub async fn streaming_reply(
    store: &hearth_store::SqliteStore,
    owner: &str,
) -> (String, hearth_store::Message) {
    use hearth_store::{ConversationStore, NewConversation, NewMessage};
    let c = store
        .create_conversation(owner, NewConversation::default())
        .await
        .unwrap();
    store
        .append_message(&c.id, NewMessage::user("hi"))
        .await
        .unwrap();
    let reply = store
        .append_message(&c.id, NewMessage::reply())
        .await
        .unwrap()
        .unwrap();
    (c.id, reply)
}
