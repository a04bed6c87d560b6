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
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid_param("n", "only `n = 1` is supported"));
    }
    Ok(())
}
