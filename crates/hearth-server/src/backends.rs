//! A model's config to its backend.

use std::sync::Arc;

use anyhow::Context;
use hearth_config::{Env, ModelBackend, ModelConfig};
use hearth_launch::Engines;
use hearth_router::Backend;

/// Builds the backend of one configured model: an upstream client (its key read
/// from `api_key_env` in `env`), a model server Hearth runs (`[models.launch]`,
/// supervised by `engines`), or the embedded engine, which starts loading on its
/// own thread and serves once loaded (once downloaded first, for a model whose
/// `url` has not been fetched yet).
pub fn backend(
    m: &ModelConfig,
    env: &dyn Env,
    engines: &mut Engines,
) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match &m.backend {
        ModelBackend::Upstream(u) => {
            let key = u.api_key_env.as_ref().and_then(|v| env.get(v));
            if u.launch.is_some() {
                engines.add(m, key)? as Arc<dyn Backend>
            } else {
                Arc::new(hearth_upstream::UpstreamBackend::new(m, key)?)
            }
        }
        // Not downloaded yet: the server starts, the model follows.
        ModelBackend::Embedded(e) if e.url.is_some() && !e.path.exists() => {
            hearth_engine::FetchingBackend::start(m) as Arc<dyn Backend>
        }
        ModelBackend::Embedded(_) => {
            let engine = hearth_engine::EmbeddedBackend::start(m)
                .with_context(|| format!("model `{}`", m.name))?;
            engine as Arc<dyn Backend>
        }
    })
}
