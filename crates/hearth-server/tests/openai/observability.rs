//! Request ids and metrics.

use hearth_testkit::FakeUpstream;

use crate::harness::*;

#[tokio::test]
async fn request_id_is_returned_and_accepted() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "")).await;
    let r = gw.get("/health").send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let r = gw.get("/health").send().await.unwrap();
    assert_ne!(
        r.headers()["x-request-id"].to_str().unwrap(),
        id,
        "ids are unique"
    );
    let r = gw
        .get("/v1/models")
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    // A hostile id is replaced, not echoed.
    let r = gw
        .get("/v1/models")
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_ne!(
        r.headers()["x-request-id"].to_str().unwrap(),
        "x".repeat(500)
    );
}

#[tokio::test]
async fn metrics_expose_requests_latency_ttft_tokens_queue() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&upstream_model("metered", &up.base_url(), "")).await;
    let r = gw.chat("metered", false).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = gw.chat("nope", false).await;
    assert_eq!(r.status(), 404);
    let text = gw.metrics().await;
    for needle in [
        "hearth_requests_total{model=\"metered\",status=\"200\"}",
        "hearth_request_duration_seconds_bucket{model=\"metered\"",
        "hearth_time_to_first_token_seconds_bucket{model=\"metered\",backend=\"upstream\"",
        "hearth_tokens_total{model=\"metered\",direction=\"in\"} 5",
        "hearth_tokens_total{model=\"metered\",direction=\"out\"} 4",
        "hearth_in_flight{model=\"metered\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}
