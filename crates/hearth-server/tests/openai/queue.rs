//! Per-model concurrency, FIFO order, a bounded queue, and clients that leave.

use std::time::Duration;

use futures::StreamExt;
use hearth_testkit::{Behaviour, FakeUpstream};

use crate::harness::*;

/// The model's queue: (in flight, waiting).
fn load(gw: &Gateway) -> (usize, usize) {
    let m = gw.router.iter().next().unwrap();
    (m.in_flight(), m.queue_depth())
}

/// Waits (5 s at most) until the model's queue is `want`.
async fn until_load(gw: &Gateway, want: (usize, usize)) {
    assert!(
        eventually(Duration::from_secs(5), || load(gw) == want).await,
        "the queue never became {want:?}: {:?}",
        load(gw)
    );
}

#[tokio::test]
async fn max_concurrency_one_is_sequential_in_arrival_order() {
    let up = FakeUpstream::start().await.unwrap();
    // The first holds the one slot until the others have all queued behind it.
    up.push(Behaviour::slow("x", 1, Duration::from_millis(800)));
    up.set_default(Behaviour::slow("x", 1, Duration::from_millis(20)));
    let gw = std::sync::Arc::new(
        Gateway::start(&upstream_model("m", &up.base_url(), "max_concurrency = 1")).await,
    );
    let mut tasks = Vec::new();
    for i in 0..4 {
        let client = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = chat_body("m", false);
            body["user"] = serde_json::json!(format!("req-{i}"));
            let r = client
                .post("/v1/chat/completions")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }));
        // Each in the queue before the next is sent: the arrival order is known.
        until_load(&gw, (1, i)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(up.max_active(), 1, "never two at once upstream");
    let order: Vec<String> = up
        .received()
        .iter()
        .map(|r| r.body["user"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["req-0", "req-1", "req-2", "req-3"]);
}

#[tokio::test]
async fn full_queue_is_429_with_retry_after() {
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::slow("x", 1, Duration::from_millis(1000)));
    let gw = std::sync::Arc::new(
        Gateway::start(&upstream_model(
            "m",
            &up.base_url(),
            "max_concurrency = 1\nmax_queue = 1",
        ))
        .await,
    );
    let a = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat("m", false).await.status() })
    };
    until_load(&gw, (1, 0)).await;
    let b = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat("m", false).await.status() })
    };
    until_load(&gw, (1, 1)).await;
    let c = gw.chat("m", false).await;
    assert_eq!(c.status(), 429);
    assert!(c.headers().get("retry-after").is_some());
    let (_, e) = error_of(c).await;
    assert_eq!(e["code"], "queue_full");
    assert_eq!(a.await.unwrap(), 200);
    assert_eq!(b.await.unwrap(), 200);
}

#[tokio::test]
async fn client_that_leaves_while_queued_never_reaches_upstream() {
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::slow("x", 1, Duration::from_millis(700)));
    let gw = std::sync::Arc::new(
        Gateway::start(&upstream_model("m", &up.base_url(), "max_concurrency = 1")).await,
    );
    let first = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat("m", false).await.status() })
    };
    until_load(&gw, (1, 0)).await;
    // A second client queues behind it, then gives up.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut body = chat_body("m", false);
    body["user"] = serde_json::json!("leaver");
    let gone = client
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await;
    assert!(gone.is_err(), "client timed out while queued");
    until_load(&gw, (1, 0)).await; // the leaver left the queue
    assert_eq!(first.await.unwrap(), 200);
    // The next request is served at once, and the leaver never reached the upstream.
    let r = gw.chat("m", false).await;
    assert_eq!(r.status(), 200);
    assert!(up.received().iter().all(|r| r.body["user"] != "leaver"));
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn client_that_leaves_mid_stream_closes_the_upstream_connection() {
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::slow(
        "a b c d e f g h i j",
        10,
        Duration::from_millis(100),
    ));
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "max_concurrency = 1")).await;
    let resp = gw.chat("m", true).await;
    let mut s = resp.bytes_stream();
    s.next().await.unwrap().unwrap();
    drop(s);
    assert!(
        eventually(Duration::from_secs(3), || up.cancelled() == 1).await,
        "upstream saw the cancellation"
    );
    assert!(eventually(Duration::from_secs(2), || up.active() == 0).await);
    // The slot was freed: the next request is served.
    let r = gw.chat("m", false).await;
    assert_eq!(r.status(), 200);
}
