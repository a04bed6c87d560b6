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
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let signalled = async move {
        shutdown.await;
        let _ = tx.send(());
    };
    let server = axum::serve(listener, MakeApp(app)).with_graceful_shutdown(signalled);
    let deadline = async move {
        if rx.await.is_ok() {
            tokio::time::sleep(grace).await;
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "grace period over; closing remaining connections"
            );
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server.into_future() => r,
        () = deadline => Ok(()),
    }
}

/// Hands each new connection a clone of the app.
#[derive(Clone)]
struct MakeApp(App);

impl<'a> tower::Service<axum::serve::IncomingStream<'a, TcpListener>> for MakeApp {
    type Response = App;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<App, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _conn: axum::serve::IncomingStream<'a, TcpListener>) -> Self::Future {
        std::future::ready(Ok(self.0.clone()))
    }
}
