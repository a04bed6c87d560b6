//! The server's own routes: probes and metrics.

pub mod health;
pub mod metrics;
