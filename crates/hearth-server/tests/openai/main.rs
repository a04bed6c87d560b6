//! Integration tests of the gateway over real HTTP, against fake upstreams that can
//! answer, stream slowly, stall, fail with a status, or drop mid-stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod auth_limits;
mod client_limits;
mod defaults;
mod engines;
mod errors;
mod front_ends;
mod observability;
mod queue;
mod relay;
mod retry;
mod stored;
