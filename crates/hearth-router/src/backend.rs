//! The [`Backend`] trait: what the router needs of anything that can answer a
//! completion (the embedded engine, an upstream server, a test double).
//!
//! A backend receives a parsed request whose `model` is already the served name,
//! and returns a stream of typed [`Event`](crate::Event)s, for a streamed request or
//! a whole one alike (an upstream's own JSON travels as `Event::Wire`). Dropping the
//! returned future or stream cancels the work: an upstream closes its connection,
//! the engine frees its sequence.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::event::EventStream;
use hearth_api::{
    ApiError, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest, ErrorKind, ModelStatus,
};
use serde_json::{Map, Value};

/// A request the router hands to a backend.
#[derive(Debug, Clone)]
pub enum Request {
    Chat(ChatCompletionRequest),
    Completion(CompletionRequest),
    /// Answered with one [`Event::Embedding`](crate::Event::Embedding) per input
    /// and the usage (or, from an upstream, its whole body).
    Embeddings(EmbeddingsRequest),
    /// `POST /v1/responses`: an upstream that serves OpenAI's Responses API
    /// ([`Backend::serves_responses`]) gets the client's body; every other backend
    /// its chat translation (the router hands it a [`Request::Chat`]).
    Responses(Box<ResponsesRequest>),
}

/// A Responses API request, both as the client wrote it and as a chat completion.
#[derive(Debug, Clone)]
pub struct ResponsesRequest {
    /// The client's body (`model` set to the served name, `store` said): what an
    /// upstream serving the Responses API receives.
    pub body: Map<String, Value>,
    /// The same request as a chat completion, for the other backends; or why it has
    /// none (a stored conversation or a built-in tool is asked for, which only an
    /// upstream that serves this API can give).
    pub chat: Result<ChatCompletionRequest, ApiError>,
}

impl ResponsesRequest {
    fn max_output_tokens(&self) -> Option<u32> {
        self.body
            .get("max_output_tokens")
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl Request {
    pub fn is_stream(&self) -> bool {
        match self {
            Request::Chat(r) => r.stream,
            Request::Completion(r) => r.stream,
            Request::Embeddings(_) => false,
            Request::Responses(r) => r.body.get("stream").and_then(Value::as_bool) == Some(true),
        }
    }

    pub fn model(&self) -> Option<&str> {
        match self {
            Request::Chat(r) => r.model.as_deref(),
            Request::Completion(r) => r.model.as_deref(),
            Request::Embeddings(r) => r.model.as_deref(),
            Request::Responses(r) => r.body.get("model").and_then(Value::as_str),
        }
    }

    pub fn set_model(&mut self, model: &str) {
        match self {
            Request::Chat(r) => r.model = Some(model.to_owned()),
            Request::Completion(r) => r.model = Some(model.to_owned()),
            Request::Embeddings(r) => r.model = Some(model.to_owned()),
            Request::Responses(r) => {
                r.body
                    .insert("model".into(), Value::String(model.to_owned()));
                if let Ok(c) = &mut r.chat {
                    c.model = Some(model.to_owned());
                }
            }
        }
    }

    /// Asks a stream for its usage (`stream_options.include_usage`), which a
    /// client may not have: the gateway counts the tokens of a key with limits
    /// from it. Nothing changes for a whole answer (its usage always comes) or a
    /// Responses stream (its last event has it).
    pub fn ask_usage(&mut self) {
        let options = match self {
            Request::Chat(r) if r.stream => &mut r.stream_options,
            Request::Completion(r) if r.stream => &mut r.stream_options,
            _ => return,
        };
        options.get_or_insert_with(Default::default).include_usage = true;
    }

    pub fn include_usage(&self) -> bool {
        match self {
            Request::Chat(r) => r.include_usage(),
            Request::Completion(r) => r.include_usage(),
            Request::Embeddings(_) => false,
            // A Responses stream's last event carries the usage either way.
            Request::Responses(_) => true,
        }
    }

    /// `max_tokens` as asked (chat: `max_completion_tokens` wins).
    pub fn max_tokens(&self) -> Option<u32> {
        match self {
            Request::Chat(r) => r.max_output_tokens(),
            Request::Completion(r) => r.max_tokens,
            // Nothing is generated.
            Request::Embeddings(_) => Some(0),
            Request::Responses(r) => r.max_output_tokens(),
        }
    }

    /// A cheap estimate of prompt tokens (4 bytes a token), for rate limits
    /// checked before the backend has counted.
    pub fn estimated_prompt_tokens(&self) -> u64 {
        let bytes = match self {
            Request::Chat(r) => chat_bytes(r),
            Request::Completion(r) => r.prompt.byte_len(),
            Request::Embeddings(r) => r.input.byte_len(),
            Request::Responses(r) => match &r.chat {
                Ok(c) => chat_bytes(c),
                Err(_) => ["instructions", "input"]
                    .iter()
                    .filter_map(|k| r.body.get(*k))
                    .map(|v| serde_json::to_vec(v).map_or(0, |b| b.len()))
                    .sum(),
            },
        };
        (bytes as u64).div_ceil(4)
    }

    /// The paths of the OpenAI endpoints, below `/v1`.
    pub const CHAT_PATH: &'static str = "/chat/completions";
    pub const COMPLETIONS_PATH: &'static str = "/completions";
    pub const EMBEDDINGS_PATH: &'static str = "/embeddings";
    pub const RESPONSES_PATH: &'static str = "/responses";
}

/// A chat request's message bytes, for [`Request::estimated_prompt_tokens`].
fn chat_bytes(r: &ChatCompletionRequest) -> usize {
    r.messages
        .iter()
        .map(|m| m.content.as_ref().map_or(0, |c| c.byte_len()) + 4)
        .sum()
}

/// Why a backend could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// Could not reach the backend at all: the request provably never reached it
    /// (no connection, or a connection that refused the request's first byte).
    #[error("connect error: {0}")]
    Connect(String),
    /// The request was sent and the connection broke before any answer: the backend
    /// may have received it and may be running (and billing) it.
    #[error("no answer: {0}")]
    Unanswered(String),
    /// No answer (or no next chunk) in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The backend answered with an error status. `error` is what the client should see.
    #[error("status {status}: {}", error.message)]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        error: ApiError,
    },
    /// The backend broke its protocol (bad JSON, a dropped stream).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The backend's answer (or one event of its stream) is larger than Hearth
    /// accepts; the connection was closed. Says which limit, and its config key.
    #[error("{0}")]
    TooLarge(String),
    /// The request itself is wrong for this backend (context too long, no FIM
    /// tokens...). Never retried; shown to the client as it is.
    #[error("{0}")]
    Invalid(ApiError),
    /// The backend cannot serve now (still loading, failed to load, shut down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The model server's process (one Hearth runs) exited while answering: the
    /// request may have run, and the server is being started again.
    #[error("the model server exited: {0}")]
    Crashed(String),
}

impl BackendError {
    /// Whether trying again (or another model) may succeed without running the
    /// request twice: it never reached the backend (connect errors, an unavailable
    /// backend), or the backend refused it unrun (429, 503).
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Connect(_) | BackendError::Unavailable(_) => true,
            BackendError::Status { status, .. } => matches!(status, 429 | 503),
            _ => false,
        }
    }

    /// Whether the backend may have received the request and failed to answer it:
    /// the connection broke after it was sent, no answer in time, or a proxy in front
    /// of it answered 502 or 504. Trying again may run it twice, so the router does
    /// so only where the model's config allows (`retry_unanswered`).
    pub fn may_have_run(&self) -> bool {
        match self {
            BackendError::Unanswered(_) | BackendError::Timeout(_) | BackendError::Crashed(_) => {
                true
            }
            BackendError::Status { status, .. } => matches!(status, 502 | 504),
            _ => false,
        }
    }

    /// Whether this failure says something about the backend's health.
    pub fn is_health_failure(&self) -> bool {
        match self {
            BackendError::Connect(_) | BackendError::Unanswered(_) | BackendError::Timeout(_) => {
                true
            }
            BackendError::Status { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BackendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error as the client sees it when no retry or fallback saved the request.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            BackendError::Invalid(e) => e.clone(),
            BackendError::Status { status, error, .. } if *status < 500 && *status != 429 => {
                error.clone()
            }
            BackendError::Status {
                status: 429,
                error,
                retry_after,
            } => error
                .clone()
                .with_retry_after(retry_after.map_or(1, |d| d.as_secs().max(1))),
            BackendError::Timeout(_) | BackendError::Status { status: 504, .. } => ApiError::new(
                ErrorKind::Timeout,
                "the model backend did not answer in time",
            )
            .with_code("backend_timeout"),
            BackendError::TooLarge(why) => ApiError::new(ErrorKind::BadGateway, why.clone())
                .with_code("upstream_answer_too_large"),
            BackendError::Crashed(why) => ApiError::new(
                ErrorKind::BadGateway,
                format!("{why}; Hearth is starting it again, try again shortly"),
            )
            .with_code("engine_crashed")
            .with_retry_after(5),
            _ => ApiError::new(
                ErrorKind::Unavailable,
                "the model backend is unavailable; try again shortly",
            )
            .with_code("backend_unavailable")
            .with_retry_after(retry_after_default(self)),
        }
    }
}

fn retry_after_default(e: &BackendError) -> u64 {
    e.retry_after().map_or(5, |d| d.as_secs().max(1))
}

/// A call on a response an upstream stored (OpenAI's Responses API with
/// `store: true`): `GET`/`DELETE /responses/{id}`, `GET .../input_items`,
/// `POST .../cancel`. None of them has a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredCall {
    Get,
    Delete,
    Post,
}

impl StoredCall {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredCall::Get => "GET",
            StoredCall::Delete => "DELETE",
            StoredCall::Post => "POST",
        }
    }
}

/// An upstream's answer to a [`StoredCall`], passed on to the client as it came.
pub struct RawAnswer {
    /// The upstream's status, whatever it is (a 404: it does not hold the response).
    pub status: u16,
    /// The upstream's `Retry-After` (on a 429).
    pub retry_after: Option<Duration>,
    pub body: RawBody,
}

impl std::fmt::Debug for RawAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAnswer")
            .field("status", &self.status)
            .field("stream", &matches!(self.body, RawBody::Events(_)))
            .finish_non_exhaustive()
    }
}

/// The body of a [`RawAnswer`].
pub enum RawBody {
    /// The whole body (JSON).
    Whole(Bytes),
    /// A Responses API event stream (a `GET` with `stream=true`): each
    /// [`Event::Wire`](crate::Event::Wire) one SSE event as it came.
    Events(EventStream),
}

/// Anything that can answer completions for one configured model.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `"embedded"` or `"upstream"`; shown in `/v1/models` and logs.
    fn kind(&self) -> &'static str;

    /// The backend's own view of its readiness: the engine is `Loading` until its
    /// model is in memory. Upstream health from probes is tracked by the router.
    fn status(&self) -> ModelStatus {
        ModelStatus::Ready
    }

    /// Whether it serves OpenAI's Responses API itself, so a
    /// [`Request::Responses`] reaches it as the client wrote it (an upstream
    /// configured with `responses_api = true`). The answer's events are then that
    /// API's: [`Event::Wire`](crate::Event::Wire)s of its whole body, or of each of
    /// its stream's events (the raw SSE event, `event:` line included).
    fn serves_responses(&self) -> bool {
        false
    }

    /// Context length the backend knows (read from the model), if any.
    fn context_length(&self) -> Option<u32> {
        None
    }

    /// Answers one request with its events. Dropping the future, or the returned
    /// stream, cancels it. The request is lent: the router keeps it for a retry or a
    /// fallback.
    async fn call(&self, request: &Request) -> Result<EventStream, BackendError>;

    /// Makes the backend able to serve, when it is not [`ModelStatus::Ready`]: a
    /// managed model server stopped while idle starts here and this waits until it
    /// serves (the router calls it when a request arrives for such a model). Returns
    /// why not when it cannot (the default: a backend that is loading or down says so
    /// at once, and the router tries the fallbacks).
    async fn wake(&self) -> Result<(), BackendError> {
        match self.status() {
            ModelStatus::Ready => Ok(()),
            status => Err(BackendError::Unavailable(status.as_str().into())),
        }
    }

    /// What it is doing while not ready, or why it cannot serve, in words
    /// ("downloading: 45% of 491 MB", "the download failed: …"): shown in the
    /// login banner's status file. `None` when the status says it all.
    fn detail(&self) -> Option<String> {
        None
    }

    /// The process behind the backend, when Hearth runs one (a managed model
    /// server): shown in `/v1/models` and `/ready`.
    fn engine(&self) -> Option<hearth_api::EngineInfo> {
        None
    }

    /// Where the model runs (CPU, which GPUs, their memory), when the backend runs
    /// it in this process: shown in `/v1/models` and `/metrics`.
    fn placement(&self) -> Option<hearth_api::Placement> {
        None
    }

    /// How it asks its model for tool calls, when Hearth writes the prompt (the
    /// embedded engine's syntax, read from the chat template): shown in
    /// `/v1/models` for a model that takes tools.
    fn tool_format(&self) -> Option<&'static str> {
        None
    }

    /// Which store of responses it reaches, when it serves the Responses API:
    /// backends that say the same value (one server, one key) hold the same stored
    /// responses, so a call on one is asked of one of them only. `None`: not known.
    fn responses_store(&self) -> Option<u64> {
        None
    }

    /// Makes a [`StoredCall`] on the upstream's own Responses API: `path_and_query`
    /// is below its `/v1` (`/responses/{id}...`, the id already checked, the query
    /// as the client wrote it). `Ok(None)`: this backend keeps no responses (the
    /// default). A 404 is an answer: the caller asks the next upstream.
    async fn responses_call(
        &self,
        call: StoredCall,
        path_and_query: &str,
    ) -> Result<Option<RawAnswer>, BackendError> {
        let _ = (call, path_and_query);
        Ok(None)
    }

    /// A cheap liveness check used by background health probes.
    async fn probe(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
