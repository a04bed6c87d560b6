//! From a checked request to an HTTP response: the gateway's completion, and the
//! response (a JSON body, or SSE relayed event by event), written by `encode`.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hearth_api::ApiError;
use hearth_gateway::{Metered, Principal, Quota};
use hearth_http::sse::{self, put_data};
use hearth_http::{HttpState, RequestLog};
use hearth_router::{BackendError, Event, Request};

use crate::encode::{Encoder, Format};

/// Serves one `/v1` completion request.
pub async fn relay(
    state: &HttpState,
    principal: &Principal,
    log: &RequestLog,
    request: Request,
) -> Result<Response, ApiError> {
    if let Ok(m) = state.gateway.router().resolve(request.model()) {
        log.set_model(&m.metrics);
    }
    let stream = request.is_stream();
    let format = match &request {
        // Responses requests have their own front end (`responses`), never this one.
        Request::Chat(_) | Request::Responses(_) => Format::Chat,
        Request::Completion(_) => Format::Completion,
        Request::Embeddings(r) => Format::Embeddings { base64: r.base64() },
    };
    let include_usage = request.include_usage();
    log.set_stream(stream);
    let c = state.gateway.complete(principal, request, log.id()).await?;
    log.set_dispatched(&c.model, c.backend, c.attempts, stream);
    let mut encoder = Encoder::new(format, c.model.clone(), include_usage);
    let quota = c.quota;
    let warning = c.warning;
    let mut resp = if stream {
        sse_response(c.events, encoder, log.clone())
    } else {
        let mut answer = c.events;
        let body = whole(&mut answer, &mut encoder).await?;
        log.first_token();
        if let Some(u) = answer.usage() {
            log.set_usage(u);
        }
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    quota_headers(&quota, resp.headers_mut());
    if let Some(w) = warning.and_then(|w| HeaderValue::try_from(w).ok()) {
        resp.headers_mut().insert("x-hearth-warning", w);
    }
    Ok(resp)
}

/// A whole answer's body: an upstream's as it came (the usual case, read without a
/// list of events), or the events written as one body.
async fn whole(answer: &mut Metered, encoder: &mut Encoder) -> Result<Bytes, ApiError> {
    let mut events = match answer.next().await {
        None => Vec::new(),
        Some(Err(e)) => return Err(e.to_api_error()),
        Some(Ok(Event::Wire(w))) if w.whole => {
            // Nothing follows an upstream's body; reading on ends the stream (so its
            // usage is counted).
            while let Some(e) = answer.next().await {
                e.map_err(|e| e.to_api_error())?;
            }
            return Ok(w.data);
        }
        Some(Ok(first)) => vec![first],
    };
    while let Some(e) = answer.next().await {
        events.push(e.map_err(|e| e.to_api_error())?);
    }
    Ok(encoder.whole(events))
}

/// OpenAI's `x-ratelimit-*` headers, when the caller has limits, and
/// `x-hearth-budget-*` when it has a token budget.
pub(crate) fn quota_headers(q: &Quota, h: &mut HeaderMap) {
    let lines = [
        (
            &q.requests,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        ),
        (
            &q.tokens,
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ),
    ];
    for (line, [limit, remaining, reset]) in lines {
        let Some(l) = line else { continue };
        h.insert(limit, HeaderValue::from(l.limit));
        h.insert(remaining, HeaderValue::from(l.remaining));
        if let Ok(v) = HeaderValue::from_str(&format!("{:.3}s", l.reset_secs.max(0.0))) {
            h.insert(reset, v);
        }
    }
    // The key's token budget, as it stood when this request was admitted.
    if let Some(b) = &q.budget {
        h.insert(
            "x-hearth-budget-limit-tokens",
            HeaderValue::from(b.budget.tokens),
        );
        h.insert(
            "x-hearth-budget-remaining-tokens",
            HeaderValue::from(b.remaining()),
        );
        if let Ok(v) = HeaderValue::from_str(&b.renews_at()) {
            h.insert("x-hearth-budget-renews-at", v);
        }
    }
}

/// The most bytes of already-arrived events put into one write to the client.
#[doc(hidden)]
pub const COALESCE_BYTES: usize = 32 * 1024;

/// Waits for the next item of `inner`, then takes every further one that has
/// already arrived (never waiting for them), each appended to one buffer by
/// `push` (which says whether the stream is finished), until the buffer holds
/// [`COALESCE_BYTES`]: one write to the client instead of one per event when the
/// upstream sent several in one packet. A write is a syscall and, on loopback,
/// most of a small stream's cost. Public for the `relay` fuzz target.
#[doc(hidden)]
pub fn coalesce<S: futures::Stream + Unpin>(
    inner: &mut S,
    cx: &mut std::task::Context<'_>,
    mut push: impl FnMut(Option<S::Item>, &mut BytesMut) -> bool,
) -> std::task::Poll<Bytes> {
    use std::task::Poll;
    let Poll::Ready(first) = inner.poll_next_unpin(cx) else {
        return Poll::Pending;
    };
    // Room for a few events at once, so coalescing seldom grows the buffer.
    let mut out = BytesMut::with_capacity(1024);
    let mut finished = push(first, &mut out);
    while !finished && out.len() < COALESCE_BYTES {
        match inner.poll_next_unpin(cx) {
            Poll::Ready(next) => finished = push(next, &mut out),
            Poll::Pending => break,
        }
    }
    Poll::Ready(out.freeze())
}

/// Relays events as they come; ends with `data: [DONE]`, or with one error event
/// when the backend fails mid-stream (never a silent cut).
fn sse_response(events: Metered, encoder: Encoder, log: RequestLog) -> Response {
    struct St {
        inner: Metered,
        w: Writer,
    }
    /// What writes the events: everything of the stream but its source.
    struct Writer {
        encoder: Encoder,
        finished: bool,
        log: RequestLog,
        /// Content deltas sent (the time to the first is the TTFT).
        deltas: u64,
    }
    impl Writer {
        /// Appends one event (a chunk, the error event, or `[DONE]`) to `out`.
        fn push(&mut self, next: Option<Result<Event, BackendError>>, out: &mut BytesMut) {
            match next {
                Some(Ok(event)) => {
                    if carries_content(&event) {
                        if self.deltas == 0 {
                            self.log.first_token();
                        }
                        self.deltas += 1;
                    }
                    self.encoder.stream_event(&event, out);
                }
                Some(Err(e)) => {
                    self.finished = true;
                    let api: ApiError = e.to_api_error();
                    // Logged once, in the request's access line.
                    self.log
                        .set_error(&format!("the stream failed after it began: {e}"));
                    put_data(out, &api.to_json());
                }
                None => {
                    self.finished = true;
                    out.extend_from_slice(b"data: [DONE]\n\n");
                }
            }
        }
    }
    impl Drop for St {
        fn drop(&mut self) {
            if let Some(u) = self.inner.usage() {
                self.w.log.set_usage(u);
            }
            self.w.log.set_deltas(self.w.deltas);
        }
    }
    impl futures::Stream for St {
        type Item = Result<Bytes, Infallible>;

        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            let this = self.get_mut();
            if this.w.finished {
                return std::task::Poll::Ready(None);
            }
            let w = &mut this.w;
            coalesce(&mut this.inner, cx, |next, out| {
                w.push(next, out);
                w.finished
            })
            .map(|b| Some(Ok(b)))
        }
    }
    let st = St {
        inner: events,
        w: Writer {
            encoder,
            finished: false,
            log,
            deltas: 0,
        },
    };
    let mut resp = Response::new(Body::from_stream(st));
    *resp.status_mut() = StatusCode::OK;
    sse::headers(&mut resp);
    resp
}

/// Whether an event carries some of the answer: text, reasoning or a tool call,
/// not only a role, a finish reason or usage. An upstream's chunk is looked at as
/// bytes (no JSON parse on the hot path): a non-empty `content`, `text` or
/// `reasoning_content` string, or `tool_calls`.
fn carries_content(event: &Event) -> bool {
    match event {
        Event::Text { text, .. } | Event::Reasoning { text, .. } => !text.is_empty(),
        Event::ToolCall { .. } | Event::Embedding { .. } => true,
        Event::Finish { .. } | Event::Usage(_) | Event::Logprob { .. } => false,
        Event::Wire(w) => wire_has_content(&w.data),
    }
}

fn wire_has_content(data: &[u8]) -> bool {
    if memchr::memmem::find(data, b"\"tool_calls\"").is_some() {
        return true;
    }
    for key in [&b"\"content\""[..], b"\"text\"", b"\"reasoning_content\""] {
        for at in memchr::memmem::find_iter(data, key) {
            let rest = &data[at + key.len()..];
            let rest = rest.trim_ascii_start();
            let Some(rest) = rest.strip_prefix(b":") else {
                continue;
            };
            let rest = rest.trim_ascii_start();
            if rest.starts_with(b"\"") && !rest.starts_with(b"\"\"") {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod content_tests {
    use super::wire_has_content;

    #[test]
    fn an_upstream_chunk_carries_content_only_with_text_or_a_tool_call() {
        for yes in [
            &br#"{"choices":[{"delta":{"content":"Hi"}}]}"#[..],
            br#"{"choices":[{"delta":{"content" : "x"}}]}"#,
            br#"{"choices":[{"text":"Hi","index":0}]}"#,
            br#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
        ] {
            assert!(wire_has_content(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#[..],
            br#"{"choices":[{"delta":{"content":null},"finish_reason":"stop"}]}"#,
            br#"{"choices":[],"usage":{"prompt_tokens":5}}"#,
            br#"{"choices":[{"delta":{}}]}"#,
        ] {
            assert!(!wire_has_content(no), "{}", String::from_utf8_lossy(no));
        }
    }
}
