//! CORS: the configured origins, or any localhost origin by default.
//!
//! Only requests that carry an `Origin` (browsers) go through tower-http's CORS
//! layer. Every other request (SDKs, curl, IDE assistants: nearly all of the API's
//! traffic) skips it and gets only the `Vary` header the layer would have added:
//! axum clones a layer's service for each request, and the CORS layer's clone copies
//! its header lists every time.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderName, HeaderValue, Method, Request, Response, header};
use futures::TryFutureExt;
use futures::future::{Either, MapOk};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

/// What tower-http's CORS layer adds as `Vary` to every response.
const VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// CORS for the configured origins, applied to browser requests only.
pub fn layer(origins: &[String]) -> CorsGateLayer {
    CorsGateLayer {
        cors: Arc::new(cors_layer(origins)),
    }
}

#[derive(Clone)]
pub struct CorsGateLayer {
    cors: Arc<CorsLayer>,
}

impl<S> Layer<S> for CorsGateLayer {
    type Service = CorsGate<S>;

    fn layer(&self, inner: S) -> CorsGate<S> {
        CorsGate {
            cors: self.cors.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct CorsGate<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

type AddVary<B> = fn(Response<B>) -> Response<B>;

pub(crate) fn add_vary<B>(mut r: Response<B>) -> Response<B> {
    r.headers_mut().append(header::VARY, VARY);
    r
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for CorsGate<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future =
        Either<<Cors<S> as Service<Request<ReqB>>>::Future, MapOk<S::Future, AddVary<ResB>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if req.headers().contains_key(header::ORIGIN) {
            // The service made ready is the one that serves; a clone stays behind.
            let spare = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, spare);
            Either::Left(self.cors.layer(ready).call(req))
        } else {
            Either::Right(self.inner.call(req).map_ok(add_vary as AddVary<ResB>))
        }
    }
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else if origins.is_empty() {
        AllowOrigin::predicate(|origin: &HeaderValue, _| is_localhost(origin))
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            HeaderName::from_static("x-ratelimit-limit-requests"),
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            HeaderName::from_static("x-ratelimit-reset-requests"),
            HeaderName::from_static("x-ratelimit-limit-tokens"),
            HeaderName::from_static("x-ratelimit-remaining-tokens"),
            HeaderName::from_static("x-ratelimit-reset-tokens"),
            HeaderName::from_static("x-hearth-budget-limit-tokens"),
            HeaderName::from_static("x-hearth-budget-remaining-tokens"),
            HeaderName::from_static("x-hearth-budget-renews-at"),
            HeaderName::from_static("x-hearth-warning"),
        ])
}

fn is_localhost(origin: &HeaderValue) -> bool {
    let Ok(s) = origin.to_str() else { return false };
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .unwrap_or("");
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']')
            .next()
            .map(|h| format!("[{h}]"))
            .unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or("").to_owned()
    };
    matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_origins() {
        for ok in [
            "http://localhost:5173",
            "http://127.0.0.1",
            "https://[::1]:8080",
        ] {
            assert!(is_localhost(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "http://evil.com",
            "http://localhost.evil.com",
            "null",
            "http://127.0.0.2",
        ] {
            assert!(!is_localhost(&HeaderValue::from_static(bad)), "{bad}");
        }
    }
}
