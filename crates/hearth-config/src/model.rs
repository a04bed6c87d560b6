//! `[[models]]`: what clients can name, and the backend behind each name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// llama.cpp in-process (`path` to a GGUF file).
    #[default]
    Embedded,
    /// An OpenAI-compatible server over HTTP (`base_url`).
    Upstream,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Upstream => "upstream",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// What clients send as `model`.
    pub name: String,
    pub backend: BackendKind,
    /// Other names clients may use for this model.
    pub aliases: Vec<String>,
    pub tags: Vec<String>,
    /// Context window, reported in `/v1/models` (for upstreams) and used to size the engine.
    pub context_length: Option<u32>,
    /// Requests served at once; 1 = strictly sequential, first come first served.
    /// Defaults: 8 for upstreams, `parallel` for the embedded engine.
    pub max_concurrency: Option<usize>,
    /// Requests waiting beyond `max_concurrency`; past it the answer is 429.
    pub max_queue: usize,
    /// Retries of a retryable failure (connect error, 429, 502/503/504) before fallbacks.
    pub retries: u32,
    /// Models tried in order when this one fails.
    pub fallbacks: Vec<String>,

    // upstream
    /// Base URL of the OpenAI-compatible API, e.g. `http://vllm:8000/v1`.
    pub base_url: Option<String>,
    /// Model name sent upstream; defaults to `name`.
    pub upstream_model: Option<String>,
    /// Environment variable holding the upstream's API key.
    pub api_key_env: Option<String>,
    /// Seconds to connect to the upstream.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the upstream's response headers (first byte).
    pub first_byte_timeout_secs: u64,
    /// Seconds allowed between two chunks of a stream (or for a whole non-streamed body).
    pub idle_timeout_secs: u64,

    // embedded
    /// GGUF file for the embedded engine.
    pub path: Option<PathBuf>,
    /// Context size in tokens for the embedded engine (shared by all sequences).
    pub context: Option<u32>,
    /// Sequences decoded together (continuous batching).
    pub parallel: Option<u32>,
    /// CPU threads for decoding; defaults to the number of physical cores.
    pub threads: Option<u32>,
    /// Layers offloaded to the GPU (builds with the `cuda` feature).
    pub gpu_layers: Option<u32>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: String::new(),
            backend: BackendKind::default(),
            aliases: Vec::new(),
            tags: Vec::new(),
            context_length: None,
            max_concurrency: None,
            max_queue: 64,
            retries: 2,
            fallbacks: Vec::new(),
            base_url: None,
            upstream_model: None,
            api_key_env: None,
            connect_timeout_secs: 5,
            first_byte_timeout_secs: 120,
            idle_timeout_secs: 120,
            path: None,
            context: None,
            parallel: None,
            threads: None,
            gpu_layers: None,
        }
    }
}

impl ModelConfig {
    /// Concurrency after defaults: `max_concurrency`, else `parallel` (embedded) or 8.
    pub fn concurrency(&self) -> usize {
        self.max_concurrency.unwrap_or(match self.backend {
            BackendKind::Embedded => self.parallel.unwrap_or(4) as usize,
            BackendKind::Upstream => 8,
        })
    }

    /// The model name to send upstream.
    pub fn upstream_model_name(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.name)
    }

    /// Context length as reported to clients.
    pub fn reported_context_length(&self) -> Option<u32> {
        self.context_length.or(self.context)
    }
}
