//! Retries with backoff, fallbacks, no retry after streaming began, timeouts, health.

use std::time::{Duration, Instant};

use hearth_testkit::{Behaviour, FakeUpstream};

use crate::harness::*;

#[tokio::test]
async fn retries_503_and_429_then_succeeds() {
    let up = FakeUpstream::start().await.unwrap();
    up.push(Behaviour::status(503));
    up.push(Behaviour::status(429));
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "retries = 2")).await;
    let r = gw.chat("m", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn a_request_the_upstream_may_have_run_is_not_sent_again_unless_allowed() {
    // The upstream read the request and hung up, or a proxy in front of it said 502
    // or 504: it may have run (and billed) it. Not retried, nor sent to a fallback.
    for (behaviour, status) in [
        (Behaviour::Hangup, 503),
        (Behaviour::status(502), 503),
        (Behaviour::status(504), 504),
    ] {
        let up = FakeUpstream::start().await.unwrap();
        up.push(behaviour.clone());
        let fallback = FakeUpstream::start().await.unwrap();
        let toml = format!(
            "{}{}",
            upstream_model("m", &up.base_url(), "retries = 2\nfallbacks = [\"f\"]"),
            upstream_model("f", &fallback.base_url(), ""),
        );
        let gw = Gateway::start(&toml).await;
        let (got, _) = error_of(gw.chat("m", false).await).await;
        assert_eq!(got, status, "{behaviour:?}");
        assert_eq!((up.hits(), fallback.hits()), (1, 0), "{behaviour:?}");
    }
    // With `retry_unanswered = true` (a self-hosted server) it is retried.
    let up = FakeUpstream::start().await.unwrap();
    up.push(Behaviour::Hangup);
    up.push(Behaviour::status(502));
    let gw = Gateway::start(&upstream_model(
        "m",
        &up.base_url(),
        "retries = 2\nretry_unanswered = true",
    ))
    .await;
    assert_eq!(gw.chat("m", false).await.status(), 200);
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn retry_honours_retry_after() {
    let up = FakeUpstream::start().await.unwrap();
    up.push(Behaviour::Status {
        status: 429,
        retry_after: Some(1),
    });
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "retries = 1")).await;
    let start = Instant::now();
    let r = gw.chat("m", true).await;
    assert_eq!(r.status(), 200);
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let up = FakeUpstream::start().await.unwrap();
    up.push(Behaviour::status(400));
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "retries = 3")).await;
    let r = gw.chat("m", false).await;
    let (status, e) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("fake upstream says 400")
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn retries_then_falls_back_in_order() {
    let primary = FakeUpstream::start().await.unwrap();
    primary.set_default(Behaviour::status(503));
    let second = FakeUpstream::start().await.unwrap();
    second.set_default(Behaviour::status(429));
    let third = FakeUpstream::start().await.unwrap();
    third.set_default(Behaviour::ok("from the third"));
    let toml = format!(
        "{}{}{}",
        upstream_model(
            "p",
            &primary.base_url(),
            "retries = 1\nfallbacks = [\"s\", \"t\"]"
        ),
        upstream_model("s", &second.base_url(), "retries = 0"),
        upstream_model("t", &third.base_url(), "retries = 0"),
    );
    let gw = Gateway::start(&toml).await;
    let r = gw.chat("p", false).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "from the third");
    assert_eq!((primary.hits(), second.hits(), third.hits()), (2, 1, 1));
    assert_eq!(
        third.received()[0].body["model"],
        "t",
        "a fallback gets its own upstream model name"
    );
}

#[tokio::test]
async fn all_backends_failing_is_503_with_retry_after() {
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::status(503));
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "retries = 1")).await;
    let r = gw.chat("m", false).await;
    assert!(r.headers().get("retry-after").is_some());
    let (status, e) = error_of(r).await;
    assert_eq!(status, 503);
    assert_eq!(e["code"], "backend_unavailable");
}

#[tokio::test]
async fn connect_error_falls_back() {
    // A port nobody listens on, held so no other test's server takes it.
    let closed = hearth_testkit::ClosedPort::new();
    let dead = closed.addr();
    let good = FakeUpstream::start().await.unwrap();
    let toml = format!(
        "{}{}",
        upstream_model(
            "p",
            &format!("http://{dead}/v1"),
            "retries = 1\nfallbacks = [\"g\"]"
        ),
        upstream_model("g", &good.base_url(), ""),
    );
    let gw = Gateway::start(&toml).await;
    let r = gw.chat("p", true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sse_payloads(r).await.last().unwrap(), "[DONE]");
    assert_eq!(good.hits(), 1);
}

#[tokio::test]
async fn no_retry_once_streaming_began() {
    let up = FakeUpstream::start().await.unwrap();
    up.push(Behaviour::DropMidStream { after: 2 });
    let fallback = FakeUpstream::start().await.unwrap();
    let toml = format!(
        "{}{}",
        upstream_model("m", &up.base_url(), "retries = 3\nfallbacks = [\"f\"]"),
        upstream_model("f", &fallback.base_url(), ""),
    );
    let gw = Gateway::start(&toml).await;
    let r = gw.chat("m", true).await;
    assert_eq!(r.status(), 200);
    let events = sse_payloads(r).await;
    assert_eq!(
        events.len(),
        3,
        "two chunks then one error event: {events:?}"
    );
    let err: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(err["error"]["message"].is_string(), "{err}");
    assert!(!events.contains(&"[DONE]".to_owned()));
    assert_eq!(up.hits(), 1, "never retried after the first byte");
    assert_eq!(fallback.hits(), 0);
}

#[tokio::test]
async fn stalled_upstream_times_out_with_504() {
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::Stall);
    let gw = Gateway::start(&upstream_model(
        "m",
        &up.base_url(),
        "retries = 0\nfirst_byte_timeout_secs = 1",
    ))
    .await;
    let start = Instant::now();
    let r = gw.chat("m", false).await;
    let (status, _) = error_of(r).await;
    assert_eq!(status, 504);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn health_probes_route_around_a_dead_upstream_and_back() {
    let sick = FakeUpstream::start().await.unwrap();
    let good = FakeUpstream::start().await.unwrap();
    let toml = format!(
        "[health]\nprobe_interval_secs = 1\nfailure_threshold = 2\nprobe_timeout_secs = 1\n{}{}",
        upstream_model("m", &sick.base_url(), "fallbacks = [\"g\"]"),
        upstream_model("g", &good.base_url(), ""),
    );
    let gw = Gateway::start(&toml).await;
    sick.set_probe_status(503);
    let unavailable = gw.wait_first_model_status("unavailable").await;
    assert!(unavailable, "probes marked the upstream unavailable");
    let r = gw.chat("m", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sick.hits(), 0, "routed around the unavailable upstream");
    assert_eq!(good.hits(), 1);
    sick.set_probe_status(200);
    let back = gw.wait_first_model_status("ready").await;
    assert!(back, "a successful probe brought it back");
    let r = gw.chat("m", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sick.hits(), 1);
}

#[tokio::test]
async fn ready_is_503_when_no_model_is_ready() {
    let sick = FakeUpstream::start().await.unwrap();
    sick.set_probe_status(500);
    let toml = format!(
        "[health]\nprobe_interval_secs = 1\nfailure_threshold = 1\n{}",
        upstream_model("m", &sick.base_url(), "")
    );
    let gw = Gateway::start(&toml).await;
    let mut saw = false;
    for _ in 0..40 {
        let r = gw.get("/ready").send().await.unwrap();
        if r.status() == 503 {
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["models"][0]["status"], "unavailable");
            saw = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw);
    assert_eq!(
        gw.get("/health").send().await.unwrap().status(),
        200,
        "liveness stays 200"
    );
}
