//! Bad input: every error is OpenAI-shaped with the right status, and names the param.

use serde_json::json;

use crate::harness::*;
use hearth_testkit::FakeUpstream;

async fn gateway(extra: &str) -> (FakeUpstream, Gateway) {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "{extra}\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    (up, gw)
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (up, gw) = gateway("").await;
    let resp = gw
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body("{\"model\": \"m\", \"messages\": [")
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("malformed JSON"));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn invalid_fields_name_their_param() {
    let (up, gw) = gateway("").await;
    let cases = [
        (json!({"model": "m"}), "messages"),
        (json!({"model": "m", "messages": "hi"}), "messages"),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3.5}),
            "temperature",
        ),
        (
            json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000_000}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}),
            "stop",
        ),
        (
            json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (json!([1, 2]), ""),
    ];
    for (body, param) in cases {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, e) = error_of(resp).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(e["param"].as_str().unwrap_or(""), param, "{body}: {e}");
    }
    let resp = gw
        .post("/v1/completions")
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(resp).await;
    assert_eq!((status, e["param"].as_str().unwrap()), (400, "prompt"));
    assert_eq!(up.hits(), 0, "nothing invalid reaches the upstream");
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let (_up, gw) = gateway("").await;
    let resp = gw.chat("gpt-17", false).await;
    let (status, e) = error_of(resp).await;
    assert_eq!(status, 404);
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (up, gw) = gateway("[limits]\nmax_body_bytes = 2048").await;
    let big = "x".repeat(4096);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": big}]});
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(resp).await;
    assert_eq!(status, 413);
    // Without a Content-Length (chunked), the limit still holds.
    let stream = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let resp = gw
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The rest of that body is still on the wire: the client must not reuse the
    // connection for its next request.
    assert_eq!(resp.headers()["connection"], "close");
    assert_eq!(up.hits(), 0);
    // A chunked body under the limit, in several pieces, is read whole.
    let pieces = [
        r#"{"model": "m", "#,
        r#""messages": [{"role": "user", "#,
        r#""content": "in pieces"}]}"#,
    ];
    let stream =
        futures::stream::iter(pieces.map(|p| Ok::<_, std::io::Error>(p.as_bytes().to_vec())));
    let resp = gw
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.received()[0].body["messages"][0]["content"], "in pieces");
}

#[tokio::test]
async fn message_count_and_length_limits() {
    let (_up, gw) = gateway("[limits]\nmax_messages = 2\nmax_message_bytes = 10").await;
    let many = json!({"model": "m", "messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]});
    let (status, e) = error_of(
        gw.post("/v1/chat/completions")
            .json(&many)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, e["param"].as_str().unwrap()), (400, "messages"));
    let long = json!({"model": "m", "messages": [{"role": "user", "content": "this is too long"}]});
    let (status, e) = error_of(
        gw.post("/v1/chat/completions")
            .json(&long)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, e["param"].as_str().unwrap()),
        (400, "messages[0].content")
    );
}

#[tokio::test]
async fn wrong_content_type_unknown_route_and_method() {
    let (_up, gw) = gateway("").await;
    let resp = gw
        .post("/v1/chat/completions")
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await.0, 415);
    let resp = gw.get("/v1/nothing-here").send().await.unwrap();
    assert_eq!(error_of(resp).await.0, 404);
    let resp = gw.get("/v1/chat/completions").send().await.unwrap();
    assert_eq!(error_of(resp).await.0, 405);
}

/// A backend whose every call panics: a bug inside one request.
struct Panics;

#[async_trait::async_trait]
impl hearth_router::Backend for Panics {
    fn kind(&self) -> &'static str {
        "upstream"
    }

    async fn call(
        &self,
        _: &hearth_router::Request,
    ) -> Result<hearth_router::EventStream, hearth_router::BackendError> {
        panic!("a bug in a backend");
    }
}

#[tokio::test]
async fn a_panic_in_one_request_is_a_500_for_it_alone() {
    let up = FakeUpstream::start().await.unwrap();
    let toml = format!(
        "{}{}",
        upstream_model("boom", "http://127.0.0.1:9/v1", ""),
        upstream_model("m", &up.base_url(), "")
    );
    let gw = Gateway::start_with_backends(&toml, hearth_config::MapEnv::default(), |m| {
        if m.name == "boom" {
            std::sync::Arc::new(Panics)
        } else {
            std::sync::Arc::new(hearth_upstream::UpstreamBackend::new(m, None).unwrap())
                as std::sync::Arc<dyn hearth_router::Backend>
        }
    })
    .await;
    // The hot path (no Origin) and the router (a browser's Origin) alike.
    for origin in [None, Some("http://localhost:5173")] {
        let mut req = gw
            .post("/v1/chat/completions")
            .json(&chat_body("boom", false));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let (status, e) = error_of(req.send().await.unwrap()).await;
        assert_eq!(status, 500, "{origin:?}");
        assert_eq!(
            e["message"], "internal error; the server log has the detail",
            "{origin:?}"
        );
    }
    assert_eq!(gw.get("/health").send().await.unwrap().status(), 200);
    assert_eq!(gw.chat("m", false).await.status(), 200);
}

#[tokio::test]
async fn a_hostile_retry_after_is_read_as_a_long_wait_not_a_crash() {
    // `Retry-After: 1e20` used to panic in the upstream client (and, in the release
    // build, take the process down).
    let up = FakeUpstream::start().await.unwrap();
    for value in ["1e20", "inf", "NaN", "-5", "99999999999999999999999"] {
        up.push(hearth_testkit::Behaviour::RawRetryAfter {
            status: 429,
            value: value.to_owned(),
        });
    }
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "retries = 0")).await;
    for value in ["1e20", "inf", "NaN", "-5", "99999999999999999999999"] {
        let resp = gw.chat("m", false).await;
        let retry_after: Option<u64> = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let (status, _) = error_of(resp).await;
        assert_eq!(status, 429, "{value}");
        let want = if matches!(value, "NaN" | "-5") {
            1
        } else {
            86_400
        };
        assert_eq!(retry_after, Some(want), "{value}");
    }
    assert_eq!(gw.get("/health").send().await.unwrap().status(), 200);
    assert_eq!(gw.chat("m", false).await.status(), 200);
}

/// An upstream that sends without end (a runaway answer, an event that never
/// closes): the client gets a 502 naming the limit and its config key, Hearth
/// closes the upstream's connection, and the next request is served.
#[tokio::test]
async fn an_endless_upstream_answer_is_a_502_naming_the_limit() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&upstream_model(
        "m",
        &up.base_url(),
        "max_answer_bytes = 65536\nmax_event_bytes = 4096",
    ))
    .await;
    for (stream, key) in [(false, "max_answer_bytes"), (true, "max_event_bytes")] {
        up.push(hearth_testkit::Behaviour::Endless {
            status: 200,
            event_stream: stream,
        });
        let resp = gw
            .post("/v1/chat/completions")
            .json(&chat_body("m", stream))
            .send()
            .await
            .unwrap();
        let (status, e) = error_of(resp).await;
        assert_eq!(status, 502, "stream {stream}: {e}");
        assert_eq!(e["code"], "upstream_answer_too_large", "{e}");
        assert!(e["message"].as_str().unwrap().contains(key), "{e}");
    }
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat_body("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while up.cancelled() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(up.cancelled(), 2, "both endless answers were cut by Hearth");
}
