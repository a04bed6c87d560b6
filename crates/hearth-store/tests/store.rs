//! The store over a real SQLite file in a temp directory, and over a real
//! Postgres database: each test runs on both (`common::both!`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Db, both};
use hearth_store::{
    ConversationPatch, FinishReason, ListQuery, NewConversation, NewMessage, ReplyUpdate, Scope,
    SqliteStore,
};

/// Every owner's conversations (these tests are not about owners, but `owners_*`).
const ALL: Scope<'static> = Scope::All;

both!(
    opens_with_migrations_and_survives_reopen,
    messages_get_sequential_positions_and_title_from_first_user_message,
    reply_updates_and_interrupted_replies_after_restart,
    list_is_newest_first_paged_and_searchable,
    rename_delete_undo,
    truncate_for_edit_and_regenerate,
    concurrent_appends_keep_unique_positions,
    an_older_hearth_runs_on_a_newer_database_until_its_floor_rises,
);

/// SQLite's file: made with its folders, in WAL mode.
#[tokio::test]
async fn a_sqlite_store_makes_its_folder_and_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    let store = SqliteStore::open(&nested).await.unwrap();
    assert!(nested.join("hearth.db").exists());
    assert_eq!(store.schema_version().await.unwrap(), common::CURRENT);
    // WAL mode leaves its -wal file next to the database while open.
    assert!(nested.join("hearth.db-wal").exists());
}

/// `hearth doctor`'s view of the SQLite file: read only, it tells pending,
/// unknown and refused migrations apart and changes nothing.
#[tokio::test]
async fn the_sqlite_status_reads_the_schema_without_changing_it() {
    let db = Db::sqlite();
    let Db::Sqlite(dir) = &db else { unreachable!() };
    let file = dir.path().join("hearth.db");
    // As the release with four migrations left it: the rest are pending.
    db.at_version(4).await.close().await;
    let s = hearth_store::sqlite_status(&file).await.unwrap();
    assert_eq!(s.applied, [1, 2, 3, 4]);
    assert_eq!(s.pending.len(), common::MIGRATIONS.len() - 4);
    let again = hearth_store::sqlite_status(&file).await.unwrap();
    assert_eq!(again, s, "the status migrated nothing");

    db.open().await.close().await;
    let raw = db.raw().await;
    raw.exec(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (9001, 'newer', TRUE, X'00', 1)",
        &[],
    )
    .await;
    raw.close().await;
    let s = hearth_store::sqlite_status(&file).await.unwrap();
    assert!(s.pending.is_empty());
    assert_eq!((s.unknown.as_slice(), s.refused), (&[9001][..], false));
    let raw = db.raw().await;
    raw.exec("UPDATE schema_floor SET version = 9001", &[])
        .await;
    raw.close().await;
    let s = hearth_store::sqlite_status(&file).await.unwrap();
    assert_eq!((s.floor, s.refused), (9001, true));
}

async fn opens_with_migrations_and_survives_reopen(db: Db) {
    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), db.current());
    let id = common::conversation_with(&*store, "anonymous", "remember me").await;
    store.close().await;
    let store = db.open().await;
    let msgs = store.messages(&id).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].content, "remember me");
    // Re-running migrations on an up-to-date database changes nothing.
    assert_eq!(store.schema_version().await.unwrap(), db.current());
}

/// A rollback across migrations: this Hearth started on a database a newer one
/// migrated. It runs on while the newer migrations only add, and refuses the
/// database, changing nothing, once one of them raised the floor past its own.
async fn an_older_hearth_runs_on_a_newer_database_until_its_floor_rises(db: Db) {
    let store = db.open().await;
    let id = common::conversation_with(&*store, "anonymous", "before the upgrade").await;
    store.close().await;

    // The newer Hearth's migration 9001 added a table.
    let checksum = if db.is_postgres() {
        "'\\x00'::bytea"
    } else {
        "X'00'"
    };
    let raw = db.raw().await;
    raw.exec("CREATE TABLE newer_things (id TEXT PRIMARY KEY)", &[])
        .await;
    raw.exec(
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (9001, 'newer things', TRUE, {checksum}, 1)"
        ),
        &[],
    )
    .await;
    raw.close().await;

    let store = db.open().await;
    store
        .append_message(&id, NewMessage::user("after the rollback"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.messages(&id).await.unwrap().len(), 2);
    store.close().await;

    // Migration 9001 dropped or renamed what this Hearth reads.
    let raw = db.raw().await;
    raw.exec("UPDATE schema_floor SET version = 9001", &[])
        .await;
    raw.close().await;
    // (A store has no Debug for unwrap_err.)
    let e = db.try_open().await.err().unwrap();
    assert!(
        matches!(e, hearth_store::StoreError::TooNew { floor: 9001, .. }),
        "{e:?}"
    );
    let said = e.to_string();
    assert!(said.contains("migrations 9001 are unknown"), "{said}");
    assert!(said.contains("restore the backup"), "{said}");

    // The refusal changed nothing: the newer release (its floor met) reads it all.
    let raw = db.raw().await;
    raw.exec("UPDATE schema_floor SET version = 0", &[]).await;
    raw.close().await;
    let store = db.open().await;
    let texts: Vec<String> = store
        .messages(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(texts, ["before the upgrade", "after the rollback"]);
    store.close().await;
}

async fn messages_get_sequential_positions_and_title_from_first_user_message(db: Db) {
    let store = db.open().await;
    let c = store
        .create_conversation("anonymous", NewConversation::default())
        .await
        .unwrap();
    assert_eq!(c.title, "");
    let m0 = store
        .append_message(&c.id, NewMessage::user("What is Rust?\nExplain."))
        .await
        .unwrap()
        .unwrap();
    let m1 = store
        .append_message(
            &c.id,
            NewMessage {
                role: "assistant".into(),
                content: String::new(),
                model: Some("m".into()),
                finish_reason: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m0.seq, m1.seq), (0, 1));
    assert_eq!(m1.finish_reason, None);
    let c2 = store.conversation(&ALL, &c.id).await.unwrap().unwrap();
    assert_eq!(c2.title, "What is Rust?");
    assert!(c2.updated_at >= c.updated_at);
    // A titled conversation keeps its title.
    store
        .append_message(&c.id, NewMessage::user("another"))
        .await
        .unwrap();
    assert_eq!(
        store
            .conversation(&ALL, &c.id)
            .await
            .unwrap()
            .unwrap()
            .title,
        "What is Rust?"
    );
    // Unknown conversation.
    assert!(
        store
            .append_message("nope", NewMessage::user("x"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn reply_updates_and_interrupted_replies_after_restart(db: Db) {
    let store = db.open().await;
    let (c, done) = common::streaming_reply(&*store, "anonymous").await;
    let update = ReplyUpdate {
        content: "Hello!".into(),
        reasoning: "A greeting; greet back.".into(),
        reasoning_ms: Some(2400),
        model: Some("smol".into()),
        prompt_tokens: Some(5),
        completion_tokens: Some(3),
        ttft_ms: Some(12),
        duration_ms: Some(40),
        finish_reason: Some(FinishReason::Stop),
    };
    store.update_reply(&done.id, &update).await.unwrap();
    let m = store.message(&done.id).await.unwrap().unwrap();
    assert_eq!(m.content, "Hello!");
    assert_eq!(
        (
            m.prompt_tokens,
            m.completion_tokens,
            m.ttft_ms,
            m.duration_ms
        ),
        (Some(5), Some(3), Some(12), Some(40))
    );
    assert_eq!(m.finish_reason.as_deref(), Some("stop"));
    // The thinking is kept apart from the answer.
    assert_eq!(m.reasoning.as_deref(), Some("A greeting; greet back."));
    assert_eq!(m.reasoning_ms, Some(2400));

    // A reply left streaming (partial content written, no finish reason)...
    store
        .append_message(&c, NewMessage::user("more"))
        .await
        .unwrap();
    let streaming = store
        .append_message(&c, NewMessage::reply())
        .await
        .unwrap()
        .unwrap();
    store
        .update_reply(
            &streaming.id,
            &ReplyUpdate {
                content: "partial".into(),
                ..ReplyUpdate::default()
            },
        )
        .await
        .unwrap();
    store.close().await;
    // ...is kept, and marked interrupted at the next start.
    let store = db.open().await;
    let m = store.message(&streaming.id).await.unwrap().unwrap();
    assert_eq!(m.content, "partial");
    assert_eq!(m.finish_reason.as_deref(), Some("interrupted"));
    assert_eq!(m.reasoning, None, "no thinking: none stored");
    assert_eq!(m.reasoning_ms, None);
    assert_eq!(
        store
            .message(&done.id)
            .await
            .unwrap()
            .unwrap()
            .finish_reason
            .as_deref(),
        Some("stop")
    );
}

async fn list_is_newest_first_paged_and_searchable(db: Db) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let c = store
            .create_conversation(
                "anonymous",
                NewConversation {
                    title: Some(format!("chat {i}")),
                    ..NewConversation::default()
                },
            )
            .await
            .unwrap();
        ids.push(c.id);
    }
    // A new message moves a conversation to the top.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store
        .append_message(&ids[7], NewMessage::user("the secret word is Zebra_50%"))
        .await
        .unwrap();
    // Page through everything, 10 at a time, and see each once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_conversations(
                &ALL,
                &ListQuery {
                    search: None,
                    limit: 10,
                    cursor,
                },
            )
            .await
            .unwrap();
        seen.extend(page.data.iter().map(|c| c.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25);
    // Conversation 7 got a message last, so it is the newest.
    assert_eq!(seen[0], ids[7]);

    let find = |s: &str| ListQuery {
        search: Some(s.into()),
        limit: 50,
        cursor: None,
    };
    let by_content = store
        .list_conversations(&ALL, &find("zebra_50%"))
        .await
        .unwrap();
    assert_eq!(by_content.data.len(), 1);
    assert_eq!(by_content.data[0].id, ids[7]);
    // Wildcards in the search are literal: "_" does not match any character.
    assert_eq!(
        store
            .list_conversations(&ALL, &find("chat_1"))
            .await
            .unwrap()
            .data
            .len(),
        0
    );
    let by_title = store
        .list_conversations(&ALL, &find("CHAT 1"))
        .await
        .unwrap();
    assert_eq!(by_title.data.len(), 11, "chat 1, chat 10..19");
    assert!(
        store
            .list_conversations(
                &ALL,
                &ListQuery {
                    search: None,
                    limit: 10,
                    cursor: Some("bogus".into())
                }
            )
            .await
            .is_err()
    );
}

async fn rename_delete_undo(db: Db) {
    let store = db.open().await;
    let id = common::conversation_with(&*store, "anonymous", "hello").await;
    let renamed = store
        .update_conversation(
            &ALL,
            &id,
            ConversationPatch {
                title: Some("Renamed".into()),
                model: Some(Some("m2".into())),
                system_prompt: Some(Some("Be brief.".into())),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.title, "Renamed");
    assert_eq!(renamed.model.as_deref(), Some("m2"));
    let cleared = store
        .update_conversation(
            &ALL,
            &id,
            ConversationPatch {
                system_prompt: Some(None),
                ..ConversationPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.system_prompt, None);
    assert_eq!(cleared.title, "Renamed");

    assert!(store.delete_conversation(&ALL, &id).await.unwrap());
    assert!(
        !store.delete_conversation(&ALL, &id).await.unwrap(),
        "already deleted"
    );
    assert!(store.conversation(&ALL, &id).await.unwrap().is_none());
    let all = ListQuery {
        search: None,
        limit: 50,
        cursor: None,
    };
    assert!(
        store
            .list_conversations(&ALL, &all)
            .await
            .unwrap()
            .data
            .is_empty()
    );
    assert!(
        store
            .update_conversation(&ALL, &id, ConversationPatch::default())
            .await
            .unwrap()
            .is_none()
    );

    let back = store
        .restore_conversation(&ALL, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.title, "Renamed");
    assert_eq!(store.messages(&id).await.unwrap().len(), 1);
    assert!(
        store
            .restore_conversation(&ALL, &id)
            .await
            .unwrap()
            .is_none(),
        "not in the trash"
    );

    // Past the undo window it is gone for good, messages too.
    store.delete_conversation(&ALL, &id).await.unwrap();
    assert_eq!(
        store
            .purge_deleted(std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .restore_conversation(&ALL, &id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.messages(&id).await.unwrap().is_empty());
}

async fn truncate_for_edit_and_regenerate(db: Db) {
    let store = db.open().await;
    let c = store
        .create_conversation("anonymous", NewConversation::default())
        .await
        .unwrap();
    for i in 0..4 {
        store
            .append_message(&c.id, NewMessage::user(format!("m{i}")))
            .await
            .unwrap();
    }
    assert_eq!(store.truncate_from(&c.id, 2).await.unwrap(), 2);
    let left: Vec<String> = store
        .messages(&c.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(left, ["m0", "m1"]);
    let next = store
        .append_message(&c.id, NewMessage::user("m2'"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.seq, 2);
}

async fn concurrent_appends_keep_unique_positions(db: Db) {
    let store = db.open().await;
    let c = store
        .create_conversation("anonymous", NewConversation::default())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                store
                    .append_message(&id, NewMessage::user(format!("{i}")))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap().unwrap();
    }
    let seqs: Vec<i64> = store
        .messages(&c.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
}
