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
//! - `embed`: an embedding model's thread (`kind = "embedding"`): inputs
//!   batched into decodes, pooled and normalised vectors out.
//! - `intake`: the thread that prepares requests (template, tokens, grammar) so
//!   the batching loop never waits for them.
//! - `device`: where each model runs (CPU, which GPUs) and the GPU memory it took.
//! - `llama`: every call into llama.cpp (init, logs, context, template, samplers).
//! - `request`: a router request checked and turned into prompt + sampling params.
//! - `tools`: tool calls in the generic JSON format or a model family's own syntax.
//! - `think`: a reasoning model's `<think>…</think>` told apart from its reply.
//! - `jinja`: a GGUF's chat template rendered as its Jinja source (for the tool
//!   syntaxes the C template API cannot write).
//! - `text`: token bytes to whole UTF-8 characters, with stop strings cut out.
//! - [`settings`]: config defaults (threads = physical cores, context, parallel).
//! - [`gguf`]: a plain-Rust GGUF header reader for validation and `models list`.
//! - [`download`]: `hearth models pull`: resumable, checksummed HTTP downloads.
//!
//! - `llama_log`: llama.cpp's own log lines into `tracing`, at debug.
//!
//! One piece of `unsafe`, in `llama_log` (a C log callback); otherwise
//! `llama-cpp-2` wraps llama.cpp's C API in safe types, and its handles are freed
//! by their `Drop`.

pub mod backend;
mod device;
pub mod download;
mod embed;
mod fetch;
pub mod gguf;
mod intake;
mod jinja;
mod llama;
mod llama_log;
mod request;
mod scheduler;
pub mod settings;
mod text;
mod think;
mod tools;
mod vision;

pub use backend::{EmbeddedBackend, EngineStats, LoadGate};
pub use fetch::FetchingBackend;
pub use gguf::{GgufError, GgufInfo, inspect};

/// A size for people, in decimal units as disks and downloads are sold: `98 MB`, `4.7 GB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if v < 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.0} {}", UNITS[unit]),
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_reads_like_a_download_size() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(98_362_432), "98 MB");
        assert_eq!(super::human_bytes(4_700_000_000), "4.7 GB");
    }
}
