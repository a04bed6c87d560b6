//! [`PgChannel`] on a real private Postgres: what one store (replica) publishes,
//! every listener on the same database gets, in order; another channel or another
//! database gets nothing; a payload past the limit is an error, not a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use hearth_store::{MAX_PAYLOAD, PgChannel, PgOptions, PgStore};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_hear_each_other_in_order() {
    let Some(server) = hearth_testkit::postgres::shared_for("notify") else {
        return;
    };
    let db = server.database();
    let other_db = server.database();
    let (a, b) = (store(&db.url()).await, store(&db.url()).await);
    let elsewhere = store(&other_db.url()).await;

    let mut heard_by_b = PgChannel::new(&b, "hearth_test").listen().await.unwrap();
    let mut heard_by_a = PgChannel::new(&a, "hearth_test").listen().await.unwrap();
    let mut other_channel = PgChannel::new(&b, "hearth_other").listen().await.unwrap();
    let mut other_database = PgChannel::new(&elsewhere, "hearth_test")
        .listen()
        .await
        .unwrap();

    let send = PgChannel::new(&a, "hearth_test");
    for i in 0..50 {
        send.publish(&format!("m{i} é \"quoted\"")).await.unwrap();
    }
    for listener in [&mut heard_by_b, &mut heard_by_a] {
        for i in 0..50 {
            let got = tokio::time::timeout(Duration::from_secs(10), listener.next())
                .await
                .expect("a notification within 10 s")
                .unwrap();
            assert_eq!(got, format!("m{i} é \"quoted\""));
        }
    }
    for quiet in [&mut other_channel, &mut other_database] {
        assert!(
            tokio::time::timeout(Duration::from_millis(300), quiet.next())
                .await
                .is_err(),
            "a listener of another channel or database heard it"
        );
    }

    let too_long = "x".repeat(MAX_PAYLOAD + 1);
    assert!(send.publish(&too_long).await.is_err());
    send.publish(&"y".repeat(MAX_PAYLOAD)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), heard_by_b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), MAX_PAYLOAD);
}
