//! `POST /v1/chat/completions`

use axum::Extension;
use axum::extract::{Request as HttpRequest, State};
use axum::response::Response;
use hearth_api::{ApiError, ChatCompletionRequest};
use hearth_router::Request;

use crate::auth::Caller;
use crate::error::HttpError;
use crate::limits;
use crate::request_log::RequestLog;
use crate::state::AppState;

pub async fn handler(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(log): Extension<RequestLog>,
    http: HttpRequest,
) -> Result<Response, HttpError> {
    serve(&state, &caller, &log, http).await
}

/// The endpoint itself, also called by the hot path (`crate::fast`).
pub(crate) async fn serve(
    state: &AppState,
    caller: &Caller,
    log: &RequestLog,
    http: HttpRequest,
) -> Result<Response, HttpError> {
    // The headers are read in place (a `HeaderMap` extractor would copy them all).
    let (parts, body) = http.into_parts();
    let body = crate::body::bytes(&parts.headers, body, state.config.limits.max_body_bytes).await?;
    let req = ChatCompletionRequest::from_json(&body)?;
    check(state, &req)?;
    Ok(crate::relay::relay(state, caller, log, Request::Chat(req)).await?)
}

fn check(state: &AppState, req: &ChatCompletionRequest) -> Result<(), ApiError> {
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
