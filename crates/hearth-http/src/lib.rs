//! The HTTP layer: the axum app that clients, browsers and probes talk to.
//!
//! It owns routes (`/v1/*`, `/health`, `/ready`, `/metrics`), request parsing and
//! limits, client authentication and per-key rate limits, request ids and the
//! access log, CORS, SSE relaying, and graceful shutdown. It is the only crate
//! that knows axum; it reaches models only through [`hearth_router::Router`].
//!
//! # Layout
//! - [`app`] builds the router of routes and middleware, behind the hot path
//!   (`fast`: completions from non-browser clients skip the router); [`serve`] runs
//!   it on a bound listener until a shutdown future resolves (tests bind port 0).
//! - `routes/`: one module per endpoint. `relay`: dispatch and SSE.
//! - `auth`, `ratelimit`, `request_log`, `cors`, `body`, `limits`, `error`, `metrics`.

mod auth;
mod body;
pub mod conversations;
mod cors;
mod encode;
mod error;
mod fast;
mod limits;
pub mod metrics;
mod ratelimit;
mod relay;
pub mod request_log;
mod routes;
mod state;
pub mod ui;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use hearth_api::{ApiError, ErrorKind};
use tokio::net::TcpListener;

pub use auth::Caller;
pub use error::HttpError;
pub use fast::App;
pub use relay::{sse_event, sse_headers};
pub use state::AppState;

/// The whole app. `extra` routes (the UI's `/api`) are merged behind the same
/// auth and limits as `/v1`; `public` routes (the static UI) need no key.
pub fn app(state: AppState, extra: Router, public: Router) -> App {
    let protected = Router::new()
        .route("/v1/chat/completions", post(routes::chat::handler))
        .route("/v1/completions", post(routes::completions::handler))
        .route("/v1/models", get(routes::models::list))
        .route("/v1/models/{id}", get(routes::models::get))
        .route("/metrics", get(routes::metrics::handler))
        .with_state(state.clone())
        .merge(extra)
        .route_layer(from_fn_with_state(state.clone(), auth::require_key));
    let router = Router::new()
        .route("/health", get(routes::health::health))
        .route("/ready", get(routes::health::ready))
        .with_state(state.clone())
        .merge(protected)
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the access log, so a panicking request is still logged (as a 500).
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send + 'static>| error::panic_response(panic, None),
        ))
        .layer(cors::layer(&state.config.server.cors_origins))
        .layer(from_fn(request_log::middleware));
    App::new(state, router)
}

async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError(
        ApiError::new(
            ErrorKind::NotFound,
            format!("no route for `{}`", uri.path()),
        )
        .with_code("not_found"),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> HttpError {
    HttpError(ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("`{method}` is not allowed on `{}`", uri.path()),
    ))
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and
/// gives in-flight requests up to `grace` to finish.
///
/// Each connection is served by hyper (HTTP/1.1, or HTTP/2 with prior knowledge)
/// on a task of the calling event loop, with `TCP_NODELAY` set, as nginx sets it
/// for kept-alive connections: an event stream's small writes go out at once.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;

    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !is_connection_error(&e) {
                    // Out of file descriptors, most likely: give others time to close.
                    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), app.clone())
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "grace period over; closing remaining connections"
            );
        }
    }
    Ok(())
}

/// Errors of one connection (its peer reset it while queued), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
