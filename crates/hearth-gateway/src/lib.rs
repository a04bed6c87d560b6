//! The gateway service: the one way from any caller to the models.
//!
//! `/v1`, the chat UI's API, the job worker, and the API front ends still to come
//! (Ollama's, the Responses API) all call [`Gateway::complete`] in-process, with the
//! [`Principal`] the request runs as, and read the typed events it returns. It does,
//! once for all of them: admission through a [`Limiter`] (per-key requests and tokens
//! per minute; local now, shared across replicas later), dispatch through the
//! router (queues, retries, fallbacks, models that start on demand), settlement of
//! the answer's real usage, per-key counters, and the tracing span that ties every
//! log line of the request to its id. It knows nothing of HTTP: each front end turns
//! the events into its own wire format and the principal comes from its own
//! authentication.
//!
//! # Layout
//! - [`principal`]: [`Principal`], and [`KeyRing`], the configured keys by secret.
//! - [`limiter`]: the [`Limiter`] trait, [`Quota`], and [`LocalLimiter`] (token buckets).
//! - [`redis_limiter`]: [`RedisLimiter`], the same buckets in Redis for several replicas.
//! - [`budget`]: [`Budgets`], keys' tokens per calendar period over a [`UsageLedger`]
//!   (the database).
//! - [`service`]: [`Gateway`] and [`Completion`], whose events settle usage when done.

pub mod budget;
pub mod limiter;
pub mod principal;
pub mod redis_limiter;
pub mod service;

pub use budget::{BudgetState, Budgets, UsageLedger};
pub use limiter::{Limiter, LocalLimiter, Quota, QuotaLine};
pub use principal::{KeyRing, Principal};
pub use redis_limiter::{RedisLimiter, RedisLimiterOptions};
pub use service::{Completion, Gateway, Metered};
