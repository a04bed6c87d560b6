//! `[jobs]`: agent jobs (image → vision → plan → code → critic → run), read by
//! `hearth-jobs`. Models default to `default_model`; limits to the sandbox's defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Reads the image; must be marked `vision = true` in `[[models]]`.
    /// Default: `default_model`.
    pub vision_model: Option<String>,
    /// Writes the plan. Default: `default_model`.
    pub reasoning_model: Option<String>,
    /// Writes (and repairs) the Python script. Default: `default_model`.
    pub code_model: Option<String>,
    /// Times a blocked or raising script goes back to the code model.
    pub max_repairs: u32,
    /// Jobs this process runs at once; more wait in arrival order. 0: none (an
    /// API-only replica; `hearth worker`s or other replicas run the queue).
    pub concurrency: usize,
    /// How long a worker's claim on a running job lasts without renewal (it renews
    /// it every third of that): after a worker dies, another takes its jobs this
    /// long after its last renewal.
    pub lease_secs: u64,
    /// Largest upload in bytes (413 past it).
    pub max_upload_bytes: u64,
    /// Most pixels (width × height) an uploaded image may declare (400 past it: a
    /// decompression bomb).
    pub max_image_pixels: u64,
    /// What the generated script may use.
    pub limits: JobLimitsConfig,
    /// What the critic's findings block.
    pub critic: CriticConfig,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            vision_model: None,
            reasoning_model: None,
            code_model: None,
            max_repairs: 2,
            concurrency: 1,
            lease_secs: 30,
            max_upload_bytes: 20 * 1000 * 1000,
            max_image_pixels: 50_000_000,
            limits: JobLimitsConfig::default(),
            critic: CriticConfig::default(),
        }
    }
}

/// `[jobs.limits]`: the sandbox limits of a job's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobLimitsConfig {
    /// CPU cores.
    pub cpus: f64,
    /// Memory of the whole run, in MiB.
    pub memory_mb: u64,
    /// Wall-clock seconds before the run is stopped.
    pub timeout_secs: u64,
    /// Network access. Only `false` is supported: the sandbox has no network.
    pub network: bool,
}

impl Default for JobLimitsConfig {
    fn default() -> Self {
        JobLimitsConfig {
            cpus: 2.0,
            memory_mb: 2048,
            timeout_secs: 120,
            network: false,
        }
    }
}

/// `[jobs.critic]`: which findings of ruff and bandit stop a script from running
/// (it goes back to the code model instead); the others are shown as warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriticConfig {
    /// A syntax error (ruff) blocks.
    pub block_syntax_errors: bool,
    /// Bandit findings of this severity or above block: `low`, `medium`, `high`, or
    /// `off` (none block).
    pub block_bandit_severity: String,
}

impl Default for CriticConfig {
    fn default() -> Self {
        CriticConfig {
            block_syntax_errors: true,
            block_bandit_severity: "high".to_owned(),
        }
    }
}

/// The severities `block_bandit_severity` accepts.
pub const BANDIT_SEVERITIES: &[&str] = &["low", "medium", "high", "off"];
