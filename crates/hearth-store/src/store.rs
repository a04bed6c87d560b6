//! [`Store`]: the connection pool and every query.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreError;
use crate::model::{
    Conversation, ConversationPatch, FinishReason, ListQuery, Message, NewConversation, NewMessage,
    Page, ReplyUpdate,
};
use crate::now_ms;

/// The database file inside `data_dir`.
pub const DB_FILE: &str = "hearth.db";

/// Most conversations one page may hold.
pub const MAX_PAGE: u32 = 200;

/// How long a deleted conversation can still be restored (the UI's undo).
pub const UNDO_WINDOW: Duration = Duration::from_secs(10 * 60);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const CONVERSATION_COLUMNS: &str = "id, title, model, system_prompt, created_at, updated_at";
const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, role, content, model, prompt_tokens, \
     completion_tokens, ttft_ms, duration_ms, finish_reason, created_at";

/// Conversations and messages in one SQLite database. Cheap to clone (a pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating when missing) `data_dir/hearth.db`, applies pending
    /// migrations, purges conversations deleted past the undo window, and marks
    /// replies that were streaming when the server last stopped as interrupted.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        Store::open_file(&data_dir.join(DB_FILE)).await
    }

    /// As [`Store::open`], for a database file anywhere.
    pub async fn open_file(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: readers (the sidebar) never wait for the writer (a streaming reply).
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        Store::connect(options).await
    }

    /// An in-memory database, for tests of code that uses a store.
    pub async fn open_in_memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        Store::connect_with(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Store, StoreError> {
        Store::connect_with(options, 4).await
    }

    async fn connect_with(options: SqliteConnectOptions, max: u32) -> Result<Store, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            // An in-memory database lives as long as its one connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let store = Store { pool };
        let interrupted = store.mark_interrupted().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "replies left streaming by the last run are marked interrupted"
            );
        }
        store.purge_deleted(UNDO_WINDOW).await?;
        Ok(store)
    }

    /// The schema version: the newest applied migration.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(v.unwrap_or(0))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- conversations ----------------------------------------------------

    pub async fn create_conversation(
        &self,
        new: NewConversation,
    ) -> Result<Conversation, StoreError> {
        let now = now_ms();
        let c = Conversation {
            id: uuid::Uuid::new_v4().to_string(),
            title: new.title.unwrap_or_default(),
            model: new.model,
            system_prompt: new.system_prompt,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO conversations (id, title, model, system_prompt, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.title)
        .bind(&c.model)
        .bind(&c.system_prompt)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(c)
    }

    /// A live (not deleted) conversation.
    pub async fn conversation(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 AND deleted_at IS NULL"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Newest first, paged by `(updated_at, id)` so a page costs the same at any depth.
    pub async fn list_conversations(&self, q: &ListQuery) -> Result<Page, StoreError> {
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
            " AND (LOWER(c.title) LIKE $4 ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m \
               WHERE m.conversation_id = c.id AND LOWER(m.content) LIKE $4 ESCAPE '\\'))"
        } else {
            ""
        };
        let sql = format!(
            "SELECT c.id, c.title, c.model, c.system_prompt, c.created_at, c.updated_at \
             FROM conversations c \
             WHERE c.deleted_at IS NULL \
               AND (c.updated_at < $1 OR (c.updated_at = $1 AND c.id < $2)){search} \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT $3"
        );
        let mut query = sqlx::query_as::<_, Conversation>(&sql)
            .bind(cursor_at)
            .bind(if q.cursor.is_some() {
                cursor_id
            } else {
                "\u{10FFFF}".to_owned()
            })
            .bind(i64::from(limit) + 1);
        if let Some(p) = &pattern {
            query = query.bind(p);
        }
        let mut data = query.fetch_all(&self.pool).await?;
        let next_cursor = if data.len() > limit as usize {
            data.truncate(limit as usize);
            data.last().map(|c| encode_cursor(c.updated_at, &c.id))
        } else {
            None
        };
        Ok(Page { data, next_cursor })
    }

    /// Applies `patch`; `None` when there is no such live conversation.
    pub async fn update_conversation(
        &self,
        id: &str,
        patch: ConversationPatch,
    ) -> Result<Option<Conversation>, StoreError> {
        let Some(mut c) = self.conversation(id).await? else {
            return Ok(None);
        };
        if let Some(t) = patch.title {
            c.title = t;
        }
        if let Some(m) = patch.model {
            c.model = m;
        }
        if let Some(s) = patch.system_prompt {
            c.system_prompt = s;
        }
        // Renaming or switching the model does not move a conversation to the top.
        let done = sqlx::query(
            "UPDATE conversations SET title = $2, model = $3, system_prompt = $4 \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(&c.title)
        .bind(&c.model)
        .bind(&c.system_prompt)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() > 0).then_some(c))
    }

    /// Moves a conversation to the trash, from where [`Store::restore_conversation`]
    /// brings it back within [`UNDO_WINDOW`]. False when there was none.
    pub async fn delete_conversation(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.purge_deleted(UNDO_WINDOW).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Undoes a delete. False when it is not in the trash (never was, or purged).
    pub async fn restore_conversation(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET deleted_at = NULL WHERE id = $1 AND deleted_at IS NOT NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.conversation(id).await
    }

    /// Deletes for good what was deleted more than `older_than` ago (messages follow
    /// by `ON DELETE CASCADE`).
    pub async fn purge_deleted(&self, older_than: Duration) -> Result<u64, StoreError> {
        let cutoff = now_ms() - i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= $1",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    // ---- messages ---------------------------------------------------------

    /// Every message of a conversation, in order.
    pub async fn messages(&self, conversation_id: &str) -> Result<Vec<Message>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq"
        );
        Ok(sqlx::query_as(&sql)
            .bind(conversation_id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Appends a message at the end of the conversation and moves the conversation
    /// to the top of the list. A conversation with no title takes the first line of
    /// its first user message. `None` when the conversation does not exist.
    pub async fn append_message(
        &self,
        conversation_id: &str,
        new: NewMessage,
    ) -> Result<Option<Message>, StoreError> {
        let now = now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
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
            "INSERT INTO messages (id, conversation_id, seq, role, content, model, finish_reason, created_at) \
             SELECT $1, $2, COALESCE(MAX(seq), -1) + 1, $3, $4, $5, $6, $7 FROM messages WHERE conversation_id = $2",
        )
        .bind(&id)
        .bind(conversation_id)
        .bind(&new.role)
        .bind(&new.content)
        .bind(&new.model)
        .bind(new.finish_reason.map(FinishReason::as_str))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.message(&id).await
    }

    /// Writes the current state of a streaming reply (and its end, when
    /// `finish_reason` is set).
    pub async fn update_reply(&self, message_id: &str, u: &ReplyUpdate) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET content = $2, model = COALESCE($3, model), prompt_tokens = $4, \
             completion_tokens = $5, ttft_ms = $6, duration_ms = $7, finish_reason = $8 WHERE id = $1",
        )
        .bind(message_id)
        .bind(&u.content)
        .bind(&u.model)
        .bind(u.prompt_tokens)
        .bind(u.completion_tokens)
        .bind(u.ttft_ms)
        .bind(u.duration_ms)
        .bind(u.finish_reason.map(FinishReason::as_str))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the messages from position `seq` on (edit-and-resend, regenerate).
    pub async fn truncate_from(&self, conversation_id: &str, seq: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM messages WHERE conversation_id = $1 AND seq >= $2")
            .bind(conversation_id)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Replies still marked streaming belong to a server that is gone.
    async fn mark_interrupted(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE messages SET finish_reason = $1 WHERE finish_reason IS NULL AND role = 'assistant'")
            .bind(FinishReason::Interrupted.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
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

fn encode_cursor(updated_at: i64, id: &str) -> String {
    format!("{updated_at}.{id}")
}

fn decode_cursor(c: &str) -> Result<(i64, String), StoreError> {
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
