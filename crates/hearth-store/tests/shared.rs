//! What lets several principals and several Hearth processes share one database:
//! owners, leased replies, single-statement updates, and migrations from the
//! previous release's schema. Each on SQLite and on Postgres (`common::both!`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Db, both};
use hearth_store::{ConversationPatch, ListQuery, NewConversation, NewMessage, ReplyUpdate, Scope};

both!(
    owners_see_and_change_only_their_own_and_an_admin_sees_all,
    concurrent_patches_of_different_fields_are_all_kept,
    a_second_process_leaves_the_firsts_live_reply_alone_and_ends_a_dead_ones,
    closing_ends_only_this_stores_own_unfinished_replies,
    the_previous_releases_database_is_migrated_and_keeps_its_rows,
    conversations_made_in_the_same_millisecond_still_list_newest_first,
    key_usage_adds_up_across_processes_by_key_and_period,
);

fn page() -> ListQuery {
    ListQuery {
        limit: 50,
        ..ListQuery::default()
    }
}

async fn owners_see_and_change_only_their_own_and_an_admin_sees_all(db: Db) {
    let store = db.open().await;
    let alice = Scope::Owner("alice");
    let bob = Scope::Owner("bob");
    let a = store
        .create_conversation("alice", NewConversation::default())
        .await
        .unwrap();
    let b = store
        .create_conversation("bob", NewConversation::default())
        .await
        .unwrap();
    assert_eq!(a.owner, "alice");
    let ids = |p: hearth_store::Page| p.data.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_conversations(&alice, &page()).await.unwrap()),
        std::slice::from_ref(&a.id)
    );
    assert_eq!(
        store
            .list_conversations(&Scope::All, &page())
            .await
            .unwrap()
            .data
            .len(),
        2
    );
    // Bob cannot read, rename, delete or restore Alice's conversation: to him it
    // does not exist.
    assert!(store.conversation(&bob, &a.id).await.unwrap().is_none());
    let rename = ConversationPatch {
        title: Some("mine now".into()),
        ..ConversationPatch::default()
    };
    assert!(
        store
            .update_conversation(&bob, &a.id, rename.clone())
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.delete_conversation(&bob, &a.id).await.unwrap());
    assert!(store.conversation(&alice, &a.id).await.unwrap().is_some());
    assert!(store.delete_conversation(&alice, &a.id).await.unwrap());
    assert!(
        store
            .restore_conversation(&bob, &a.id)
            .await
            .unwrap()
            .is_none()
    );
    // The admin can.
    let restored = store
        .restore_conversation(&Scope::All, &a.id)
        .await
        .unwrap();
    assert_eq!(restored.unwrap().owner, "alice");
    assert_eq!(
        store
            .update_conversation(&Scope::All, &b.id, rename)
            .await
            .unwrap()
            .unwrap()
            .title,
        "mine now"
    );
}

async fn concurrent_patches_of_different_fields_are_all_kept(db: Db) {
    let store = db.open().await;
    let c = store
        .create_conversation("o", NewConversation::default())
        .await
        .unwrap();
    // One writer renames, the other sets the system prompt, interleaved on the
    // pool's connections. Each sees the row as its update left it: the other field
    // must only ever move forward. A read-modify-write writes back a stale copy of
    // the other field, which shows here as a step back (and at the end as a lost
    // update).
    let number = |s: Option<&str>| s.and_then(|s| s[1..].parse::<i32>().ok()).unwrap_or(-1);
    let writer = |title: bool| {
        let (store, id) = (store.clone(), c.id.clone());
        tokio::spawn(async move {
            let mut seen = -1;
            for i in 0..300 {
                let patch = if title {
                    ConversationPatch {
                        title: Some(format!("t{i}")),
                        ..ConversationPatch::default()
                    }
                } else {
                    ConversationPatch {
                        system_prompt: Some(Some(format!("s{i}"))),
                        ..ConversationPatch::default()
                    }
                };
                let row = store
                    .update_conversation(&Scope::All, &id, patch)
                    .await
                    .unwrap()
                    .unwrap();
                let other = if title {
                    number(row.system_prompt.as_deref())
                } else {
                    number(Some(row.title.as_str()).filter(|t| !t.is_empty()))
                };
                assert!(
                    other >= seen,
                    "the other field went back from {seen} to {other}"
                );
                seen = other;
            }
        })
    };
    let (a, b) = (writer(true), writer(false));
    a.await.unwrap();
    b.await.unwrap();
    let c = store
        .conversation(&Scope::All, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.title, "t299");
    assert_eq!(c.system_prompt.as_deref(), Some("s299"));
}

/// Two stores on one database stand for two Hearth processes (or replicas)
/// sharing it.
async fn a_second_process_leaves_the_firsts_live_reply_alone_and_ends_a_dead_ones(db: Db) {
    // Long enough that a renewal (every third of it) is not missed on a loaded
    // machine: at 600 ms, with builds running beside the tests, it once lapsed.
    let lease = Duration::from_millis(1500);
    let first = db.open_with(lease, true).await;
    let (_, live) = common::streaming_reply(&*first, "o").await;

    // A second process starts on the same file (it sweeps at start): the first's
    // reply goes on streaming, and keeps going past its lease while the first
    // renews it.
    let second = db.open_with(lease, false).await;
    tokio::time::sleep(lease * 2).await;
    assert_eq!(second.recover_interrupted().await.unwrap(), 0);
    let m = second.message(&live.id).await.unwrap().unwrap();
    assert_eq!(m.finish_reason, None, "a live reply is not interrupted");
    first
        .update_reply(
            &live.id,
            &ReplyUpdate {
                content: "still going".into(),
                ..ReplyUpdate::default()
            },
        )
        .await
        .unwrap();

    // The first process dies (no close: its leases are simply no longer renewed).
    drop(first);
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert_eq!(second.recover_interrupted().await.unwrap(), 1);
    let m = second.message(&live.id).await.unwrap().unwrap();
    assert_eq!(m.finish_reason.as_deref(), Some("interrupted"));
    assert_eq!(m.content, "still going", "what it wrote is kept");
}

async fn closing_ends_only_this_stores_own_unfinished_replies(db: Db) {
    let one = db.open().await;
    let two = db.open().await;
    let c = one
        .create_conversation("o", NewConversation::default())
        .await
        .unwrap();
    let mine = one
        .append_message(&c.id, NewMessage::reply())
        .await
        .unwrap()
        .unwrap();
    let theirs = two
        .append_message(&c.id, NewMessage::reply())
        .await
        .unwrap()
        .unwrap();
    one.close().await;
    let m = |id: String| {
        let two = two.clone();
        async move { two.message(&id).await.unwrap().unwrap().finish_reason }
    };
    assert_eq!(m(mine.id).await.as_deref(), Some("interrupted"));
    assert_eq!(m(theirs.id).await, None);
}

async fn the_previous_releases_database_is_migrated_and_keeps_its_rows(db: Db) {
    // A database made by the release before owners and leases: its one migration.
    let raw = db.at_version(1).await;
    raw.exec(
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES ('c1', 'old', 1, 1)",
        &[],
    )
    .await;
    raw.exec(
        "INSERT INTO messages (id, conversation_id, seq, role, content, created_at) \
         VALUES ('m1', 'c1', 0, 'assistant', 'cut off', 1)",
        &[],
    )
    .await;
    raw.close().await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), db.current());
    let c = store
        .conversation(&Scope::Owner("anonymous"), "c1")
        .await
        .unwrap();
    assert_eq!(c.map(|c| c.title).as_deref(), Some("old"));
    // A reply the old release left streaming has no lease: its writer is gone.
    let m = store.message("m1").await.unwrap().unwrap();
    assert_eq!(m.finish_reason.as_deref(), Some("interrupted"));
    assert_eq!(m.content, "cut off");
}

async fn conversations_made_in_the_same_millisecond_still_list_newest_first(db: Db) {
    let store = db.open().await;
    let mut made = Vec::new();
    for _ in 0..20 {
        made.push(
            store
                .create_conversation("o", NewConversation::default())
                .await
                .unwrap()
                .id,
        );
    }
    made.reverse();
    let listed: Vec<String> = store
        .list_conversations(&Scope::All, &page())
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, made);
}

/// Two processes adding a key's tokens at once lose none; keys and periods are
/// counted apart, and a count outlives the store that wrote it.
async fn key_usage_adds_up_across_processes_by_key_and_period(db: Db) {
    let (one, two) = (db.open().await, db.open().await);
    const MAY: i64 = 1_777_593_600_000;
    assert_eq!(one.key_usage("alice", MAY).await.unwrap(), 0);
    let adds = (0..40).map(|i| {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tokio::spawn(async move { store.add_key_usage("alice", MAY, 25).await.unwrap() })
    });
    let mut totals: Vec<u64> = Vec::new();
    for add in adds {
        totals.push(add.await.unwrap());
    }
    // Each add saw a different total: none read and wrote back another's.
    totals.sort_unstable();
    totals.dedup();
    assert_eq!(totals.len(), 40);
    assert_eq!(totals.last(), Some(&1000));
    assert_eq!(two.add_key_usage("bob", MAY, 7).await.unwrap(), 7);
    assert_eq!(two.add_key_usage("alice", MAY + 1, 3).await.unwrap(), 3);
    drop((one, two));
    let again = db.open().await;
    assert_eq!(again.key_usage("alice", MAY).await.unwrap(), 1000);
    assert_eq!(again.key_usage("alice", MAY + 1).await.unwrap(), 3);
    assert_eq!(again.key_usage("bob", MAY).await.unwrap(), 7);
    assert_eq!(again.key_usage("carol", MAY).await.unwrap(), 0);
}
