//! [`App`]: the service every connection runs, assembled from the front ends' routes.
//!
//! The hot path: `POST`s to the paths of the front end given as [`FastRoutes`]
//! (the OpenAI completions: nearly all of the API's traffic),
//! from clients that are not browsers (SDKs, IDE assistants, curl), are served by
//! one function that does what the router's stack does for them (request id and
//! access log, the `Vary` the CORS layer adds, the key check, panic containment)
//! and calls the front end's handler. The router's way costs a boxed future, a
//! clone of the route and a request extension per middleware layer, which together
//! were a sixth of the gateway's instructions per request. Every other request, and
//! every request with an `Origin` (browsers need the CORS layer), goes through the
//! router.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt;
use futures::future::{BoxFuture, Either};
use hearth_api::{ApiError, ErrorKind};
use hearth_gateway::Principal;
use hyper::body::Incoming;
use tower::Service;

use crate::deadline::Deadline;
use crate::error::HttpError;
use crate::request_log::RequestLog;
use crate::state::HttpState;
use crate::{auth, cors, request_log, routes};

/// The routes a front end serves on the hot path. Generic rather than a table of
/// boxed handlers so that the handler's future runs inside the connection's one
/// boxed future (a second box per request, and the copy of a large future into it,
/// showed in the gateway's instruction counts).
pub trait FastRoutes: Send + Sync + 'static {
    /// Which of its routes `path` is, if it is one (an id passed back to `serve`).
    fn route(&self, path: &str) -> Option<usize>;

    /// Serves route `route`: the request after its key check, run as `principal`,
    /// with its log (the answer's model, usage and errors go there).
    fn serve(
        &self,
        route: usize,
        state: HttpState,
        principal: Principal,
        log: RequestLog,
        req: Request,
    ) -> impl Future<Output = Response> + Send + 'static;
}

/// No hot path: every request goes through the router.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFastRoutes;

impl FastRoutes for NoFastRoutes {
    fn route(&self, _: &str) -> Option<usize> {
        None
    }

    fn serve(
        &self,
        _: usize,
        _: HttpState,
        _: Principal,
        _: RequestLog,
        _: Request,
    ) -> impl Future<Output = Response> + Send + 'static {
        std::future::ready(axum::http::StatusCode::NOT_FOUND.into_response())
    }
}

/// The service every connection runs: the hot path, or the router.
pub struct App<F = NoFastRoutes> {
    pub(crate) state: HttpState,
    router: axum::Router,
    fast: Arc<F>,
    /// `server.body_timeout_secs`: each request's body is read under it.
    body_timeout: std::time::Duration,
}

impl<F> Clone for App<F> {
    fn clone(&self) -> Self {
        App {
            state: self.state.clone(),
            router: self.router.clone(),
            fast: self.fast.clone(),
            body_timeout: self.body_timeout,
        }
    }
}

/// Collects the front ends' routes into an [`App`].
pub struct AppBuilder<F = NoFastRoutes> {
    state: HttpState,
    protected: axum::Router,
    public: axum::Router,
    fast: F,
}

impl App {
    pub fn builder(state: HttpState) -> AppBuilder {
        AppBuilder {
            state,
            protected: axum::Router::new(),
            public: axum::Router::new(),
            fast: NoFastRoutes,
        }
    }
}

impl<F: FastRoutes> AppBuilder<F> {
    /// Routes behind the key check (when keys are configured): handlers find the
    /// caller's [`Principal`] in the request's extensions.
    pub fn protected(mut self, routes: axum::Router) -> Self {
        self.protected = self.protected.merge(routes);
        self
    }

    /// Routes that need no key (the static UI: it asks for a key itself).
    pub fn public(mut self, routes: axum::Router) -> Self {
        self.public = self.public.merge(routes);
        self
    }

    /// `POST`s from clients that are not browsers to the paths `fast` serves go to
    /// it directly. Those paths must be among the protected routes too: browsers,
    /// and every other method, reach them there.
    pub fn fast<G: FastRoutes>(self, fast: G) -> AppBuilder<G> {
        AppBuilder {
            state: self.state,
            protected: self.protected,
            public: self.public,
            fast,
        }
    }

    pub fn build(self) -> App<F> {
        let state = self.state;
        let own = axum::Router::new()
            .route("/metrics", get(routes::metrics::handler))
            .layer(axum::middleware::map_response(own_headers))
            .with_state(state.clone());
        let protected = self
            .protected
            .merge(own)
            .route_layer(from_fn_with_state(state.clone(), auth::require_key));
        let router = axum::Router::new()
            .route("/health", get(routes::health::health))
            .route("/ready", get(routes::health::ready))
            .layer(axum::middleware::map_response(own_headers))
            .with_state(state.clone())
            .merge(protected)
            .merge(self.public)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // Inside the access log, so a panicking request is still logged (as a 500).
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                |panic: Box<dyn std::any::Any + Send + 'static>| {
                    crate::error::panic_response(panic, None)
                },
            ))
            .layer(cors::layer(&state.config.server.cors_origins))
            .layer(from_fn(request_log::middleware));
        App {
            body_timeout: std::time::Duration::from_secs(
                state.config.server.body_timeout_secs.max(1),
            ),
            state,
            router,
            fast: Arc::new(self.fast),
        }
    }
}

/// [`crate::error::plain_headers`] on the answers of the routes this crate serves.
async fn own_headers(mut resp: Response) -> Response {
    crate::error::plain_headers(resp.headers_mut());
    resp
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

impl<F: FastRoutes> App<F> {
    /// The hot-path route of `req`, if it has one.
    fn fast_route<B>(&self, req: &http::Request<B>) -> Option<usize> {
        if req.method() != Method::POST || req.headers().contains_key(header::ORIGIN) {
            return None;
        }
        self.fast.route(req.uri().path())
    }
}

impl<F: FastRoutes> hyper::service::Service<http::Request<Incoming>> for App<F> {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        <axum::Router as Service<http::Request<Deadline>>>::Future,
    >;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let limit = self.body_timeout;
        let req = req.map(|body| Deadline::new(body, limit));
        match self.fast_route(&req) {
            Some(route) => Either::Left(Box::pin(serve(
                self.state.clone(),
                self.fast.clone(),
                route,
                req.map(Body::new),
            ))),
            // A clone of the router is one reference count.
            None => Either::Right(self.router.clone().call(req)),
        }
    }
}

/// What the router's stack does for these routes: `request_log::middleware`
/// outside, then the CORS gate (no `Origin`: only `Vary`), panic containment,
/// `auth::require_key`, then the handler.
async fn serve<F: FastRoutes>(
    state: HttpState,
    fast: Arc<F>,
    route: usize,
    req: Request,
) -> Result<Response, Infallible> {
    let log = request_log::start(&req);
    let resp = match auth::authenticate(&state, req.headers()) {
        Err(e) => HttpError(e).into_response(),
        Ok(principal) => {
            log.set_key(&principal.id);
            let id = log.clone();
            // Unwinding leaves nothing half-changed that this request's answer needs.
            let handled = fast.serve(route, state, principal, log.clone(), req);
            match std::panic::AssertUnwindSafe(handled).catch_unwind().await {
                Ok(resp) => resp,
                Err(panic) => crate::error::panic_response(panic, Some(id.id())),
            }
        }
    };
    Ok(request_log::finish(log, cors::add_vary(resp)))
}
