//! The embedded engine behind the real HTTP stack: `/ready`, `/v1/models` and a chat
//! request while the real SmolLM2 file is loading, then after (the model comes from
//! `hearth_testkit::test_model_path`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_config::MapEnv;
use hearth_router::{Backend, Router};
use serde_json::{Value, json};

/// One embedded model on the real SmolLM2 file; `extra` adds keys to its table.
fn embedded_toml(extra: &str) -> String {
    format!(
        "[[models]]\nname = \"smollm2-135m\"\nbackend = \"embedded\"\npath = \"{}\"\ncontext = 512\nparallel = 1\n{extra}",
        hearth_testkit::test_model_path().display()
    )
}

async fn say_hi(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "smollm2-135m", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Say hi."}]}))
        .send()
        .await
        .unwrap()
}

/// Serves `toml`'s models, all embedded, on a loopback port. Every engine starts
/// loading before the server answers its first request, as in `hearth serve`.
async fn serve(toml: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = hearth_config::load_str(toml, "test.toml", &MapEnv::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let config = Arc::new(config);
    let backends = config
        .models
        .iter()
        .map(|m| {
            let b: Arc<dyn Backend> = hearth_engine::EmbeddedBackend::start(m).unwrap();
            (m.clone(), b)
        })
        .collect();
    let router = Arc::new(Router::new(
        backends,
        config.default_model.as_deref(),
        config.health.clone(),
    ));
    let state = hearth_http::AppState::new(config, router);
    let app = hearth_http::app(state, axum::Router::new(), axum::Router::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hearth_http::serve(
        listener,
        app,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    (base, stop)
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_model_loads_then_200() {
    let (base, _stop) = serve(&embedded_toml("")).await;
    let client = reqwest::Client::new();

    // Loading a GGUF takes far longer (tens of ms at the least) than a loopback
    // request to a server that is already listening.
    let (code, body) = get(&client, &format!("{base}/ready")).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["models"][0]["id"], "smollm2-135m", "{body}");
    assert_eq!(body["models"][0]["status"], "loading", "{body}");
    assert_eq!(body["models"][0]["backend"], "embedded", "{body}");
    let (code, model) = get(&client, &format!("{base}/v1/models/smollm2-135m")).await;
    assert_eq!(code, 200, "{model}");
    assert_eq!(model["status"], "loading", "{model}");
    // /health is liveness: 200 while loading.
    assert_eq!(get(&client, &format!("{base}/health")).await.0, 200);

    let start = Instant::now();
    let body = loop {
        let (code, body) = get(&client, &format!("{base}/ready")).await;
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
    let (_, model) = get(&client, &format!("{base}/v1/models/smollm2-135m")).await;
    assert_eq!(model["status"], "ready", "{model}");
    assert_eq!(model["context_length"], 512, "{model}");

    // And it serves.
    let r = say_hi(&client, &base).await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion", "{reply}");
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_while_loading_gets_503_with_retry_after() {
    let (base, _stop) = serve(&embedded_toml("retries = 0\n")).await;
    let r = say_hi(&reqwest::Client::new(), &base).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("loading"), "{body}");
}
