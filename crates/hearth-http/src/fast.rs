//! The hot path. `POST /v1/chat/completions` and `POST /v1/completions` from clients
//! that are not browsers (SDKs, IDE assistants, curl: nearly all of the API's
//! traffic) are served by one function that does what the router's stack does for
//! them (request id and access log, the `Vary` the CORS layer adds, the key check)
//! and calls the same endpoint code. The router's way costs a boxed future, a
//! clone of the route and a request extension per middleware layer, which together
//! were a sixth of the gateway's instructions per request. Every other request, and
//! every request with an `Origin` (browsers need the CORS layer), goes through
//! the router as before.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::{BoxFuture, Either};
use hyper::body::Incoming;
use tower::Service;

use crate::error::HttpError;
use crate::state::AppState;
use crate::{auth, cors, request_log, routes};

/// The service every connection runs: the hot path, or the router.
#[derive(Clone)]
pub struct App {
    state: AppState,
    router: axum::Router,
}

impl App {
    pub(crate) fn new(state: AppState, router: axum::Router) -> Self {
        App { state, router }
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    /// The endpoint `req` asks for, when the hot path serves it.
    fn of<B>(req: &http::Request<B>) -> Option<Endpoint> {
        if req.method() != Method::POST || req.headers().contains_key(header::ORIGIN) {
            return None;
        }
        match req.uri().path() {
            "/v1/chat/completions" => Some(Endpoint::Chat),
            "/v1/completions" => Some(Endpoint::Completions),
            _ => None,
        }
    }
}

impl hyper::service::Service<http::Request<Incoming>> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        <axum::Router as Service<http::Request<Incoming>>>::Future,
    >;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        match Endpoint::of(&req) {
            Some(endpoint) => Either::Left(Box::pin(serve(
                self.state.clone(),
                endpoint,
                req.map(Body::new),
            ))),
            // A clone of the router is one reference count.
            None => Either::Right(self.router.clone().call(req)),
        }
    }
}

/// What the router's stack does for these routes: `request_log::middleware`
/// outside, then the CORS gate (no `Origin`: only `Vary`), then `auth::require_key`,
/// then the handler.
async fn serve(state: AppState, endpoint: Endpoint, req: Request) -> Result<Response, Infallible> {
    let log = request_log::start(&req);
    let resp = match auth::authenticate(&state, req.headers()) {
        Err(e) => HttpError(e).into_response(),
        Ok(caller) => {
            log.set_key(&caller.key_id);
            let handled = async {
                match endpoint {
                    Endpoint::Chat => routes::chat::serve(&state, &caller, &log, req).await,
                    Endpoint::Completions => {
                        routes::completions::serve(&state, &caller, &log, req).await
                    }
                }
                .into_response()
            };
            // Unwinding leaves nothing half-changed that this request's answer needs.
            match std::panic::AssertUnwindSafe(handled).catch_unwind().await {
                Ok(resp) => resp,
                Err(panic) => crate::error::panic_response(panic, Some(log.id())),
            }
        }
    };
    Ok(request_log::finish(log, cors::add_vary(resp)))
}
