//! [`PgStore`]: the conversation store in a Postgres database that several Hearth
//! replicas share, and its queries.
//!
//! The queries are SQLite's (the shared SQL subset), with what Postgres adds where
//! replicas need it: job claims skip rows another replica has locked, and the
//! sweeps of expired leases use partial indexes (`migrations/postgres`). There are
//! no lock files across machines, so a replica that died is known only by its
//! leases running out (see [`REPLY_LEASE`]); replicas' clocks must agree to well
//! within a lease (NTP).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::{StoreError, pg_code};
use crate::model::{
    Conversation, ConversationPatch, FinishReason, ListQuery, Message, NewConversation, NewMessage,
    Page, ReplyUpdate, Scope,
};
use crate::schema;
use crate::sqlite::{
    MAX_PAGE, REPLY_LEASE, UNDO_WINDOW, decode_cursor, encode_cursor, escape_like, millis,
    title_from,
};
use crate::{ConversationStore, now_ms};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const CONVERSATION_COLUMNS: &str = "id, title, model, system_prompt, created_at, updated_at, owner";
const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, role, content, model, prompt_tokens, \
     completion_tokens, ttft_ms, duration_ms, finish_reason, created_at, reasoning, reasoning_ms";

/// Connections one replica opens at most, by default. A server's `max_connections`
/// (100 by default) must cover every replica's pool and `hearth worker`s.
pub const PG_MAX_CONNECTIONS: u32 = 10;

/// How long a statement may run before Postgres cancels it, by default: far above
/// any query of this store, short enough that a stuck one frees its connection.
pub const PG_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an operation waits for a connection (a new one included) by default.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`PgStore`] connects and keeps its leases.
#[derive(Debug, Clone, Copy)]
pub struct PgOptions {
    /// The most connections the pool opens ([`PG_MAX_CONNECTIONS`]).
    pub max_connections: u32,
    /// Set as `statement_timeout` on each connection ([`PG_STATEMENT_TIMEOUT`]);
    /// zero: none.
    pub statement_timeout: Duration,
    /// See [`PG_ACQUIRE_TIMEOUT`]; also bounds the first connection at start.
    pub acquire_timeout: Duration,
    /// See [`REPLY_LEASE`]; tests shorten it.
    pub lease: Duration,
    /// Run the background task that renews this store's leases and sweeps expired
    /// ones (off for a store used only to read or import, or in a test that steps
    /// it by hand).
    pub keeper: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: PG_MAX_CONNECTIONS,
            statement_timeout: PG_STATEMENT_TIMEOUT,
            acquire_timeout: PG_ACQUIRE_TIMEOUT,
            lease: REPLY_LEASE,
            keeper: true,
        }
    }
}

/// Conversations, messages and jobs in a Postgres database, shared by any number
/// of Hearth replicas (streaming replies and running jobs leased by their writer).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    /// The URL without its password: what logs and errors name.
    server: String,
    /// This replica's name on the replies it writes (their lease owner).
    instance: String,
    lease: Duration,
    keeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    last_stamp: std::sync::atomic::AtomicI64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let keeper = self
            .keeper
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = keeper {
            k.abort();
        }
    }
}

/// `url` with its password (in the user part or a `password=` parameter) replaced
/// by `***`: what may be logged or shown.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            "***".into()
        } else {
            url.to_owned()
        };
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Whether `url` names a Postgres database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

/// The connect options of `url` as this store uses them: `statement_timeout` set on
/// every connection, and the application name `hearth` (seen in
/// `pg_stat_activity`).
fn connect_options(url: &str, statement_timeout: Duration) -> Result<PgConnectOptions, StoreError> {
    if !is_postgres_url(url) {
        return Err(StoreError::BadUrl(format!(
            "{} is not a Postgres URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)",
            redact_url(url)
        )));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl(format!("{}: {e}", redact_url(url))))?;
    Ok(options
        .application_name("hearth")
        .options([("statement_timeout", millis(statement_timeout).to_string())]))
}

/// `e`, met while connecting to `server`, as the error that says what to do.
pub(crate) fn connect_error(server: &str, e: sqlx::Error) -> StoreError {
    let server = server.to_owned();
    if let Some(code) = pg_code(&e) {
        // 28: invalid authorization (bad password, no such role, pg_hba refused);
        // 3D000: no such database.
        if code.starts_with("28") || code == "3D000" {
            let detail = e
                .as_database_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            return StoreError::Refused { server, detail };
        }
        return StoreError::from(e);
    }
    match e {
        // rustls' failures come wrapped in an I/O error.
        sqlx::Error::Io(io) if is_tls(&io.to_string()) => StoreError::Tls {
            server,
            detail: io.to_string(),
        },
        sqlx::Error::Io(io) => StoreError::Unreachable {
            server,
            detail: io.to_string(),
        },
        sqlx::Error::PoolTimedOut => StoreError::Unreachable {
            server,
            detail: "no connection within the acquire timeout".into(),
        },
        sqlx::Error::Tls(t) => StoreError::Tls {
            server,
            detail: t.to_string(),
        },
        other => StoreError::from(other),
    }
}

/// Whether an I/O error's text is a TLS handshake's failure.
fn is_tls(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    ["certificate", "tls", "handshake", "ssl"]
        .iter()
        .any(|w| d.contains(w))
}

/// What `hearth doctor` reports of a database, found without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgStatus {
    /// `server_version` (`15.18 (Debian 15.18-0+deb12u1)`).
    pub server_version: String,
    /// Its migrations, next to this Hearth's.
    pub schema: schema::SchemaStatus,
}

/// Connects once to `url` (within `timeout`), and reads the server's version and
/// which migrations are applied. Changes nothing.
pub async fn pg_status(url: &str, timeout: Duration) -> Result<PgStatus, StoreError> {
    use sqlx::ConnectOptions;
    let options = connect_options(url, timeout)?;
    let server = redact_url(url);
    let mut conn = tokio::time::timeout(timeout, options.connect())
        .await
        .map_err(|_| StoreError::Unreachable {
            server: server.clone(),
            detail: format!("no answer within {} s", timeout.as_secs_f32()),
        })?
        .map_err(|e| connect_error(&server, e))?;
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let found = applied(&mut conn).await?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(PgStatus {
        server_version,
        schema: schema::status(&shipped(), found),
    })
}

/// The versions of the migrations this Hearth ships.
fn shipped() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

/// The migrations applied to the database on `conn`, and its floor.
async fn applied(conn: &mut sqlx::PgConnection) -> Result<schema::Applied, StoreError> {
    let (migrated, floored): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('_sqlx_migrations') IS NOT NULL, \
         to_regclass('schema_floor') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut found = schema::Applied::default();
    if migrated {
        found.versions = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await?;
    }
    if floored {
        found.floor = sqlx::query_scalar("SELECT version FROM schema_floor WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0);
    }
    Ok(found)
}

impl PgStore {
    /// Connects to `url`, applies pending migrations (one replica at a time: sqlx
    /// holds an advisory lock while it migrates), purges conversations deleted past
    /// the undo window, marks replies whose writer's lease ran out as interrupted,
    /// and starts keeping this store's leases.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let connect = connect_options(url, options.statement_timeout)?;
        let server = redact_url(url);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| connect_error(&server, e))?;
        let found = {
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| connect_error(&server, e))?;
            applied(&mut conn).await?
        };
        let unknown = schema::unknown(&shipped(), &found, &server)?;
        schema::warn_unknown(&unknown, &server);
        schema::migrator(sqlx::migrate!("./migrations/postgres"), &unknown)
            .run(&pool)
            .await?;
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let keeper = options
            .keeper
            .then(|| tokio::spawn(keep_leases(pool.clone(), instance.clone(), options.lease)));
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                server,
                instance,
                lease: options.lease,
                keeper: std::sync::Mutex::new(keeper),
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

    /// See `SqliteStore::stamp`: now, and after every stamp this store gave before.
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

    /// The connection pool (for tools that read beside the store, and tests).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The database's URL without its password.
    pub fn server(&self) -> &str {
        &self.inner.server
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

    /// Whether the database holds no conversation and no job (an import's target).
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM conversations), (SELECT COUNT(*) FROM jobs)",
        )
        .fetch_one(self.pool())
        .await?)
    }
}

async fn renew(pool: &PgPool, instance: &str, lease: Duration) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE messages SET lease_until = $2 WHERE lease_owner = $1 AND finish_reason IS NULL",
    )
    .bind(instance)
    .bind(now_ms() + millis(lease))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Marks interrupted the streaming replies whose lease ran out (any replica's).
async fn sweep(pool: &PgPool) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE messages SET finish_reason = $1, lease_owner = NULL \
         WHERE finish_reason IS NULL AND role = 'assistant' \
           AND (lease_until IS NULL OR lease_until < $2)",
    )
    .bind(FinishReason::Interrupted.as_str())
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Every third of a lease: renew this store's leases, then sweep expired ones.
/// Runs until the store closes or is dropped (it is aborted then).
async fn keep_leases(pool: PgPool, instance: String, lease: Duration) {
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
impl ConversationStore for PgStore {
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
        // Without a cursor every row is before (i64::MAX, ""): the id is not compared.
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
            .bind(cursor_id)
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

    /// One statement (see `SqliteStore`): no patch overwrites another's field.
    async fn update_conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
        patch: ConversationPatch,
    ) -> Result<Option<Conversation>, StoreError> {
        let (all, owner) = scope.binds();
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

    /// One transaction whose first statement locks the conversation's row: two
    /// appends to one conversation (from any replicas) take their turns, and the
    /// second's `MAX(seq)` sees the first's message (read committed reads anew
    /// at each statement).
    async fn append_message(
        &self,
        conversation_id: &str,
        new: NewMessage,
    ) -> Result<Option<Message>, StoreError> {
        let now = self.stamp();
        let id = uuid::Uuid::new_v4().to_string();
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
            "UPDATE conversations SET updated_at = GREATEST(updated_at, $2) \
             WHERE id = $1 AND deleted_at IS NULL",
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
        let sql = format!(
            "INSERT INTO messages (id, conversation_id, seq, role, content, model, finish_reason, created_at, lease_owner, lease_until) \
             SELECT $1, $2, COALESCE(MAX(seq), -1) + 1, $3, $4, $5, $6, $7, $8, $9 FROM messages WHERE conversation_id = $2 \
             RETURNING {MESSAGE_COLUMNS}"
        );
        let message = sqlx::query_as(&sql)
            .bind(&id)
            .bind(conversation_id)
            .bind(&new.role)
            .bind(&new.content)
            .bind(&new.model)
            .bind(new.finish_reason.map(FinishReason::as_str))
            .bind(now)
            .bind(lease_owner)
            .bind(lease_until)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(message))
    }

    async fn update_reply(&self, message_id: &str, u: &ReplyUpdate) -> Result<(), StoreError> {
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
             lease_owner = $9, lease_until = $10, reasoning = $11, reasoning_ms = $12 \
             WHERE id = $1",
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
        .bind((!u.reasoning.is_empty()).then_some(&u.reasoning))
        .bind(u.reasoning_ms)
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

    /// The replies this replica was still writing are marked interrupted at once
    /// (not a lease later), and the pool closes.
    async fn close(&self) {
        let keeper = self
            .inner
            .keeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(k) = keeper {
            k.abort();
            let _ = k.await;
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
        self.inner.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://hearth:s3cr%40t@db.example:5432/hearth?sslmode=require"),
            "postgres://hearth:***@db.example:5432/hearth?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://db/h?user=u&password=x&sslmode=disable"),
            "postgresql://db/h?user=u&password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert!(is_postgres_url("PostgreSQL://h/d"));
        assert!(!is_postgres_url("mysql://h/d"));
        assert!(!is_postgres_url("/var/lib/hearth"));
    }
}
