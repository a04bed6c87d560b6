//! Request ids and the access log: one structured line per request, written when
//! the response body ends (so a stream is logged with its tokens and duration),
//! plus the per-request metrics.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hearth_api::{ApiError, Usage};
use hearth_router::ModelMetrics;

pub const REQUEST_ID: &str = "x-request-id";

#[derive(Debug, Default)]
struct Record {
    key_id: Option<Arc<str>>,
    /// The model (its name and metric handles), once resolved.
    model: Option<Arc<ModelMetrics>>,
    backend: Option<&'static str>,
    ttft: Option<Duration>,
    usage: Option<Usage>,
    attempts: u32,
    stream: bool,
    /// Content deltas (text, reasoning, tool-call pieces) sent of a stream: one
    /// per token from the embedded engine and from vLLM / llama-server streams.
    deltas: u64,
    error: Option<String>,
}

/// Shared by the middleware and the handler; cheap to clone (one allocation per
/// request holds all of it).
#[derive(Debug, Clone)]
pub struct RequestLog(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: RequestId,
    started: Instant,
    method: Method,
    path: String,
    record: Mutex<Record>,
}

/// The client's `x-request-id`, or one made here.
#[derive(Debug)]
enum RequestId {
    Made([u8; 32]),
    Given(HeaderValue),
}

impl RequestLog {
    fn with<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        f(&mut self.0.record.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The request id, as returned in `x-request-id`.
    pub fn id(&self) -> &str {
        match &self.0.id {
            RequestId::Made(id) => std::str::from_utf8(id).unwrap_or_default(),
            RequestId::Given(v) => v.to_str().unwrap_or_default(),
        }
    }

    fn id_header(&self) -> Option<HeaderValue> {
        match &self.0.id {
            RequestId::Made(id) => HeaderValue::from_bytes(id).ok(),
            RequestId::Given(v) => Some(v.clone()),
        }
    }

    pub fn set_key(&self, key_id: &Arc<str>) {
        self.with(|r| r.key_id = Some(key_id.clone()));
    }

    pub fn set_model(&self, model: &Arc<ModelMetrics>) {
        self.with(|r| r.model = Some(model.clone()));
    }

    pub fn set_dispatched(
        &self,
        model: &Arc<ModelMetrics>,
        backend: &'static str,
        attempts: u32,
        stream: bool,
    ) {
        self.with(|r| {
            r.model = Some(model.clone());
            r.backend = Some(backend);
            r.attempts = attempts;
            r.stream = stream;
        });
    }

    /// Whether the request asked for a stream, known once it is parsed (so a
    /// refused stream request is logged as one).
    pub fn set_stream(&self, stream: bool) {
        self.with(|r| r.stream = stream);
    }

    /// The content deltas a stream sent (its tokens so far, when it ends early).
    pub fn set_deltas(&self, n: u64) {
        self.with(|r| r.deltas = n);
    }

    /// Marks the first token as sent (first call wins): a stream's first content
    /// or tool-call delta, not its first (empty, role-only) chunk; a whole
    /// answer's body.
    pub fn first_token(&self) {
        let now = self.0.started.elapsed();
        self.with(|r| {
            r.ttft.get_or_insert(now);
        });
    }

    pub fn set_usage(&self, usage: Usage) {
        self.with(|r| r.usage = Some(usage));
    }

    pub fn set_error(&self, message: &str) {
        self.with(|r| r.error = Some(message.to_owned()));
    }

    pub fn elapsed(&self) -> Duration {
        self.0.started.elapsed()
    }
}

/// Accepts a sane `x-request-id` from the client (or a proxy) or makes one.
fn request_id(req: &Request) -> RequestId {
    req.headers()
        .get(REQUEST_ID)
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty() && v.len() <= 128 && v.iter().all(u8::is_ascii_graphic)
        })
        .map_or_else(new_request_id, |v| RequestId::Given(v.clone()))
}

/// 32 hex digits, like a UUID without dashes: a random prefix drawn once per
/// process and a counter. Unique without a `getrandom` call per request (one
/// showed in the gateway's profile), and never mistaken across restarts.
fn new_request_id() -> RequestId {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| hex16(uuid::Uuid::new_v4().as_u64_pair().0));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(prefix);
    id[16..].copy_from_slice(&hex16(n));
    RequestId::Made(id)
}

/// 16 lowercase hex digits, written digit by digit (`format!` showed in the
/// gateway's profile).
fn hex16(word: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, d) in out.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((word >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The access-log middleware of the axum routes: [`start`], the route (in a span
/// named by the request's id, so whatever it logs says which request it was),
/// [`finish`].
pub async fn middleware(mut req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let log = start(&req);
    req.extensions_mut().insert(log.clone());
    let span = tracing::info_span!("request", id = log.id());
    finish(log, next.run(req).instrument(span).await)
}

/// Begins a request's log: its id (the client's or a new one) and its clock.
pub(crate) fn start(req: &Request) -> RequestLog {
    RequestLog(Arc::new(Inner {
        id: request_id(req),
        started: Instant::now(),
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        record: Mutex::default(),
    }))
}

/// Ends a request's log: returns its id in `x-request-id`, notes the error the
/// response carries, and writes the line (and the metrics) when the body ends.
pub(crate) fn finish(log: RequestLog, mut resp: Response) -> Response {
    if let Some(v) = log.id_header() {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    if let Some(e) = resp.extensions().get::<ApiError>() {
        log.set_error(&e.message);
    }
    let guard = Guard {
        log,
        status: resp.status().as_u16(),
        // An empty body is never polled: hyper sees its end first.
        ended: http_body::Body::is_end_stream(resp.body()),
    };
    resp.map(|body| {
        Body::new(LoggedBody {
            inner: body,
            guard: Some(guard),
        })
    })
}

struct Guard {
    log: RequestLog,
    status: u16,
    /// The body was sent to its end (else the client went away first).
    ended: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let log = &self.log.0;
        let latency = log.started.elapsed();
        let r = self.log.with(std::mem::take);
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        // What became of it: the client hung up before the end (`cancelled`), the
        // answer failed (before or during the body: `error`), or it was sent whole.
        let outcome = if self.status >= 400 || r.error.is_some() {
            "error"
        } else if !self.ended {
            "cancelled"
        } else {
            "completed"
        };
        if let Some(m) = &r.model {
            m.request(self.status, latency, r.ttft, r.usage);
            if outcome == "cancelled" {
                m.cancelled();
            }
        }
        // Without the backend's usage (a stream cut short), the tokens sent so far.
        let completion_tokens = r
            .usage
            .map(|u| u.completion_tokens)
            .or((r.stream && r.deltas > 0).then_some(r.deltas));
        // A failed request's line is its error's one log line (at `warn`, so it
        // shows at the quieter levels too); others are `info`.
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "hearth::access",
                    request_id = self.log.id(),
                    method = %log.method,
                    path = %log.path,
                    status = self.status,
                    outcome,
                    key_id = r.key_id.as_deref(),
                    model = r.model.as_deref().map(ModelMetrics::model),
                    backend = r.backend,
                    stream = r.stream,
                    attempts = r.attempts,
                    latency_ms = ms(latency),
                    ttft_ms = r.ttft.map(ms),
                    prompt_tokens = r.usage.map(|u| u.prompt_tokens),
                    completion_tokens,
                    error = r.error.as_deref(),
                    "request"
                )
            };
        }
        if r.error.is_some() || self.status >= 500 {
            line!(warn);
        } else {
            line!(info);
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body, unchanged; dropping it (end of body or client gone)
    /// writes the access log line.
    struct LoggedBody {
        #[pin]
        inner: Body,
        guard: Option<Guard>,
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let out = this.inner.as_mut().poll_frame(cx);
        // The end: no more frames, or (a whole body) the last frame, after which
        // hyper asks `is_end_stream` and drops the body without polling again.
        let ended = match &out {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended && let Some(guard) = this.guard.as_mut() {
            guard.ended = true;
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn new_ids_are_32_hex_digits_a_prefix_and_a_counter() {
        let id = |r: RequestId| match r {
            RequestId::Made(b) => String::from_utf8(b.to_vec()).unwrap(),
            RequestId::Given(_) => unreachable!(),
        };
        let (a, b) = (id(new_request_id()), id(new_request_id()));
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        assert_eq!(a[..16], b[..16], "one prefix per process");
        let n = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert!(n(&b) > n(&a), "{a} then {b}");
    }
}
