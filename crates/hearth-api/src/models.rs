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
}

impl ModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Ready => "ready",
            ModelStatus::Loading => "loading",
            ModelStatus::Stopped => "stopped",
            ModelStatus::Unavailable => "unavailable",
        }
    }
}

/// One model, in OpenAI's shape plus Hearth's `status`, `tags`, `context_length`.
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelEntry>,
}
