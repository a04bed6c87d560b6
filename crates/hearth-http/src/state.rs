//! What every handler shares.

use std::sync::Arc;

use hearth_config::Config;
use hearth_gateway::Gateway;
use metrics_exporter_prometheus::PrometheusHandle;

/// Cloned into every handler and middleware: one shared pointer, so a clone is one
/// reference count (touched from every event loop) rather than one per field.
#[derive(Clone)]
pub struct HttpState(Arc<Shared>);

pub struct Shared {
    /// The way to the models, and the keys that say who calls.
    pub gateway: Arc<Gateway>,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    /// Without keys: the `Host` and `Origin` a request may come with.
    pub host_guard: crate::host_guard::HostGuard,
    /// The open client connections, against `server.max_connections*`.
    pub connections: Arc<crate::connections::Connections>,
}

impl std::ops::Deref for HttpState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl HttpState {
    pub fn new(config: Arc<Config>, gateway: Arc<Gateway>) -> Self {
        HttpState(Arc::new(Shared {
            gateway,
            metrics: crate::metrics::handle(),
            host_guard: crate::host_guard::HostGuard::new(&config.server),
            connections: crate::connections::Connections::new(
                config.server.max_connections,
                config.server.max_connections_per_address,
            ),
            config,
        }))
    }
}
