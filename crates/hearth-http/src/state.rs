//! What every handler shares.

use std::sync::Arc;

use hearth_config::Config;
use hearth_router::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Keys;
use crate::ratelimit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub router: Arc<Router>,
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub limiter: Arc<RateLimiter>,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(config: Arc<Config>, router: Arc<Router>) -> Self {
        AppState {
            keys: Arc::new(Keys::new(&config.resolved_keys)),
            limiter: Arc::new(RateLimiter::new()),
            metrics: crate::metrics::handle(),
            router,
            config,
        }
    }
}
