//! `POST /v1/chat/completions`

use hearth_api::{ApiError, ChatCompletionRequest};
use hearth_http::HttpState;
use hearth_router::Request;

use crate::endpoint::Endpoint;
use crate::limits;

impl Endpoint for ChatCompletionRequest {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        ChatCompletionRequest::from_json(body)
    }

    fn check(&self, state: &HttpState) -> Result<(), ApiError> {
        check(state, self)
    }

    fn stream(&self) -> bool {
        self.stream
    }

    fn into_request(self) -> Request {
        Request::Chat(self)
    }
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
    // How many a backend gives is its own limit (the embedded engine's is
    // smaller); OpenAI's is 128.
    if req.n.is_some_and(|n| !(1..=128).contains(&n)) {
        return Err(ApiError::invalid_param(
            "n",
            "`n` must be between 1 and 128",
        ));
    }
    Ok(())
}
