//! `POST /v1/completions` (with `suffix` for fill-in-the-middle).

use axum::Extension;
use axum::extract::{Request as HttpRequest, State};
use axum::response::Response;
use hearth_api::{ApiError, CompletionRequest};
use hearth_router::Request;

use hearth_gateway::Principal;
use hearth_http::{HttpState, RequestLog};

use crate::limits;

pub async fn handler(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    http: HttpRequest,
) -> Response {
    serve(state, principal, log, http).await
}

/// The endpoint itself, also called by the hot path (`crate::Fast`). Its arguments
/// are owned and its errors answered here, so that the hot path awaits it with no
/// wrapper future around it (each level of futures is copied as it is started).
pub(crate) async fn serve(
    state: HttpState,
    principal: Principal,
    log: RequestLog,
    http: HttpRequest,
) -> Response {
    // The headers are read in place (a `HeaderMap` extractor would copy them all).
    let (parts, body) = http.into_parts();
    let limit = state.config.limits.max_body_bytes;
    let body = or_answer!(hearth_http::body::bytes(&parts.headers, body, limit).await);
    let req = or_answer!(CompletionRequest::from_json(&body));
    or_answer!(check(&state, &req));
    or_answer!(crate::relay::relay(&state, &principal, &log, Request::Completion(req)).await)
}

fn check(state: &HttpState, req: &CompletionRequest) -> Result<(), ApiError> {
    let l = &state.config.limits;
    let len = req.prompt.byte_len() + req.suffix.as_ref().map_or(0, String::len);
    if len > l.max_message_bytes {
        return Err(ApiError::invalid_param(
            "prompt",
            format!(
                "the prompt is {len} bytes, more than the limit of {} (limits.max_message_bytes)",
                l.max_message_bytes
            ),
        ));
    }
    limits::max_tokens(state, req.max_tokens, "max_tokens")?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid_param("n", "only `n = 1` is supported"));
    }
    Ok(())
}
