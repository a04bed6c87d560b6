//! From a parsed request to an HTTP response: rate limit, dispatch, and the
//! response (a JSON body, or SSE relayed event by event), written by `encode`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hearth_api::{ApiError, Usage};
use hearth_router::{Answer, BackendError, Event, Request};

use crate::auth::Caller;
use crate::encode::{Encoder, Endpoint, put_data};
use crate::ratelimit::RateLimiter;
use crate::request_log::RequestLog;
use crate::state::AppState;

/// Serves one `/v1` completion request.
pub async fn relay(
    state: &AppState,
    caller: &Caller,
    log: &RequestLog,
    request: Request,
) -> Result<Response, ApiError> {
    let estimate = request.estimated_prompt_tokens();
    let quota = state.limiter.admit(caller, estimate)?;
    if let Ok(m) = state.router.resolve(request.model()) {
        log.set_model(&m.metrics);
    }
    let stream = request.is_stream();
    let endpoint = match &request {
        Request::Chat(_) => Endpoint::Chat,
        Request::Completion(_) => Endpoint::Completion,
    };
    let include_usage = request.include_usage();
    let d = state.router.dispatch(request).await?;
    log.set_dispatched(&d.metrics, d.backend, d.attempts, stream);
    log.first_token();
    let encoder = Encoder::new(endpoint, d.model(), include_usage);
    let mut resp = if stream {
        sse_response(
            d.events,
            encoder,
            log.clone(),
            state.limiter.clone(),
            caller.clone(),
            estimate,
        )
    } else {
        let mut events = Vec::new();
        let mut answer = d.events;
        while let Some(e) = answer.next().await {
            events.push(e.map_err(|e| e.to_api_error())?);
        }
        if let Some(u) = events.iter().rev().find_map(Event::usage) {
            log.set_usage(u);
            state.limiter.settle(caller, estimate, u.total_tokens);
        }
        let mut r = Response::new(Body::from(encoder.whole(events)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    quota.apply(resp.headers_mut());
    Ok(resp)
}

/// Event-stream headers that keep proxies from buffering.
pub fn sse_headers(resp: &mut Response) {
    const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

/// `data: <payload>\n\n`
pub fn sse_event(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    put_data(&mut b, payload);
    b.freeze()
}

/// The most bytes of already-arrived events put into one write to the client.
const COALESCE_BYTES: usize = 32 * 1024;

/// Relays events as they come; ends with `data: [DONE]`, or with one error event
/// when the backend fails mid-stream (never a silent cut).
fn sse_response(
    events: Answer,
    encoder: Encoder,
    log: RequestLog,
    limiter: Arc<RateLimiter>,
    caller: Caller,
    estimate: u64,
) -> Response {
    struct St {
        inner: Answer,
        encoder: Encoder,
        finished: bool,
        log: RequestLog,
        limiter: Arc<RateLimiter>,
        caller: Caller,
        estimate: u64,
        usage: Option<Usage>,
    }
    impl St {
        /// Appends one event (a chunk, the error event, or `[DONE]`) to `out`.
        fn push(&mut self, next: Option<Result<Event, BackendError>>, out: &mut BytesMut) {
            match next {
                Some(Ok(event)) => {
                    if let Some(u) = event.usage() {
                        self.usage = Some(u);
                    }
                    self.encoder.stream_event(&event, out);
                }
                Some(Err(e)) => {
                    self.finished = true;
                    let api: ApiError = e.to_api_error();
                    tracing::warn!(request_id = self.log.id(), error = %e, "stream failed after it began");
                    self.log.set_error(&e.to_string());
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
        /// The answer's usage is counted once, when the stream ends or the client
        /// leaves: some upstreams repeat a running total in every chunk.
        fn drop(&mut self) {
            if let Some(u) = self.usage {
                self.log.set_usage(u);
                self.limiter
                    .settle(&self.caller, self.estimate, u.total_tokens);
            }
        }
    }
    impl futures::Stream for St {
        type Item = Result<Bytes, Infallible>;

        /// Waits for the next event, then takes every further one that has already
        /// arrived (never waiting for them): one write to the client instead of one
        /// per event when the upstream sent several in one packet. A write is a
        /// syscall and, on loopback, most of a small stream's cost.
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            use std::task::Poll;
            let this = self.get_mut();
            if this.finished {
                return Poll::Ready(None);
            }
            let Poll::Ready(first) = this.inner.poll_next_unpin(cx) else {
                return Poll::Pending;
            };
            // Room for a few events at once, so coalescing seldom grows the buffer.
            let mut out = BytesMut::with_capacity(1024);
            this.push(first, &mut out);
            while !this.finished && out.len() < COALESCE_BYTES {
                match this.inner.poll_next_unpin(cx) {
                    Poll::Ready(next) => this.push(next, &mut out),
                    Poll::Pending => break,
                }
            }
            Poll::Ready(Some(Ok(out.freeze())))
        }
    }
    let st = St {
        inner: events,
        encoder,
        finished: false,
        log,
        limiter,
        caller,
        estimate,
        usage: None,
    };
    let mut resp = Response::new(Body::from_stream(st));
    *resp.status_mut() = StatusCode::OK;
    sse_headers(&mut resp);
    resp
}
