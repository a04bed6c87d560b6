//! The OpenAI-compatible API: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/responses`, `/v1/models`, as SDKs, IDE assistants and
//! curl call them.
//!
//! It owns parsing and checking these requests, and writing the gateway's typed
//! events in OpenAI's wire format: chunks of an event stream or one whole body
//! (`encode`), with an upstream's own JSON forwarded untouched. Everything between
//! the request and its events (limits, dispatch, usage) is the gateway's; the
//! server's middleware (keys, access log, CORS) is `hearth-http`'s. It knows nothing
//! of backends, the store, or the chat UI.
//!
//! # Layout
//! - [`routes`]: the axum routes; [`Fast`]: the completions on the hot path.
//! - `endpoint`: what the completion endpoints share; `chat`, `completions`,
//!   `embeddings`: how each parses and checks its request; `models`: the model list.
//! - `relay`: a checked request through the gateway to a response (JSON or SSE).
//! - `encode`: typed events as OpenAI chunks and bodies.
//! - [`openapi`]: `/openapi.json`, the document of every endpoint (public).
//! - `responses`: `/v1/responses` (the Responses API's basics) as a chat
//!   completion, with its own objects and typed stream events.
//! - `stored`: `/v1/responses/{id}` (and `/input_items`, `/cancel`), asked of the
//!   upstreams that serve that API.
//! - `limits`: `[limits]` checks of request fields.

/// The value of `Ok`, or the error answered as the response (an early return).
macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                return axum::response::IntoResponse::into_response(hearth_http::HttpError::from(e))
            }
        }
    };
}

mod chat;
mod completions;
mod embeddings;
pub mod encode;
mod endpoint;
mod infill;
mod limits;
mod models;
pub mod openapi;
mod relay;
mod responses;
mod stored;

/// Byte-level entry points for the fuzz targets (crates/hearth-fuzz); not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::relay::{COALESCE_BYTES, coalesce};
}

use std::future::Future;

use axum::extract::Request;
use axum::response::Response;
use axum::routing::{get, post};
use futures::future::Either;
use hearth_api::{ChatCompletionRequest, CompletionRequest, EmbeddingsRequest};
use hearth_gateway::Principal;
use hearth_http::{FastRoutes, HttpState, RequestLog};
use hearth_router::StoredCall;

/// The OpenAI paths, below the server's root.
pub const CHAT_PATH: &str = "/v1/chat/completions";
pub const COMPLETIONS_PATH: &str = "/v1/completions";
pub const EMBEDDINGS_PATH: &str = "/v1/embeddings";

/// The completions on the server's hot path (`AppBuilder::fast`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fast;

impl FastRoutes for Fast {
    fn route(&self, path: &str) -> Option<usize> {
        match path {
            CHAT_PATH => Some(0),
            COMPLETIONS_PATH => Some(1),
            _ => None,
        }
    }

    fn serve(
        &self,
        route: usize,
        state: HttpState,
        principal: Principal,
        log: RequestLog,
        req: Request,
    ) -> impl Future<Output = Response> + Send + 'static {
        if route == 0 {
            Either::Left(endpoint::serve::<ChatCompletionRequest>(
                state, principal, log, req,
            ))
        } else {
            Either::Right(endpoint::serve::<CompletionRequest>(
                state, principal, log, req,
            ))
        }
    }
}

/// The `/v1` routes, behind the server's key check.
pub fn routes(state: &HttpState) -> axum::Router {
    axum::Router::new()
        .route(CHAT_PATH, post(endpoint::handler::<ChatCompletionRequest>))
        .route(
            COMPLETIONS_PATH,
            post(endpoint::handler::<CompletionRequest>),
        )
        .route(
            EMBEDDINGS_PATH,
            post(endpoint::handler::<EmbeddingsRequest>),
        )
        .route(responses::RESPONSES_PATH, post(responses::handler))
        .route(
            stored::RESPONSE_PATH,
            stored::route(StoredCall::Get, "").merge(stored::route(StoredCall::Delete, "")),
        )
        .route(
            stored::INPUT_ITEMS_PATH,
            stored::route(StoredCall::Get, "/input_items"),
        )
        .route(
            stored::CANCEL_PATH,
            stored::route(StoredCall::Post, "/cancel"),
        )
        .route(infill::INFILL_PATH, post(infill::handler))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .with_state(state.clone())
}

/// The public routes: `/openapi.json` (read before a client has a key).
pub fn public_routes() -> axum::Router {
    axum::Router::new().route(openapi::OPENAPI_PATH, get(openapi::handler))
}
