//! What only the Postgres store has: its connection settings (pool limit, statement
//! timeout), the errors that name the server (never its password), what `hearth
//! doctor` reads, and the import of a SQLite data folder. On the private server of
//! `hearth_testkit::postgres` (SKIPPED without PostgreSQL unless
//! `HEARTH_TEST_POSTGRES_REQUIRED=1`).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use hearth_store::{
    ConversationStore, JobStore, NewConversation, NewMessage, PgOptions, PgStore, ReplyUpdate,
    Scope, SqliteStore, StoreError,
};
use hearth_testkit::postgres::{Database, PASSWORD, shared_for};

fn database(test: &str) -> Option<Database> {
    Some(shared_for(test)?.database())
}

#[tokio::test]
async fn each_connection_has_the_statement_timeout_and_the_pool_its_limit() {
    let Some(db) = database("each_connection_has_the_statement_timeout") else {
        return;
    };
    let store = PgStore::connect(
        &db.url(),
        PgOptions {
            max_connections: 2,
            statement_timeout: Duration::from_millis(300),
            acquire_timeout: Duration::from_millis(500),
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "300ms");
    let e = sqlx::query("SELECT pg_sleep(2)")
        .execute(store.pool())
        .await
        .unwrap_err();
    let code = e.as_database_error().and_then(|d| d.code()).unwrap();
    assert_eq!(code, "57014", "query_canceled: {e}");
    // Two connections held: a third waits, then gives up.
    let a = store.pool().acquire().await.unwrap();
    let b = store.pool().acquire().await.unwrap();
    assert!(matches!(
        store.pool().acquire().await,
        Err(sqlx::Error::PoolTimedOut)
    ));
    drop((a, b));
    let c = store
        .create_conversation("o", NewConversation::default())
        .await
        .unwrap();
    assert!(
        store
            .conversation(&Scope::All, &c.id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_wrong_password_and_a_closed_port_are_told_apart_without_the_password() {
    let Some(server) = shared_for("a_wrong_password_and_a_closed_port") else {
        return;
    };
    let wrong = server.url_as("hearth", "not-the-password", "postgres");
    let e = PgStore::connect(&wrong, PgOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Refused { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(!shown.contains("not-the-password"), "{shown}");
    assert!(shown.contains("hearth:***@127.0.0.1"), "{shown}");
    assert!(shown.contains("password authentication failed"), "{shown}");

    let closed_port = hearth_testkit::ClosedPort::new();
    let port = closed_port.port();
    let closed = format!("postgres://hearth:{PASSWORD}@127.0.0.1:{port}/hearth");
    let e = PgStore::connect(
        &closed,
        PgOptions {
            acquire_timeout: Duration::from_secs(2),
            ..PgOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");

    let e = PgStore::connect("mysql://u:p@h/d", PgOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::BadUrl(_)), "{e:?}");
    assert!(!e.to_string().contains(":p@"), "{e}");
}

#[tokio::test]
async fn the_status_tells_pending_migrations_from_applied_ones() {
    let Some(db) = database("the_status_tells_pending_migrations") else {
        return;
    };
    let fresh = hearth_store::pg_status(&db.url(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        fresh.server_version.starts_with(char::is_numeric),
        "{fresh:?}"
    );
    assert!(fresh.schema.applied.is_empty());
    assert_eq!(fresh.schema.pending, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let store = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    store.close().await;
    let done = hearth_store::pg_status(&db.url(), Duration::from_secs(5))
        .await
        .unwrap();
    let done = done.schema;
    assert_eq!(done.applied, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!((done.floor, done.refused), (0, false));
    assert!(done.pending.is_empty() && done.unknown.is_empty());
}

#[tokio::test]
async fn a_sqlite_data_folder_is_imported_once_with_every_row() {
    let Some(db) = database("a_sqlite_data_folder_is_imported") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path()).await.unwrap();
    let (conversation, reply) = common::streaming_reply(&sqlite, "alice").await;
    sqlite
        .update_reply(
            &reply.id,
            &ReplyUpdate {
                content: "hello".into(),
                reasoning: "They greeted me.".into(),
                reasoning_ms: Some(1500),
                finish_reason: Some(hearth_store::FinishReason::Stop),
                ..ReplyUpdate::default()
            },
        )
        .await
        .unwrap();
    let gone = sqlite
        .create_conversation("bob", NewConversation::default())
        .await
        .unwrap();
    sqlite
        .delete_conversation(&Scope::All, &gone.id)
        .await
        .unwrap();
    let job = sqlite
        .create_job(
            "alice",
            hearth_store::NewJob {
                prompt: "plot".into(),
                image_type: "png".into(),
                image: hearth_store::NewFile {
                    name: "input.png".into(),
                    sha256: "aa".into(),
                    size: 3,
                    content_type: "image/png".into(),
                    step_id: None,
                },
            },
        )
        .await
        .unwrap();
    sqlite
        .claim_next_job("w", Duration::from_secs(30))
        .await
        .unwrap();
    sqlite
        .begin_step(
            &job.id,
            hearth_store::NewStep {
                kind: "vision".into(),
                attempt: 1,
                input: "in".into(),
                model: None,
            },
        )
        .await
        .unwrap();
    hearth_store::UsageStore::add_key_usage(&sqlite, "alice", 1_777_593_600_000, 420)
        .await
        .unwrap();
    // While a Hearth runs on the folder, the import waits for it to stop.
    let target = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    let e = hearth_store::import_sqlite(dir.path(), &target)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e:?}");
    assert_eq!(target.counts().await.unwrap(), (0, 0));
    sqlite.close().await;

    let done = hearth_store::import_sqlite(dir.path(), &target)
        .await
        .unwrap();
    assert_eq!(
        (
            done.conversations,
            done.messages,
            done.jobs,
            done.steps,
            done.files,
            done.job_files,
            done.key_usage
        ),
        (2, 2, 1, 1, 1, 1, 1)
    );
    assert_eq!(
        hearth_store::UsageStore::key_usage(&target, "alice", 1_777_593_600_000)
            .await
            .unwrap(),
        420
    );
    // Each row as it was: owners, order, the trash (restorable), the running job.
    let c = target
        .conversation(&Scope::Owner("alice"), &conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.title, "hi");
    let messages = target.messages(&conversation).await.unwrap();
    let texts: Vec<_> = messages
        .iter()
        .map(|m| (m.seq, m.content.as_str(), m.finish_reason.as_deref()))
        .collect();
    assert_eq!(texts, [(0, "hi", None), (1, "hello", Some("stop"))]);
    assert_eq!(messages[1].reasoning.as_deref(), Some("They greeted me."));
    assert_eq!(messages[1].reasoning_ms, Some(1500));
    assert!(
        target
            .conversation(&Scope::All, &gone.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        target
            .restore_conversation(&Scope::Owner("bob"), &gone.id)
            .await
            .unwrap()
            .is_some()
    );
    let j = target
        .job(&Scope::Owner("alice"), &job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.status, "running");
    assert_eq!(target.steps(&job.id).await.unwrap().len(), 1);
    assert_eq!(target.job_files(&job.id).await.unwrap()[0].sha256, "aa");
    // New rows go on after the imported ones.
    let next = target
        .append_message(&conversation, NewMessage::user("again"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.seq, 2);

    // A second import is refused: nothing is copied twice.
    let e = hearth_store::import_sqlite(dir.path(), &target)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotEmpty {
                conversations: 2,
                jobs: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    // And a folder without a database is named.
    let empty = tempfile::tempdir().unwrap();
    let e = hearth_store::import_sqlite(empty.path(), &target)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NoDatabase { .. }), "{e:?}");
}

#[tokio::test]
async fn tls_is_used_and_verified_when_the_url_asks() {
    let Some(db) = database("tls_is_used_and_verified_when_the_url_asks") else {
        return;
    };
    let ca = db.server().ca_cert();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url(),
        ca.display()
    );
    let store = PgStore::connect(&url, PgOptions::default()).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(ssl, "the connection is encrypted");
    store.close().await;
    // Without the CA the certificate is not trusted: refused, not sent in clear.
    let e = PgStore::connect(
        &format!("{}?sslmode=verify-full", db.url()),
        PgOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::Tls { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains("sslrootcert"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}
