//! A fake OpenAI-compatible upstream for tests and benchmarks.
//!
//! It is a real HTTP server on a loopback port. Each request takes the next
//! [`Behaviour`] scripted for the model it names ([`FakeUpstream::script_model`]),
//! else the next scripted for any model, else the default one: answer normally, stream slowly,
//! stall, fail with a status, or drop the connection mid-stream. It records what
//! it received and notices when a client goes away mid-stream, which is what the
//! gateway's tests assert on. Faults we cannot cause with a real server are the
//! only reason it exists.

pub mod postgres;
pub mod redis;
pub mod s3;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer with `text` split in `chunks` pieces, waiting `delay` before each chunk.
    Ok {
        text: String,
        chunks: usize,
        delay: Duration,
    },
    /// Answer with this status and an OpenAI-shaped error; `Retry-After` when set.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer with this status and a `Retry-After` header exactly as given (hostile
    /// or broken values such as `1e20`).
    RawRetryAfter { status: u16, value: String },
    /// As `Ok`, but a chat stream opens at once with a role-only chunk (`"delta":
    /// {"role": "assistant", "content": ""}`), as vLLM and OpenAI send, before the
    /// content chunks (each after `delay`).
    RoleFirst {
        text: String,
        chunks: usize,
        delay: Duration,
    },
    /// Accept and never answer.
    Stall,
    /// Stream `after` chunks, then close the connection without `[DONE]`.
    DropMidStream { after: usize },
    /// Read the whole request, then close the connection without answering (the
    /// upstream crashed, or its idle timeout struck as the connection was reused):
    /// the request was received, so it may have run.
    Hangup,
    /// Answer with this status and a body that never ends (a runaway or hostile
    /// upstream): as an event stream, one event that never ends (`data: {...` and
    /// more bytes forever); else a JSON answer whose text never ends. It goes on
    /// until the client closes the connection, which counts as cancelled.
    Endless { status: u16, event_stream: bool },
    /// A chat answer that calls tools: `(name, arguments JSON)` each, streamed as
    /// OpenAI does (the id and name first, then the arguments in pieces), ending
    /// with `finish_reason: "tool_calls"`.
    ToolCalls { calls: Vec<(String, String)> },
    /// A chat answer from a reasoning model: `reasoning` as `reasoning_content`
    /// (vLLM's and llama-server's field), then `text` as content, each in three
    /// chunks `delay` apart when streamed.
    Reasoning {
        reasoning: String,
        text: String,
        delay: Duration,
    },
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Ok {
            text: "Hello from the fake upstream.".into(),
            chunks: 4,
            delay: Duration::ZERO,
        }
    }
}

impl Behaviour {
    pub fn ok(text: &str) -> Self {
        Behaviour::Ok {
            text: text.into(),
            chunks: 4,
            delay: Duration::ZERO,
        }
    }

    pub fn slow(text: &str, chunks: usize, delay: Duration) -> Self {
        Behaviour::Ok {
            text: text.into(),
            chunks,
            delay,
        }
    }

    pub fn status(status: u16) -> Self {
        Behaviour::Status {
            status,
            retry_after: None,
        }
    }
}

/// One reply of a script (`fake-upstream --script`): the answer's text, or
/// `{"text": T, "delay_ms": MS}` (answered after MS), `{"reasoning": R, "text": T,
/// "delay_ms": MS}` (R as `reasoning_content`, then T, in chunks MS apart),
/// `{"tool_calls": [{"name", "arguments"}]}`, `{"stall": true}` (never answered)
/// or `{"status": CODE}` (an OpenAI-shaped error).
pub fn scripted(r: &Value) -> Result<Behaviour, String> {
    if let Some(text) = r.as_str() {
        return Ok(Behaviour::ok(text));
    }
    if r.get("stall").and_then(Value::as_bool) == Some(true) {
        return Ok(Behaviour::Stall);
    }
    if let Some(status) = r.get("status").and_then(Value::as_u64) {
        return Ok(Behaviour::status(u16::try_from(status).unwrap_or(500)));
    }
    if let Some(calls) = r.get("tool_calls").and_then(Value::as_array) {
        let calls = calls
            .iter()
            .map(|c| {
                let name = c.get("name").and_then(Value::as_str);
                let args = c.get("arguments").and_then(Value::as_str);
                match (name, args) {
                    (Some(n), Some(a)) => Ok((n.to_owned(), a.to_owned())),
                    _ => Err(format!(
                        "a tool call is {{\"name\": …, \"arguments\": \"…\"}}: {c}"
                    )),
                }
            })
            .collect::<Result<_, _>>()?;
        return Ok(Behaviour::ToolCalls { calls });
    }
    let text = r.get("text").and_then(Value::as_str).ok_or_else(|| {
        format!(
            "a reply is a string or an object with `text`, `tool_calls`, `stall` or `status`: {r}"
        )
    })?;
    let delay = Duration::from_millis(r.get("delay_ms").and_then(Value::as_u64).unwrap_or(0));
    if let Some(reasoning) = r.get("reasoning").and_then(Value::as_str) {
        return Ok(Behaviour::Reasoning {
            reasoning: reasoning.to_owned(),
            text: text.to_owned(),
            delay,
        });
    }
    Ok(Behaviour::slow(text, 1, delay))
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The query string, on the calls on stored responses.
    pub query: Option<String>,
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Each open connection's task, by connection number, so a handler can close its
    /// own connection without answering (`Hangup`).
    connections: Mutex<std::collections::HashMap<u64, tokio::task::AbortHandle>>,
    script: Mutex<VecDeque<Behaviour>>,
    /// Behaviours for requests naming one model (the name the upstream receives).
    by_model: Mutex<std::collections::HashMap<String, VecDeque<Behaviour>>>,
    /// Each request's body is appended here as one JSON line.
    record: Mutex<Option<std::fs::File>>,
    default: Mutex<Behaviour>,
    received: Mutex<Vec<Received>>,
    /// Streams whose client went away before the end.
    cancelled: AtomicUsize,
    /// Requests being answered right now.
    active: AtomicUsize,
    max_active: AtomicUsize,
    probes: AtomicUsize,
    probe_status: Mutex<u16>,
    /// Its port, in the ids of the responses it makes (unique across fakes).
    port: AtomicUsize,
    /// Responses made so far, for their ids.
    responses: AtomicUsize,
    /// Responses asked with `store: true`, by id: the response and its input items.
    stored: Mutex<std::collections::HashMap<String, (Value, Vec<Value>)>>,
}

impl Inner {
    fn response_id(&self) -> String {
        let n = self.responses.fetch_add(1, Ordering::SeqCst) + 1;
        format!("resp_fake{}_{n}", self.port.load(Ordering::SeqCst))
    }
}

/// A running fake upstream. It stops when dropped.
#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl FakeUpstream {
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// Starts on `127.0.0.1:port` (0 = any free port).
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        let inner = Arc::new(Inner::default());
        *inner.probe_status.lock().unwrap_or_else(|p| p.into_inner()) = 200;
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/completions", post(complete))
            .route("/v1/responses", post(complete))
            .route(
                "/v1/responses/{id}",
                get(stored_response).delete(stored_response),
            )
            .route("/v1/responses/{id}/input_items", get(stored_response))
            .route("/v1/responses/{id}/cancel", post(stored_response))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        inner.port.store(usize::from(addr.port()), Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(accept_loop(listener, app, inner.clone(), rx));
        Ok(FakeUpstream {
            addr,
            inner,
            _stop: Arc::new(tx),
        })
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The next requests get these behaviours, in order.
    pub fn push(&self, b: Behaviour) {
        lock(&self.inner.script).push_back(b);
    }

    /// The next requests naming `model` get these behaviours, in order (before
    /// anything [`FakeUpstream::push`]ed).
    pub fn script_model(&self, model: &str, behaviours: impl IntoIterator<Item = Behaviour>) {
        lock(&self.inner.by_model)
            .entry(model.to_owned())
            .or_default()
            .extend(behaviours);
    }

    /// Appends each request's body to `path`, one JSON line each (for a test that
    /// runs the fake as a process and checks what it was sent).
    pub fn record_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *lock(&self.inner.record) = Some(f);
        Ok(())
    }

    /// What requests get once the script is used up.
    pub fn set_default(&self, b: Behaviour) {
        *lock(&self.inner.default) = b;
    }

    /// Status the `/v1/models` health probe answers, and `/health` (503 there says
    /// "Loading model", as llama-server and vLLM do while they load).
    pub fn set_probe_status(&self, status: u16) {
        *lock(&self.inner.probe_status) = status;
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner.received).clone()
    }

    pub fn hits(&self) -> usize {
        lock(&self.inner.received).len()
    }

    pub fn cancelled(&self) -> usize {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    pub fn max_active(&self) -> usize {
        self.inner.max_active.load(Ordering::SeqCst)
    }

    pub fn probes(&self) -> usize {
        self.inner.probes.load(Ordering::SeqCst)
    }
}

/// The connection a request came on (a request extension), for `Hangup`.
#[derive(Debug, Clone, Copy)]
struct ConnId(u64);

/// Serves each connection on its own task until `stop` resolves (then stops
/// accepting; open connections finish). Its own loop rather than `axum::serve`, so a
/// handler can close its connection without answering.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    inner: Arc<Inner>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    tokio::pin!(stop);
    let mut next = 0u64;
    loop {
        let sock = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => sock,
                Err(_) => continue,
            },
            _ = &mut stop => return,
        };
        next += 1;
        let id = ConnId(next);
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(id);
                tower::ServiceExt::oneshot(app.clone(), req.map(Body::new))
            },
        );
        let conns = inner.clone();
        // Registered before it serves, so its handler always finds itself.
        let (registered, wait) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = wait.await;
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(sock), service)
                .await;
            lock(&conns.connections).remove(&id.0);
        });
        lock(&inner.connections).insert(id.0, task.abort_handle());
        let _ = registered.send(());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `/v1/embeddings`: recorded, and answered with a 3-dimensional vector per input,
/// `[index, characters (or tokens) of the input, 0.5]`, as numbers or, when asked,
/// base64 of little-endian `f32`s; usage counts a token per character.
async fn embeddings(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&inner.received).push(Received {
        path: "/v1/embeddings".to_owned(),
        query: None,
        body: body.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let size = |v: &Value| match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    let items: Vec<usize> = match &body["input"] {
        Value::Array(a) if a.iter().all(|x| !x.is_number()) => a.iter().map(size).collect(),
        other => vec![size(other)],
    };
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let v = [i as f32, *n as f32, 0.5];
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64_encode(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: usize = items.iter().sum();
    axum::Json(json!({
        "object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

/// Standard base64 with padding (the fake needs no crate for it).
fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn models(State(inner): State<Arc<Inner>>) -> Response {
    inner.probes.fetch_add(1, Ordering::SeqCst);
    let status = *lock(&inner.probe_status);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (
        code,
        axum::Json(json!({"object": "list", "data": [{"id": "fake", "object": "model"}]})),
    )
        .into_response()
}

async fn health(State(inner): State<Arc<Inner>>) -> Response {
    inner.probes.fetch_add(1, Ordering::SeqCst);
    let status = *lock(&inner.probe_status);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let body = if code.is_success() {
        json!({"status": "ok"})
    } else {
        json!({"error": {"code": status, "message": "Loading model", "type": "unavailable_error"}})
    };
    (code, axum::Json(body)).into_response()
}

/// Whether process `pid` is still there: a zombie waiting for its reaper is gone
/// (what a test of "no process left" means).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z')
    })
}

/// A loopback port that refuses every connection, held for as long as the value
/// lives: a socket bound to it without `SO_REUSEADDR` and never listening. A
/// connect gets "connection refused" at once, and no other server (a test running
/// beside this one) can take the port meanwhile, which a port found free and let
/// go can never promise.
pub struct ClosedPort {
    _socket: socket2::Socket,
    addr: std::net::SocketAddr,
}

impl ClosedPort {
    #[allow(clippy::expect_used)] // a test that cannot hold a loopback port fails loudly
    pub fn new() -> ClosedPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
        socket.bind(&any.into()).expect("bind a loopback port");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("the bound address");
        ClosedPort {
            _socket: socket,
            addr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}

/// The `fake-upstream` executable, built first if needed (once per test process),
/// for tests that run it as a real process (a managed model server). It lives next
/// to the test binary's `deps` folder, as cargo lays out a target directory.
#[allow(clippy::panic)] // a test that cannot get its fake server fails loudly
pub fn fake_upstream_exe() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
            // target/<profile>/deps/<test> -> target/<profile>/fake-upstream
            let dir = exe
                .parent()
                .and_then(|d| if d.ends_with("deps") { d.parent() } else { Some(d) })
                .unwrap_or_else(|| panic!("no folder above {}", exe.display()))
                .to_path_buf();
            let path = dir.join("fake-upstream");
            // Always asked of cargo (a no-op when fresh): a stale binary would lack the
            // flags a test uses. The debug profile is the only one tests build in.
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "hearth-testkit", "--bin", "fake-upstream"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status();
            if !matches!(status, Ok(s) if s.success()) || !path.exists() {
                panic!(
                    "cannot build the fake upstream at {} ({status:?}): run `cargo build -p hearth-testkit --bin fake-upstream`",
                    path.display()
                );
            }
            path
        })
        .clone()
}

/// Counts a request as active until dropped; counts a cancellation when dropped
/// before the stream finished.
struct Active {
    inner: Arc<Inner>,
    finished: bool,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.inner.active.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.inner.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn complete(
    State(inner): State<Arc<Inner>>,
    axum::Extension(conn): axum::Extension<ConnId>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&inner.received).push(Received {
        path: uri.path().to_owned(),
        query: None,
        body: body.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    if let Some(f) = lock(&inner.record).as_mut() {
        use std::io::Write;
        // One write per line, as for the pid file: whole lines even if two
        // processes record to one file.
        let _ = f.write_all(format!("{body}\n").as_bytes());
    }
    let named = body.get("model").and_then(Value::as_str).unwrap_or("");
    let scripted = lock(&inner.by_model)
        .get_mut(named)
        .and_then(VecDeque::pop_front);
    let behaviour = scripted
        .or_else(|| lock(&inner.script).pop_front())
        .unwrap_or_else(|| lock(&inner.default).clone());
    let n = inner.active.fetch_add(1, Ordering::SeqCst) + 1;
    inner.max_active.fetch_max(n, Ordering::SeqCst);
    let mut active = Active {
        inner: inner.clone(),
        finished: false,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake")
        .to_owned();
    let chat = uri.path().ends_with("/chat/completions");
    let responses = uri.path().ends_with("/responses");
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match behaviour {
        Behaviour::Hangup => {
            active.finished = true;
            drop(active);
            // Cancels this very task (with its connection) at its next await.
            if let Some(task) = lock(&inner.connections).remove(&conn.0) {
                task.abort();
            }
            std::future::pending::<()>().await;
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Behaviour::Status {
            status,
            retry_after,
        } => {
            active.finished = true;
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (
                code,
                axum::Json(json!({"error": {"message": format!("fake upstream says {status}"), "type": "fake", "param": null, "code": null}})),
            )
                .into_response();
            if let Some(s) = retry_after {
                resp.headers_mut().insert("retry-after", s.into());
            }
            resp
        }
        Behaviour::RawRetryAfter { status, value } => {
            active.finished = true;
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp =
                (code, axum::Json(json!({"error": {"message": "slow down"}}))).into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                resp.headers_mut().insert("retry-after", v);
            }
            resp
        }
        Behaviour::Endless {
            status,
            event_stream,
        } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let body = async_stream(move |tx| async move {
                let _active = active; // dropped (unfinished: cancelled) with the task
                let head = if event_stream {
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\""
                } else {
                    "{\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"content\":\""
                };
                if tx.send(head.to_owned()).await.is_err() {
                    return;
                }
                let more = "x".repeat(16 * 1024);
                while tx.send(more.clone()).await.is_ok() {}
            });
            let mut resp = Response::new(body);
            *resp.status_mut() = code;
            let kind = if event_stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            resp.headers_mut()
                .insert("content-type", axum::http::HeaderValue::from_static(kind));
            resp
        }
        Behaviour::ToolCalls { calls } => {
            tool_calls_response(active, model, &calls, stream, include_usage)
        }
        Behaviour::Reasoning {
            reasoning,
            text,
            delay,
        } => reasoning_response(
            active,
            model,
            (&reasoning, &text),
            delay,
            stream,
            include_usage,
        ),
        Behaviour::Ok { text, chunks, .. } | Behaviour::RoleFirst { text, chunks, .. }
            if responses =>
        {
            let id = inner.response_id();
            if body.get("store") == Some(&Value::Bool(true)) {
                let count = split(&text, chunks).len();
                let response = response_object(&id, &model, "completed", &text, count);
                let input = input_items(&id, &body);
                lock(&inner.stored).insert(id.clone(), (response, input));
            }
            responses_response(active, model, &id, &text, chunks, stream, None)
        }
        Behaviour::DropMidStream { after } if responses => responses_response(
            active,
            model,
            &inner.response_id(),
            "partial answer that never ends",
            8,
            true,
            Some(after),
        ),
        Behaviour::Stall => {
            std::future::pending::<()>().await;
            active.finished = true;
            StatusCode::OK.into_response()
        }
        Behaviour::Ok {
            text,
            chunks,
            delay,
        }
        | Behaviour::RoleFirst {
            text,
            chunks,
            delay,
        } if !stream => {
            tokio::time::sleep(delay * chunks as u32).await;
            active.finished = true;
            let usage = json!({"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks});
            let v = if chat {
                json!({"id": "fake-1", "object": "chat.completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                       "usage": usage})
            } else {
                json!({"id": "fake-1", "object": "text_completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": usage})
            };
            axum::Json(v).into_response()
        }
        Behaviour::Ok {
            text,
            chunks,
            delay,
        } => stream_response(
            active,
            model,
            chat,
            &text,
            chunks,
            delay,
            include_usage,
            None,
            false,
        ),
        Behaviour::RoleFirst {
            text,
            chunks,
            delay,
        } => stream_response(
            active,
            model,
            chat,
            &text,
            chunks,
            delay,
            include_usage,
            None,
            true,
        ),
        Behaviour::DropMidStream { after } => stream_response(
            active,
            model,
            chat,
            "partial answer that never ends",
            8,
            Duration::from_millis(5),
            false,
            Some(after),
            false,
        ),
    }
}

/// [`Behaviour::ToolCalls`]: whole, or streamed as OpenAI streams calls.
fn tool_calls_response(
    mut active: Active,
    model: String,
    calls: &[(String, String)],
    stream: bool,
    include_usage: bool,
) -> Response {
    let id = |i: usize| format!("call_fake{i}");
    if !stream {
        active.finished = true;
        let list: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| json!({"id": id(i), "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        return axum::Json(json!({"id": "fake-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": list}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}))
        .into_response();
    }
    let mut chunks: Vec<Value> = Vec::new();
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "fake-1", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    for (i, (name, args)) in calls.iter().enumerate() {
        let mut first = json!({"tool_calls": [{"index": i, "id": id(i), "type": "function",
                                               "function": {"name": name, "arguments": ""}}]});
        if i == 0 {
            first["role"] = json!("assistant");
        }
        chunks.push(chunk(first, None));
        for piece in split(args, 3) {
            chunks.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    chunks.push(chunk(json!({}), Some("tool_calls")));
    if include_usage {
        chunks.push(json!({"id": "fake-1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}));
    }
    chunk_stream(active, chunks, Duration::ZERO)
}

/// An event stream of `chunks`, each after `delay`, then `[DONE]`.
fn chunk_stream(active: Active, chunks: Vec<Value>, delay: Duration) -> Response {
    let body = async_stream(move |tx| async move {
        let mut active = active;
        for c in chunks {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(format!("data: {c}\n\n")).await.is_err() {
                return;
            }
        }
        let _ = tx.send("data: [DONE]\n\n".to_owned()).await;
        active.finished = true;
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// [`Behaviour::Reasoning`]: whole, or streamed as vLLM streams a reasoning
/// model's answer (`reasoning_content` deltas, then `content` deltas).
fn reasoning_response(
    mut active: Active,
    model: String,
    (reasoning, text): (&str, &str),
    delay: Duration,
    stream: bool,
    include_usage: bool,
) -> Response {
    let usage = json!({"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11});
    if !stream {
        active.finished = true;
        return axum::Json(json!({"id": "fake-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": reasoning,
                "content": text}, "finish_reason": "stop"}],
            "usage": usage}))
        .into_response();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "fake-1", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut chunks: Vec<Value> = split(reasoning, 3)
        .into_iter()
        .map(|p| chunk(json!({"reasoning_content": p}), None))
        .collect();
    chunks.extend(
        split(text, 3)
            .into_iter()
            .map(|p| chunk(json!({"content": p}), None)),
    );
    chunks.push(chunk(json!({}), Some("stop")));
    if include_usage {
        chunks.push(
            json!({"id": "fake-1", "object": "chat.completion.chunk", "created": 0,
                           "model": model, "choices": [], "usage": usage}),
        );
    }
    chunk_stream(active, chunks, delay)
}

/// An answer of OpenAI's Responses API (`/v1/responses`): the response object,
/// or its stream of typed events (`event:` lines, no `[DONE]`), cut after
/// `drop_after` text deltas when set.
fn responses_response(
    active: Active,
    model: String,
    id: &str,
    text: &str,
    chunks: usize,
    stream: bool,
    drop_after: Option<usize>,
) -> Response {
    let pieces = split(text, chunks);
    let count = pieces.len();
    let response = |status: &str, text: &str| response_object(id, &model, status, text, count);
    if !stream {
        let mut active = active;
        active.finished = true;
        return axum::Json(response("completed", text)).into_response();
    }
    let mut events = vec![(
        "response.created",
        json!({"response": {"id": id, "object": "response", "status": "in_progress"}}),
    )];
    for (i, p) in pieces.iter().enumerate() {
        if drop_after == Some(i) {
            break;
        }
        events.push((
            "response.output_text.delta",
            json!({"item_id": "msg_fake1", "output_index": 0, "content_index": 0, "delta": p}),
        ));
    }
    let cut = drop_after.is_some_and(|n| n < count);
    if !cut {
        events.push((
            "response.completed",
            json!({"response": response("completed", text)}),
        ));
    }
    let body = async_stream(move |tx| async move {
        let mut active = active;
        for (seq, (kind, mut data)) in events.into_iter().enumerate() {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(seq);
            if tx
                .send(format!("event: {kind}\ndata: {data}\n\n"))
                .await
                .is_err()
            {
                return;
            }
        }
        active.finished = true;
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// A response object of the Responses API, `output_tokens` = `count`.
fn response_object(id: &str, model: &str, status: &str, text: &str, count: usize) -> Value {
    json!({"id": id, "object": "response", "created_at": 0, "status": status, "model": model,
           "output": [{"type": "message", "id": "msg_fake1", "status": status, "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]}],
           "usage": {"input_tokens": 5, "output_tokens": count, "total_tokens": 5 + count},
           "fake_upstream": true})
}

/// A request's `input` as the API lists it: a string is one user message; each
/// item gets an id when it has none.
fn input_items(id: &str, body: &Value) -> Vec<Value> {
    let items = match body.get("input") {
        Some(Value::String(text)) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if let Some(o) = item.as_object_mut() {
                o.entry("id")
                    .or_insert_with(|| json!(format!("{id}_in{i}")));
            }
            item
        })
        .collect()
}

/// The calls on a stored response (`store: true`): `GET`/`DELETE
/// /v1/responses/{id}` (`stream=true` replays it as its `response.completed`
/// event), `GET .../input_items`, `POST .../cancel` (the response, as it is).
/// Recorded; an unknown id is a 404 in OpenAI's shape.
async fn stored_response(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    lock(&inner.received).push(Received {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        body: Value::Null,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let found = if method == axum::http::Method::DELETE {
        lock(&inner.stored).remove(&id)
    } else {
        lock(&inner.stored).get(&id).cloned()
    };
    let Some((response, input)) = found else {
        let message = format!("No response found with id '{id}'.");
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response();
    };
    if method == axum::http::Method::DELETE {
        return axum::Json(json!({"id": id, "object": "response.deleted", "deleted": true}))
            .into_response();
    }
    if uri.path().ends_with("/input_items") {
        let first = input.first().and_then(|i| i.get("id")).cloned();
        let last = input.last().and_then(|i| i.get("id")).cloned();
        return axum::Json(json!({"object": "list", "data": input, "first_id": first,
                                 "last_id": last, "has_more": false}))
        .into_response();
    }
    let stream = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "stream=true"));
    if stream && method == axum::http::Method::GET {
        let data =
            json!({"type": "response.completed", "sequence_number": 0, "response": response});
        let mut resp = Response::new(Body::from(format!(
            "event: response.completed\ndata: {data}\n\n"
        )));
        resp.headers_mut().insert(
            "content-type",
            axum::http::HeaderValue::from_static("text/event-stream"),
        );
        return resp;
    }
    axum::Json(response).into_response()
}

fn split(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.max(1);
    let size = chars.len().div_ceil(n).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

#[allow(clippy::too_many_arguments)]
fn stream_response(
    active: Active,
    model: String,
    chat: bool,
    text: &str,
    chunks: usize,
    delay: Duration,
    include_usage: bool,
    drop_after: Option<usize>,
    role_first: bool,
) -> Response {
    let pieces = split(text, chunks);
    let count = pieces.len();
    let body = async_stream(move |tx| async move {
        // Move the whole guard in, so it is dropped with the task (not a copy of a field).
        let mut active = active;
        if role_first && chat {
            let v = json!({"id": "fake-1", "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
            if tx.send(format!("data: {v}\n\n")).await.is_err() {
                return;
            }
        }
        for (i, p) in pieces.iter().enumerate() {
            if drop_after == Some(i) {
                // Mark finished so only client-side cancellations are counted.
                active.finished = true;
                return;
            }
            tokio::time::sleep(delay).await;
            let finish = (i + 1 == count).then_some("stop");
            let v = if chat {
                json!({"id": "fake-1", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": finish}]})
            } else {
                json!({"id": "fake-1", "object": "text_completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "text": p, "finish_reason": finish}]})
            };
            if tx.send(format!("data: {v}\n\n")).await.is_err() {
                return;
            }
        }
        if include_usage {
            let v = json!({"id": "fake-1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
                           "usage": {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count}});
            let _ = tx.send(format!("data: {v}\n\n")).await;
        }
        let _ = tx.send("data: [DONE]\n\n".to_owned()).await;
        active.finished = true;
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        "content-type",
        "text/event-stream"
            .parse()
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("text/event-stream")),
    );
    resp
}

/// A body fed by a task through a channel of capacity 1, so the task notices a
/// client that went away at its next send.
fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let task = tokio::spawn(f(tx));
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>)));
    let guard = AbortOnDrop(task);
    Body::from_stream(futures::StreamExt::map(stream, move |x| {
        let _ = &guard;
        x
    }))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The real SmolLM2-135M-Instruct file the engine's and the HTTP layer's tests run:
/// `HEARTH_TEST_MODEL`, else `models/SmolLM2-135M-Instruct.Q4_1.gguf` in the repository,
/// which `make test` downloads first (mk/engine.mk). Panics, saying how to get it,
/// when it is missing.
pub fn test_model_path() -> std::path::PathBuf {
    model_file(
        "HEARTH_TEST_MODEL",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "the SmolLM2 model",
    )
}

/// The embedding model for tests that run one: `HEARTH_TEST_EMBEDDING_MODEL`, else
/// `models/all-MiniLM-L6-v2.F16.gguf` in the repository, which `make test`
/// converts first (mk/embedding.mk). Panics, saying how to get it, when missing.
pub fn test_embedding_model_path() -> std::path::PathBuf {
    model_file(
        "HEARTH_TEST_EMBEDDING_MODEL",
        "all-MiniLM-L6-v2.F16.gguf",
        "the embedding model",
    )
}

/// `$var`, else `models/<file>` in the repository; panics when it is missing.
#[allow(clippy::panic)] // a missing model fails the test that needs it, loudly
fn model_file(var: &str, file: &str, what: &str) -> std::path::PathBuf {
    let path = std::env::var_os(var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../models")
                .join(file)
        });
    if !path.exists() {
        panic!(
            "this test needs {what} at {} (run `make models/{file}`, or set {var})",
            path.display()
        );
    }
    path
}
