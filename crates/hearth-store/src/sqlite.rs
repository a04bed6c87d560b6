//! [`SqliteStore`]: the conversation store in one SQLite file (WAL), and every query.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreError;
use crate::model::{
    Conversation, ConversationPatch, FinishReason, ListQuery, Message, NewConversation, NewMessage,
    Page, ReplyUpdate, Scope,
};
use crate::{ConversationStore, now_ms};

/// The database file inside `data_dir`.
pub const DB_FILE: &str = "hearth.db";

/// Most conversations one page may hold.
pub const MAX_PAGE: u32 = 200;

/// How long a deleted conversation can still be restored (the UI's undo).
pub const UNDO_WINDOW: Duration = Duration::from_secs(10 * 60);

/// How long a streaming reply's lease lasts unrenewed: past it, the reply's writer
/// is taken for dead and the reply is marked interrupted. The writer renews every
/// third of it, so a busy database or a paused process has two chances to catch up.
pub const REPLY_LEASE: Duration = Duration::from_secs(30);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const CONVERSATION_COLUMNS: &str = "id, title, model, system_prompt, created_at, updated_at, owner";
const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, role, content, model, prompt_tokens, \
     completion_tokens, ttft_ms, duration_ms, finish_reason, created_at";

/// Conversations and messages in one SQLite database, shared safely by several
/// Hearth processes (WAL; streaming replies leased by their writer). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    /// This process's name on the replies it writes (their lease owner).
    instance: String,
    lease: Duration,
    /// Renews this store's leases and sweeps expired ones; stops with the store.
    keeper: Option<tokio::task::JoinHandle<()>>,
    /// The last time stamp given to a change (see [`SqliteStore::stamp`]).
    last_stamp: std::sync::atomic::AtomicI64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(k) = &self.keeper {
            k.abort();
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// See [`REPLY_LEASE`]; tests shorten it.
    pub lease: Duration,
    /// Run the background task that renews this store's leases and sweeps expired
    /// ones (off for a store used only to read, or in a test that steps it by hand).
    pub keeper: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease: REPLY_LEASE,
            keeper: true,
        }
    }
}

impl SqliteStore {
    /// Now in milliseconds, and after every stamp this store gave before: two
    /// conversations created in the same millisecond still list newest first (the
    /// sidebar orders by `updated_at`, then by id, which is random).
    pub(crate) fn stamp(&self) -> i64 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = now_ms();
        let mut last = self.inner.last_stamp.load(Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .inner
                .last_stamp
                .compare_exchange_weak(last, next, Relaxed, Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Opens (creating when missing) `data_dir/hearth.db`, applies pending
    /// migrations, purges conversations deleted past the undo window, marks replies
    /// whose writer is gone as interrupted, and starts keeping this store's leases.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(data_dir, Options::default()).await
    }

    pub async fn open_with(data_dir: &Path, options: Options) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        SqliteStore::open_file(&data_dir.join(DB_FILE), options).await
    }

    /// As [`SqliteStore::open`], for a database file anywhere.
    pub async fn open_file(path: &Path, options: Options) -> Result<SqliteStore, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: readers (the sidebar) never wait for the writer (a streaming reply).
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        SqliteStore::connect(connect, 4, options).await
    }

    /// An in-memory database, for tests of code that uses a store.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let connect = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        SqliteStore::connect(connect, 1, Options::default()).await
    }

    async fn connect(
        connect: SqliteConnectOptions,
        max: u32,
        options: Options,
    ) -> Result<SqliteStore, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            // An in-memory database lives as long as its one connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let keeper = options
            .keeper
            .then(|| tokio::spawn(keep_leases(pool.clone(), instance.clone(), options.lease)));
        let store = SqliteStore {
            inner: Arc::new(Inner {
                pool,
                instance,
                lease: options.lease,
                keeper,
                last_stamp: std::sync::atomic::AtomicI64::new(0),
            }),
        };
        let interrupted = store.recover_interrupted().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "replies whose writer stopped mid-stream are marked interrupted"
            );
        }
        store.purge_deleted(UNDO_WINDOW).await?;
        Ok(store)
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The name this store writes its replies' leases under.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The schema version: the newest applied migration.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(self.pool())
                .await?;
        Ok(v.unwrap_or(0))
    }

    /// Deletes for good what was deleted more than `older_than` ago (messages follow
    /// by `ON DELETE CASCADE`).
    pub async fn purge_deleted(&self, older_than: Duration) -> Result<u64, StoreError> {
        let cutoff = now_ms() - millis(older_than);
        let done = sqlx::query(
            "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= $1",
        )
        .bind(cutoff)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Renews the leases of the replies this store is writing.
    pub async fn renew_leases(&self) -> Result<u64, StoreError> {
        renew(self.pool(), &self.inner.instance, self.inner.lease).await
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn renew(pool: &SqlitePool, instance: &str, lease: Duration) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE messages SET lease_until = $2 WHERE lease_owner = $1 AND finish_reason IS NULL",
    )
    .bind(instance)
    .bind(now_ms() + millis(lease))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Marks interrupted the streaming replies whose lease ran out (or that never had
/// one: written by a Hearth from before leases).
async fn sweep(pool: &SqlitePool) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE messages SET finish_reason = $1, lease_owner = NULL \
         WHERE role = 'assistant' AND finish_reason IS NULL \
           AND (lease_until IS NULL OR lease_until < $2)",
    )
    .bind(FinishReason::Interrupted.as_str())
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Every third of a lease: renew this store's leases, then sweep other writers'
/// expired ones. Runs until the store is dropped.
async fn keep_leases(pool: SqlitePool, instance: String, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = renew(&pool, &instance, lease).await {
            tracing::warn!(error = %e, "could not renew the leases of streaming replies");
        }
        match sweep(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                interrupted = n,
                "replies whose writer stopped mid-stream are marked interrupted"
            ),
            Err(e) => tracing::warn!(error = %e, "could not sweep interrupted replies"),
        }
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_conversation(
        &self,
        owner: &str,
        new: NewConversation,
    ) -> Result<Conversation, StoreError> {
        let now = self.stamp();
        let c = Conversation {
            id: uuid::Uuid::new_v4().to_string(),
            title: new.title.unwrap_or_default(),
            model: new.model,
            system_prompt: new.system_prompt,
            created_at: now,
            updated_at: now,
            owner: owner.to_owned(),
        };
        sqlx::query(
            "INSERT INTO conversations (id, title, model, system_prompt, created_at, updated_at, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.title)
        .bind(&c.model)
        .bind(&c.system_prompt)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(&c.owner)
        .execute(self.pool())
        .await?;
        Ok(c)
    }

    async fn conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        let (all, owner) = scope.binds();
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations \
             WHERE id = $1 AND deleted_at IS NULL AND ($2 OR owner = $3)"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .bind(all)
            .bind(owner)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn list_conversations(
        &self,
        scope: &Scope<'_>,
        q: &ListQuery,
    ) -> Result<Page, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let (cursor_at, cursor_id) = match &q.cursor {
            Some(c) => decode_cursor(c)?,
            None => (i64::MAX, String::new()),
        };
        let pattern = q
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{}%", escape_like(&s.to_lowercase())));
        let search = if pattern.is_some() {
            " AND (LOWER(c.title) LIKE $6 ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m \
               WHERE m.conversation_id = c.id AND LOWER(m.content) LIKE $6 ESCAPE '\\'))"
        } else {
            ""
        };
        let sql = format!(
            "SELECT c.id, c.title, c.model, c.system_prompt, c.created_at, c.updated_at, c.owner \
             FROM conversations c \
             WHERE c.deleted_at IS NULL AND ($4 OR c.owner = $5) \
               AND (c.updated_at < $1 OR (c.updated_at = $1 AND c.id < $2)){search} \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT $3"
        );
        let (all, owner) = scope.binds();
        let mut query = sqlx::query_as::<_, Conversation>(&sql)
            .bind(cursor_at)
            .bind(if q.cursor.is_some() {
                cursor_id
            } else {
                "\u{10FFFF}".to_owned()
            })
            .bind(i64::from(limit) + 1)
            .bind(all)
            .bind(owner);
        if let Some(p) = &pattern {
            query = query.bind(p);
        }
        let mut data = query.fetch_all(self.pool()).await?;
        let next_cursor = if data.len() > limit as usize {
            data.truncate(limit as usize);
            data.last().map(|c| encode_cursor(c.updated_at, &c.id))
        } else {
            None
        };
        Ok(Page { data, next_cursor })
    }

    /// One statement: a concurrent patch of another field is never overwritten by a
    /// stale copy (read-modify-write lost such updates).
    async fn update_conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
        patch: ConversationPatch,
    ) -> Result<Option<Conversation>, StoreError> {
        let (all, owner) = scope.binds();
        // Renaming or switching the model does not move a conversation to the top.
        let sql = format!(
            "UPDATE conversations SET \
               title = CASE WHEN $2 THEN $3 ELSE title END, \
               model = CASE WHEN $4 THEN $5 ELSE model END, \
               system_prompt = CASE WHEN $6 THEN $7 ELSE system_prompt END \
             WHERE id = $1 AND deleted_at IS NULL AND ($8 OR owner = $9) \
             RETURNING {CONVERSATION_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .bind(patch.title.is_some())
            .bind(patch.title)
            .bind(patch.model.is_some())
            .bind(patch.model.flatten())
            .bind(patch.system_prompt.is_some())
            .bind(patch.system_prompt.flatten())
            .bind(all)
            .bind(owner)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn delete_conversation(&self, scope: &Scope<'_>, id: &str) -> Result<bool, StoreError> {
        let (all, owner) = scope.binds();
        let done = sqlx::query(
            "UPDATE conversations SET deleted_at = $2 \
             WHERE id = $1 AND deleted_at IS NULL AND ($3 OR owner = $4)",
        )
        .bind(id)
        .bind(now_ms())
        .bind(all)
        .bind(owner)
        .execute(self.pool())
        .await?;
        self.purge_deleted(UNDO_WINDOW).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn restore_conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        let (all, owner) = scope.binds();
        let sql = format!(
            "UPDATE conversations SET deleted_at = NULL \
             WHERE id = $1 AND deleted_at IS NOT NULL AND ($2 OR owner = $3) \
             RETURNING {CONVERSATION_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .bind(all)
            .bind(owner)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn messages(&self, conversation_id: &str) -> Result<Vec<Message>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq"
        );
        Ok(sqlx::query_as(&sql)
            .bind(conversation_id)
            .fetch_all(self.pool())
            .await?)
    }

    async fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn append_message(
        &self,
        conversation_id: &str,
        new: NewMessage,
    ) -> Result<Option<Message>, StoreError> {
        let now = self.stamp();
        let id = uuid::Uuid::new_v4().to_string();
        // A reply that starts streaming is leased by this store.
        let streaming = new.role == "assistant" && new.finish_reason.is_none();
        let (lease_owner, lease_until) = if streaming {
            (
                Some(self.inner.instance.as_str()),
                Some(now + millis(self.inner.lease)),
            )
        } else {
            (None, None)
        };
        let mut tx = self.pool().begin().await?;
        let touched = sqlx::query(
            "UPDATE conversations SET updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(conversation_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if touched.rows_affected() == 0 {
            return Ok(None);
        }
        if new.role == "user" {
            sqlx::query("UPDATE conversations SET title = $2 WHERE id = $1 AND title = ''")
                .bind(conversation_id)
                .bind(title_from(&new.content))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, role, content, model, finish_reason, created_at, lease_owner, lease_until) \
             SELECT $1, $2, COALESCE(MAX(seq), -1) + 1, $3, $4, $5, $6, $7, $8, $9 FROM messages WHERE conversation_id = $2",
        )
        .bind(&id)
        .bind(conversation_id)
        .bind(&new.role)
        .bind(&new.content)
        .bind(&new.model)
        .bind(new.finish_reason.map(FinishReason::as_str))
        .bind(now)
        .bind(lease_owner)
        .bind(lease_until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.message(&id).await
    }

    async fn update_reply(&self, message_id: &str, u: &ReplyUpdate) -> Result<(), StoreError> {
        // Each write renews the lease; the last (with its finish reason) ends it.
        let (lease_owner, lease_until) = match u.finish_reason {
            None => (
                Some(self.inner.instance.as_str()),
                Some(now_ms() + millis(self.inner.lease)),
            ),
            Some(_) => (None, None),
        };
        sqlx::query(
            "UPDATE messages SET content = $2, model = COALESCE($3, model), prompt_tokens = $4, \
             completion_tokens = $5, ttft_ms = $6, duration_ms = $7, finish_reason = $8, \
             lease_owner = $9, lease_until = $10 WHERE id = $1",
        )
        .bind(message_id)
        .bind(&u.content)
        .bind(&u.model)
        .bind(u.prompt_tokens)
        .bind(u.completion_tokens)
        .bind(u.ttft_ms)
        .bind(u.duration_ms)
        .bind(u.finish_reason.map(FinishReason::as_str))
        .bind(lease_owner)
        .bind(lease_until)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn truncate_from(&self, conversation_id: &str, seq: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM messages WHERE conversation_id = $1 AND seq >= $2")
            .bind(conversation_id)
            .bind(seq)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        sweep(self.pool()).await
    }

    /// The replies this store was still writing are cut (the server is stopping):
    /// marked interrupted at once, rather than when their lease runs out.
    async fn close(&self) {
        if let Some(k) = &self.inner.keeper {
            k.abort();
        }
        let cut = sqlx::query(
            "UPDATE messages SET finish_reason = $1, lease_owner = NULL \
             WHERE lease_owner = $2 AND finish_reason IS NULL",
        )
        .bind(FinishReason::Interrupted.as_str())
        .bind(&self.inner.instance)
        .execute(self.pool())
        .await;
        if let Err(e) = cut {
            tracing::warn!(error = %e, "could not mark this server's unfinished replies interrupted");
        }
        self.pool().close().await;
    }
}

/// The first line of a message, cut at about 60 characters on a word boundary.
pub fn title_from(content: &str) -> String {
    let line = content.trim().lines().next().unwrap_or("").trim();
    if line.chars().count() <= 60 {
        return line.to_owned();
    }
    let cut: String = line.chars().take(60).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > 30 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end())
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

pub(crate) fn encode_cursor(updated_at: i64, id: &str) -> String {
    format!("{updated_at}.{id}")
}

pub(crate) fn decode_cursor(c: &str) -> Result<(i64, String), StoreError> {
    let (at, id) = c.split_once('.').ok_or(StoreError::InvalidCursor)?;
    let at = at.parse().map_err(|_| StoreError::InvalidCursor)?;
    if id.is_empty() || id.len() > 64 {
        return Err(StoreError::InvalidCursor);
    }
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_short_first_lines() {
        assert_eq!(title_from("  hello\nworld"), "hello");
        let long = "word ".repeat(30);
        let t = title_from(&long);
        assert!(t.ends_with('…') && t.chars().count() <= 61, "{t}");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(42, "abc");
        assert_eq!(decode_cursor(&c).unwrap(), (42, "abc".to_owned()));
        assert!(decode_cursor("nonsense").is_err());
        assert!(decode_cursor("x.abc").is_err());
    }
}
