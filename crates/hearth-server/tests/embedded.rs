//! The embedded engine behind the real HTTP stack: `/ready`, `/v1/models` and a chat
//! request while the real SmolLM2 file is loading, then after (the model comes from
//! `hearth_testkit::test_model_path`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

#[path = "openai/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::Gateway;
use hearth_config::MapEnv;
use serde_json::{Value, json};

/// One embedded model on the real SmolLM2 file; `extra` adds keys to its table.
fn embedded_toml(extra: &str) -> String {
    format!(
        "[[models]]\nname = \"smollm2-135m\"\nbackend = \"embedded\"\npath = \"{}\"\ncontext = 512\nparallel = 1\n{extra}",
        hearth_testkit::test_model_path().display()
    )
}

/// The server over an embedded engine whose loading waits for the returned gate,
/// so the test sees it loading for as long as it looks (loading is otherwise
/// quick enough to race a test's first request).
async fn serve(toml: &str) -> (Gateway, hearth_engine::LoadGate) {
    let gate = std::sync::Mutex::new(None);
    let gw = Gateway::start_with_backends(toml, MapEnv::default(), |m| {
        let (engine, g) = hearth_engine::EmbeddedBackend::start_gated(m).unwrap();
        *gate.lock().unwrap() = Some(g);
        engine
    })
    .await;
    let gate = gate.into_inner().unwrap().unwrap();
    (gw, gate)
}

async fn say_hi(gw: &Gateway) -> reqwest::Response {
    gw.post("/v1/chat/completions")
        .json(&json!({"model": "smollm2-135m", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Say hi."}]}))
        .send()
        .await
        .unwrap()
}

/// `GET path`: status and JSON body.
async fn get(gw: &Gateway, path: &str) -> (u16, Value) {
    let r = gw.get(path).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_model_loads_then_200() {
    let (gw, gate) = serve(&embedded_toml("")).await;
    let (code, body) = get(&gw, "/ready").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["models"][0]["id"], "smollm2-135m", "{body}");
    assert_eq!(body["models"][0]["status"], "loading", "{body}");
    assert_eq!(body["models"][0]["backend"], "embedded", "{body}");
    let (code, model) = get(&gw, "/v1/models/smollm2-135m").await;
    assert_eq!(code, 200, "{model}");
    assert_eq!(model["status"], "loading", "{model}");
    // /health is liveness: 200 while loading.
    assert_eq!(get(&gw, "/health").await.0, 200);

    gate.open();
    let start = Instant::now();
    let body = loop {
        let (code, body) = get(&gw, "/ready").await;
        if code == 200 {
            break body;
        }
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["models"][0]["status"], "loading", "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the model did not load in 120 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["models"][0]["status"], "ready", "{body}");
    let (_, model) = get(&gw, "/v1/models/smollm2-135m").await;
    assert_eq!(model["status"], "ready", "{model}");
    assert_eq!(model["context_length"], 512, "{model}");

    // And it serves.
    let r = say_hi(&gw).await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion", "{reply}");
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_while_loading_gets_503_with_retry_after() {
    let (gw, _gate) = serve(&embedded_toml("retries = 0\n")).await;
    let r = say_hi(&gw).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("loading"), "{body}");
}
