//! Relaying: rewrite of `model`, pass-through of unknown fields, SSE as it arrives.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hearth_testkit::{Behaviour, FakeUpstream};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn chat_rewrites_model_and_passes_unknown_fields() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&upstream_model(
        "coder",
        &up.base_url(),
        "upstream_model = \"Qwen/Coder-7B\"\ntags = [\"code\"]\ncontext_length = 32768",
    ))
    .await;
    let body = json!({
        "model": "coder",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto", "response_format": {"type": "json_object"}, "seed": 7, "user": "u1",
        "logprobs": true, "vendor_field": {"x": 1}
    });
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the fake upstream."
    );
    let got = &up.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.body["model"], "Qwen/Coder-7B");
    for k in [
        "tools",
        "tool_choice",
        "response_format",
        "seed",
        "user",
        "logprobs",
        "vendor_field",
        "messages",
    ] {
        assert_eq!(got.body[k], body[k], "{k} must pass through untouched");
    }
}

#[tokio::test]
async fn completions_with_suffix_pass_through() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "")).await;
    let body = json!({"model": "m", "prompt": "def add(a, b):\n", "suffix": "\n    return c", "max_tokens": 16, "echo": false});
    let resp = gw.post("/v1/completions").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    let got = &up.received()[0];
    assert_eq!(got.path, "/v1/completions");
    assert_eq!(got.body["suffix"], "\n    return c");
    assert_eq!(got.body["prompt"], body["prompt"]);
}

#[tokio::test]
async fn streaming_relays_chunks_done_and_usage() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "")).await;
    let mut body = chat_body("m", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    let events = sse_payloads(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(
        usage["choices"],
        json!([]),
        "the usage chunk has empty choices"
    );
    assert_eq!(usage["usage"]["total_tokens"], 9);
    let text: String = events[..events.len() - 2]
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "Hello from the fake upstream.");
}

#[tokio::test]
async fn stream_is_not_buffered() {
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::slow(
        "one two three four five",
        5,
        Duration::from_millis(300),
    ));
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "")).await;
    let start = Instant::now();
    let resp = gw.chat("m", true).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    let mut rest = 0;
    while let Some(c) = body.next().await {
        rest += c.unwrap().len();
    }
    let total = start.elapsed();
    assert!(rest > 0);
    // Five chunks 300 ms apart: the first must arrive well before the last.
    assert!(
        first_at < Duration::from_millis(900),
        "first chunk after {first_at:?}"
    );
    assert!(
        total >= Duration::from_millis(1400),
        "whole stream took {total:?}"
    );
}

#[tokio::test]
async fn upstream_api_key_comes_from_api_key_env() {
    let up = FakeUpstream::start().await.unwrap();
    let env = hearth_config::MapEnv::new([("CODER_KEY", "sk-upstream-secret")]);
    let gw = Gateway::start_with_env(
        &upstream_model("m", &up.base_url(), "api_key_env = \"CODER_KEY\""),
        env,
    )
    .await;
    let resp = gw.chat("m", false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.received()[0].authorization.as_deref(),
        Some("Bearer sk-upstream-secret")
    );
}

#[tokio::test]
async fn models_list_and_get() {
    let up = FakeUpstream::start().await.unwrap();
    let toml = format!(
        "{}{}",
        upstream_model(
            "a",
            &up.base_url(),
            "tags = [\"general\"]\ncontext_length = 4096\naliases = [\"alpha\"]\nvision = true"
        ),
        upstream_model("b", &up.base_url(), "")
    );
    let gw = Gateway::start(&toml).await;
    let v = gw.get_json("/v1/models").await;
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "a");
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["status"], "ready");
    assert_eq!(data[0]["tags"], json!(["general"]));
    assert_eq!(data[0]["context_length"], 4096);
    // A model marked `vision = true` says so; the others keep the listing's shape.
    assert_eq!(data[0]["vision"], true);
    assert!(data[1].get("vision").is_none(), "{}", data[1]);
    let one = gw.get_json("/v1/models/b").await;
    assert_eq!(one["id"], "b");
    assert_eq!(gw.get_json("/v1/models/a").await["vision"], true);
    let resp = gw.get("/v1/models/nope").send().await.unwrap();
    let (status, e) = error_of(resp).await;
    assert_eq!(status, 404);
    assert_eq!(e["code"], "model_not_found");
    // An alias reaches its model.
    let resp = gw.chat("alpha", false).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn missing_model_uses_default_model() {
    let up_a = FakeUpstream::start().await.unwrap();
    let up_b = FakeUpstream::start().await.unwrap();
    let toml = format!(
        "default_model = \"b\"\n{}{}",
        upstream_model("a", &up_a.base_url(), ""),
        upstream_model("b", &up_b.base_url(), "")
    );
    let gw = Gateway::start(&toml).await;
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!((up_a.hits(), up_b.hits()), (0, 1));
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_streams_finish() {
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::slow("a b c d", 4, Duration::from_millis(250)));
    let mut gw = Gateway::start(&upstream_model("m", &up.base_url(), "")).await;
    let resp = gw.chat("m", true).await;
    assert_eq!(resp.status(), 200);
    gw.shutdown();
    let events = sse_payloads(resp).await;
    assert_eq!(
        events.last().unwrap(),
        "[DONE]",
        "in-flight stream finished: {events:?}"
    );
    let task = gw.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(gw.url("/health")).await.is_err(),
        "no longer accepting"
    );
}
