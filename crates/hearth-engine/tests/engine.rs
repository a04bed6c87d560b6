//! The engine against the real SmolLM2-135M-Instruct file, through the router's
//! `Backend` trait only. `make test` downloads the model first (mk/engine.mk);
//! HEARTH_TEST_MODEL points elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // helpers fail the test loudly

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hearth_api::{ChatCompletionRequest, CompletionRequest, ModelStatus};
use hearth_config::{EmbeddedConfig, ModelBackend, ModelConfig};
use hearth_engine::EmbeddedBackend;
use hearth_router::{Backend, BackendError, Event, FinishReason, Request};
use serde_json::{Value, json};

fn model_path() -> PathBuf {
    hearth_testkit::test_model_path()
}

fn config(parallel: u32, context: u32) -> ModelConfig {
    ModelConfig {
        backend: ModelBackend::Embedded(EmbeddedConfig {
            path: model_path(),
            context: Some(context),
            parallel: Some(parallel),
            ..EmbeddedConfig::default()
        }),
        ..ModelConfig::embedded("smollm2-135m", model_path())
    }
}

/// `config(parallel, context)` serving another file.
fn config_at(path: PathBuf, parallel: u32, context: u32) -> ModelConfig {
    let mut cfg = config(parallel, context);
    if let ModelBackend::Embedded(e) = &mut cfg.backend {
        e.path = path;
    }
    cfg
}

async fn wait_ready(b: &EmbeddedBackend) {
    let start = Instant::now();
    while b.status() != ModelStatus::Ready {
        assert_ne!(
            b.status(),
            ModelStatus::Unavailable,
            "the model failed to load"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the model did not load in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn engine(parallel: u32, context: u32) -> Arc<EmbeddedBackend> {
    let b = EmbeddedBackend::start(&config(parallel, context)).unwrap();
    wait_ready(&b).await;
    b
}

fn chat(content: &str, extra: Value) -> Request {
    let mut v =
        json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": content}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    Request::Chat(ChatCompletionRequest::from_value(v).unwrap())
}

fn completion(v: Value) -> Request {
    Request::Completion(CompletionRequest::from_value(v).unwrap())
}

/// A whole answer, from its events, in the shape the tests read (text, finish
/// reason, usage); the wire formats are the front ends' and are tested there.
async fn full(b: &EmbeddedBackend, r: Request) -> Value {
    let got = events(b, r).await;
    let finish = got.iter().find_map(|e| match e {
        Event::Finish { reason, .. } => Some(reason.as_str().to_owned()),
        _ => None,
    });
    let usage = got.iter().find_map(Event::usage);
    json!({
        "choices": [{"message": {"content": streamed_text(&got).concat()}, "finish_reason": finish}],
        "usage": usage,
    })
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every event of an answer.
async fn events(b: &EmbeddedBackend, r: Request) -> Vec<Event> {
    let mut s = b.call(&r).await.unwrap();
    let mut out = Vec::new();
    while let Some(e) = s.next().await {
        out.push(e.unwrap());
    }
    out
}

/// The text pieces, in order.
fn streamed_text(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text { index: 0, text } => Some(text.clone()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .collect()
}

const GREEDY: &str = "Write one sentence about the sea.";

#[tokio::test]
async fn loading_then_ready() {
    let (b, gate) = EmbeddedBackend::start_gated(&config(1, 512)).unwrap();
    assert_eq!(b.status(), ModelStatus::Loading);
    let e = b
        .call(&chat("hi", json!({"max_tokens": 1})))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, BackendError::Unavailable(ref m) if m.contains("loading")),
        "{e}"
    );
    assert_eq!(b.status(), ModelStatus::Loading, "still held by the gate");
    gate.open();
    wait_ready(&b).await;
    assert_eq!(b.context_length(), Some(512));
    assert_eq!(b.kind(), "embedded");
}

#[tokio::test]
async fn seeded_sampling_is_reproducible() {
    let b = engine(2, 1024).await;
    let req = |seed: i64| {
        chat(
            "Tell me a story.",
            json!({"temperature": 1.0, "seed": seed, "max_tokens": 16}),
        )
    };
    let first = content(&full(&b, req(42)).await);
    let again = content(&full(&b, req(42)).await);
    assert_eq!(first, again);
    let mut differs = false;
    for seed in [1, 2, 3] {
        differs |= content(&full(&b, req(seed)).await) != first;
    }
    assert!(differs, "three other seeds all gave {first:?}");
}

#[tokio::test]
async fn greedy_output_is_the_same_alone_and_batched() {
    let b = engine(4, 2048).await;
    let req = |q: &str| chat(q, json!({"temperature": 0, "max_tokens": 16}));
    let alone = content(&full(&b, req(GREEDY)).await);
    assert!(!alone.is_empty());
    let others = [
        "What is two plus two?",
        "Name a color.",
        "Say hello in French.",
    ];
    let (a, x, y, z) = tokio::join!(
        full(&b, req(GREEDY)),
        full(&b, req(others[0])),
        full(&b, req(others[1])),
        full(&b, req(others[2])),
    );
    assert_eq!(content(&a), alone);
    for v in [x, y, z] {
        assert!(!content(&v).is_empty());
    }
}

#[tokio::test]
async fn stop_strings_including_one_split_across_tokens() {
    let b = engine(1, 1024).await;
    let req = |extra: Value| {
        let mut e = json!({"temperature": 0, "max_tokens": 24, "stream": true});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        chat(GREEDY, e)
    };
    let pieces = streamed_text(&events(&b, req(json!({}))).await);
    let whole = pieces.concat();
    // A stop string made of the end of one streamed piece and the start of the next
    // spans two tokens.
    let k = pieces
        .iter()
        .position(|p| p.chars().count() >= 2)
        .filter(|&k| k + 1 < pieces.len())
        .expect("a piece of two characters followed by another");
    let tail: String = pieces[k]
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head: String = pieces[k + 1].chars().take(2).collect();
    let stop = format!("{tail}{head}");
    let expected = &whole[..whole.find(&stop).unwrap()];

    let got = events(&b, req(json!({"stop": [stop.clone(), "zzzz-never"]}))).await;
    assert_eq!(
        streamed_text(&got).concat(),
        expected,
        "stop {stop:?} in {whole:?}"
    );
    assert!(got.contains(&Event::Finish {
        index: 0,
        reason: FinishReason::Stop
    }));

    let v = full(
        &b,
        chat(
            GREEDY,
            json!({"temperature": 0, "max_tokens": 24, "stop": stop}),
        ),
    )
    .await;
    assert_eq!(content(&v), expected);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn length_finish_and_exact_usage() {
    let b = engine(1, 1024).await;
    let v = full(
        &b,
        chat(
            GREEDY,
            json!({"temperature": 0, "max_completion_tokens": 5}),
        ),
    )
    .await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);

    // Token-id prompts make the prompt count checkable exactly.
    let v = full(
        &b,
        completion(
            json!({"prompt": [504, 3458, 282, 4649, 314], "max_tokens": 3, "temperature": 0}),
        ),
    )
    .await;
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn streamed_events_are_text_then_the_finish_then_the_usage() {
    let b = engine(1, 1024).await;
    let opts = json!({"temperature": 0, "max_tokens": 12});
    let whole = full(&b, chat(GREEDY, opts.clone())).await;
    let mut s = opts.clone();
    s["stream"] = json!(true);
    let got = events(&b, chat(GREEDY, s)).await;
    let n = got.len();
    assert_eq!(
        got[n - 2],
        Event::Finish {
            index: 0,
            reason: FinishReason::parse(whole["choices"][0]["finish_reason"].as_str().unwrap())
        }
    );
    assert_eq!(
        got[n - 1].usage().map(|u| json!(u)),
        Some(whole["usage"].clone())
    );
    // Everything before the last two is text.
    assert!(
        got[..n - 2]
            .iter()
            .all(|e| matches!(e, Event::Text { index: 0, .. }))
    );
    assert_eq!(
        streamed_text(&got).concat(),
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );

    // Text completions the same way.
    let got = events(
        &b,
        completion(json!({"prompt": "The sea is", "max_tokens": 4, "stream": true})),
    )
    .await;
    assert_eq!(got.last().unwrap().usage().unwrap().completion_tokens, 4);
}

#[tokio::test]
async fn every_streamed_chunk_is_whole_utf8() {
    let b = engine(1, 1024).await;
    let got = events(
        &b,
        chat(
            "Write the words café, naïve, 東京 and 😀 several times.",
            json!({"temperature": 0, "max_tokens": 40, "stream": true}),
        ),
    )
    .await;
    // A character split between two pieces would show up as a replacement
    // character in one of them.
    for t in streamed_text(&got) {
        assert!(!t.contains('\u{FFFD}'), "{t:?}");
    }
}

#[tokio::test]
async fn json_mode_yields_parseable_json() {
    let b = engine(1, 1024).await;
    let v = full(
        &b,
        chat(
            "Describe a cat as a JSON object with the keys name and age.",
            json!({"temperature": 0, "max_tokens": 200, "response_format": {"type": "json_object"}}),
        ),
    )
    .await;
    let text = content(&v);
    let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(parsed.is_object(), "{text}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

/// The grammar judges the token the sampling chain picked and resamples only when
/// it refuses it: hot sampling, which picks refused tokens often, still answers
/// within the schema every time.
#[tokio::test]
async fn hot_sampling_under_a_schema_always_follows_it() {
    let b = engine(1, 1024).await;
    let schema = json!({"type": "object",
        "properties": {"colour": {"enum": ["red", "green", "blue"]},
                       "n": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["colour", "n"], "additionalProperties": false});
    for seed in 1..=6 {
        let v = full(
            &b,
            chat(
                "Pick a colour and a number.",
                json!({"temperature": 1.5, "top_k": 0, "seed": seed, "max_tokens": 60,
                       "response_format": {"type": "json_schema", "json_schema": {"name": "pick", "schema": schema}}}),
            ),
        )
        .await;
        let text = content(&v);
        let parsed: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text:?}"));
        assert!(
            ["red", "green", "blue"].contains(&parsed["colour"].as_str().unwrap_or("")),
            "seed {seed}: {text}"
        );
        let n = parsed["n"].as_i64().unwrap_or(0);
        assert!((1..=9).contains(&n), "seed {seed}: {text}");
        assert_eq!(
            v["choices"][0]["finish_reason"], "stop",
            "seed {seed}: {text}"
        );
    }
}

/// Preparing a request (template, tokens, grammar) happens beside the decode loop,
/// not in it: while a grammar request is held in preparation, a running stream
/// keeps generating, and the held request is served once let through.
#[tokio::test]
async fn streams_keep_flowing_while_a_request_is_prepared() {
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let b = EmbeddedBackend::start_with_intake_hook(&config(2, 2048), move || {
        let _ = entered_tx.send(());
        // Returns when let through, or at once when the test has ended.
        let _ = gate.recv();
    })
    .unwrap();
    wait_ready(&b).await;

    // The stream passes the gate at once; end of generation is banned so it runs
    // for the whole test.
    release.send(()).unwrap();
    let running = chat(
        "Write a long story about a lighthouse keeper.",
        json!({"max_tokens": 1500, "temperature": 0, "stream": true,
               "logit_bias": {"0": -100, "1": -100, "2": -100}}),
    );
    let mut s = b.call(&running).await.unwrap();
    entered.recv().await.unwrap();
    for _ in 0..3 {
        s.next().await.unwrap().unwrap();
    }

    let schema = json!({"type": "object", "properties": {"age": {"type": "integer"}},
                        "required": ["age"], "additionalProperties": false});
    let held = chat(
        "How old is the keeper? Answer in JSON.",
        json!({"temperature": 0, "max_tokens": 100,
               "response_format": {"type": "json_schema", "json_schema": {"name": "age", "schema": schema}}}),
    );
    let b2 = b.clone();
    let held = tokio::spawn(async move { full(&b2, held).await });
    tokio::time::timeout(Duration::from_secs(60), entered.recv())
        .await
        .expect("the second request never reached preparation");

    // Held in preparation: the running stream must still make progress.
    let before = b.stats().generated_tokens;
    let start = Instant::now();
    while b.stats().generated_tokens < before + 16 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the running stream stalled while another request was being prepared: {} tokens in 60 s",
            b.stats().generated_tokens - before
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!held.is_finished(), "the held request was answered");
    for _ in 0..16 {
        tokio::time::timeout(Duration::from_secs(60), s.next())
            .await
            .expect("the running stream stalled")
            .unwrap()
            .unwrap();
    }

    release.send(()).unwrap();
    let v = tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("the released request was not served")
        .unwrap();
    let text = content(&v);
    let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(parsed["age"].is_i64(), "{text}");
}

/// A panic while preparing (inside llama.cpp's tokenizer or grammar code, say)
/// marks the model unavailable; neither that request nor later ones hang.
#[tokio::test]
async fn a_panic_while_preparing_makes_the_model_unavailable() {
    let b = EmbeddedBackend::start_with_intake_hook(&config(1, 512), || {
        panic!("a test hook panicking on the intake thread")
    })
    .unwrap();
    wait_ready(&b).await;
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        b.call(&chat("Hi", json!({"max_tokens": 2}))),
    )
    .await
    .expect("the request hung")
    .err()
    .unwrap();
    assert!(
        matches!(e, BackendError::Protocol(_) | BackendError::Unavailable(_)),
        "{e}"
    );
    let start = Instant::now();
    while b.status() != ModelStatus::Unavailable {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the model still says {:?}",
            b.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = b
        .call(&chat("Hi", json!({"max_tokens": 2})))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, BackendError::Unavailable(m) if m.contains("stopped unexpectedly")),
        "{e}"
    );
}

/// Dropping the backend (the server stopping) ends what it was generating, with an
/// error to the client, and returns once the engine thread has stopped: the
/// process may then exit without llama.cpp decoding under its teardown.
#[tokio::test]
async fn dropping_the_backend_stops_the_engine_and_ends_its_streams() {
    let b = engine(1, 2048).await;
    let long = chat(
        "Write a very long story about a dragon.",
        json!({"max_tokens": 1500, "stream": true, "temperature": 1.0, "seed": 7,
               "logit_bias": {"0": -100, "1": -100, "2": -100}}),
    );
    let mut s = b.call(&long).await.unwrap();
    for _ in 0..2 {
        s.next().await.unwrap().unwrap();
    }
    let generated = b.stats().generated_tokens;
    let dropped = tokio::task::spawn_blocking(move || drop(b));
    tokio::time::timeout(Duration::from_secs(30), dropped)
        .await
        .expect("dropping the backend waited for the whole generation")
        .unwrap();
    // What was generated before the stop may still be queued; then the error.
    let mut last = None;
    while let Some(e) = s.next().await {
        last = Some(e);
    }
    match last {
        Some(Err(BackendError::Unavailable(m))) => assert!(m.contains("shutting down"), "{m}"),
        other => panic!("expected the shutdown error last, got {other:?} after {generated} tokens"),
    }
}

#[tokio::test]
async fn cancellation_frees_the_slot() {
    let b = engine(1, 2048).await;
    let long = chat(
        "Write a very long story about a dragon.",
        json!({"max_tokens": 1500, "stream": true, "temperature": 1.0, "seed": 7}),
    );
    let mut s = b.call(&long).await.unwrap();
    for _ in 0..3 {
        s.next().await.unwrap().unwrap();
    }
    drop(s);
    // One slot: the next request is served only once the first is freed.
    let v = full(&b, chat("Hi", json!({"max_tokens": 3}))).await;
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    // The cancelled sequence stopped: of its 1500 tokens, only the few generated
    // before the drop was noticed (and the next request's 3) were decoded.
    assert!(
        b.stats().generated_tokens < 200,
        "the cancelled sequence kept generating: {:?}",
        b.stats()
    );
}

#[tokio::test]
async fn context_overflow_is_a_400_with_the_counts() {
    let b = engine(1, 256).await;
    let long = "word ".repeat(300);
    let e = b.call(&chat(&long, json!({}))).await.err().unwrap();
    let BackendError::Invalid(api) = e else {
        panic!("{e:?}")
    };
    assert_eq!(api.status(), 400);
    assert_eq!(api.code.as_deref(), Some("context_length_exceeded"));
    assert_eq!(api.param.as_deref(), Some("messages"));
    assert!(api.message.contains("256"), "{}", api.message);

    let e = b
        .call(&chat("Hi", json!({"max_tokens": 250})))
        .await
        .err()
        .unwrap();
    let BackendError::Invalid(api) = e else {
        panic!("{e:?}")
    };
    assert_eq!(api.code.as_deref(), Some("context_length_exceeded"));
    assert!(
        api.message.contains("250 for the completion"),
        "{}",
        api.message
    );
    // The engine is still fine.
    full(&b, chat("Hi", json!({"max_tokens": 2}))).await;
}

#[tokio::test]
async fn prompt_cache_reuses_the_previous_turn() {
    let b = engine(2, 2048).await;
    let system = "You are a helpful assistant. ".repeat(20);
    let first = json!([{"role": "system", "content": system}, {"role": "user", "content": "Name a fruit."}]);
    let req = |messages: &Value| {
        Request::Chat(
            ChatCompletionRequest::from_value(
                json!({"messages": messages, "temperature": 0, "max_tokens": 8}),
            )
            .unwrap(),
        )
    };
    let v = full(&b, req(&first)).await;
    let first_prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let before = b.stats();
    let mut second = first.as_array().unwrap().clone();
    second.push(json!({"role": "assistant", "content": content(&v)}));
    second.push(json!({"role": "user", "content": "And a vegetable?"}));
    let v2 = full(&b, req(&Value::Array(second))).await;
    let after = b.stats();
    let reused = after.reused_prompt_tokens - before.reused_prompt_tokens;
    let prefilled = after.prefilled_prompt_tokens - before.prefilled_prompt_tokens;
    assert!(
        reused >= first_prompt,
        "reused {reused} of the first turn's {first_prompt} tokens"
    );
    assert_eq!(
        reused + prefilled,
        v2["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert!(
        prefilled < 40,
        "prefilled {prefilled} tokens for a short follow-up"
    );
}

#[tokio::test]
async fn sampling_options_take_effect() {
    let b = engine(1, 1024).await;
    let text = |extra: Value| {
        let mut o = json!({"max_tokens": 10});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        let b = b.clone();
        async move { content(&full(&b, chat(GREEDY, o)).await) }
    };
    let greedy = text(json!({"temperature": 0})).await;
    // Sampling at temperature 1 with any seed gives the greedy answer when the
    // candidates are cut to the top one: by top_k = 1, by a tiny top_p, by min_p = 1.
    for (cut, seed) in [
        (json!({"top_k": 1}), 1),
        (json!({"top_k": 1}), 2),
        (json!({"top_p": 0.0001}), 3),
        (json!({"min_p": 1.0}), 4),
    ] {
        let mut o = cut.clone();
        o["temperature"] = json!(1.0);
        o["seed"] = json!(seed);
        assert_eq!(text(o).await, greedy, "{cut} with seed {seed}");
    }
    // Without the cut, some seed leaves the greedy path (so the cuts did something).
    let mut free = Vec::new();
    for seed in 1..=4 {
        free.push(text(json!({"temperature": 1.0, "seed": seed})).await);
    }
    assert!(free.iter().any(|t| *t != greedy), "{free:?} vs {greedy:?}");

    // Penalties change what a repetitive greedy answer says.
    let repeat = |extra: Value| {
        let mut o = json!({"temperature": 0, "max_tokens": 24});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        let b = b.clone();
        async move {
            content(
                &full(
                    &b,
                    chat("Say the word apple ten times, separated by spaces.", o),
                )
                .await,
            )
        }
    };
    let plain = repeat(json!({})).await;
    assert_ne!(repeat(json!({"frequency_penalty": 2.0})).await, plain);
    assert_ne!(repeat(json!({"presence_penalty": 2.0})).await, plain);

    let e = b.call(&chat("x", json!({"n": 9}))).await.err().unwrap();
    assert!(matches!(e, BackendError::Invalid(ref a) if a.param.as_deref() == Some("n")));
}

/// `n` choices: each its own sequence, its events under its index, each with its
/// finish; one usage for the answer (the prompt once, every choice's tokens). A
/// seed moves on per choice, so the choices differ. (Sampled choices decoded
/// side by side need not repeat exactly: the batch's make-up moves the logits by
/// rounding, as llama.cpp's server does too.)
#[tokio::test]
async fn several_choices_with_their_own_finish_and_one_usage() {
    let b = engine(2, 1024).await;
    let ask = chat(
        "Name an animal.",
        json!({"n": 3, "temperature": 1.0, "seed": 7, "max_tokens": 8}),
    );
    let got = events(&b, ask).await;
    let texts: Vec<String> = (0..3)
        .map(|i| {
            got.iter()
                .filter_map(|e| match e {
                    Event::Text { index, text } if *index == i => Some(text.as_str()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    assert!(texts.iter().all(|t| !t.is_empty()), "{texts:?}");
    for i in 0..3u32 {
        assert_eq!(
            got.iter()
                .filter(|e| matches!(e, Event::Finish { index, .. } if *index == i))
                .count(),
            1,
            "{got:?}"
        );
    }
    let usages: Vec<_> = got.iter().filter_map(Event::usage).collect();
    assert_eq!(usages.len(), 1, "{got:?}");
    assert!(matches!(got.last(), Some(Event::Usage(_))), "{got:?}");
    let one = events(
        &b,
        chat(
            "Name an animal.",
            json!({"temperature": 0, "max_tokens": 12}),
        ),
    )
    .await;
    let one = one.iter().find_map(Event::usage).unwrap();
    assert_eq!(usages[0].prompt_tokens, one.prompt_tokens);
    assert!(usages[0].completion_tokens >= 3, "{:?}", usages[0]);
    assert!(
        texts.iter().any(|t| t != &texts[0]),
        "three samples, all alike: {texts:?}"
    );
}

#[tokio::test]
async fn suffix_needs_fim_tokens() {
    let b = engine(1, 1024).await;
    let r = completion(
        json!({"prompt": "def add(a, b):\n    ", "suffix": "\n    return c", "max_tokens": 8, "temperature": 0}),
    );
    match b.call(&r).await {
        // SmolLM2's vocabulary has no FIM tokens: a clear 400.
        Err(BackendError::Invalid(api)) => {
            assert_eq!(api.status(), 400);
            assert_eq!(api.param.as_deref(), Some("suffix"));
            assert_eq!(api.code.as_deref(), Some("fim_not_supported"));
        }
        Ok(_) => {}
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn bad_model_files_fail_at_start_with_the_path_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let start = |path: PathBuf| {
        let cfg = config_at(path, 1, 256);
        EmbeddedBackend::start(&cfg)
            .err()
            .map(|e| e.to_string())
            .expect("start should fail")
    };
    let missing = dir.path().join("missing.gguf");
    let e = start(missing.clone());
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("does not exist"),
        "{e}"
    );

    let html = dir.path().join("page.gguf");
    std::fs::write(&html, "<!DOCTYPE html><html>Not Found</html>").unwrap();
    let e = start(html.clone());
    assert!(
        e.contains(&html.display().to_string()) && e.contains("not a GGUF"),
        "{e}"
    );

    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = start(cut.clone());
    assert!(
        e.contains(&cut.display().to_string()) && e.contains("truncated"),
        "{e}"
    );

    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..100]).unwrap();
    let e = start(header_only);
    assert!(e.contains("truncated"), "{e}");
}

#[tokio::test]
async fn a_model_llama_cpp_rejects_is_unavailable_with_the_reason() {
    // A valid GGUF header with nothing llama.cpp can build a model from.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    std::fs::write(&path, b).unwrap();
    let cfg = config_at(path.clone(), 1, 256);
    let backend = EmbeddedBackend::start(&cfg).unwrap();
    let start = Instant::now();
    while backend.status() == ModelStatus::Loading {
        assert!(start.elapsed() < Duration::from_secs(30), "still loading");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(backend.status(), ModelStatus::Unavailable);
    let e = backend.call(&chat("hi", json!({}))).await.err().unwrap();
    assert!(
        matches!(&e, BackendError::Unavailable(m) if m.contains(&path.display().to_string())),
        "{e}"
    );
    assert!(backend.probe().await.is_err());
}

const WEATHER_TOOL: &str = r#"{"type": "function", "function": {"name": "get_weather",
    "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": false}}}"#;
const TIME_TOOL: &str = r#"{"type": "function", "function": {"name": "get_time",
    "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
                   "required": ["zone"], "additionalProperties": false}}}"#;

/// The calls an answer's events make: `(id, name, arguments)`, pieces joined.
fn calls(events: &[Event]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for e in events {
        if let Event::ToolCall { index: 0, call } = e {
            match out.get_mut(call.index as usize) {
                Some(c) => {
                    assert!(call.id.is_none() && call.name.is_none(), "{call:?}");
                    c.2.push_str(&call.arguments);
                }
                None => {
                    assert_eq!(call.index as usize, out.len());
                    out.push((
                        call.id.clone().unwrap(),
                        call.name.clone().unwrap(),
                        call.arguments.clone(),
                    ));
                }
            }
        }
    }
    out
}

fn finish(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|e| match e {
            Event::Finish { reason, .. } => Some(reason.as_str().to_owned()),
            _ => None,
        })
        .unwrap()
}

/// Tools on the embedded engine: a required call and a named one are held to the
/// tools' schemas by the grammar, streamed as a name and then argument pieces
/// that make valid JSON, and end with `tool_calls`; `auto` answers either way.
#[tokio::test]
async fn tool_calls_follow_the_tools_schemas() {
    let b = engine(1, 2048).await;
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL}, {TIME_TOOL}]")).unwrap();
    for seed in 1..=2 {
        let got = events(
            &b,
            chat(
                "What is the weather in Paris?",
                json!({"tools": tools, "tool_choice": "required", "temperature": 1.0,
                       "seed": seed, "max_tokens": 120, "stream": true}),
            ),
        )
        .await;
        let made = calls(&got);
        assert!(!made.is_empty(), "{got:?}");
        assert_eq!(finish(&got), "tool_calls", "{got:?}");
        for (id, name, args) in &made {
            assert!(id.starts_with("call_"), "{id}");
            let args: Value = serde_json::from_str(args).unwrap_or_else(|e| panic!("{e}: {args}"));
            match name.as_str() {
                "get_weather" => assert!(args["city"].is_string(), "{args}"),
                "get_time" => assert!(["UTC", "CET"].contains(&args["zone"].as_str().unwrap())),
                other => panic!("called {other}"),
            }
        }
        assert!(streamed_text(&got).is_empty(), "{got:?}");
    }

    // Named, one call (parallel_tool_calls false): exactly that function.
    let got = events(
        &b,
        chat(
            "What time is it?",
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_time"}},
                   "parallel_tool_calls": false, "temperature": 0, "max_tokens": 60}),
        ),
    )
    .await;
    let made = calls(&got);
    assert_eq!(made.len(), 1, "{got:?}");
    assert_eq!(made[0].1, "get_time");
    assert_eq!(finish(&got), "tool_calls");

    // Auto: a reply is plain text (the JSON around it taken off), or calls.
    let got = events(
        &b,
        chat(
            "Say hello.",
            json!({"tools": tools, "temperature": 0, "max_tokens": 80}),
        ),
    )
    .await;
    let text = streamed_text(&got).concat();
    if calls(&got).is_empty() {
        assert!(!text.is_empty() && !text.starts_with('{'), "{got:?}");
        assert_eq!(finish(&got), "stop");
    } else {
        assert_eq!(finish(&got), "tool_calls");
    }
}

/// A conversation that went through a call reads back to the model (the call and
/// the tool's result), and a tool whose schema the grammar cannot enforce, or a
/// `tool_choice` naming a function not offered, is a 400 naming the field.
#[tokio::test]
async fn tool_results_and_bad_tools() {
    let b = engine(1, 2048).await;
    let tools: Value = serde_json::from_str(&format!("[{WEATHER_TOOL}]")).unwrap();
    let r = Request::Chat(
        ChatCompletionRequest::from_value(json!({"model": "smollm2-135m", "tools": tools,
            "temperature": 0, "max_tokens": 60, "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 18 C"}]}))
        .unwrap(),
    );
    let got = events(&b, r).await;
    assert!(
        finish(&got) == "stop" || finish(&got) == "tool_calls",
        "{got:?}"
    );

    let bad = json!([{"type": "function", "function": {"name": "f",
        "parameters": {"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}}}}]);
    match b.call(&chat("hi", json!({"tools": bad}))).await {
        Err(BackendError::Invalid(e)) => {
            assert_eq!(e.param.as_deref(), Some("tools[0].function.parameters"));
            assert!(e.message.contains("`not`"), "{}", e.message);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    match b
        .call(&chat(
            "hi",
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
        ))
        .await
    {
        Err(BackendError::Invalid(e)) => {
            assert_eq!(e.param.as_deref(), Some("tool_choice"));
            assert_eq!(e.code.as_deref(), Some("unknown_tool"));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// `logprobs`: one per generated token, before its text, each the log of a
/// probability (≤ 0) with the asked number of likeliest tokens, best first; under
/// greedy decoding the chosen token is the likeliest. Asking for more than 20, or
/// `top_logprobs` without `logprobs`, is a 400.
#[tokio::test]
async fn logprobs_per_token_with_the_likeliest() {
    let b = engine(1, 1024).await;
    let got = events(
        &b,
        chat(
            "Say hello.",
            json!({"temperature": 0, "max_tokens": 6, "logprobs": true, "top_logprobs": 3}),
        ),
    )
    .await;
    let lps: Vec<&hearth_router::TokenLogprob> = got
        .iter()
        .filter_map(|e| match e {
            Event::Logprob { index: 0, token } => Some(token),
            _ => None,
        })
        .collect();
    let usage = got.iter().find_map(Event::usage).unwrap();
    assert_eq!(lps.len() as u64, usage.completion_tokens, "{got:?}");
    let text = streamed_text(&got).concat();
    let joined: String = lps.iter().map(|t| t.token.as_str()).collect();
    assert!(
        text.starts_with(joined.trim_end()) || joined.starts_with(&text),
        "{joined:?} vs {text:?}"
    );
    for t in &lps {
        assert!(t.logprob <= 0.0, "{t:?}");
        assert_eq!(t.top.len(), 3, "{t:?}");
        assert!(t.top.windows(2).all(|w| w[0].2 >= w[1].2), "{t:?}");
        assert_eq!(t.top[0].0, t.token, "greedy picks the likeliest: {t:?}");
        assert!((t.top[0].2 - t.logprob).abs() < 1e-4, "{t:?}");
    }
    let e = b
        .call(&chat("x", json!({"logprobs": true, "top_logprobs": 21})))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, BackendError::Invalid(ref a) if a.param.as_deref() == Some("top_logprobs"))
    );
    let e = b
        .call(&chat("x", json!({"top_logprobs": 2})))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, BackendError::Invalid(ref a) if a.param.as_deref() == Some("top_logprobs"))
    );
}
