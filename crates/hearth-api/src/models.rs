//! `/v1/models` entries.

use serde::{Deserialize, Serialize};

/// Whether a model can serve now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    Ready,
    Loading,
    /// Not running now, and started by the first request that names it (a managed
    /// model server stopped while idle).
    Stopped,
    Unavailable,
    /// A managed model server whose process runs but does not answer HTTP yet.
    Starting,
    /// A managed model server that exited and is started again after a backoff.
    Restarting,
    /// A managed model server that failed too often to be restarted; its
    /// [`EngineInfo`] says why.
    Failed,
}

impl ModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Ready => "ready",
            ModelStatus::Loading => "loading",
            ModelStatus::Stopped => "stopped",
            ModelStatus::Unavailable => "unavailable",
            ModelStatus::Starting => "starting",
            ModelStatus::Restarting => "restarting",
            ModelStatus::Failed => "failed",
        }
    }

    /// Whether a request may wait for the model to serve (it is on its way up).
    pub fn is_coming_up(self) -> bool {
        matches!(
            self,
            ModelStatus::Loading
                | ModelStatus::Starting
                | ModelStatus::Restarting
                | ModelStatus::Stopped
        )
    }
}

/// The process behind a managed model server (`[models.launch]`), as `/v1/models`
/// and `/ready` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// `starting`, `loading`, `ready`, `restarting`, `failed` or `stopped`.
    pub state: ModelStatus,
    /// The process id while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its loopback port while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Starts so far (1 for the first).
    pub attempt: u32,
    /// Times it was started again after it exited unasked.
    pub restarts: u32,
    /// Why the last run ended, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds until the next start, while `restarting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
    /// The last lines of its stderr, when it failed or is restarting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stderr_tail: Vec<String>,
    /// Where its stdout and stderr are written.
    pub log: String,
    /// `eager` (started with Hearth) or `on_demand`.
    pub start: String,
    /// Unix time of the last change of state.
    pub since: u64,
}

/// Where an embedded model runs, as `/v1/models` shows it (and `/metrics` counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// `cpu`, or the GPUs holding its offloaded layers: `cuda:0`, `cuda:0,cuda:1`.
    pub device: String,
    /// Layers on the GPU(s), counting the output layer: all of them unless
    /// `gpu_layers` asked for fewer. Left out on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<u32>,
    /// GPU memory the model took while it loaded (weights, KV cache, compute
    /// buffers): the drop in the GPUs' free memory. Left out on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_bytes: Option<u64>,
}

/// One model, in OpenAI's shape plus Hearth's `status`, `tags`, `context_length`,
/// and `vision` for a model marked as reading images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    pub status: ModelStatus,
    pub tags: Vec<String>,
    pub context_length: Option<u32>,
    pub backend: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Marked `vision = true` in its `[[models]]` entry: it reads images
    /// (`image_url` content parts). Left out when false, so the listing of models
    /// that do not keeps its shape.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vision: bool,
    /// `"embedding"` for a model that answers `/v1/embeddings` only (configured
    /// `kind = "embedding"`); left out for chat models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The process Hearth runs for this model, when it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineInfo>,
    /// Where an embedded model runs, once loaded; left out for other backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// How an embedded chat model that takes tools (`tools = "pass"`) is asked for
    /// tool calls, read from its chat template: `generic` (llama.cpp's JSON
    /// format), `hermes`, `llama3`, `mistral` or `mistral-args`. Left out for other
    /// models (an upstream formats calls itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelEntry>,
}
