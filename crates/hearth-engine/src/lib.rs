//! The embedded inference engine: GGUF models served in-process by llama.cpp
//! (through the `llama-cpp-2` crate), behind the router's [`hearth_router::Backend`]
//! trait, so the HTTP layer cannot tell it from an upstream server.
//!
//! This crate owns everything llama.cpp: loading a GGUF file, its chat template,
//! tokenization, the continuous-batching scheduler, sampling (penalties, seeds,
//! JSON grammar), stop strings, the prompt cache, and downloading and inspecting
//! model files for `hearth models`. It knows nothing of HTTP servers or the
//! router's queue: the router limits concurrency to `parallel`, the engine decodes.
//!
//! # Layout
//! - [`backend`]: [`EmbeddedBackend`], the `Backend` implementation; request in,
//!   OpenAI-shaped bodies and chunks out.
//! - `scheduler`: the engine thread: load, then the batching loop over slots.
//! - `intake`: the thread that prepares requests (template, tokens, grammar) so
//!   the batching loop never waits for them.
//! - `llama`: every call into llama.cpp (init, logs, context, template, samplers).
//! - `request`: a router request checked and turned into prompt + sampling params.
//! - `text`: token bytes to whole UTF-8 characters, with stop strings cut out.
//! - [`settings`]: config defaults (threads = physical cores, context, parallel).
//! - [`gguf`]: a plain-Rust GGUF header reader for validation and `models list`.
//! - [`download`]: `hearth models pull`: resumable, checksummed HTTP downloads.
//!
//! No `unsafe` here: `llama-cpp-2` wraps llama.cpp's C API in safe types, and its
//! handles are freed by their `Drop`.

pub mod backend;
pub mod download;
pub mod gguf;
mod intake;
mod llama;
mod request;
mod scheduler;
pub mod settings;
mod text;

pub use backend::{EmbeddedBackend, EngineStats, LoadGate};
pub use gguf::{GgufError, GgufInfo, inspect};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file is missing, not GGUF, truncated or corrupt.
    #[error(transparent)]
    Model(#[from] GgufError),
    /// The model's configuration cannot work.
    #[error("{0}")]
    Config(String),
    #[error("cannot start the engine thread: {0}")]
    Spawn(std::io::Error),
}
