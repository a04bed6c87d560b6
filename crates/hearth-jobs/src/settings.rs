//! [`Settings`]: what the pipeline reads of the configuration, resolved once
//! (model names after defaults, the vision model's flag, the sandbox limits).

use std::time::Duration;

use hearth_config::Config;
use hearth_sandbox::Limits;

/// Bandit severities, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// What blocks a script from running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriticPolicy {
    pub block_syntax_errors: bool,
    /// Bandit findings at or above it block; `None`: none do.
    pub block_bandit: Option<Severity>,
}

impl Default for CriticPolicy {
    fn default() -> Self {
        CriticPolicy {
            block_syntax_errors: true,
            block_bandit: Some(Severity::High),
        }
    }
}

/// The pipeline's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub vision_model: String,
    /// The vision model is marked `vision = true`.
    pub vision_capable: bool,
    pub reasoning_model: String,
    pub code_model: String,
    pub max_repairs: u32,
    pub concurrency: usize,
    pub max_upload_bytes: u64,
    pub max_image_pixels: u64,
    /// The run's limits.
    pub limits: Limits,
    /// The critic's own run (ruff and bandit).
    pub critic_limits: Limits,
    pub critic: CriticPolicy,
    /// Most tokens a model may answer with per step.
    pub max_tokens: u32,
    /// How long a worker's claim on a running job lasts unrenewed (it renews every
    /// third of it): past it, the job is taken for abandoned and queued again.
    pub job_lease: Duration,
}

impl Settings {
    /// From a validated config: each model defaults to `default_model`.
    pub fn from_config(config: &Config) -> Settings {
        let j = &config.jobs;
        let default = config.default_model_name().unwrap_or_default().to_owned();
        let pick = |m: &Option<String>| m.clone().unwrap_or_else(|| default.clone());
        let vision_model = pick(&j.vision_model);
        let vision_capable = config.model(&vision_model).is_some_and(|m| m.vision);
        let limits = Limits {
            wall_time: Duration::from_secs(j.limits.timeout_secs),
            cpus: j.limits.cpus,
            memory_bytes: j.limits.memory_mb << 20,
            ..Limits::default()
        };
        Settings {
            vision_model,
            vision_capable,
            reasoning_model: pick(&j.reasoning_model),
            code_model: pick(&j.code_model),
            max_repairs: j.max_repairs,
            concurrency: j.concurrency,
            max_upload_bytes: j.max_upload_bytes,
            max_image_pixels: j.max_image_pixels,
            limits,
            critic_limits: critic_limits(),
            critic: CriticPolicy {
                block_syntax_errors: j.critic.block_syntax_errors,
                block_bandit: Severity::parse(&j.critic.block_bandit_severity),
            },
            max_tokens: 4096,
            job_lease: Duration::from_secs(j.lease_secs),
        }
    }
}

/// ruff and bandit on one script: quick, but bandit imports a fair amount.
pub fn critic_limits() -> Limits {
    Limits {
        wall_time: Duration::from_secs(60),
        cpus: 1.0,
        memory_bytes: 1 << 30,
        ..Limits::default()
    }
}
