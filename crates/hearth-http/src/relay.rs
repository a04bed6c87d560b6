//! From a parsed request to an HTTP response: rate limit, dispatch, and the
//! response (JSON, or SSE relayed chunk by chunk).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hearth_api::ApiError;
use hearth_router::{BackendError, Chunk, ChunkStream, Reply, Request};

use crate::auth::Caller;
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
    let d = state.router.dispatch(request).await?;
    log.set_dispatched(&d.metrics, d.backend, d.attempts, stream);
    log.first_token();
    let mut resp = match d.reply {
        Reply::Full { body, usage } => {
            if let Some(u) = usage {
                log.set_usage(u);
                state.limiter.settle(caller, estimate, u.total_tokens);
            }
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Reply::Stream(s) => sse_response(
            s,
            log.clone(),
            state.limiter.clone(),
            caller.clone(),
            estimate,
        ),
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
    put_event(&mut b, payload);
    b.freeze()
}

fn put_event(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// The most bytes of already-arrived events put into one write to the client.
const COALESCE_BYTES: usize = 32 * 1024;

/// Relays chunks as they come; ends with `data: [DONE]`, or with one error event
/// when the backend fails mid-stream (never a silent cut).
fn sse_response(
    stream: ChunkStream,
    log: RequestLog,
    limiter: Arc<RateLimiter>,
    caller: Caller,
    estimate: u64,
) -> Response {
    struct St {
        inner: ChunkStream,
        finished: bool,
        log: RequestLog,
        limiter: Arc<RateLimiter>,
        caller: Caller,
        estimate: u64,
    }
    impl St {
        /// Appends one event (a chunk, the error event, or `[DONE]`) to `out`.
        fn push(&mut self, next: Option<Result<Chunk, BackendError>>, out: &mut BytesMut) {
            match next {
                Some(Ok(chunk)) => {
                    if let Some(u) = chunk.usage {
                        self.log.set_usage(u);
                        self.limiter
                            .settle(&self.caller, self.estimate, u.total_tokens);
                    }
                    put_event(out, &chunk.data);
                }
                Some(Err(e)) => {
                    self.finished = true;
                    let api: ApiError = e.to_api_error();
                    tracing::warn!(request_id = self.log.id(), error = %e, "stream failed after it began");
                    self.log.set_error(&e.to_string());
                    put_event(out, &api.to_json());
                }
                None => {
                    self.finished = true;
                    out.extend_from_slice(b"data: [DONE]\n\n");
                }
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
        inner: stream,
        finished: false,
        log,
        limiter,
        caller,
        estimate,
    };
    let body = st;
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    sse_headers(&mut resp);
    resp
}
