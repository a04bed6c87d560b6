//! Model registry, the [`Backend`] trait, per-model queues, retries, fallback and health.
//!
//! The router maps a client's model name to a backend and owns everything that
//! happens between "a request for model X" and "a reply from some backend":
//! admission to the model's queue, retries with backoff, fallbacks, and the health
//! state that routes around a dead upstream. It knows nothing of HTTP servers or of
//! how a backend produces tokens.
//!
//! # Layout
//! - [`backend`]: the trait every backend implements, its request and errors.
//! - [`event`]: the typed events every answer is made of.
//! - [`router`]: the registry and [`Router::dispatch`].
//! - [`queue`]: per-model concurrency and bounded FIFO queue.
//! - [`retry`]: backoff with jitter, honouring `Retry-After`.
//! - [`health`]: consecutive-failure tracking fed by requests and probes.
//! - [`metrics`]: each model's metric handles, registered once.

pub mod backend;
mod defaults;
pub mod event;
pub mod health;
pub mod metrics;
pub mod queue;
pub mod retry;
pub mod router;

pub use backend::{
    Backend, BackendError, RawAnswer, RawBody, Request, ResponsesRequest, StoredCall,
};
pub use event::{
    Event, EventStream, FinishReason, TokenLogprob, ToolCallDelta, Typed, Wire, typed,
};
pub use metrics::ModelMetrics;
pub use router::{Answer, Dispatched, Model, Router};
