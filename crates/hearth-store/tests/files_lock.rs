//! [`JobStore::files_lock`] across replicas on a real private Postgres: two stores
//! (two replicas) may both store files at once (shared), a removal (exclusive)
//! waits for them and they for it, and a guard's drop, or its process's death,
//! releases it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hearth_store::{JobStore, PgOptions, PgStore};

async fn store(url: &str) -> PgStore {
    PgStore::connect(
        url,
        PgOptions {
            keeper: false,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Whether `f` finishes within 300 ms.
async fn quick<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(Duration::from_millis(300), f)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_and_recording_exclude_each_other_across_replicas() {
    let Some(server) = hearth_testkit::postgres::shared_for("files_lock") else {
        return;
    };
    let db = server.database();
    let (a, b) = (store(&db.url()).await, store(&db.url()).await);

    // Two replicas storing at once: both hold it.
    let a_shared = a.files_lock(false).await.unwrap();
    let b_shared = quick(b.files_lock(false))
        .await
        .expect("shared beside shared")
        .unwrap();
    // A removal waits for both...
    assert!(
        quick(b.files_lock(true)).await.is_none(),
        "exclusive while shared are held"
    );
    drop(a_shared);
    assert!(
        quick(a.files_lock(true)).await.is_none(),
        "exclusive while one shared is held"
    );
    drop(b_shared);
    let removing = quick(a.files_lock(true))
        .await
        .expect("free once both dropped")
        .unwrap();
    // ...and recording waits for the removal.
    assert!(
        quick(b.files_lock(false)).await.is_none(),
        "shared while exclusive is held"
    );
    drop(removing);
    let again = quick(b.files_lock(false))
        .await
        .expect("free after the removal")
        .unwrap();
    drop(again);

    // A replica whose connection dies holding it (a crash, a cut network): the
    // server ends the session, and the lock with it.
    let dying = store(&db.url()).await;
    let held = dying.files_lock(true).await.unwrap();
    assert!(quick(a.files_lock(false)).await.is_none());
    let killed: i64 = sqlx_count(
        &a,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'idle in transaction'",
    )
    .await;
    assert_eq!(killed, 1);
    let after = tokio::time::timeout(Duration::from_secs(10), a.files_lock(false)).await;
    assert!(
        after.is_ok_and(|r| r.is_ok()),
        "the dead session's lock was released"
    );
    drop(held);
}

async fn sqlx_count(store: &PgStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}
