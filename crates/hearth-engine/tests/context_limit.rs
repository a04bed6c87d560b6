//! The engine at its limits, against the real SmolLM2-135M-Instruct file with a
//! small context so that the limits come within a few hundred tokens: a reply
//! that reaches the context, replies that together outgrow the KV cache the
//! `parallel` sequences share, and prompts that can never fit. Nothing may hang,
//! and no reply may be changed by its neighbours: replies are greedy counts (see
//! [`count`]), compared with what the same request gives alone, or with the
//! count itself.
//!
//! `make test` downloads the model first (mk/engine.mk); HEARTH_TEST_MODEL points
//! elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // helpers fail the test loudly

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hearth_api::{ChatCompletionRequest, CompletionRequest, ModelStatus};
use hearth_config::{EmbeddedConfig, ModelBackend, ModelConfig};
use hearth_engine::EmbeddedBackend;
use hearth_router::{Backend, BackendError, Event, FinishReason, Request};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

/// How long a wait may go without the engine generating a single token (for any
/// request) before it counts as a stall. A request may legitimately wait much
/// longer for room in the cache, on a loaded machine, while the others progress.
const NO_STALL: Duration = Duration::from_secs(60);

/// `fut`'s output, as long as the engine keeps generating while it waits.
async fn unless_stalled<T>(b: &EmbeddedBackend, fut: impl std::future::Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    let mut seen = b.stats().generated_tokens;
    loop {
        match tokio::time::timeout(NO_STALL, &mut fut).await {
            Ok(v) => return v,
            Err(_) => {
                let now = b.stats().generated_tokens;
                assert!(now > seen, "stalled: no token generated in {NO_STALL:?}");
                seen = now;
            }
        }
    }
}

async fn engine(parallel: u32, context: u32) -> Arc<EmbeddedBackend> {
    let path = hearth_testkit::test_model_path();
    let cfg = ModelConfig {
        backend: ModelBackend::Embedded(EmbeddedConfig {
            path: path.clone(),
            context: Some(context),
            parallel: Some(parallel),
            // One thread: nextest runs two tests at once on a small machine, and
            // llama.cpp's threads wait for each other by spinning, so two engines
            // of two threads each on two busy cores run ten times slower.
            threads: Some(1),
            ..EmbeddedConfig::default()
        }),
        ..ModelConfig::embedded("smollm2-135m", path)
    };
    let b = EmbeddedBackend::start(&cfg).unwrap();
    let start = Instant::now();
    while b.status() != ModelStatus::Ready {
        assert_ne!(
            b.status(),
            ModelStatus::Unavailable,
            "the model failed to load"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the model did not load"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b
}

/// A greedy completion that cannot end by itself: SmolLM2's end-of-text,
/// im_start and im_end tokens are banned, so it runs to `max_tokens` or the
/// context. Prompts are the start of a count ("101, 102, 103,"): the model goes on
/// counting with a wide margin between its first and second choice, so greedy
/// output does not depend on which other sequences share the batch (free text
/// does: llama.cpp's sums differ slightly with the batch's shape, and a near tie
/// then goes the other way after a few dozen tokens). A neighbour's tokens or
/// positions leaking in would break the count.
fn count(prompt: &str, max_tokens: Option<u32>) -> Request {
    let mut v = json!({
        "model": "smollm2-135m",
        "prompt": prompt,
        "temperature": 0,
        "logit_bias": {"0": -100, "1": -100, "2": -100},
    });
    if let Some(m) = max_tokens {
        v["max_tokens"] = m.into();
    }
    Request::Completion(CompletionRequest::from_value(v).unwrap())
}

/// The start of a count from `from`, `n` numbers long.
fn count_from(from: u32, n: u32) -> String {
    let numbers: Vec<String> = (from..from + n).map(|k| k.to_string()).collect();
    format!("{},", numbers.join(", "))
}

/// What the model says after `count_from(from, n)` (and more): the count going on.
fn counted_on(from: u32, n: u32) -> String {
    (from + n..from + n + 100)
        .map(|k| format!(" {k},"))
        .collect()
}

/// How an answer ended.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    text: String,
    finish: Option<FinishReason>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// The whole answer, or the error it ended with; fails the test on a stall.
async fn answer(b: &EmbeddedBackend, r: Request) -> Result<Answer, BackendError> {
    let mut s = unless_stalled(b, b.call(&r)).await?;
    let mut a = Answer {
        text: String::new(),
        finish: None,
        prompt_tokens: 0,
        completion_tokens: 0,
    };
    while let Some(e) = unless_stalled(b, s.next()).await {
        match e? {
            Event::Text { text, .. } => a.text.push_str(&text),
            Event::Finish { reason, .. } => a.finish = Some(reason),
            Event::Usage(u) => {
                a.prompt_tokens = u.prompt_tokens;
                a.completion_tokens = u.completion_tokens;
            }
            _ => {}
        }
    }
    Ok(a)
}

/// Every log event of this test process: (level, target, message).
type Logs = Arc<Mutex<Vec<(tracing::Level, String, String)>>>;

/// Records every event, llama.cpp's lines included (they come through `tracing`
/// at debug when a subscriber wants them). Each test runs in its own process
/// under nextest; under `cargo test` the first test's subscriber serves all.
fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let layer = Capture(logs.clone());
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(tracing_subscriber::filter::LevelFilter::DEBUG);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

struct Capture(Logs);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        let meta = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push((*meta.level(), meta.target().to_owned(), m.0));
    }
}

/// Nothing at warn or above: a full cache is an expected, handled event.
fn assert_no_warnings(logs: &Logs) {
    let logs = logs.lock().unwrap();
    let loud: Vec<_> = logs
        .iter()
        .filter(|(level, _, _)| *level <= tracing::Level::WARN)
        .collect();
    assert!(loud.is_empty(), "warnings or errors logged: {loud:#?}");
}

fn logged(logs: &Logs, level: tracing::Level, needle: &str) -> bool {
    logs.lock()
        .unwrap()
        .iter()
        .any(|(l, _, m)| *l == level && m.contains(needle))
}

#[tokio::test]
async fn a_reply_alone_ends_with_length_exactly_at_the_context() {
    // llama.cpp rounds a context of 128 up to 256 cells; the reply still ends at 128.
    let b = engine(2, 128).await;
    let a = answer(&b, count(&count_from(1, 6), None)).await.unwrap();
    assert_eq!(a.finish, Some(FinishReason::Length), "{a:?}");
    assert_eq!(a.prompt_tokens + a.completion_tokens, 128, "{a:?}");
    assert_eq!(b.stats().cut_sequences, 0);
}

/// The case of issue 20: one reply grows until the KV cache the sequences share
/// is full while two others are mid-reply. It ends with `length` there; the two
/// others finish with exactly the text they give alone.
#[tokio::test]
async fn a_reply_that_fills_the_shared_cache_ends_with_length_and_its_neighbours_are_untouched() {
    let logs = capture_logs();
    let b = engine(3, 256).await;
    let neighbours = [
        count(&count_from(1, 6), Some(60)),
        count(&count_from(101, 4), Some(60)),
    ];
    let mut alone = Vec::new();
    for r in &neighbours {
        alone.push(answer(&b, r.clone()).await.unwrap());
    }
    assert!(alone.iter().all(|a| a.completion_tokens == 60), "{alone:?}");
    assert!(counted_on(1, 6).starts_with(&alone[0].text), "{alone:?}");
    assert!(counted_on(101, 4).starts_with(&alone[1].text), "{alone:?}");

    // The long reply runs alone until it holds about 100 of the 256 cells. Then
    // the neighbours' prompts fit, but not their 60-token replies beside its
    // growth: the cache is full some 40 tokens later, long before the long reply
    // would reach its own limit (256).
    let before = b.stats().generated_tokens;
    let long = tokio::spawn({
        let b = b.clone();
        async move { answer(&b, count(&count_from(1000, 4), None)).await }
    });
    unless_stalled(&b, async {
        while b.stats().generated_tokens < before + 80 {
            assert!(!long.is_finished(), "the long reply ended early");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (x, y) = tokio::join!(
        answer(&b, neighbours[0].clone()),
        answer(&b, neighbours[1].clone())
    );
    let long = long.await.unwrap().unwrap();

    assert_eq!(long.finish, Some(FinishReason::Length), "{long:?}");
    assert!(counted_on(1000, 4).starts_with(&long.text), "{long:?}");
    assert!(
        long.prompt_tokens + long.completion_tokens < 256,
        "the long reply reached its own limit, not the shared one: {long:?}"
    );
    assert_eq!(x.unwrap(), alone[0]);
    assert_eq!(y.unwrap(), alone[1]);
    let stats = b.stats();
    assert_eq!(
        (stats.cut_sequences, stats.requeued_sequences),
        (1, 0),
        "{stats:?}"
    );
    // llama.cpp's own line is still written, at debug; ours says what it means.
    assert!(logged(
        &logs,
        tracing::Level::DEBUG,
        "failed to find a memory slot"
    ));
    assert!(logged(
        &logs,
        tracing::Level::INFO,
        "the longest reply ends here with `length`"
    ));
    assert_no_warnings(&logs);
}

/// A reply that has taken more than its share of the cache (`256 / 2` here)
/// gives it back when a request within its share arrives and finds no room: it
/// ends with `length`, and the newcomer does not wait for it to finish.
#[tokio::test]
async fn a_reply_beyond_its_share_makes_room_for_a_new_request() {
    let logs = capture_logs();
    let b = engine(2, 256).await;
    let long = tokio::spawn({
        let b = b.clone();
        async move { answer(&b, count(&count_from(1000, 4), None)).await }
    });
    // The long reply holds about 195 cells: a prompt of about 70 tokens no longer
    // fits beside it, 60 tokens before the reply would reach its own limit.
    unless_stalled(&b, async {
        while b.stats().generated_tokens < 170 {
            assert!(!long.is_finished(), "the long reply ended early");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let short = answer(&b, count(&count_from(1, 20), Some(20)))
        .await
        .unwrap();
    let long = long.await.unwrap().unwrap();

    assert!((40..128).contains(&short.prompt_tokens), "{short:?}");
    assert_eq!(short.completion_tokens, 20, "{short:?}");
    assert!(counted_on(1, 20).starts_with(&short.text), "{short:?}");
    assert_eq!(long.finish, Some(FinishReason::Length), "{long:?}");
    assert!(
        long.prompt_tokens + long.completion_tokens < 256,
        "the long reply reached its own limit: {long:?}"
    );
    assert!(counted_on(1000, 4).starts_with(&long.text), "{long:?}");
    assert_eq!(b.stats().cut_sequences, 1);
    assert!(logged(
        &logs,
        tracing::Level::INFO,
        "the reply furthest beyond its share, for a waiting request, ends here"
    ));
    assert_no_warnings(&logs);
}

/// `parallel` requests whose prompts (about 100 tokens) fit the cache only two at
/// a time, and whose replies do not fit it even two at a time: prompts wait for
/// room in arrival order, replies that outgrow the cache end with `length`. Every
/// request ends, a cut one with the start of what it says uncut, and the engine
/// serves normally afterwards.
#[tokio::test]
async fn long_prompts_that_together_overfill_the_cache_all_end() {
    let logs = capture_logs();
    let b = engine(4, 256).await;
    let starts = [1, 200, 400, 600];
    let together = futures::future::join_all(
        starts.map(|from| answer(&b, count(&count_from(from, 24), Some(48)))),
    )
    .await;
    let mut cut = 0;
    for (got, from) in together.into_iter().zip(starts) {
        let got = got.unwrap();
        assert_eq!(got.finish, Some(FinishReason::Length), "{got:?}");
        assert!((80..128).contains(&got.prompt_tokens), "{got:?}");
        // Cut or not, what was said is the count going on, nothing else.
        assert!(
            counted_on(from, 24).starts_with(&got.text) && got.completion_tokens <= 48,
            "{got:?} does not go on counting from {from}"
        );
        cut += u64::from(got.completion_tokens < 48);
    }
    let stats = b.stats();
    assert!(cut >= 1, "the replies never outgrew the cache: {stats:?}");
    assert_eq!(stats.cut_sequences, cut, "{stats:?}");

    let hi = Request::Chat(
        ChatCompletionRequest::from_value(json!({
            "model": "smollm2-135m",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
        }))
        .unwrap(),
    );
    let a = answer(&b, hi).await.unwrap();
    assert!(a.finish.is_some() && a.completion_tokens >= 1, "{a:?}");
    assert_no_warnings(&logs);
}

/// A prompt that could never fit is refused up front with the numbers, while
/// another sequence is generating; that one goes on counting.
#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_400_and_disturbs_no_one() {
    let b = engine(2, 256).await;
    let neighbour = count(&count_from(1, 6), Some(30));
    let running = tokio::spawn({
        let b = b.clone();
        async move { answer(&b, neighbour).await }
    });
    let e = b
        .call(&count(&count_from(1, 100), Some(10)))
        .await
        .err()
        .expect("a prompt over the context is refused");
    let BackendError::Invalid(api) = e else {
        panic!("{e:?}")
    };
    assert_eq!(api.status(), 400);
    assert_eq!(api.code.as_deref(), Some("context_length_exceeded"));
    assert_eq!(api.param.as_deref(), Some("prompt"));
    assert!(
        api.message.contains("maximum context length is 256 tokens")
            && api.message.contains("10 for the completion"),
        "{}",
        api.message
    );
    let got = running.await.unwrap().unwrap();
    assert_eq!(got.completion_tokens, 30, "{got:?}");
    assert!(counted_on(1, 6).starts_with(&got.text), "{got:?}");
}
