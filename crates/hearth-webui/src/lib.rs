//! The chat UI: its API and its files, served by the same binary.
//!
//! It owns the UI's server-side history and replies (`/api/hearth/conversations`,
//! over `hearth_store`, replies through the gateway as the caller), the agent jobs'
//! API (`/api/jobs`, over `hearth_jobs`, which the Jobs page and the CLI use), and the built
//! single-page app (`web/dist`, embedded at compile time by `build.rs`). It knows
//! nothing of backends or of the OpenAI wire format: the gateway's typed events
//! become the UI's own events here.
//!
//! # Layout
//! - [`conversations`]: the API's routes (`reply` streams a reply and stores it as
//!   it grows; `context` picks the history that fits the model).
//! - [`assets`]: the static UI, with the SPA fallback.
//! - [`jobs`]: the agent jobs' API (`/api/jobs`), over `hearth_jobs::Jobs`.
//! - [`account`]: `/api/hearth/me`, the caller's key, limits and token budget;
//!   `/api/hearth/keys`, every key's, for an admin key.
//!
//! The UI's API lives under [`API_ROOT`], clear of the paths other APIs at `/api`
//! use (Ollama's `/api/chat`, `/api/generate`, `/api/tags`, ...).

pub mod account;
pub mod assets;
pub mod conversations;
pub mod jobs;

pub use conversations::ApiLimits;

/// The conversations' routes ([`conversations::routes`]) and `/me`
/// ([`account::routes`]), their answers carrying the UI's security headers as its
/// pages do.
pub fn routes(
    gateway: std::sync::Arc<hearth_gateway::Gateway>,
    store: std::sync::Arc<dyn hearth_store::ConversationStore>,
    limits: ApiLimits,
) -> axum::Router {
    conversations::routes(gateway.clone(), store, limits)
        .merge(account::routes(gateway))
        .method_not_allowed_fallback(assets::method_not_allowed)
        .layer(axum::middleware::map_response(assets::security_headers))
}

/// Where the UI's own API lives.
pub const API_ROOT: &str = "/api/hearth";
