//! The upstream backend: any OpenAI-compatible server over HTTP (vLLM, llama-server,
//! Ollama, a cloud API).
//!
//! It owns the pooled keep-alive clients (one pool per thread), the rewrite of `model` to
//! `upstream_model`, the upstream API key (read once from `api_key_env`), timeouts
//! (connect, first byte, idle between chunks), caps on what it reads (a whole
//! answer, one event, an error body), and the SSE relay, which forwards
//! each event as it arrives without buffering the response. It knows nothing of
//! Hearth's clients or of retries: the router decides what to do with its errors.
//!
//! # Layout
//! - [`UpstreamBackend`]: the `Backend` implementation.
//! - [`sse`]: incremental SSE event splitting.
//! - `transport`: our own HTTP/1.1 connections (`h1`) for plain `http://`
//!   upstreams, kept in a per-thread `pool`; reqwest for the rest.

#[doc(hidden)]
pub mod fuzzing;
mod h1;
mod pool;
pub mod sse;
mod transport;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use hearth_api::{ApiError, AsModel, ErrorKind, Usage};
use hearth_config::ModelConfig;
use hearth_router::{
    Backend, BackendError, Event, EventStream, RawAnswer, RawBody, Request, StoredCall, Wire,
};
use http::{HeaderMap, HeaderValue, Method, header};

pub use crate::transport::Via;
use crate::transport::{BodyError, Endpoint, Transport};

/// The most of an error answer's body read for its message; a longer one is not
/// read (the connection closes) and the client sees the status alone.
const MAX_ERROR_BODY: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("model `{model}`: cannot build the HTTP client: {source}")]
    Client {
        model: String,
        source: reqwest::Error,
    },
    #[error("model `{0}`: not an upstream model with a `base_url`")]
    NoBaseUrl(String),
    #[error("model `{model}`: `base_url` `{url}` is not a valid URL: {reason}")]
    BadBaseUrl {
        model: String,
        url: String,
        reason: String,
    },
    #[error("model `{0}`: the upstream API key is not a valid HTTP header value")]
    BadApiKey(String),
}

pub struct UpstreamBackend {
    transport: Transport,
    base_url: String,
    /// `{base_url}/chat/completions`, `/completions` and `/models`, parsed once: a
    /// URL parse per request shows in the gateway's profile.
    chat: Endpoint,
    completions: Endpoint,
    embeddings: Endpoint,
    responses: Endpoint,
    models: Endpoint,
    /// `responses_api`: `/v1/responses` requests come as the client wrote them.
    responses_api: bool,
    /// The base URL and key, hashed: which store of responses this reaches
    /// ([`Backend::responses_store`]). Kept in this process only.
    store: u64,
    upstream_model: String,
    /// Sent with every call (user agent, content type, the upstream key marked
    /// sensitive so it never shows in debug output), for JSON and for SSE answers.
    headers_json: HeaderMap,
    headers_sse: HeaderMap,
    has_key: bool,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    /// `max_answer_bytes` and `max_event_bytes` of the model's config.
    max_answer: u64,
    max_event: u64,
}

impl std::fmt::Debug for UpstreamBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBackend")
            .field("base_url", &self.base_url)
            .field("upstream_model", &self.upstream_model)
            .field("transport", &self.transport.name())
            .field("api_key", &self.has_key.then_some("<redacted>"))
            .finish()
    }
}

impl UpstreamBackend {
    /// `api_key` is the secret read from the model's `api_key_env` (the caller reads
    /// the environment, so tests need not touch the process environment).
    pub fn new(cfg: &ModelConfig, api_key: Option<String>) -> Result<Self, UpstreamError> {
        Self::with_transport(cfg, api_key, Via::Auto)
    }

    /// As [`UpstreamBackend::new`], choosing the client: `Via::Reqwest` carries a
    /// plain `http://` upstream through reqwest too (as `https://` always is), which
    /// is how that path is tested against a local fake upstream.
    pub fn with_transport(
        cfg: &ModelConfig,
        api_key: Option<String>,
        via: Via,
    ) -> Result<Self, UpstreamError> {
        let up = cfg
            .upstream_config()
            .filter(|u| !u.base_url.is_empty())
            .ok_or_else(|| UpstreamError::NoBaseUrl(cfg.name.clone()))?;
        let base_url = up.base_url.trim_end_matches('/').to_owned();
        let endpoint = |path: &str| {
            Endpoint::parse(&format!("{base_url}{path}")).map_err(|reason| {
                UpstreamError::BadBaseUrl {
                    model: cfg.name.clone(),
                    url: base_url.clone(),
                    reason,
                }
            })
        };
        let (chat, completions, embeddings, responses, models) = (
            endpoint(Request::CHAT_PATH)?,
            endpoint(Request::COMPLETIONS_PATH)?,
            endpoint(Request::EMBEDDINGS_PATH)?,
            endpoint(Request::RESPONSES_PATH)?,
            endpoint("/models")?,
        );
        let transport =
            Transport::new(&base_url, Duration::from_secs(up.connect_timeout_secs), via).map_err(
                |source| UpstreamError::Client {
                    model: cfg.name.clone(),
                    source,
                },
            )?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("hearth/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let has_key = api_key.is_some();
        let store = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            (&base_url, &api_key).hash(&mut h);
            h.finish()
        };
        if let Some(k) = api_key {
            let mut v = HeaderValue::try_from(format!("Bearer {k}"))
                .map_err(|_| UpstreamError::BadApiKey(cfg.name.clone()))?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        let mut headers_json = headers.clone();
        headers_json.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let mut headers_sse = headers;
        headers_sse.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        tracing::debug!(model = %cfg.name, transport = transport.name(), "upstream client");
        Ok(UpstreamBackend {
            transport,
            base_url,
            chat,
            completions,
            embeddings,
            responses,
            models,
            responses_api: up.responses_api,
            store,
            upstream_model: cfg.upstream_model_name().to_owned(),
            headers_json,
            headers_sse,
            has_key,
            first_byte_timeout: Duration::from_secs(up.first_byte_timeout_secs),
            idle_timeout: Duration::from_secs(up.idle_timeout_secs),
            max_answer: up.max_answer_bytes,
            max_event: up.max_event_bytes,
        })
    }
}

/// An upstream error status as the client should see it: the upstream's own message
/// when it sent an OpenAI-shaped body, with the same status family.
fn status_error(status: u16, retry_after: Option<Duration>, body: &[u8]) -> BackendError {
    let kind = match status {
        400 | 422 => ErrorKind::InvalidRequest,
        401 | 403 => ErrorKind::BadGateway, // our key to the upstream is wrong: not the client's fault
        404 => ErrorKind::NotFound,
        413 => ErrorKind::PayloadTooLarge,
        429 => ErrorKind::RateLimited,
        504 => ErrorKind::Timeout,
        _ => ErrorKind::Unavailable,
    };
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let message = err
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("the upstream answered {status}"));
    let mut api = ApiError::new(kind, format!("upstream: {message}"));
    if let Some(p) = err.and_then(|e| e.get("param")).and_then(|p| p.as_str()) {
        api = api.with_param(p);
    }
    if let Some(c) = err.and_then(|e| e.get("code")).and_then(|c| c.as_str()) {
        api = api.with_code(c);
    }
    if matches!(status, 401 | 403) {
        api = ApiError::new(ErrorKind::BadGateway, format!("the upstream refused Hearth's credentials ({status}); check the model's api_key_env"))
            .with_code("upstream_auth");
    }
    BackendError::Status {
        status,
        retry_after,
        error: api,
    }
}

/// An answer's whole body, read before `deadline`, its failures in the router's
/// words.
async fn whole_body(
    body: impl std::future::Future<Output = Result<Bytes, BodyError>>,
    deadline: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Result<Bytes, BackendError> {
    tokio::select! {
        body = body => body.map_err(|e| match e {
            BodyError::TooLarge(max) => BackendError::TooLarge(format!(
                "the upstream's answer is over {max} bytes (the model's max_answer_bytes); it was cut off"
            )),
            BodyError::Broken(e) => {
                BackendError::Protocol(format!("reading the upstream's body: {e}"))
            }
        }),
        () = deadline => Err(BackendError::Timeout(
            "the upstream's body did not arrive in time".into(),
        )),
    }
}

/// An error answer's body (at most [`MAX_ERROR_BODY`]), read before `deadline`;
/// empty when it cannot be had.
async fn error_body(
    status: u16,
    body: impl std::future::Future<Output = Result<Bytes, BodyError>>,
    deadline: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Bytes {
    tokio::select! {
        body = body => match body {
            Ok(body) => body,
            Err(BodyError::TooLarge(_)) => {
                tracing::warn!(status, "the upstream's error body is over 64 KiB; not read");
                Bytes::new()
            }
            Err(BodyError::Broken(_)) => Bytes::new(),
        },
        () = deadline => Bytes::new(),
    }
}

#[async_trait]
impl Backend for UpstreamBackend {
    fn kind(&self) -> &'static str {
        "upstream"
    }

    fn serves_responses(&self) -> bool {
        self.responses_api
    }

    async fn call(&self, request: &Request) -> Result<EventStream, BackendError> {
        let stream = request.is_stream();
        // Straight to bytes, under the upstream's name for the model: no JSON tree of
        // the request in between, and no copy of it.
        let model = self.upstream_model.as_str();
        let (body, to) = match request {
            Request::Chat(request) => (serde_json::to_vec(&AsModel { request, model }), &self.chat),
            Request::Completion(request) => (
                serde_json::to_vec(&AsModel { request, model }),
                &self.completions,
            ),
            Request::Embeddings(request) => (
                serde_json::to_vec(&AsModel { request, model }),
                &self.embeddings,
            ),
            Request::Responses(r) => (
                serde_json::to_vec(&BodyAsModel(&r.body, model)),
                &self.responses,
            ),
        };
        let body = body.map_err(|e| BackendError::Protocol(e.to_string()))?;
        let headers = if stream {
            &self.headers_sse
        } else {
            &self.headers_json
        };
        // One timer for the call: the first-byte deadline, then, reset, the body's.
        let deadline = tokio::time::sleep(self.first_byte_timeout);
        tokio::pin!(deadline);
        let send = self.transport.send(Method::POST, to, headers, body.into());
        let answer = tokio::select! {
            answer = send => answer?,
            () = &mut deadline => {
                return Err(BackendError::Timeout("no response headers from the upstream".into()));
            }
        };
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + self.idle_timeout);
        if answer.head.status >= 400 {
            let (status, ra) = (answer.head.status, answer.head.retry_after);
            let body =
                error_body(status, answer.body.bytes(MAX_ERROR_BODY), deadline.as_mut()).await;
            return Err(status_error(status, ra, &body));
        }
        if !stream || !answer.head.event_stream {
            let body = whole_body(answer.body.bytes(self.max_answer), deadline.as_mut()).await?;
            // Asked to stream, got one JSON body: it goes on as it is, whole.
            let usage = body_usage(&body)?;
            let whole = Event::Wire(Wire {
                data: body,
                usage,
                whole: true,
            });
            return Ok(futures::stream::once(std::future::ready(Ok(whole))).boxed());
        }
        if let Request::Responses(_) = request {
            return Ok(sse::responses_events(
                answer.body.into_stream(),
                self.idle_timeout,
                self.max_event,
                transport::BodyStream::finish,
            )
            .boxed());
        }
        Ok(sse::events(
            answer.body.into_stream(),
            self.idle_timeout,
            self.max_event,
            transport::BodyStream::finish,
        )
        .boxed())
    }

    fn responses_store(&self) -> Option<u64> {
        self.responses_api.then_some(self.store)
    }

    async fn responses_call(
        &self,
        call: StoredCall,
        path_and_query: &str,
    ) -> Result<Option<RawAnswer>, BackendError> {
        if !self.responses_api {
            return Ok(None);
        }
        // The caller checked the id; this keeps any other path off the upstream.
        if !path_and_query
            .strip_prefix(Request::RESPONSES_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            return Err(BackendError::Invalid(ApiError::new(
                ErrorKind::InvalidRequest,
                "not a stored response's path",
            )));
        }
        let to = Endpoint::parse(&format!("{}{path_and_query}", self.base_url)).map_err(|why| {
            BackendError::Invalid(ApiError::new(
                ErrorKind::InvalidRequest,
                format!("not a valid path: {why}"),
            ))
        })?;
        let stream = call == StoredCall::Get
            && path_and_query
                .split_once('?')
                .is_some_and(|(_, q)| q.split('&').any(|p| p == "stream=true"));
        let mut headers = if stream {
            self.headers_sse.clone()
        } else {
            self.headers_json.clone()
        };
        headers.remove(header::CONTENT_TYPE);
        let method = match call {
            StoredCall::Get => Method::GET,
            StoredCall::Delete => Method::DELETE,
            StoredCall::Post => Method::POST,
        };
        let deadline = tokio::time::sleep(self.first_byte_timeout);
        tokio::pin!(deadline);
        let answer = tokio::select! {
            answer = self.transport.send(method, &to, &headers, Bytes::new()) => answer?,
            () = &mut deadline => {
                return Err(BackendError::Timeout("no response headers from the upstream".into()));
            }
        };
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + self.idle_timeout);
        let (status, retry_after) = (answer.head.status, answer.head.retry_after);
        // Our key refused or the upstream failing: not an answer for the client.
        if matches!(status, 401 | 403) || status >= 500 {
            let body =
                error_body(status, answer.body.bytes(MAX_ERROR_BODY), deadline.as_mut()).await;
            return Err(status_error(status, retry_after, &body));
        }
        if status < 300 && stream && answer.head.event_stream {
            let events = sse::responses_events(
                answer.body.into_stream(),
                self.idle_timeout,
                self.max_event,
                transport::BodyStream::finish,
            );
            return Ok(Some(RawAnswer {
                status,
                retry_after,
                body: RawBody::Events(events.boxed()),
            }));
        }
        let body = whole_body(answer.body.bytes(self.max_answer), deadline.as_mut()).await?;
        Ok(Some(RawAnswer {
            status,
            retry_after,
            body: RawBody::Whole(body),
        }))
    }

    async fn probe(&self) -> Result<(), BackendError> {
        let mut headers = self.headers_json.clone();
        headers.remove(header::CONTENT_TYPE);
        let answer = self
            .transport
            .send(Method::GET, &self.models, &headers, Bytes::new())
            .await?;
        if answer.head.status >= 500 {
            return Err(status_error(answer.head.status, None, b""));
        }
        // Read to the end (bounded by the idle timeout), so its connection goes back
        // to the pool rather than closing at each probe.
        let _ = tokio::time::timeout(self.idle_timeout, answer.body.bytes(self.max_answer)).await;
        Ok(())
    }
}

/// A request body kept as JSON (the Responses API's), serialized with another
/// `model`, without a copy.
struct BodyAsModel<'a>(&'a serde_json::Map<String, serde_json::Value>, &'a str);

impl serde::Serialize for BodyAsModel<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", self.1)?;
        for (k, v) in self.0.iter().filter(|(k, _)| *k != "model") {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Checks that a whole response is JSON and reads its `usage`, without building a
/// tree of the rest (the body is passed on as it came).
fn body_usage(body: &[u8]) -> Result<Option<Usage>, BackendError> {
    Usage::scan(body)
        .map_err(|why| BackendError::Protocol(format!("the upstream's answer is not JSON: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_usage_reads_usage_and_passes_other_json() {
        let u = body_usage(br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (3, 4, 7)
        );
        assert_eq!(body_usage(br#"{"id":"x"}"#).unwrap(), None);
        assert_eq!(body_usage(br#"{"usage":"odd"}"#).unwrap(), None);
        assert_eq!(body_usage(br#"[1,2]"#).unwrap(), None);
        assert!(matches!(
            body_usage(b"{not json"),
            Err(BackendError::Protocol(_))
        ));
        assert!(matches!(
            body_usage(br#"{"usage":{}} trailing"#),
            Err(BackendError::Protocol(_))
        ));
    }
}
