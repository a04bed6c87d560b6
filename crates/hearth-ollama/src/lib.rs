//! Ollama's API, for the tools that speak only it (JetBrains' Ollama provider,
//! Open WebUI's Ollama connection, the `ollama` Python and JS libraries):
//! `/api/version`, `/api/tags`, `/api/show`, `/api/ps`, `/api/chat`,
//! `/api/generate`, `/api/embed` (and the older `/api/embeddings`), `/api/pull`.
//!
//! A front end like `/v1`: each request is translated into the gateway's
//! [`Request`](hearth_router::Request), served by whatever backend the model has
//! (the embedded engine or an upstream), and its typed events are written back
//! in Ollama's wire format (one JSON object per line when streaming). Nothing here
//! knows a backend. Keys, limits and the access log are the server's, as for `/v1`.
//!
//! # Layout
//! - `names`: Ollama's `name:tag` model names to configured models; the model
//!   listings (`tags`, `show`, `ps`).
//! - `generate`: `/api/chat` and `/api/generate`: the request into a chat or text
//!   completion (`options` into sampling, `format` into `response_format`), the
//!   answer as NDJSON or one object.
//! - `embed`: `/api/embed` and `/api/embeddings`.
//! - `pull`: `/api/pull`, with progress lines.
//! - `wire`: Ollama's error shape, timestamps, NDJSON responses.

mod embed;
mod generate;
mod names;
mod pull;
mod wire;

use axum::routing::{get, post};
use hearth_http::HttpState;

/// The Ollama API version Hearth speaks (what `/api/version` answers): clients
/// check it before using newer fields.
pub const OLLAMA_VERSION: &str = "0.12.0";

/// The `/api` routes of Ollama's API, behind the server's key check.
pub fn routes(state: &HttpState) -> axum::Router {
    axum::Router::new()
        .route("/api/version", get(wire::version))
        .route("/api/tags", get(names::tags))
        .route("/api/show", post(names::show))
        .route("/api/ps", get(names::ps))
        .route("/api/chat", post(generate::chat))
        .route("/api/generate", post(generate::generate))
        .route("/api/embed", post(embed::embed))
        .route("/api/embeddings", post(embed::embeddings))
        .route("/api/pull", post(pull::pull))
        .with_state(state.clone())
}
