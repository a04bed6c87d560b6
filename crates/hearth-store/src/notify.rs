//! [`PgChannel`]: short messages between the replicas that share one Postgres,
//! through `NOTIFY` / `LISTEN` (no other server needed). What the jobs' live events
//! ride on, so that a browser connected to one replica sees a job another runs.
//!
//! Postgres delivers a notification to every session listening on its channel when
//! the sending transaction commits, in the order each session sent them, at most
//! [`MAX_PAYLOAD`] bytes each; nothing is kept for a listener that was not
//! connected. A listener that loses its connection reconnects and goes on (what was
//! sent meanwhile is lost: live views read the job again, as after a lag).

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::error::StoreError;
use crate::postgres::PgStore;

/// The largest payload Postgres takes (8000 bytes, less one for its terminator).
pub const MAX_PAYLOAD: usize = 7999;

/// One channel of notifications on a store's database.
#[derive(Debug, Clone)]
pub struct PgChannel {
    pool: PgPool,
    channel: String,
}

impl PgChannel {
    /// The channel named `channel` (letters, digits, `_`) on `store`'s database.
    pub fn new(store: &PgStore, channel: &str) -> PgChannel {
        debug_assert!(
            channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        PgChannel {
            pool: store.pool().clone(),
            channel: channel.to_owned(),
        }
    }

    /// Sends `payload` to every listener (this process's included). A payload past
    /// [`MAX_PAYLOAD`] bytes is refused by Postgres: callers keep theirs short.
    pub async fn publish(&self, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every payload sent on the channel from now on, by any replica, in order per
    /// sender. Listening has begun when this returns. The stream reconnects by itself
    /// after a lost connection and ends only when dropped.
    pub async fn listen(&self) -> Result<BoxStream<'static, String>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.channel).await?;
        Ok(payloads(listener).boxed())
    }
}

fn payloads(listener: PgListener) -> impl Stream<Item = String> {
    futures::stream::unfold(listener, |mut l| async move {
        loop {
            // `recv` reconnects (and listens again) after a lost connection; an
            // error means the server refused us for now: wait and try again.
            match l.recv().await {
                Ok(n) => return Some((n.payload().to_owned(), l)),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the notifications from the database; reconnecting");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    })
}
