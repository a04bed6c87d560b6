//! [`import_sqlite`]: every row of a SQLite data folder's database copied into an
//! empty Postgres database (`hearth db import-sqlite`), in one transaction.
//!
//! The job files' bytes stay where they are (`data_dir/files`, by digest): only
//! their rows move.

use std::path::Path;

use sqlx::Row;

use crate::ConversationStore;
use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::{DB_FILE, Options, SqliteStore};

/// How many rows of each table were copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub conversations: u64,
    pub messages: u64,
    pub jobs: u64,
    pub steps: u64,
    pub files: u64,
    pub job_files: u64,
    /// Keys' token counts per budget period.
    pub key_usage: u64,
}

/// A column's type, as both databases store it.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
}

use Kind::{Bool, Int, Text};

/// The tables in an order that keeps every reference valid, with every column.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "files",
        &[
            ("sha256", Text),
            ("size", Int),
            ("content_type", Text),
            ("created_at", Int),
        ],
    ),
    (
        "conversations",
        &[
            ("id", Text),
            ("title", Text),
            ("model", Text),
            ("system_prompt", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("deleted_at", Int),
            ("owner", Text),
        ],
    ),
    (
        "messages",
        &[
            ("id", Text),
            ("conversation_id", Text),
            ("seq", Int),
            ("role", Text),
            ("content", Text),
            ("model", Text),
            ("prompt_tokens", Int),
            ("completion_tokens", Int),
            ("ttft_ms", Int),
            ("duration_ms", Int),
            ("finish_reason", Text),
            ("created_at", Int),
            ("lease_owner", Text),
            ("lease_until", Int),
            ("reasoning", Text),
            ("reasoning_ms", Int),
        ],
    ),
    (
        "jobs",
        &[
            ("id", Text),
            ("owner", Text),
            ("status", Text),
            ("step", Text),
            ("prompt", Text),
            ("image_sha256", Text),
            ("image_type", Text),
            ("error", Text),
            ("error_code", Text),
            ("cancel_requested", Bool),
            ("lease_owner", Text),
            ("lease_until", Int),
            ("created_at", Int),
            ("queued_at", Int),
            ("updated_at", Int),
            ("started_at", Int),
            ("finished_at", Int),
        ],
    ),
    (
        "job_steps",
        &[
            ("id", Text),
            ("job_id", Text),
            ("seq", Int),
            ("kind", Text),
            ("attempt", Int),
            ("status", Text),
            ("input", Text),
            ("output", Text),
            ("detail", Text),
            ("model", Text),
            ("prompt_tokens", Int),
            ("completion_tokens", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("duration_ms", Int),
        ],
    ),
    (
        "job_files",
        &[
            ("job_id", Text),
            ("role", Text),
            ("name", Text),
            ("sha256", Text),
            ("size", Int),
            ("content_type", Text),
            ("step_id", Text),
            ("created_at", Int),
        ],
    ),
    (
        "key_usage",
        &[("key", Text), ("period_start", Int), ("tokens", Int)],
    ),
];

/// Rows read from SQLite at a time.
const BATCH: i64 = 500;

/// Copies the database of the SQLite data folder `data_dir` (migrated to the
/// current schema first, its unfinished replies and jobs ended as at a start) into
/// `target`, which must hold no conversation and no job ([`StoreError::NotEmpty`]
/// otherwise: nothing is copied twice). All or nothing: one transaction. Refused
/// ([`StoreError::InUse`]) while a Hearth still runs on `data_dir` (its lease lock
/// files are held).
pub async fn import_sqlite(data_dir: &Path, target: &PgStore) -> Result<Imported, StoreError> {
    let db = data_dir.join(DB_FILE);
    if !db.exists() {
        return Err(StoreError::NoDatabase {
            path: db.display().to_string(),
        });
    }
    let source = SqliteStore::open_file(
        &db,
        Options {
            keeper: false,
            ..Options::default()
        },
    )
    .await?;
    if source.holders().another_alive() {
        source.close().await;
        return Err(StoreError::InUse {
            path: db.display().to_string(),
        });
    }
    let (conversations, jobs) = target.counts().await?;
    if conversations > 0 || jobs > 0 {
        source.close().await;
        return Err(StoreError::NotEmpty {
            server: target.server().to_owned(),
            conversations,
            jobs,
        });
    }
    let copied = copy(&source, target).await;
    source.close().await;
    // Jobs left running there resume when a server on `target` sweeps (at start).
    copied
}

async fn copy(source: &SqliteStore, target: &PgStore) -> Result<Imported, StoreError> {
    let mut counts = Imported::default();
    let mut tx = target.pool().begin().await?;
    // An import may take longer than a statement usually may.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    for (table, columns) in TABLES {
        let names = columns
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        let params = (1..=columns.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let select =
            format!("SELECT rowid, {names} FROM {table} WHERE rowid > $1 ORDER BY rowid LIMIT $2");
        let insert = format!("INSERT INTO {table} ({names}) VALUES ({params})");
        let mut last = i64::MIN;
        let mut n = 0u64;
        loop {
            let rows = sqlx::query(&select)
                .bind(last)
                .bind(BATCH)
                .fetch_all(&*source.pool().await)
                .await?;
            let Some(end) = rows.last() else { break };
            last = end.try_get(0)?;
            for row in &rows {
                let mut q = sqlx::query(&insert);
                for (i, (_, kind)) in columns.iter().enumerate() {
                    q = match kind {
                        Text => q.bind(row.try_get::<Option<String>, _>(i + 1)?),
                        Int => q.bind(row.try_get::<Option<i64>, _>(i + 1)?),
                        Bool => q.bind(row.try_get::<Option<bool>, _>(i + 1)?),
                    };
                }
                q.execute(&mut *tx).await?;
                n += 1;
            }
        }
        match *table {
            "files" => counts.files = n,
            "conversations" => counts.conversations = n,
            "messages" => counts.messages = n,
            "jobs" => counts.jobs = n,
            "job_steps" => counts.steps = n,
            "job_files" => counts.job_files = n,
            _ => counts.key_usage = n,
        }
    }
    tx.commit().await?;
    Ok(counts)
}
