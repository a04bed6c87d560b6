//! `POST /v1/completions` (with `suffix` for fill-in-the-middle).

use axum::Extension;
use axum::extract::{Request as HttpRequest, State};
use axum::response::Response;
use hearth_api::{ApiError, CompletionRequest};
use hearth_router::Request;

use hearth_gateway::Principal;
use hearth_http::{HttpError, HttpState, RequestLog};

use crate::limits;

pub async fn handler(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    http: HttpRequest,
) -> Result<Response, HttpError> {
    serve(&state, &principal, &log, http).await
}

/// The endpoint itself, also called by the hot path (`crate::Fast`).
pub(crate) async fn serve(
    state: &HttpState,
    principal: &Principal,
    log: &RequestLog,
    http: HttpRequest,
) -> Result<Response, HttpError> {
    // The headers are read in place (a `HeaderMap` extractor would copy them all).
    let (parts, body) = http.into_parts();
    let body =
        hearth_http::body::bytes(&parts.headers, body, state.config.limits.max_body_bytes).await?;
    let req = CompletionRequest::from_json(&body)?;
    let l = &state.config.limits;
    let len = req.prompt.byte_len() + req.suffix.as_ref().map_or(0, String::len);
    if len > l.max_message_bytes {
        return Err(ApiError::invalid_param(
            "prompt",
            format!(
                "the prompt is {len} bytes, more than the limit of {} (limits.max_message_bytes)",
                l.max_message_bytes
            ),
        )
        .into());
    }
    limits::max_tokens(state, req.max_tokens, "max_tokens")?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid_param("n", "only `n = 1` is supported").into());
    }
    Ok(crate::relay::relay(state, principal, log, Request::Completion(req)).await?)
}
