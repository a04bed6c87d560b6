//! What every handler shares.

use std::sync::Arc;

use hearth_config::Config;
use hearth_router::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Keys;
use crate::ratelimit::RateLimiter;

/// Cloned into every handler and middleware: one shared pointer, so a clone is one
/// reference count (touched from every event loop) rather than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub router: Arc<Router>,
    pub config: Arc<Config>,
    pub keys: Keys,
    pub limiter: Arc<RateLimiter>,
    pub metrics: PrometheusHandle,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Arc<Config>, router: Arc<Router>) -> Self {
        AppState(Arc::new(Shared {
            keys: Keys::new(&config.resolved_keys),
            limiter: Arc::new(RateLimiter::new()),
            metrics: crate::metrics::handle(),
            router,
            config,
        }))
    }
}
