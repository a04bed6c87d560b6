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

/// Waits (at most 120 s) for `/ready` to answer 200.
async fn wait_ready(gw: &Gateway) {
    let start = Instant::now();
    while get(gw, "/ready").await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(120), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    // Its tools are dropped (the embedded engine's default): no tool format.
    assert!(model.get("tool_format").is_none(), "{model}");

    // And it serves.
    let r = say_hi(&gw).await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion", "{reply}");
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
}

/// A model that takes tools says how it is asked for calls: SmolLM2's chat
/// template has no tool syntax of its own, so llama.cpp's generic JSON format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_takes_tools_says_its_tool_format() {
    let (gw, gate) = serve(&embedded_toml("tools = \"pass\"")).await;
    gate.open();
    wait_ready(&gw).await;
    let (_, models) = get(&gw, "/v1/models").await;
    assert_eq!(models["data"][0]["tool_format"], "generic", "{models}");
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

/// A file server on 127.0.0.1:0 serving `body` at `/files/model.gguf` (404
/// elsewhere) once `release` is notified.
async fn file_server(body: Vec<u8>, release: std::sync::Arc<tokio::sync::Notify>) -> String {
    use axum::routing::get;
    let body = bytes::Bytes::from(body);
    let app = axum::Router::new().route(
        "/files/model.gguf",
        get(move || {
            let (body, release) = (body.clone(), release.clone());
            async move {
                release.notified().await;
                body
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// `url` instead of `path`: the server starts at once, the model is `loading` and
/// requests get a 503 saying it is being downloaded; once the file has come (into
/// `data_dir/models`, under the URL's name) the engine loads it and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_named_by_url_is_downloaded_at_start_then_served() {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let model = std::fs::read(hearth_testkit::test_model_path()).unwrap();
    let base = file_server(model, release.clone()).await;
    let gw = harness::Gateway::start(&format!(
        "[[models]]\nname = \"smollm2-135m\"\nbackend = \"embedded\"\nurl = \"{base}/files/model.gguf\"\ncontext = 512\nparallel = 1\n"
    ))
    .await;
    let (code, body) = get(&gw, "/ready").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["models"][0]["status"], "loading", "{body}");
    let r = say_hi(&gw).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("is still loading (downloading: ")
            || message.contains("is still loading (starting the download)"),
        "{body}"
    );

    release.notify_one();
    let start = Instant::now();
    while get(&gw, "/ready").await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not ready 120 s after the download was let through: {}",
            get(&gw, "/ready").await.1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = say_hi(&gw).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A download that fails leaves the server up, the model `unavailable`, and a
/// request for it told why and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_download_fails_is_unavailable_and_says_why() {
    let base = file_server(Vec::new(), std::sync::Arc::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status");
    let gw = harness::Gateway::start(&format!(
        "[server]\nstatus_file = {:?}\n[[models]]\nname = \"smollm2-135m\"\nbackend = \"embedded\"\nurl = \"{base}/files/missing.gguf\"\n",
        status_file.display().to_string()
    ))
    .await;
    let start = Instant::now();
    while get(&gw, "/ready").await.1["models"][0]["status"] != "unavailable" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            get(&gw, "/ready").await.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&gw, "/health").await.0, 200);
    let r = say_hi(&gw).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the download failed: ")
            && message.contains("missing.gguf answered HTTP 404"),
        "{body}"
    );
    // The login banner's file says it too, with what to do.
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&status_file).unwrap_or_default();
        if text.contains("smollm2-135m  unavailable") {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("missing.gguf answered HTTP 404"), "{text}");
    assert!(text.contains("next: fix what it says"), "{text}");
}

/// At the context limit over HTTP (issue 20): a prompt that can never fit is a 400
/// naming the numbers, while a streamed reply beside it runs to the context and
/// ends with `finish_reason: "length"` and `[DONE]`, not a cut stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_context_limit_a_400_up_front_and_length_at_the_end() {
    let toml = format!(
        "[[models]]\nname = \"smollm2-135m\"\nbackend = \"embedded\"\npath = \"{}\"\ncontext = 128\nparallel = 2\n",
        hearth_testkit::test_model_path().display()
    );
    let (gw, gate) = serve(&toml).await;
    gate.open();
    wait_ready(&gw).await;
    // A count goes on without ending by itself (its end tokens are banned), so
    // only the context stops it.
    let streamed = gw
        .post("/v1/completions")
        .json(
            &json!({"model": "smollm2-135m", "prompt": "1, 2, 3, 4, 5,", "temperature": 0,
            "stream": true, "logit_bias": {"0": -100, "1": -100, "2": -100}}),
        )
        .send();
    let too_long: Vec<String> = (0..100).map(|k| k.to_string()).collect();
    let refused = gw
        .post("/v1/completions")
        .json(&json!({"model": "smollm2-135m", "prompt": too_long.join(", "), "max_tokens": 8}))
        .send();
    let (streamed, refused) = tokio::join!(streamed, refused);

    let refused = refused.unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    assert_eq!(body["error"]["param"], "prompt", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("maximum context length is 128 tokens")
            && message.contains("8 for the completion"),
        "{message}"
    );

    let streamed = streamed.unwrap();
    assert_eq!(streamed.status().as_u16(), 200);
    let text = tokio::time::timeout(Duration::from_secs(120), streamed.text())
        .await
        .expect("the stream stalled")
        .unwrap();
    assert!(text.contains(r#""finish_reason":"length""#), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

/// `/infill` on a model without fill-in-the-middle tokens (SmolLM2): a 400 that
/// says so and names `input_suffix`, not a completion that ignores the suffix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infill_on_a_model_without_fim_tokens_is_a_400() {
    let (gw, gate) = serve(&embedded_toml("")).await;
    gate.open();
    wait_ready(&gw).await;
    let r = gw
        .post("/infill")
        .json(&json!({"input_prefix": "def f(", "input_suffix": ")\n", "n_predict": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "input_suffix", "{v}");
    assert_eq!(v["error"]["code"], "fim_not_supported", "{v}");
}

/// A 1x1 PNG, base64.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// A projector for SmolLM2 (576 wide) with random weights, written by
/// bench/gpu/make_mmproj.py into `dir`; `None` after saying why the test skips
/// (no Python with numpy and `gguf`, and `HEARTH_TEST_GGUF_REQUIRED` unset).
#[allow(clippy::print_stderr)] // the skip notice
fn mmproj(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = std::env::var_os("HEARTH_TEST_GGUF_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv-embed/bin/python"));
    let path = dir.join("mmproj.gguf");
    let out = std::process::Command::new(&py)
        .arg(repo.join("bench/gpu/make_mmproj.py"))
        .arg(&path)
        .args(["--text-embd", "576"])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(path),
        other => {
            let why = format!("{} cannot run make_mmproj.py: {other:?}", py.display());
            assert!(
                std::env::var("HEARTH_TEST_GGUF_REQUIRED").as_deref() != Ok("1"),
                "HEARTH_TEST_GGUF_REQUIRED=1 but {why}"
            );
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// The default model with a projector (`mmproj`, random weights) behind the real
/// HTTP stack: `vision` in /v1/models, an image part in a chat completion, and
/// Ollama's `images` in /api/chat, each answered with the image's positions in
/// the prompt; an image that cannot be decoded is a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_a_projector_reads_images_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mmproj) = mmproj(dir.path()) else {
        return;
    };
    let gw = Gateway::start(&embedded_toml(&format!(
        "mmproj = {:?}\n",
        mmproj.display().to_string()
    )))
    .await;
    wait_ready(&gw).await;
    let (_, models) = get(&gw, "/v1/models").await;
    assert_eq!(models["data"][0]["vision"], true, "{models}");

    let ask = |url: String| {
        json!({"model": "smollm2-135m", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in the picture?"},
            {"type": "image_url", "image_url": {"url": url}}]}]})
    };
    let r = gw
        .post("/v1/chat/completions")
        .json(&ask(format!("data:image/png;base64,{PNG_1X1}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let with_image = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let text_only: Value = gw
        .post("/v1/chat/completions")
        .json(
            &json!({"model": "smollm2-135m", "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "What is in the picture?"}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text_only = text_only["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(with_image >= text_only + 16, "{with_image} vs {text_only}");

    let r = gw
        .post("/api/chat")
        .json(&json!({"model": "smollm2-135m", "stream": false, "options": {"num_predict": 4},
            "messages": [{"role": "user", "content": "What is in the picture?", "images": [PNG_1X1]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["prompt_eval_count"].as_u64().unwrap() >= text_only + 16,
        "{v}"
    );

    let r = gw
        .post("/v1/chat/completions")
        .json(&ask("data:image/png;base64,bm90IGFuIGltYWdl".into()))
        .send()
        .await
        .unwrap();
    let (status, e) = harness::error_of(r).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_image")),
        "{e}"
    );
}
