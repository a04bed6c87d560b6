//! A model's config to its backend.

use std::sync::Arc;

use anyhow::Context;
use hearth_config::{Env, ModelBackend, ModelConfig};
use hearth_router::Backend;

/// Builds the backend of one configured model: an upstream client (its key read
/// from `api_key_env` in `env`), or the embedded engine, which starts loading on
/// its own thread and serves once loaded.
pub fn backend(m: &ModelConfig, env: &dyn Env) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match &m.backend {
        ModelBackend::Upstream(u) => {
            let key = u.api_key_env.as_ref().and_then(|v| env.get(v));
            Arc::new(hearth_upstream::UpstreamBackend::new(m, key)?)
        }
        ModelBackend::Embedded(_) => {
            let engine = hearth_engine::EmbeddedBackend::start(m)
                .with_context(|| format!("model `{}`", m.name))?;
            engine as Arc<dyn Backend>
        }
    })
}
