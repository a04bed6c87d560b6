//! The GPU benchmark's model generator (bench/gpu/make_model.py) on CPU: the tiny
//! llama-architecture GGUF it writes with random weights loads in the engine,
//! serves a completion, and the model reports where it runs (`cpu` here). The
//! projector generator (bench/gpu/make_mmproj.py) gives the real default chat
//! model eyes: images in chat messages go through llama.cpp's `mtmd`.
//!
//! The generator needs numpy and PyPI's `gguf`: `HEARTH_TEST_GGUF_PYTHON` names a
//! Python that has them (`make unit` points it at .venv-embed, mk/cuda.mk), else
//! the repository's .venv-embed. Without one the test says SKIPPED, unless
//! `HEARTH_TEST_GGUF_REQUIRED=1` (which `make unit` sets): then it fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // helpers fail the test loudly; the skip notice goes to stderr

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hearth_api::{ChatCompletionRequest, CompletionRequest, ModelStatus};
use hearth_config::{EmbeddedConfig, ModelBackend, ModelConfig};
use hearth_engine::EmbeddedBackend;
use hearth_router::{Backend, Event, Request};
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with numpy and `gguf`, or `None` after saying why the test skips.
fn python() -> Option<PathBuf> {
    let py = std::env::var_os("HEARTH_TEST_GGUF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv-embed/bin/python"));
    let ok = std::process::Command::new(&py)
        .args(["-c", "import gguf, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let why = format!(
        "{} cannot import gguf and numpy (make .venv-embed/.complete, or set HEARTH_TEST_GGUF_PYTHON)",
        py.display()
    );
    if std::env::var("HEARTH_TEST_GGUF_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("HEARTH_TEST_GGUF_REQUIRED=1 but {why}");
    }
    eprintln!("SKIPPED: the synthetic GGUF test: {why}");
    None
}

/// Runs the generator: a tiny q8_0 model at `path`, with `extra` flags.
fn generate(py: &Path, path: &Path, extra: &[&str]) {
    let out = std::process::Command::new(py)
        .arg(repo().join("bench/gpu/make_model.py"))
        .arg(path)
        .args(["--size", "tiny", "--type", "q8_0"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_model.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`generate`] with `file` of `tests/templates` as the chat template and an
/// 8192-token context (its vocabulary spells most prompts byte by byte).
fn generate_with_template(py: &Path, path: &Path, file: &str, extra: &[&str]) {
    let template = repo()
        .join("crates/hearth-engine/tests/templates")
        .join(file);
    let mut flags = vec![
        "--chat-template",
        template.to_str().unwrap(),
        "--context",
        "8192",
    ];
    flags.extend_from_slice(extra);
    generate(py, path, &flags);
}

/// The engine on `path`, loaded, on one thread.
async fn start(name: &str, path: &Path, context: u32, parallel: u32) -> Arc<EmbeddedBackend> {
    start_with(name, path, context, parallel, None).await
}

/// [`start`], with a projector.
async fn start_with(
    name: &str,
    path: &Path,
    context: u32,
    parallel: u32,
    mmproj: Option<&Path>,
) -> Arc<EmbeddedBackend> {
    let cfg = ModelConfig {
        backend: ModelBackend::Embedded(EmbeddedConfig {
            path: path.to_owned(),
            context: Some(context),
            parallel: Some(parallel),
            threads: Some(1),
            mmproj: mmproj.map(Path::to_owned),
            ..EmbeddedConfig::default()
        }),
        ..ModelConfig::embedded(name, path)
    };
    let b = EmbeddedBackend::start(&cfg).unwrap();
    let start = Instant::now();
    while b.status() != ModelStatus::Ready {
        assert_ne!(b.status(), ModelStatus::Unavailable, "{:?}", b.detail());
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not loaded in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b
}

#[tokio::test]
async fn the_generated_model_loads_and_serves_on_cpu() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    generate(&py, &path, &[]);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 4_000_000, "the tiny model is {size} bytes");
    let info = hearth_engine::inspect(&path).unwrap();
    assert_eq!(info.context_length(), Some(2048));

    let b = start("synthetic-tiny", &path, 256, 2).await;
    let placement = b.placement().expect("a loaded model has a placement");
    if cfg!(feature = "cuda") {
        assert!(!placement.device.is_empty());
    } else {
        assert_eq!(placement.device, "cpu");
        assert_eq!(placement.gpu_memory_bytes, None);
    }

    // Random weights say nothing useful (and may say </s> early), but the answer
    // must come whole: tokens, a finish, the usage.
    let r = Request::Completion(
        CompletionRequest::from_value(json!({
            "model": "synthetic-tiny", "prompt": "hello world", "max_tokens": 12,
            "temperature": 0
        }))
        .unwrap(),
    );
    let mut s = b.call(&r).await.unwrap();
    let (mut usage, mut finished) = (None, false);
    while let Some(e) = s.next().await {
        let e = e.unwrap();
        finished |= matches!(e, Event::Finish { .. });
        usage = e.usage().or(usage);
    }
    assert!(finished, "no finish event");
    let usage = usage.expect("a usage event");
    assert!((1..=12).contains(&usage.completion_tokens), "{usage:?}");
    // "hello world" is bytes to this vocabulary: 11 of them, and <s>.
    assert!(usage.prompt_tokens >= 3, "{usage:?}");
}

/// Fill-in-the-middle on a model that has FIM tokens (the generator's `--fim`):
/// a completion with `suffix` is served, not refused, and `input_extra` (other
/// files, as `/infill` sends them) goes into the prompt after `FIM_REP` and each
/// file's `FIM_SEP`, so the prompt grows by them.
#[tokio::test]
async fn fill_in_the_middle_with_other_files_on_a_model_with_fim_tokens() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fim.gguf");
    generate(&py, &path, &["--fim"]);
    let b = start("synthetic-fim", &path, 512, 1).await;
    let prompt_tokens = |extra: serde_json::Value| {
        let b = &b;
        async move {
            let mut body = json!({"model": "synthetic-fim", "prompt": "def f(", "suffix": "):",
                                  "max_tokens": 4, "temperature": 0});
            if !extra.is_null() {
                body["input_extra"] = extra;
            }
            let r = Request::Completion(CompletionRequest::from_value(body).unwrap());
            let mut s = b.call(&r).await.unwrap();
            let mut usage = None;
            while let Some(e) = s.next().await {
                usage = e.unwrap().usage().or(usage);
            }
            usage.unwrap().prompt_tokens
        }
    };
    let alone = prompt_tokens(serde_json::Value::Null).await;
    // The plain prompt's tokens (with <s>), for scale.
    let plain = {
        let r = Request::Completion(
            CompletionRequest::from_value(json!({"model": "synthetic-fim", "prompt": "def f(",
                "max_tokens": 1, "temperature": 0}))
            .unwrap(),
        );
        let mut s = b.call(&r).await.unwrap();
        let mut usage = None;
        while let Some(e) = s.next().await {
            usage = e.unwrap().usage().or(usage);
        }
        usage.unwrap().prompt_tokens
    };
    // FIM_PRE, FIM_SUF, FIM_MID and the suffix's tokens beside the prefix's.
    assert!(alone >= plain + 4, "{alone} vs {plain}");
    // FIM_REP, two FIM_SEPs and the text of the project, file names and file.
    let with_file = prompt_tokens(json!([{"filename": "a.py", "text": "x"}])).await;
    assert!(with_file >= alone + 3 + 4, "{with_file} vs {alone}");
}

/// Runs the projector generator for a chat model `text_embd` wide.
fn generate_mmproj(py: &Path, path: &Path, text_embd: u32) {
    let out = std::process::Command::new(py)
        .arg(repo().join("bench/gpu/make_mmproj.py"))
        .arg(path)
        .args(["--text-embd", &text_embd.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_mmproj.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 24x24 binary PPM (a format llama.cpp's image reader takes), as a data URL.
fn ppm_data_url(seed: u8) -> String {
    use base64::Engine as _;
    let mut file = b"P6\n24 24\n255\n".to_vec();
    file.extend((0..24 * 24 * 3).map(|i: u32| (i as u8).wrapping_mul(seed)));
    format!(
        "data:image/x-portable-pixmap;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(file)
    )
}

/// One chat call: its text and usage, or its error.
async fn chat(
    b: &EmbeddedBackend,
    content: serde_json::Value,
) -> Result<(String, hearth_api::Usage), hearth_router::BackendError> {
    let r = Request::Chat(
        ChatCompletionRequest::from_value(json!({"model": "smol-vision", "max_tokens": 6,
            "temperature": 0, "messages": [{"role": "user", "content": content}]}))
        .unwrap(),
    );
    let mut s = b.call(&r).await?;
    let (mut text, mut usage) = (String::new(), None);
    while let Some(e) = s.next().await {
        match e? {
            Event::Text { text: t, .. } => text.push_str(&t),
            e => usage = e.usage().or(usage),
        }
    }
    Ok((text, usage.expect("a usage event")))
}

/// SmolLM2 (the default chat model) with a projector of random weights: an image
/// part is decoded, run through the vision tower and the projector, and takes
/// its 16 positions in the prompt; the same image in the next request is served
/// from the prompt cache, a different one is not; what is not an image is a 400
/// naming it.
#[tokio::test]
async fn a_generated_projector_lets_the_default_model_read_images() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mmproj = dir.path().join("mmproj.gguf");
    // SmolLM2-135M's embeddings are 576 wide.
    generate_mmproj(&py, &mmproj, 576);
    let model = hearth_testkit::test_model_path();
    let b = start_with("smol-vision", &model, 1024, 1, Some(&mmproj)).await;

    let (_, text_only) = chat(&b, json!("Describe the picture.")).await.unwrap();
    let with = |url: String| {
        json!([{"type": "text", "text": "Describe the picture."},
               {"type": "image_url", "image_url": {"url": url}}])
    };
    let (answer, usage) = chat(&b, with(ppm_data_url(3))).await.unwrap();
    assert!(
        !answer.is_empty() && usage.completion_tokens > 0,
        "{usage:?}"
    );
    // The image's 16 positions (a 32-pixel tower in 8-pixel patches), and the
    // marker's text is not in the prompt.
    assert!(
        usage.prompt_tokens >= text_only.prompt_tokens + 16,
        "{usage:?} vs {text_only:?}"
    );

    // The same image again: its cells come from the prompt cache (all of the
    // prompt but its last token); another image is evaluated anew.
    let before = b.stats().reused_prompt_tokens;
    let (_, again) = chat(&b, with(ppm_data_url(3))).await.unwrap();
    assert_eq!(again.prompt_tokens, usage.prompt_tokens);
    let reused = b.stats().reused_prompt_tokens - before;
    assert_eq!(reused, usage.prompt_tokens - 1, "reused {reused}");
    let before = b.stats().reused_prompt_tokens;
    chat(&b, with(ppm_data_url(5))).await.unwrap();
    let reused = b.stats().reused_prompt_tokens - before;
    assert!(
        reused < 16,
        "a different image must not reuse the first: {reused}"
    );

    // Bytes that are no image: a 400 naming the image.
    let e = chat(&b, with("data:image/png;base64,bm90IGFuIGltYWdl".into()))
        .await
        .unwrap_err()
        .to_api_error();
    assert_eq!(e.status(), 400, "{e:?}");
    assert_eq!(e.code.as_deref(), Some("invalid_image"), "{e:?}");
    assert!(e.message.contains("image 1"), "{}", e.message);
    // A URL to fetch: refused, not fetched.
    let e = chat(&b, with("https://example.com/cat.png".into()))
        .await
        .unwrap_err()
        .to_api_error();
    assert!(e.message.contains("`data:` URLs"), "{}", e.message);
    // Still serving.
    chat(&b, with(ppm_data_url(3))).await.unwrap();
}

/// Images beside other work: with two sequences, two requests with images (one
/// with three, one large) and a text one decode side by side, each prompt holding
/// exactly its images' positions.
#[tokio::test]
async fn images_and_text_decode_side_by_side() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mmproj = dir.path().join("mmproj.gguf");
    generate_mmproj(&py, &mmproj, 576);
    let model = hearth_testkit::test_model_path();
    let b = start_with("smol-vision", &model, 2048, 2, Some(&mmproj)).await;
    let image = |url: String| json!({"type": "image_url", "image_url": {"url": url}});
    let text = |t: &str| json!({"type": "text", "text": t});
    // A 640x480 image: the projector's preprocessing scales it to its 32 pixels.
    let large = {
        use base64::Engine as _;
        let mut file = b"P6\n640 480\n255\n".to_vec();
        file.extend((0..640 * 480 * 3).map(|i: u32| (i % 253) as u8));
        format!(
            "data:image/x-portable-pixmap;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(file)
        )
    };
    let (three, one, none) = tokio::join!(
        chat(
            &b,
            json!([
                image(ppm_data_url(7)),
                text("then"),
                image(ppm_data_url(9)),
                text("and"),
                image(ppm_data_url(11)),
                text("Which differ?")
            ])
        ),
        chat(&b, json!([text("Look:"), image(large)])),
        // The same text without its images (split at them, it may tokenize a
        // token or two apart).
        chat(&b, json!("thenandWhich differ?")),
    );
    let (three, one, none) = (three.unwrap().1, one.unwrap().1, none.unwrap().1);
    assert!(
        three.prompt_tokens + 3 >= none.prompt_tokens + 3 * 16,
        "{three:?} vs {none:?}"
    );
    assert!(
        one.prompt_tokens >= 16 && one.prompt_tokens < three.prompt_tokens,
        "{one:?}"
    );
    assert!(three.completion_tokens > 0 && one.completion_tokens > 0);
}

/// A projector made for a model of another width is refused at load, saying so.
#[tokio::test]
async fn a_projector_for_another_model_fails_the_load_with_the_reason() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mmproj = dir.path().join("mmproj-wide.gguf");
    generate_mmproj(&py, &mmproj, 2048);
    let model = hearth_testkit::test_model_path();
    let cfg = ModelConfig {
        backend: ModelBackend::Embedded(EmbeddedConfig {
            path: model.clone(),
            context: Some(256),
            threads: Some(1),
            mmproj: Some(mmproj),
            ..EmbeddedConfig::default()
        }),
        ..ModelConfig::embedded("smol-wrong-eyes", &model)
    };
    let b = EmbeddedBackend::start(&cfg).unwrap();
    let start = Instant::now();
    while b.status() != ModelStatus::Unavailable {
        assert_ne!(
            b.status(),
            ModelStatus::Ready,
            "a 2048-wide projector loaded"
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let why = b.detail().unwrap_or_default();
    assert!(why.contains("cannot load the projector"), "{why}");
}

/// A model whose chat template has Hermes' tool syntax (Qwen2.5's `<tool_call>`,
/// the generator's `--hermes-tools`) is asked for calls in it: with a call
/// required, a grammar holds even random weights to `<tool_call>` tags around a
/// call of an offered tool, read back as OpenAI's tool calls with
/// `finish_reason: "tool_calls"`; with `parallel_tool_calls`, at most one call
/// per tool.
#[tokio::test]
async fn a_model_with_hermes_tool_syntax_calls_tools_in_it() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hermes.gguf");
    generate(&py, &path, &["--hermes-tools"]);
    let b = start("synthetic-hermes", &path, 2048, 1).await;
    assert_eq!(b.tool_format(), Some("hermes"));
    let (calls, finish) = tool_calls(
        &b,
        json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
    )
    .await
    .unwrap();
    assert_eq!(finish, Some(hearth_router::FinishReason::ToolCalls));
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].1, "get_time");
    let args: serde_json::Value = serde_json::from_str(&calls[0].2).unwrap();
    assert!(matches!(args["unit"].as_str(), Some("c" | "f")), "{args}");

    let (calls, finish) = tool_calls(&b, json!({"tool_choice": "required"}))
        .await
        .unwrap();
    assert_eq!(finish, Some(hearth_router::FinishReason::ToolCalls));
    assert!((1..=2).contains(&calls.len()), "{calls:?}");
    for (_, name, args) in &calls {
        assert!(name == "get_weather" || name == "get_time", "{calls:?}");
        serde_json::from_str::<serde_json::Value>(args).unwrap();
    }
}

/// A chat with `get_weather` and `get_time` on offer ("Weather?", unless `extra`
/// says its own `messages`), answered with at most 800 tokens at temperature 0:
/// its calls as `(id, name, arguments)`, and its finish.
async fn tool_calls(
    b: &EmbeddedBackend,
    extra: serde_json::Value,
) -> Result<
    (
        Vec<(String, String, String)>,
        Option<hearth_router::FinishReason>,
    ),
    hearth_router::BackendError,
> {
    let tool = |name: &str| {
        json!({"type": "function", "function": {"name": name, "parameters": {"type": "object",
            "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"],
            "additionalProperties": false}}})
    };
    let mut body = json!({"model": "synthetic", "max_tokens": 800, "temperature": 0,
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [tool("get_weather"), tool("get_time")]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = Request::Chat(ChatCompletionRequest::from_value(body).unwrap());
    let mut s = b.call(&r).await?;
    let (mut calls, mut finish) = (Vec::<(String, String, String)>::new(), None);
    while let Some(e) = s.next().await {
        match e? {
            Event::ToolCall { call, .. } => match call.name {
                Some(name) => calls.push((call.id.unwrap_or_default(), name, call.arguments)),
                None => calls.last_mut().unwrap().2.push_str(&call.arguments),
            },
            Event::Finish { reason, .. } => finish = Some(reason),
            _ => {}
        }
    }
    Ok((calls, finish))
}

/// Models whose chat templates write tools in their own words in their Jinja
/// source (Llama 3.2's, Mistral Nemo's, Mistral Small 3.1's, Mistral's newer
/// tokenizers' and Qwen2.5's and Qwen3's real templates, stored in a synthetic
/// model) get their prompt rendered from it: a required or named call
/// comes back in their shape (Mistral's ids 9 letters and digits, which its
/// template takes back in the next turn), and a conversation the template
/// refuses is a 400 carrying the template's own words.
#[tokio::test]
async fn models_with_llama3_mistral_and_qwen_tool_templates_call_tools_in_their_words() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Each with a conversation its template refuses, and the words it says.
    let refuses = |messages: serde_json::Value, says: &'static str| Some((messages, says));
    for (name, file, refused) in [
        (
            "synthetic-llama3",
            "meta-llama-Llama-3.2-3B-Instruct.jinja",
            refuses(
                json!([{"role": "system", "content": "Be brief."}]),
                "Cannot put tools in the first user message",
            ),
        ),
        (
            "synthetic-mistral",
            "mistralai-Mistral-Nemo-Instruct-2407.jinja",
            refuses(
                json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
                "conversation roles must alternate",
            ),
        ),
        (
            // Its alternation check is dead code in Python's Jinja as in ours (the
            // list it fills is set inside a loop): a second system message it refuses.
            "synthetic-mistral-small",
            "mistralai-Mistral-Small-3.1-24B-Instruct-2503.jinja",
            refuses(
                json!([{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                {"role": "user", "content": "c"}]),
                "Only user and assistant roles are supported",
            ),
        ),
        (
            // Mistral's newer tokenizers, as mistral-common writes their templates:
            // v11 (`[CALL_ID]`, Mistral Small 3.2) and v13 (Magistral, Devstral).
            "synthetic-mistral-v11",
            "mistral-common-1.13.1-v11.jinja",
            refuses(
                json!([{"role": "assistant", "content": "a"}]),
                "Conversation must start with a user or system message",
            ),
        ),
        (
            "synthetic-mistral-v13",
            "mistral-common-1.13.1-v13-think.jinja",
            refuses(
                json!([{"role": "assistant", "content": "a"}]),
                "Conversation must start with a user or system message",
            ),
        ),
        // Hermes' tags, in Qwen's templates (which refuse nothing); Qwen3's also
        // splits thinking, which a call's tag is not.
        ("synthetic-qwen2.5", "Qwen-Qwen2.5-7B-Instruct.jinja", None),
        ("synthetic-qwen3", "Qwen-Qwen3-0.6B.jinja", None),
    ] {
        let path = dir.path().join(format!("{name}.gguf"));
        generate_with_template(&py, &path, file, &[]);
        // Its vocabulary spells most of these prompts byte by byte.
        let b = start(name, &path, 8192, 1).await;
        let format = match name {
            "synthetic-llama3" => "llama3",
            n if n.starts_with("synthetic-mistral-v1") => "mistral-args",
            n if n.starts_with("synthetic-qwen") => "hermes",
            _ => "mistral",
        };
        assert_eq!(b.tool_format(), Some(format), "{name}");
        let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}});
        let (calls, finish) = tool_calls(&b, named.clone()).await.unwrap();
        assert_eq!(
            finish,
            Some(hearth_router::FinishReason::ToolCalls),
            "{name}"
        );
        assert_eq!(calls.len(), 1, "{name}: {calls:?}");
        let (id, called, args) = &calls[0];
        assert_eq!(called, "get_time", "{name}");
        let parsed: serde_json::Value = serde_json::from_str(args).unwrap();
        assert!(
            matches!(parsed["unit"].as_str(), Some("c" | "f")),
            "{name}: {parsed}"
        );
        if name.starts_with("synthetic-mistral") {
            assert!(
                id.len() == 9 && id.bytes().all(|c| c.is_ascii_alphanumeric()),
                "{id}"
            );
        }
        // The call and its result go back, then a new question: the next call.
        let mut next = named.clone();
        next["messages"] = json!([
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "get_time", "arguments": args}}]},
            {"role": "tool", "tool_call_id": id, "content": "noon"},
            {"role": "assistant", "content": "It is noon."},
            {"role": "user", "content": "And the weather?"}
        ]);
        next["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
        let (calls, _) = tool_calls(&b, next).await.unwrap();
        assert_eq!(calls.len(), 1, "{name}: {calls:?}");
        assert_eq!(calls[0].1, "get_weather", "{name}");

        // Required: one or both tools, each with arguments in its schema.
        let (calls, finish) = tool_calls(&b, json!({"tool_choice": "required"}))
            .await
            .unwrap();
        assert_eq!(
            finish,
            Some(hearth_router::FinishReason::ToolCalls),
            "{name}"
        );
        assert!((1..=2).contains(&calls.len()), "{name}: {calls:?}");
        for (_, called, args) in &calls {
            assert!(
                called == "get_weather" || called == "get_time",
                "{name}: {calls:?}"
            );
            let parsed: serde_json::Value = serde_json::from_str(args).unwrap();
            assert!(
                matches!(parsed["unit"].as_str(), Some("c" | "f")),
                "{name}: {parsed}"
            );
        }

        let Some((refused, says)) = refused else {
            continue;
        };
        let mut bad = named;
        bad["messages"] = refused;
        let e = match tool_calls(&b, bad).await {
            Err(hearth_router::BackendError::Invalid(e)) => e,
            other => panic!("{name}: {other:?}"),
        };
        assert!(
            e.message
                .starts_with("the model's chat template refuses these messages: ")
                && e.message.contains(says),
            "{name}: {}",
            e.message
        );
    }
}

/// A chat ("Two and two?") answered with at most 12 tokens at temperature 0,
/// with `extra` fields: its reasoning, its text and its prompt's tokens.
async fn reasoning_chat(b: &EmbeddedBackend, extra: serde_json::Value) -> (String, String, u64) {
    let mut body = json!({"model": "synthetic", "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": "Two and two?"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = Request::Chat(ChatCompletionRequest::from_value(body).unwrap());
    let mut s = b.call(&r).await.unwrap();
    let (mut reasoning, mut text, mut usage) = (String::new(), String::new(), None);
    while let Some(e) = s.next().await {
        match e.unwrap() {
            Event::Reasoning { text: t, .. } => reasoning.push_str(&t),
            Event::Text { text: t, .. } => text.push_str(&t),
            e => usage = e.usage().or(usage),
        }
    }
    (reasoning, text, usage.expect("a usage event").prompt_tokens)
}

/// Reasoning models' real templates (Qwen3's, QwQ's), stored in a synthetic
/// model, render their prompts from their Jinja source: Qwen3's takes
/// `chat_template_kwargs` (`enable_thinking: false` closes an empty thought in
/// the prompt, so the prompt grows), a value that is not an object is a 400,
/// and QwQ's opens the thinking in the prompt, so the whole answer (random
/// weights never close it) is reasoning, not reply.
#[tokio::test]
async fn reasoning_models_render_their_templates_and_take_chat_template_kwargs() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = |name: &str, file: &str| {
        let path = dir.path().join(format!("{name}.gguf"));
        generate_with_template(&py, &path, file, &[]);
        path
    };
    let qwen3 = model("qwen3", "Qwen-Qwen3-0.6B.jinja");
    let b = start("synthetic-qwen3", &qwen3, 2048, 1).await;
    let (_, _, thinking) = reasoning_chat(&b, json!({})).await;
    let off = json!({"chat_template_kwargs": {"enable_thinking": false}});
    let (reasoning, _, not_thinking) = reasoning_chat(&b, off).await;
    assert!(not_thinking > thinking, "{not_thinking} vs {thinking}");
    assert_eq!(reasoning, "");
    let r = Request::Chat(
        ChatCompletionRequest::from_value(json!({"model": "synthetic",
            "messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": [1]}))
        .unwrap(),
    );
    match b.call(&r).await {
        Err(hearth_router::BackendError::Invalid(e)) => {
            assert_eq!(e.param.as_deref(), Some("chat_template_kwargs"));
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a list as chat_template_kwargs was taken"),
    }
    drop(b);

    let qwq = model("qwq", "Qwen-QwQ-32B.jinja");
    let b = start("synthetic-qwq", &qwq, 2048, 1).await;
    let (reasoning, text, _) = reasoning_chat(&b, json!({})).await;
    assert!(!reasoning.is_empty(), "no reasoning; the reply: {text:?}");
    assert_eq!(text, "", "the reasoning: {reasoning:?}");
}

/// Mistral's vocabularies hold `[TOOL_CALLS]` and `[ARGS]` as control tokens,
/// which llama.cpp renders as no text: the engine writes them as their text, so a
/// call made of them is read (the generator's `--control-tokens` gives the
/// synthetic model such tokens, and a logit bias makes it pick them over
/// spelling the markers out byte by byte). The log probabilities show the
/// marker as one token, written as its text.
#[tokio::test]
async fn mistral_control_tokens_are_written_as_their_text_and_read_as_calls() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("magistral.gguf");
    generate_with_template(
        &py,
        &path,
        "mistral-common-1.13.1-v13-think.jinja",
        &["--control-tokens", "[TOOL_CALLS],[ARGS],[THINK],[/THINK]"],
    );
    let b = start("synthetic-magistral", &path, 8192, 1).await;
    // The control tokens follow the 259 special and byte tokens, in that order.
    let body = json!({"model": "synthetic", "max_tokens": 200, "temperature": 0,
        "messages": [{"role": "user", "content": "Time?"}],
        "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {
            "type": "object", "properties": {"unit": {"enum": ["c", "f"]}},
            "required": ["unit"], "additionalProperties": false}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "logit_bias": {"259": 100, "260": 100}, "logprobs": true});
    let r = Request::Chat(ChatCompletionRequest::from_value(body).unwrap());
    let mut s = b.call(&r).await.unwrap();
    let (mut tokens, mut calls, mut finish) = (Vec::new(), Vec::new(), None);
    while let Some(e) = s.next().await {
        match e.unwrap() {
            Event::Logprob { token, .. } => tokens.push(token.token),
            Event::ToolCall { call, .. } => calls.extend(call.name),
            Event::Finish { reason, .. } => finish = Some(reason),
            _ => {}
        }
    }
    assert_eq!(
        tokens.first().map(String::as_str),
        Some("[TOOL_CALLS]"),
        "{tokens:?}"
    );
    assert!(tokens.iter().any(|t| t == "[ARGS]"), "{tokens:?}");
    assert_eq!(calls, ["get_time"], "{tokens:?}");
    assert_eq!(finish, Some(hearth_router::FinishReason::ToolCalls));
}
