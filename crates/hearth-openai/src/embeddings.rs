//! `POST /v1/embeddings`: a vector per input, from an embedding model.

use hearth_api::{ApiError, EmbeddingsRequest};
use hearth_http::HttpState;
use hearth_router::Request;

use crate::endpoint::Endpoint;

impl Endpoint for EmbeddingsRequest {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        EmbeddingsRequest::from_json(body)
    }

    fn check(&self, state: &HttpState) -> Result<(), ApiError> {
        crate::limits::text_bytes(state, self.input.byte_len(), "input", "the input")
    }

    fn stream(&self) -> bool {
        false
    }

    fn into_request(self) -> Request {
        Request::Embeddings(self)
    }
}
