//! OpenAI wire types and the OpenAI-shaped error type.
//!
//! This crate owns the shapes that cross the wire: request and response bodies of
//! `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/models`, the streaming chunk
//! shapes, and [`ApiError`], whose JSON form is `{"error":{"message","type","param","code"}}`.
//! It knows nothing of HTTP servers, backends or configuration, so every other crate
//! (the router, the engine, the HTTP layer, the CLI) can share it.
//!
//! # Layout
//! - [`error`]: [`ApiError`] and [`ErrorKind`], the single `kind -> status` mapping.
//! - [`chat`]: chat completion requests, responses and chunks.
//! - [`completion`]: legacy text completion requests (with `suffix` for fill-in-the-middle).
//! - [`embeddings`]: embeddings requests and their answers (floats or base64).
//! - [`models`]: `/v1/models` entries and the model status.
//! - [`usage`]: token usage.
//!
//! Requests keep every field the gateway does not interpret in an `extra` map, so an
//! upstream receives tools, response formats and vendor fields untouched.

pub mod chat;
pub mod completion;
pub mod embeddings;
pub mod error;
mod fields;
pub mod models;
pub mod usage;

pub use chat::{ChatCompletionRequest, ChatMessage, MessageContent, StopSequences, StreamOptions};
pub use completion::{CompletionRequest, Prompt};
pub use embeddings::{EmbeddingInput, EmbeddingsRequest, EncodingFormat, InputItem};
pub use error::{ApiError, ErrorKind};
pub use models::{EngineInfo, ModelEntry, ModelList, ModelStatus};
pub use usage::Usage;

/// A request serialized with another `model`: what an upstream receives, under its
/// own name for the model, without a copy of the request.
#[derive(Debug, Clone, Copy)]
pub struct AsModel<'a, T> {
    pub request: &'a T,
    pub model: &'a str,
}

/// Seconds since the Unix epoch, as OpenAI's `created` fields use.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
