//! [`UsageStore`]: the tokens each API key used per budget period, for the
//! gateway's token budgets (`[[keys]] budget_tokens`). Kept in the database so a
//! budget holds across restarts and is one count for every replica.

use async_trait::async_trait;

use crate::{PgStore, SqliteStore, StoreError};

/// Tokens used by a key in a period (named by its start, UTC milliseconds).
#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug + 'static {
    /// The tokens `key` used in the period starting at `period_start` (0 when none).
    async fn key_usage(&self, key: &str, period_start: i64) -> Result<u64, StoreError>;

    /// Adds `tokens` to that count in one statement (concurrent adds, from this
    /// process or another replica, are never lost); the count after.
    async fn add_key_usage(
        &self,
        key: &str,
        period_start: i64,
        tokens: u64,
    ) -> Result<u64, StoreError>;
}

const SELECT: &str = "SELECT tokens FROM key_usage WHERE key = $1 AND period_start = $2";
const ADD: &str = "INSERT INTO key_usage (key, period_start, tokens) VALUES ($1, $2, $3) \
     ON CONFLICT (key, period_start) DO UPDATE SET tokens = key_usage.tokens + excluded.tokens \
     RETURNING tokens";

fn count(n: Option<i64>) -> u64 {
    n.map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

fn bind(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn key_usage(&self, key: &str, period_start: i64) -> Result<u64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(SELECT)
            .bind(key)
            .bind(period_start)
            .fetch_optional(&*self.pool().await)
            .await?;
        Ok(count(n))
    }

    async fn add_key_usage(
        &self,
        key: &str,
        period_start: i64,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(ADD)
            .bind(key)
            .bind(period_start)
            .bind(bind(tokens))
            .fetch_one(&*self.pool().await)
            .await?;
        Ok(count(Some(n)))
    }
}

#[async_trait]
impl UsageStore for PgStore {
    async fn key_usage(&self, key: &str, period_start: i64) -> Result<u64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(SELECT)
            .bind(key)
            .bind(period_start)
            .fetch_optional(self.pool())
            .await?;
        Ok(count(n))
    }

    async fn add_key_usage(
        &self,
        key: &str,
        period_start: i64,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(ADD)
            .bind(key)
            .bind(period_start)
            .bind(bind(tokens))
            .fetch_one(self.pool())
            .await?;
        Ok(count(Some(n)))
    }
}
