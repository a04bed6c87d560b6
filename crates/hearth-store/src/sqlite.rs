//! [`SqliteStore`]: the conversation store in one SQLite file (WAL), and every query.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreError;
use crate::holders::Holders;
use crate::model::{
    Conversation, ConversationPatch, FinishReason, ListQuery, Message, NewConversation, NewMessage,
    Page, ReplyUpdate, Scope,
};
use crate::schema;
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

/// The size the write-ahead log is cut back to once checkpointed. A long read (a
/// backup, a big export) lets the log grow past SQLite's usual 4 MiB while it lasts;
/// without a limit the file would keep that size for good.
pub const WAL_SIZE_LIMIT: u64 = 64 << 20;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The versions of the migrations this Hearth ships.
fn shipped() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

/// Where the schema of the SQLite database at `path` stands for this Hearth
/// (`hearth doctor`): read only, changing nothing.
pub async fn sqlite_status(path: &Path) -> Result<schema::SchemaStatus, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::at(path, e))?;
    let found = applied(&pool).await.map_err(|e| match e {
        StoreError::Database(e) => StoreError::at(path, e),
        other => other,
    });
    pool.close().await;
    Ok(schema::status(&shipped(), found?))
}

/// The migrations applied to the database behind `pool`, and its floor.
async fn applied(pool: &SqlitePool) -> Result<schema::Applied, StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name IN ('_sqlx_migrations', 'schema_floor')",
    )
    .fetch_all(pool)
    .await?;
    let mut found = schema::Applied::default();
    if tables.iter().any(|t| t == "_sqlx_migrations") {
        found.versions = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(pool)
        .await?;
    }
    if tables.iter().any(|t| t == "schema_floor") {
        found.floor = sqlx::query_scalar("SELECT version FROM schema_floor WHERE id = 1")
            .fetch_optional(pool)
            .await?
            .unwrap_or(0);
    }
    Ok(found)
}

const CONVERSATION_COLUMNS: &str = "id, title, model, system_prompt, created_at, updated_at, owner";
const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, role, content, model, prompt_tokens, \
     completion_tokens, ttft_ms, duration_ms, finish_reason, created_at, reasoning, reasoning_ms";

/// Conversations and messages in one SQLite database, shared safely by several
/// Hearth processes (WAL; streaming replies leased by their writer). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// [`SqliteStore::pool`]'s pool, with the store's gate held shared.
pub(crate) struct Gated<'a> {
    _held: tokio::sync::RwLockReadGuard<'a, ()>,
    pool: &'a SqlitePool,
}

impl std::ops::Deref for Gated<'_> {
    type Target = SqlitePool;
    fn deref(&self) -> &SqlitePool {
        self.pool
    }
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    /// Taken shared by every query of this store (see [`SqliteStore::pool`]) and
    /// alone by a checkpoint that must empty the log (see [`checkpoint`]).
    gate: Arc<tokio::sync::RwLock<()>>,
    /// This process's name on the replies it writes (their lease owner).
    instance: String,
    lease: Duration,
    /// Renews this store's leases and sweeps expired ones; stops with the store.
    keeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Asks the keeper to stop between two rounds (at close: never mid-query).
    stop_keeper: tokio::sync::watch::Sender<bool>,
    /// The last time stamp given to a change (see [`SqliteStore::stamp`]).
    last_stamp: std::sync::atomic::AtomicI64,
    /// The lease owners of this process, held alive (see `holders`).
    holders: Arc<Holders>,
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

/// How a store is opened.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// See [`REPLY_LEASE`]; tests shorten it.
    pub lease: Duration,
    /// Run the background task that renews this store's leases and sweeps expired
    /// ones (off for a store used only to read, or in a test that steps it by hand).
    pub keeper: bool,
    /// See [`WAL_SIZE_LIMIT`]; tests lower it.
    pub wal_size_limit: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease: REPLY_LEASE,
            keeper: true,
            wal_size_limit: WAL_SIZE_LIMIT,
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

    /// As [`SqliteStore::open`], for a database file anywhere. A damaged file is
    /// refused with [`StoreError::Corrupt`], which says what to do.
    pub async fn open_file(path: &Path, options: Options) -> Result<SqliteStore, StoreError> {
        let connect = connect_options(path)
            .create_if_missing(true)
            .pragma("journal_size_limit", options.wal_size_limit.to_string());
        SqliteStore::connect(connect, 4, options, Some(path.to_path_buf())).await
    }

    /// An in-memory database, for tests of code that uses a store.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let connect = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        SqliteStore::connect(connect, 1, Options::default(), None).await
    }

    async fn connect(
        connect: SqliteConnectOptions,
        max: u32,
        options: Options,
        path: Option<PathBuf>,
    ) -> Result<SqliteStore, StoreError> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            // An in-memory database lives as long as its one connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::at(&shown, e))?;
        // Before anything writes: a damaged file is refused with what to do, not
        // served until some query trips on the damage.
        if path.is_some() {
            quick_check(&pool, &shown).await?;
        }
        let what = shown.display().to_string();
        let unknown = schema::unknown(&shipped(), &applied(&pool).await?, &what)?;
        schema::warn_unknown(&unknown, &what);
        schema::migrator(sqlx::migrate!("./migrations"), &unknown)
            .run(&pool)
            .await?;
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let holders = Arc::new(match &path {
            Some(p) => Holders::beside(p),
            None => Holders::none(),
        });
        holders.hold(&instance);
        let (stop_keeper, stopped) = tokio::sync::watch::channel(false);
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let keeper = options.keeper.then(|| {
            tokio::spawn(keep_leases(Keeper {
                pool: pool.clone(),
                gate: gate.clone(),
                instance: instance.clone(),
                lease: options.lease,
                // Weak: the locks go with the store, not with this task's last poll.
                holders: Arc::downgrade(&holders),
                stop: stopped,
                wal: path.as_deref().map(wal_path),
                wal_size_limit: options.wal_size_limit,
            }))
        });
        let store = SqliteStore {
            inner: Arc::new(Inner {
                pool,
                gate,
                instance,
                lease: options.lease,
                keeper: std::sync::Mutex::new(keeper),
                stop_keeper,
                last_stamp: std::sync::atomic::AtomicI64::new(0),
                holders,
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

    /// The pool, for one statement or transaction of a store method: while the
    /// returned value lives, a checkpoint that empties the log waits for it (and,
    /// once that checkpoint waits, new ones wait for the checkpoint). Take it as a
    /// temporary of one statement, and never while holding another: a second
    /// shared hold queued behind a waiting checkpoint would wait for itself.
    pub(crate) async fn pool(&self) -> Gated<'_> {
        Gated {
            _held: self.inner.gate.read().await,
            pool: &self.inner.pool,
        }
    }

    pub(crate) fn holders(&self) -> &Holders {
        &self.inner.holders
    }

    /// The name this store writes its replies' leases under.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The schema version: the newest applied migration.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&*self.pool().await)
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
        .execute(&*self.pool().await)
        .await?;
        Ok(done.rows_affected())
    }

    /// Renews the leases of the replies this store is writing.
    pub async fn renew_leases(&self) -> Result<u64, StoreError> {
        renew(&*self.pool().await, &self.inner.instance, self.inner.lease).await
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

/// How every file connection is set up (the store's, and a backup's).
pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        // WAL: readers (the sidebar) never wait for the writer (a streaming reply).
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
}

/// How long a statement waits for another connection's lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `PRAGMA quick_check`: the pages, records and indexes' order (not the indexes'
/// content: that is `integrity_check`, which costs much more on a large file).
/// It reads the whole file, about a second per gigabyte.
pub(crate) async fn quick_check(pool: &SqlitePool, path: &Path) -> Result<(), StoreError> {
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_all(pool)
        .await
        .map_err(|e| StoreError::at(path, e))?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    let mut detail = rows.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if detail.is_empty() {
        detail = "quick_check gave no answer".into();
    }
    Err(StoreError::Corrupt {
        path: path.display().to_string(),
        detail,
    })
}

/// Ends at once the leases of owners whose process is gone (see `holders`): the
/// sweeps below then take their replies and jobs as they take expired ones.
pub(crate) async fn expire_dead(pool: &SqlitePool, holders: &Holders) -> Result<(), StoreError> {
    for dead in holders.dead() {
        sqlx::query(
            "UPDATE messages SET lease_until = 0 WHERE lease_owner = $1 AND finish_reason IS NULL",
        )
        .bind(&dead.owner)
        .execute(pool)
        .await?;
        sqlx::query(
            "UPDATE jobs SET lease_until = 0 WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(&dead.owner)
        .execute(pool)
        .await?;
        tracing::debug!(owner = %dead.owner, "a stopped process's leases are ended");
        dead.forget();
    }
    Ok(())
}

/// Marks interrupted the streaming replies whose lease ran out (or that never had
/// one: written by a Hearth from before leases), or whose writer's process is gone.
async fn sweep(pool: &SqlitePool, holders: &Holders) -> Result<u64, StoreError> {
    expire_dead(pool, holders).await?;
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

/// SQLite checkpoints as commits fill the log (every 1000 pages), but a checkpoint
/// cannot pass a reader that was active when it began, nor start the log over
/// while one reads it, so a busy database's log can outgrow those 1000 pages: with
/// readers that overlap without a gap (each short, but never none) SQLite alone
/// never starts it over. Each round: a PASSIVE checkpoint, which never waits for
/// or blocks anyone, catches up once traffic is quiet. A log past `limit` is
/// emptied (TRUNCATE) at once if no one reads or writes it at that instant; else,
/// at most once per [`TRUNCATE_WAIT_EVERY`], the checkpoint takes the store's
/// gate alone (this store's queries finish, new ones wait: SQLite's own write lock
/// is not handed out in turn, and a steady writer kept a waiting checkpoint from
/// ever getting it) and waits up to [`TRUNCATE_WAIT`] for other connections'
/// readers (new readers read the database file, not the log). A reader longer
/// than that (a backup, another process) makes it give up until a later round, so
/// the store's queries wait a quarter of a second at most, once a second at most.
/// `journal_size_limit` cuts the file back whenever SQLite starts the log over.
async fn checkpoint(
    pool: &SqlitePool,
    gate: &tokio::sync::RwLock<()>,
    wal: Option<&Path>,
    limit: u64,
    waited: &mut Option<Instant>,
) {
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, "could not checkpoint the write-ahead log");
    }
    let size = wal
        .and_then(|w| std::fs::metadata(w).ok())
        .map_or(0, |m| m.len());
    if size <= limit {
        return;
    }
    let mut done = checkpoint_truncate(pool, Duration::ZERO).await;
    if matches!(done, Ok(false)) && waited.is_none_or(|t| t.elapsed() >= TRUNCATE_WAIT_EVERY) {
        let _alone = gate.write().await;
        *waited = Some(Instant::now());
        done = checkpoint_truncate(pool, TRUNCATE_WAIT).await;
    }
    match done {
        Ok(true) => tracing::debug!(size, "the write-ahead log was emptied"),
        Ok(false) => tracing::debug!(
            size,
            "the write-ahead log is past its limit and busy; emptied at a later round"
        ),
        Err(e) => tracing::warn!(error = %e, "could not empty the write-ahead log"),
    }
}

/// How long a checkpoint holding the store's gate waits for other connections'
/// readers of the log: longer than a query, far shorter than a backup.
const TRUNCATE_WAIT: Duration = Duration::from_millis(250);

/// The least time between two checkpoints that take the store's gate.
const TRUNCATE_WAIT_EVERY: Duration = Duration::from_secs(1);

/// The write-ahead log of the database file `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-wal");
    db.with_file_name(name)
}

/// What the keeper task works with.
struct Keeper {
    pool: SqlitePool,
    gate: Arc<tokio::sync::RwLock<()>>,
    instance: String,
    lease: Duration,
    holders: std::sync::Weak<Holders>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// The write-ahead log's file (none in memory).
    wal: Option<PathBuf>,
    wal_size_limit: u64,
}

/// Every third of a lease: renew this store's leases, then sweep other writers'
/// expired ones, and checkpoint the write-ahead log. Runs until the store closes or
/// is dropped.
async fn keep_leases(k: Keeper) {
    let Keeper {
        pool,
        gate,
        instance,
        lease,
        holders,
        mut stop,
        wal,
        wal_size_limit,
    } = k;
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waited = None;
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // Stopped or dropped: either way, done.
            _ = stop.changed() => return,
        }
        if let Err(e) = renew(&pool, &instance, lease).await {
            tracing::warn!(error = %e, "could not renew the leases of streaming replies");
        }
        let Some(holders) = holders.upgrade() else {
            return;
        };
        match sweep(&pool, &holders).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                interrupted = n,
                "replies whose writer stopped mid-stream are marked interrupted"
            ),
            Err(e) => tracing::warn!(error = %e, "could not sweep interrupted replies"),
        }
        checkpoint(&pool, &gate, wal.as_deref(), wal_size_limit, &mut waited).await;
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
        .execute(&*self.pool().await)
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
            .fetch_optional(&*self.pool().await)
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
        let mut data = query.fetch_all(&*self.pool().await).await?;
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
            .fetch_optional(&*self.pool().await)
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
        .execute(&*self.pool().await)
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
            .fetch_optional(&*self.pool().await)
            .await?)
    }

    async fn messages(&self, conversation_id: &str) -> Result<Vec<Message>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq"
        );
        Ok(sqlx::query_as(&sql)
            .bind(conversation_id)
            .fetch_all(&*self.pool().await)
            .await?)
    }

    async fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&*self.pool().await)
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
        let mut tx = self.pool().await.begin().await?;
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
        .execute(&*self.pool().await)
        .await?;
        Ok(())
    }

    async fn truncate_from(&self, conversation_id: &str, seq: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM messages WHERE conversation_id = $1 AND seq >= $2")
            .bind(conversation_id)
            .bind(seq)
            .execute(&*self.pool().await)
            .await?;
        Ok(done.rows_affected())
    }

    async fn recover_interrupted(&self) -> Result<u64, StoreError> {
        sweep(&*self.pool().await, self.holders()).await
    }

    /// The replies this store was still writing are cut (the server is stopping):
    /// marked interrupted at once, rather than when their lease runs out.
    async fn close(&self) {
        // Between two rounds, so that no checkpoint of its own is still running
        // when this one's below starts (a second checkpointer is refused at once).
        let _ = self.inner.stop_keeper.send(true);
        let keeper = self
            .inner
            .keeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(k) = keeper
            && tokio::time::timeout(Duration::from_secs(5), k)
                .await
                .is_err()
        {
            tracing::warn!("the lease keeper did not stop within 5 s");
        }
        let cut = sqlx::query(
            "UPDATE messages SET finish_reason = $1, lease_owner = NULL \
             WHERE lease_owner = $2 AND finish_reason IS NULL",
        )
        .bind(FinishReason::Interrupted.as_str())
        .bind(&self.inner.instance)
        .execute(&*self.pool().await)
        .await;
        if let Err(e) = cut {
            tracing::warn!(error = %e, "could not mark this server's unfinished replies interrupted");
        }
        // The log folded into the database and emptied: a copy of the data folder
        // taken while Hearth is stopped is then the one file.
        // 2 s at most: a long reader in another process holds the stop back no longer.
        match checkpoint_truncate(&self.inner.pool, Duration::from_secs(2)).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                "another process kept the write-ahead log busy; it is checkpointed later"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not checkpoint the write-ahead log at close");
            }
        }
        self.inner.pool.close().await;
        // Nothing of this process writes any more: its leases may end at once.
        self.inner.holders.release_all();
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: the whole log into the database, and the log
/// emptied; false when other connections kept it from completing within `wait`. It
/// waits for the writers and readers of other connections (and holds new writers
/// back meanwhile: hence a short `wait`), and is refused at once while another
/// checkpoint runs: that is tried again until `wait` is over.
async fn checkpoint_truncate(pool: &SqlitePool, wait: Duration) -> Result<bool, StoreError> {
    let mut c = pool.acquire().await?;
    sqlx::query(&format!("PRAGMA busy_timeout = {}", wait.as_millis()))
        .execute(&mut *c)
        .await?;
    let until = std::time::Instant::now() + wait;
    let done = loop {
        // (busy, frames in the log, frames checkpointed)
        let row: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *c)
            .await;
        match row {
            Ok((0, _, _)) => break Ok(true),
            Ok(_) if std::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) => break Ok(false),
            Err(e) => break Err(e),
        }
    };
    // The connection goes back to the pool: with the usual patience.
    sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        BUSY_TIMEOUT.as_millis()
    ))
    .execute(&mut *c)
    .await?;
    done.map_err(StoreError::from)
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

pub(crate) fn escape_like(s: &str) -> String {
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
