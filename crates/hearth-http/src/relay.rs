//! From a parsed request to an HTTP response: rate limit, dispatch, and the
//! response (JSON, or SSE relayed chunk by chunk).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hearth_api::ApiError;
use hearth_router::{ChunkStream, Reply, Request};

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
        log.set_model(&m.config.name);
    }
    let stream = request.is_stream();
    let d = state.router.dispatch(request).await?;
    log.set_dispatched(&d.model, d.backend, d.attempts, stream);
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
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// `data: <payload>\n\n`
pub fn sse_event(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(payload);
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

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
    let st = St {
        inner: stream,
        finished: false,
        log,
        limiter,
        caller,
        estimate,
    };
    let body = futures::stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        let out = match st.inner.next().await {
            Some(Ok(chunk)) => {
                if let Some(u) = chunk.usage {
                    st.log.set_usage(u);
                    st.limiter.settle(&st.caller, st.estimate, u.total_tokens);
                }
                sse_event(&chunk.data)
            }
            Some(Err(e)) => {
                st.finished = true;
                let api: ApiError = e.to_api_error();
                tracing::warn!(request_id = %st.log.id, error = %e, "stream failed after it began");
                st.log.set_error(&e.to_string());
                sse_event(&api.to_json())
            }
            None => {
                st.finished = true;
                Bytes::from_static(b"data: [DONE]\n\n")
            }
        };
        Some((Ok::<_, Infallible>(out), st))
    });
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    sse_headers(&mut resp);
    resp
}
