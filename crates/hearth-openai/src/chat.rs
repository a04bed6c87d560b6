//! `POST /v1/chat/completions`

use axum::Extension;
use axum::extract::{Request as HttpRequest, State};
use axum::response::Response;
use hearth_api::{ApiError, ChatCompletionRequest};
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
    let req = or_answer!(ChatCompletionRequest::from_json(&body));
    or_answer!(check(&state, &req));
    or_answer!(crate::relay::relay(&state, &principal, &log, Request::Chat(req)).await)
}

fn check(state: &HttpState, req: &ChatCompletionRequest) -> Result<(), ApiError> {
    let l = &state.config.limits;
    if req.messages.len() > l.max_messages {
        return Err(ApiError::invalid_param(
            "messages",
            format!(
                "{} messages is more than the limit of {} (limits.max_messages)",
                req.messages.len(),
                l.max_messages
            ),
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let len = m.content.as_ref().map_or(0, |c| c.byte_len());
        if len > l.max_message_bytes {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].content"),
                format!(
                    "messages[{i}] is {len} bytes, more than the limit of {} (limits.max_message_bytes)",
                    l.max_message_bytes
                ),
            ));
        }
    }
    limits::max_tokens(state, req.max_tokens, "max_tokens")?;
    limits::max_tokens(state, req.max_completion_tokens, "max_completion_tokens")?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid_param("n", "only `n = 1` is supported"));
    }
    Ok(())
}
