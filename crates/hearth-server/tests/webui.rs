//! `/api/hearth/conversations` over a real socket: the whole server (as `hearth serve`
//! builds it: auth, limits, the gateway, the UI) on a loopback port, a SQLite store
//! in a temp directory, and a scripted fake backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use hearth_api::{ChatMessage, Usage, chat::chunk_body, chat::usage_chunk_body};
use hearth_config::{Config, MapEnv};
use hearth_router::{Backend, BackendError, Event, EventStream, FinishReason, Request, Wire};
use serde_json::{Value, json};

mod log_root;

// ---- the fake backend ------------------------------------------------------------

/// Answers by the last user message: `slow...` streams 200 words 20 ms apart (as
/// typed events, like the engine), `fail...` fails after two pieces, `full...`
/// answers in one upstream body, `think...` thinks first (`reasoning_content`
/// chunks, as vLLM sends a reasoning model's); anything else is echoed back word
/// by word in an upstream's OpenAI chunks.
#[derive(Default)]
struct Fake {
    context: Option<u32>,
    down: bool,
    seen: Mutex<Vec<Vec<ChatMessage>>>,
    cancelled: Arc<AtomicBool>,
    calls: AtomicUsize,
}

struct DropFlag(Arc<AtomicBool>, bool);
impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// An upstream's chunk of `text`.
fn chunk(text: &str) -> Result<Event, BackendError> {
    let v = chunk_body("id", "fake", 0, json!({"content": text}), None);
    Ok(Event::Wire(Wire::chunk(Bytes::from(v.to_string()))))
}

fn text(text: &str) -> Result<Event, BackendError> {
    Ok(Event::Text {
        index: 0,
        text: text.to_owned(),
    })
}

#[async_trait]
impl Backend for Fake {
    fn kind(&self) -> &'static str {
        "upstream"
    }
    fn context_length(&self) -> Option<u32> {
        self.context
    }
    async fn call(&self, request: &Request) -> Result<EventStream, BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down {
            return Err(BackendError::Connect("connection refused".into()));
        }
        let Request::Chat(req) = request else {
            panic!("chat only")
        };
        assert!(
            req.stream && req.include_usage(),
            "the UI's replies stream with usage"
        );
        let last = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(ChatMessage::text)
            .unwrap_or_default();
        self.seen.lock().unwrap().push(req.messages.clone());
        let usage = Usage::new(11, 7);
        let finish = Ok(Event::Wire(Wire::chunk(Bytes::from(
            chunk_body("id", "fake", 0, json!({}), Some("stop")).to_string(),
        ))));
        let usage_chunk = Ok(Event::Wire(Wire::chunk(Bytes::from(
            usage_chunk_body("id", "fake", 0, &usage).to_string(),
        ))));
        if last.starts_with("full") {
            let body =
                hearth_api::chat::completion_body("id", "fake", "whole answer", "stop", &usage);
            let whole = Event::Wire(Wire {
                data: Bytes::from(body.to_string()),
                usage: Some(usage),
                whole: true,
            });
            return Ok(futures::stream::iter([Ok(whole)]).boxed());
        }
        if last.starts_with("slow") {
            let mut flag = DropFlag(self.cancelled.clone(), false);
            let s = futures::stream::unfold(0usize, move |i| async move {
                if i >= 200 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((text(&format!("w{i} ")), i + 1))
            })
            .chain(futures::stream::iter([
                Ok(Event::Finish {
                    index: 0,
                    reason: FinishReason::Stop,
                }),
                Ok(Event::Usage(usage)),
            ]))
            .map(move |c| {
                let flag = &mut flag; // the whole guard moves in, not just its field
                if c.as_ref().is_ok_and(|e| e.usage().is_some()) {
                    flag.1 = true; // finished: not a cancellation
                }
                c
            });
            return Ok(s.boxed());
        }
        if last.starts_with("fail") {
            let s = futures::stream::iter([
                text("partial "),
                chunk("answer"),
                Err(BackendError::Protocol("upstream closed".into())),
            ]);
            return Ok(s.boxed());
        }
        let mut items: Vec<Result<Event, BackendError>> = Vec::new();
        if last.starts_with("think") {
            for piece in ["The user ", "wants me\n", "to think."] {
                let v = chunk_body("id", "fake", 0, json!({"reasoning_content": piece}), None);
                items.push(Ok(Event::Wire(Wire::chunk(Bytes::from(v.to_string())))));
            }
        }
        items.extend(format!("You said: {last}").split_inclusive(' ').map(chunk));
        items.push(finish);
        items.push(usage_chunk);
        Ok(futures::stream::iter(items).boxed())
    }
}

// ---- the app -----------------------------------------------------------------

struct App {
    base: String,
    http: reqwest::Client,
    fake: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), hearth_server::RunError>>,
}

struct Opts {
    context: Option<u32>,
    /// `limits.max_message_bytes`, when not the default.
    max_message_bytes: Option<usize>,
    keys: bool,
    /// More keys of the `[[keys]]` table `ui` (its `rpm`, `tpm`).
    key_limits: &'static str,
    /// More `[[keys]]` tables.
    more_keys: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            context: Some(100_000),
            max_message_bytes: None,
            keys: false,
            key_limits: "",
            more_keys: "",
        }
    }
}

impl App {
    async fn start(dir: &tempfile::TempDir, opts: Opts) -> App {
        log_root::install("webui");
        let mut toml = String::new();
        if opts.keys {
            toml.push_str("[[keys]]\nname = \"ui\"\nkey = \"sk-test-123\"\n");
            toml.push_str(opts.key_limits);
            toml.push('\n');
            toml.push_str(opts.more_keys);
        }
        if let Some(n) = opts.max_message_bytes {
            toml.push_str(&format!("[limits]\nmax_message_bytes = {n}\n"));
        }
        toml.push_str(&format!(
            "[server]\nshutdown_grace_secs = 1\n[storage]\ndata_dir = \"{}\"\n[health]\nfailure_threshold = 100\n",
            dir.path().display()
        ));
        // Two models whose backends are the fakes below (the URL is never used).
        for name in ["fake", "down"] {
            toml.push_str(&format!(
                "[[models]]\nname = \"{name}\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:9/v1\"\nretries = 0\ntags = [\"test\"]\n"
            ));
        }
        let config: Config =
            hearth_config::load_str(&toml, "test.toml", &MapEnv::default()).unwrap();
        let fake = Arc::new(Fake {
            context: opts.context,
            ..Fake::default()
        });
        let down = Arc::new(Fake {
            down: true,
            ..Fake::default()
        });
        let server = hearth_server::Server::builder(config)
            .backend("fake", fake.clone())
            .backend("down", down)
            .build()
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = rx.await;
        }));
        App {
            base,
            http: reqwest::Client::new(),
            fake,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // The server closes its store once it has drained.
        let _ = (&mut self.task).await;
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    async fn json(&self, method: reqwest::Method, p: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method, self.url(p));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create(&self, body: Value) -> Value {
        let (s, v) = self
            .json(
                reqwest::Method::POST,
                "/api/hearth/conversations",
                Some(body),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v
    }

    async fn get(&self, id: &str) -> Value {
        let (s, v) = self
            .json(
                reqwest::Method::GET,
                &format!("/api/hearth/conversations/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// `GET .../export?format=FORMAT`.
    async fn export(&self, id: &str, format: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!(
                "/api/hearth/conversations/{id}/export?format={format}"
            )))
            .send()
            .await
            .unwrap()
    }

    /// Posts and reads the whole SSE answer into its events.
    async fn send(&self, id: &str, body: Value) -> Vec<Value> {
        let resp = self
            .http
            .post(self.url(&format!("/api/hearth/conversations/{id}/messages")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        events(&resp.text().await.unwrap())
    }
}

fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn assert_error(v: &Value, code: &str) {
    let e = &v["error"];
    assert!(
        e["message"].is_string() && e["type"].is_string(),
        "OpenAI error shape: {v}"
    );
    assert!(e.as_object().unwrap().contains_key("param"), "{v}");
    assert_eq!(e["code"], code, "{v}");
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "delta")
        .map(|e| e["content"].as_str().unwrap())
        .collect()
}

// ---- tests --------------------------------------------------------------------

#[tokio::test]
async fn create_list_rename_delete_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let a = app
        .create(json!({"title": "Alpha", "model": "fake", "system_prompt": "Be brief."}))
        .await;
    assert_eq!(a["title"], "Alpha");
    assert_eq!(a["model"], "fake");
    let b = app.create(json!({})).await;
    let id_a = a["id"].as_str().unwrap();
    let id_b = b["id"].as_str().unwrap();

    let (s, list) = app
        .json(reqwest::Method::GET, "/api/hearth/conversations", None)
        .await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id_b, id_a], "newest first");

    let (s, renamed) = app
        .json(
            reqwest::Method::PATCH,
            &format!("/api/hearth/conversations/{id_a}"),
            Some(json!({"title": "Renamed", "system_prompt": null})),
        )
        .await;
    assert_eq!(s, 200, "{renamed}");
    assert_eq!(renamed["title"], "Renamed");
    assert!(renamed["system_prompt"].is_null());

    let (s, found) = app
        .json(
            reqwest::Method::GET,
            "/api/hearth/conversations?search=renam",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(found["data"].as_array().unwrap().len(), 1);

    let (s, del) = app
        .json(
            reqwest::Method::DELETE,
            &format!("/api/hearth/conversations/{id_a}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{del}");
    assert_eq!(del["deleted"], true);
    let (s, v) = app
        .json(
            reqwest::Method::GET,
            &format!("/api/hearth/conversations/{id_a}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, "conversation_not_found");
    let (s, v) = app
        .json(
            reqwest::Method::DELETE,
            &format!("/api/hearth/conversations/{id_a}"),
            None,
        )
        .await;
    assert_eq!(s, 404, "{v}");

    let (s, back) = app
        .json(
            reqwest::Method::POST,
            &format!("/api/hearth/conversations/{id_a}/restore"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["title"], "Renamed");
    let (s, v) = app
        .json(
            reqwest::Method::POST,
            &format!("/api/hearth/conversations/{id_a}/restore"),
            None,
        )
        .await;
    assert_eq!(s, 404, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn paging_walks_every_conversation_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    for i in 0..12 {
        app.create(json!({"title": format!("c{i}")})).await;
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/hearth/conversations?limit=5&cursor={c}"),
            None => "/api/hearth/conversations?limit=5".into(),
        };
        let (s, page) = app.json(reqwest::Method::GET, &q, None).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        for c in page["data"].as_array().unwrap() {
            assert!(seen.insert(c["id"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (12, 3));
    app.stop().await;
}

#[tokio::test]
async fn a_message_streams_its_reply_and_both_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let c = app.create(json!({"system_prompt": "You are terse."})).await;
    let id = c["id"].as_str().unwrap();
    let ev = app.send(id, json!({"content": "hello there"})).await;
    assert_eq!(ev[0]["type"], "start");
    assert_eq!(ev[0]["user_message"]["content"], "hello there");
    assert_eq!(ev[0]["model"], "fake");
    assert!(
        ev.iter().filter(|e| e["type"] == "delta").count() >= 3,
        "streamed in pieces: {ev:?}"
    );
    assert_eq!(text_of(&ev), "You said: hello there");
    let done = ev.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["message"]["finish_reason"], "stop");
    assert_eq!(done["message"]["completion_tokens"], 7);
    assert!(done["message"]["ttft_ms"].is_i64());

    // The model saw the system prompt, then the user's message.
    let seen = app.fake.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (seen[0].role.as_str(), seen[0].text().as_str()),
        ("system", "You are terse.")
    );
    assert_eq!(seen[1].text(), "hello there");

    let conv = app.get(id).await;
    assert_eq!(
        conv["title"], "hello there",
        "titled from the first message"
    );
    let msgs = conv["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"], "You said: hello there");
    assert_eq!(msgs[1]["model"], "fake");
    assert_eq!(
        (
            msgs[1]["prompt_tokens"].as_i64(),
            msgs[1]["finish_reason"].as_str()
        ),
        (Some(11), Some("stop"))
    );

    // A whole (non-streamed) body is handled too.
    let ev = app.send(id, json!({"content": "full please"})).await;
    assert_eq!(text_of(&ev), "whole answer");
    app.stop().await;
}

/// A reasoning model's thinking streams as `reasoning` events apart from the
/// answer, is stored apart with how long it took (and survives a reload), is
/// quoted in the Markdown
/// export, and is never sent back to the model with the history.
#[tokio::test]
async fn a_reasoning_models_thinking_streams_and_is_stored_apart() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app.create(json!({"title": "Thinking"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev = app.send(&id, json!({"content": "think hard"})).await;
    let thought: String = ev
        .iter()
        .filter(|e| e["type"] == "reasoning")
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(thought, "The user wants me\nto think.");
    assert_eq!(text_of(&ev), "You said: think hard");
    let first_reasoning = ev.iter().position(|e| e["type"] == "reasoning").unwrap();
    let first_delta = ev.iter().position(|e| e["type"] == "delta").unwrap();
    assert!(first_reasoning < first_delta, "{ev:?}");
    let done = ev.last().unwrap();
    assert_eq!(done["message"]["reasoning"], "The user wants me\nto think.");
    assert_eq!(done["message"]["content"], "You said: think hard");

    // Stored apart; a reply without thinking has no `reasoning` at all.
    app.send(&id, json!({"content": "plain"})).await;
    let conv = app.get(&id).await;
    let msgs = conv["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["reasoning"], "The user wants me\nto think.");
    assert!(msgs[3].get("reasoning").is_none(), "{}", msgs[3]);
    // How long it thought (the first piece of thinking to the last), within the
    // reply's time; none without thinking.
    let ms = msgs[1]["reasoning_ms"].as_i64().unwrap();
    assert!(
        (0..=msgs[1]["duration_ms"].as_i64().unwrap()).contains(&ms),
        "{}",
        msgs[1]
    );
    assert!(msgs[3].get("reasoning_ms").is_none(), "{}", msgs[3]);
    // The history sent with the second turn holds the answer only.
    let seen = app.fake.seen.lock().unwrap().last().cloned().unwrap();
    let sent: Vec<String> = seen.iter().map(ChatMessage::text).collect();
    assert_eq!(sent, ["think hard", "You said: think hard", "plain"]);

    let md = app.export(&id, "markdown").await.text().await.unwrap();
    assert!(
        md.contains("## Assistant (fake)\n\n> *Thinking:*\n> The user wants me\n> to think.\n\nYou said: think hard"),
        "{md}"
    );
    app.stop().await;
}

#[tokio::test]
async fn regenerate_and_edit_replace_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.send(&id, json!({"content": "one"})).await;
    app.send(&id, json!({"content": "two"})).await;

    let resp = app
        .http
        .post(app.url(&format!("/api/hearth/conversations/{id}/regenerate")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    assert!(ev[0]["user_message"].is_null());
    assert_eq!(text_of(&ev), "You said: two");
    let msgs = app.get(&id).await["messages"].as_array().unwrap().clone();
    assert_eq!(msgs.len(), 4, "the old reply was replaced, not added to");
    assert_eq!(msgs[3]["id"], ev.last().unwrap()["message"]["id"]);

    // Edit the first message: it and everything after it are replaced.
    let first = msgs[0]["id"].as_str().unwrap();
    let ev = app
        .send(&id, json!({"content": "uno", "replace": first}))
        .await;
    assert_eq!(text_of(&ev), "You said: uno");
    let msgs = app.get(&id).await["messages"].as_array().unwrap().clone();
    let contents: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["uno", "You said: uno"]);
    let seen = app.fake.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.len(), 1, "the model saw only the edited history");

    // Replacing an assistant message, or one from elsewhere, is refused.
    let (s, v) = app
        .json(
            reqwest::Method::POST,
            &format!("/api/hearth/conversations/{id}/messages"),
            Some(json!({"content": "x", "replace": msgs[1]["id"]})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, "message_not_found");
    app.stop().await;
}

#[tokio::test]
async fn stopping_mid_reply_keeps_what_was_generated() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .http
        .post(app.url(&format!("/api/hearth/conversations/{id}/messages")))
        .json(&json!({"content": "slow story"}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut got = String::new();
    while got.matches("\"delta\"").count() < 5 {
        got.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(body); // the browser's Esc: the connection goes away.

    let mut msgs = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        msgs = app.get(&id).await["messages"].as_array().unwrap().clone();
        if msgs.len() == 2 && msgs[1]["finish_reason"].is_string() {
            break;
        }
    }
    assert_eq!(msgs[1]["finish_reason"], "stopped", "{msgs:?}");
    let kept = msgs[1]["content"].as_str().unwrap();
    assert!(kept.starts_with("w0 w1 w2 w3 w4"), "{kept}");
    assert!(!kept.contains("w199"), "generation stopped early: {kept}");
    assert!(
        app.fake.cancelled.load(Ordering::SeqCst),
        "the backend stream was dropped (generation cancelled)"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failure_mid_reply_loses_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.send(&id, json!({"content": "first"})).await;
    let ev = app.send(&id, json!({"content": "fail now"})).await;
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "error");
    assert!(
        last["error"]["message"].is_string() && last["error"]["type"].is_string(),
        "{last}"
    );
    assert_eq!(last["message"]["finish_reason"], "error");
    let msgs = app.get(&id).await["messages"].as_array().unwrap().clone();
    let contents: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["first", "You said: first", "fail now", "partial answer"]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unavailable_backend_is_a_503_and_the_message_stays() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app.create(json!({"model": "down"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .http
        .post(app.url(&format!("/api/hearth/conversations/{id}/messages")))
        .json(&json!({"content": "anyone?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_error(&v, "backend_unavailable");
    let msgs = app.get(&id).await["messages"].as_array().unwrap().clone();
    assert_eq!(msgs.len(), 1, "the user's message is kept for a retry");

    // Switching model on the next request (here: regenerate) answers it.
    let resp = app
        .http
        .post(app.url(&format!("/api/hearth/conversations/{id}/regenerate")))
        .json(&json!({"model": "fake"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        text_of(&events(&resp.text().await.unwrap())),
        "You said: anyone?"
    );
    assert_eq!(app.get(&id).await["model"], "fake");
    app.stop().await;
}

#[tokio::test]
async fn old_turns_are_left_out_at_three_quarters_of_the_context() {
    let dir = tempfile::tempdir().unwrap();
    // 400 tokens of context: 300 for the prompt.
    let app = App::start(
        &dir,
        Opts {
            context: Some(400),
            ..Opts::default()
        },
    )
    .await;
    let id = app.create(json!({"system_prompt": "SYS"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let long = "x".repeat(300); // ~80 tokens each way
    let mut last = Vec::new();
    for i in 0..4 {
        last = app
            .send(&id, json!({"content": format!("{i} {long}")}))
            .await;
    }
    let ctx = &last[0]["context"];
    assert_eq!(ctx["limit"], 400);
    assert!(ctx["omitted"].as_u64().unwrap() > 0, "{ctx}");
    assert!(ctx["used"].as_u64().unwrap() <= 300, "{ctx}");
    let seen = app.fake.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen[0].role, "system", "the system prompt is kept");
    assert_eq!(seen[1].role, "user", "what is sent starts with a user turn");
    assert!(seen.last().unwrap().text().starts_with("3 "));
    assert!(seen.len() < 8);
    // The conversation view reports the same.
    let conv = app.get(&id).await;
    assert!(conv["context"]["omitted"].as_u64().unwrap() > 0);

    // One message larger than the whole context is refused before it is stored.
    let (s, v) = app
        .json(
            reqwest::Method::POST,
            &format!("/api/hearth/conversations/{id}/messages"),
            Some(json!({"content": "y".repeat(4000)})),
        )
        .await;
    assert_eq!(s, 400);
    assert_error(&v, "context_length_exceeded");
    assert_eq!(app.get(&id).await["messages"].as_array().unwrap().len(), 8);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_openai_shaped_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &dir,
        Opts {
            max_message_bytes: Some(1000),
            ..Opts::default()
        },
    )
    .await;
    let id = app.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let msgs = format!("/api/hearth/conversations/{id}/messages");
    let missing = "/api/hearth/conversations/0b6a2f3e-1111-4222-8333-444455556666";
    use reqwest::Method as M;
    let cases: Vec<(M, String, Option<Value>, u16, &str, Option<&str>)> = vec![
        (
            M::GET,
            "/api/hearth/conversations/not-a-uuid".into(),
            None,
            400,
            "invalid_id",
            Some("id"),
        ),
        (
            M::DELETE,
            "/api/hearth/conversations/..%2F..%2Fetc".into(),
            None,
            400,
            "invalid_id",
            Some("id"),
        ),
        (
            M::GET,
            missing.into(),
            None,
            404,
            "conversation_not_found",
            Some("id"),
        ),
        (
            M::POST,
            format!("{missing}/messages"),
            Some(json!({"content": "hi"})),
            404,
            "conversation_not_found",
            Some("id"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!({"content": "z".repeat(1001)})),
            413,
            "message_too_large",
            Some("content"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!({"content": "hi", "model": "gpt-9"})),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            M::POST,
            "/api/hearth/conversations".into(),
            Some(json!({"model": "gpt-9"})),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            M::PATCH,
            format!("/api/hearth/conversations/{id}"),
            Some(json!({"model": "gpt-9"})),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            M::POST,
            "/api/hearth/conversations".into(),
            Some(json!({"system_prompt": "s".repeat(1001)})),
            413,
            "message_too_large",
            Some("system_prompt"),
        ),
        (
            M::POST,
            "/api/hearth/conversations".into(),
            Some(json!({"title": "t".repeat(201)})),
            400,
            "",
            Some("title"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!({"content": "   "})),
            400,
            "",
            Some("content"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!({"content": 5})),
            400,
            "",
            Some("content"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!({})),
            400,
            "",
            Some("content"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!({"content": "hi", "tempreature": 1})),
            400,
            "",
            Some("tempreature"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!({"content": "hi", "replace": "nope"})),
            400,
            "invalid_id",
            Some("replace"),
        ),
        (
            M::POST,
            msgs.clone(),
            Some(json!(["not", "an", "object"])),
            400,
            "",
            Some(""),
        ),
        (
            M::POST,
            format!("/api/hearth/conversations/{id}/regenerate"),
            None,
            400,
            "nothing_to_regenerate",
            Some("id"),
        ),
        (
            M::GET,
            "/api/hearth/conversations?limit=0".into(),
            None,
            400,
            "",
            Some("limit"),
        ),
        (
            M::GET,
            "/api/hearth/conversations?limit=lots".into(),
            None,
            400,
            "",
            Some("limit"),
        ),
        (
            M::GET,
            "/api/hearth/conversations?cursor=bogus".into(),
            None,
            400,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            M::GET,
            format!("/api/hearth/conversations/{id}/export?format=pdf"),
            None,
            400,
            "",
            Some("format"),
        ),
        (
            M::GET,
            "/api/nothing-here".into(),
            None,
            404,
            "not_found",
            None,
        ),
    ];
    for (method, path, body, status, code, param) in cases {
        let (s, v) = app.json(method.clone(), &path, body).await;
        assert_eq!(s, status, "{method} {path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {path}: {v}"
        );
        assert!(v["error"]["type"].is_string(), "{v}");
        if !code.is_empty() {
            assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
        }
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{method} {path}: {v}");
        }
    }
    // Malformed JSON and a non-JSON body.
    let r = app
        .http
        .post(app.url(&msgs))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.unwrap(), "invalid_json");
    let r = app
        .http
        .post(app.url(&msgs))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Nothing above was stored.
    assert!(
        app.get(&id).await["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(app.fake.calls.load(Ordering::SeqCst), 0);
    app.stop().await;
}

#[tokio::test]
async fn export_as_json_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app
        .create(json!({"title": "Export me", "system_prompt": "Be kind."}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.send(&id, json!({"content": "hi"})).await;
    let r = app.export(&id, "markdown").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"export-me.md\""
    );
    let md = r.text().await.unwrap();
    assert!(md.starts_with("# Export me\n"), "{md}");
    assert!(
        md.contains("## System\n\nBe kind.")
            && md.contains("## User\n\nhi")
            && md.contains("## Assistant (fake)\n\nYou said: hi"),
        "{md}"
    );
    let r = app.export(&id, "json").await;
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"export-me.json\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["conversation"]["id"], id.as_str());
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app.create(json!({"title": "Keep"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.send(&id, json!({"content": "remember"})).await;
    app.stop().await;
    let app = App::start(&dir, Opts::default()).await;
    let conv = app.get(&id).await;
    assert_eq!(conv["title"], "Keep");
    assert_eq!(conv["messages"][1]["content"], "You said: remember");
    app.stop().await;
}

#[tokio::test]
async fn api_needs_the_key_when_keys_are_configured_and_the_ui_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &dir,
        Opts {
            keys: true,
            ..Opts::default()
        },
    )
    .await;
    let r = app
        .http
        .get(app.url("/api/hearth/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url("/api/hearth/conversations"))
        .bearer_auth("sk-test-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for p in ["/", "/c/0b6a2f3e-1111-4222-8333-444455556666"] {
        let r = app.http.get(app.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_uis_replies_are_limited_and_counted_against_the_callers_key() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &dir,
        Opts {
            keys: true,
            key_limits: "rpm = 2\ntpm = 1000",
            ..Opts::default()
        },
    )
    .await;
    let send = |id: String, content: &'static str| {
        app.http
            .post(app.url(&format!("/api/hearth/conversations/{id}/messages")))
            .bearer_auth("sk-test-123")
            .json(&json!({"content": content}))
            .send()
    };
    let create = app
        .http
        .post(app.url("/api/hearth/conversations"))
        .bearer_auth("sk-test-123")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let id = create.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for content in ["one", "two"] {
        let r = send(id.clone(), content).await.unwrap();
        assert_eq!(r.status(), 200);
        let done = events(&r.text().await.unwrap());
        assert_eq!(done.last().unwrap()["type"], "done", "{done:?}");
    }
    // The key's two requests a minute are spent: the third reply is refused before
    // it starts, like a third /v1 request would be, and the message stays stored.
    let r = send(id.clone(), "three").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_error(&v, "rate_limit_exceeded");
    assert!(v["error"]["message"].as_str().unwrap().contains("`ui`"));
    let conv: Value = app
        .http
        .get(app.url(&format!("/api/hearth/conversations/{id}")))
        .bearer_auth("sk-test-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contents: Vec<&str> = conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents.last(), Some(&"three"));
    // Counted against the key: two replies of 11 + 7 tokens each.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("sk-test-123")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |needle: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(line("hearth_key_requests_total{key=\"ui\"}"), "2");
    assert_eq!(
        line("hearth_key_tokens_total{key=\"ui\",kind=\"prompt\"}"),
        "22"
    );
    assert_eq!(
        line("hearth_key_tokens_total{key=\"ui\",kind=\"completion\"}"),
        "14"
    );
    app.stop().await;
}

#[tokio::test]
async fn each_key_sees_only_its_own_conversations_and_an_admin_key_sees_all() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &dir,
        Opts {
            keys: true,
            more_keys: "[[keys]]\nname = \"other\"\nkey = \"sk-other-123\"\n\
                        [[keys]]\nname = \"boss\"\nkey = \"sk-boss-1234\"\nadmin = true\n",
            ..Opts::default()
        },
    )
    .await;
    let call = |method: reqwest::Method, path: String, key: &'static str| {
        app.http
            .request(method, app.url(&path))
            .bearer_auth(key)
            .json(&json!({}))
            .send()
    };
    let base = "/api/hearth/conversations".to_owned();
    let mine: Value = call(reqwest::Method::POST, base.clone(), "sk-test-123")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = mine["id"].as_str().unwrap().to_owned();
    assert_eq!(mine["owner"], "ui");
    let one = format!("{base}/{id}");
    // Another key: not listed, and not found however it is asked for.
    let list: Value = call(reqwest::Method::GET, base.clone(), "sk-other-123")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));
    for (method, path) in [
        (reqwest::Method::GET, one.clone()),
        (reqwest::Method::PATCH, one.clone()),
        (reqwest::Method::DELETE, one.clone()),
        (reqwest::Method::GET, format!("{one}/export")),
        (reqwest::Method::POST, format!("{one}/regenerate")),
    ] {
        let r = call(method.clone(), path.clone(), "sk-other-123")
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        assert_error(&r.json().await.unwrap(), "conversation_not_found");
    }
    assert_eq!(
        call(reqwest::Method::GET, one.clone(), "sk-test-123")
            .await
            .unwrap()
            .status(),
        200,
        "still there for its owner"
    );
    // The admin key sees and manages everyone's.
    let list: Value = call(reqwest::Method::GET, base.clone(), "sk-boss-1234")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    let r = call(reqwest::Method::DELETE, one.clone(), "sk-boss-1234")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// Log lines as the server writes them (JSON, with the current span), caught in
/// memory for one test.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[tokio::test]
async fn what_a_reply_logs_in_its_own_task_says_which_request_it_was() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(move || sink.clone())
            .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
    );
    // Process-wide: the server's other event loop runs on a thread of its own (each
    // test is a process of its own under nextest).
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir, Opts::default()).await;
    let id = app.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .http
        .post(app.url(&format!("/api/hearth/conversations/{id}/messages")))
        .header("x-request-id", "ui-req-42")
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let stored = lines
        .json()
        .into_iter()
        .find(|l| l["message"] == "reply stored")
        .unwrap_or_else(|| panic!("no `reply stored` line in {:?}", lines.json()));
    assert_eq!(stored["span"]["name"], "request");
    assert_eq!(stored["span"]["id"], "ui-req-42", "{stored}");
    assert_eq!(stored["span"]["key"], "anonymous", "{stored}");
    app.stop().await;
}
