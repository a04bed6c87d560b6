//! `POST /v1/completions` (with `suffix` for fill-in-the-middle).

use hearth_api::{ApiError, CompletionRequest};
use hearth_http::HttpState;
use hearth_router::Request;

use crate::endpoint::Endpoint;
use crate::limits;

impl Endpoint for CompletionRequest {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        CompletionRequest::from_json(body)
    }

    fn check(&self, state: &HttpState) -> Result<(), ApiError> {
        check(state, self)
    }

    fn stream(&self) -> bool {
        self.stream
    }

    fn into_request(self) -> Request {
        Request::Completion(self)
    }
}

fn check(state: &HttpState, req: &CompletionRequest) -> Result<(), ApiError> {
    let len = req.prompt.byte_len() + req.suffix.as_ref().map_or(0, String::len);
    limits::text_bytes(state, len, "prompt", "the prompt")?;
    limits::max_tokens(state, req.max_tokens, "max_tokens")?;
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
