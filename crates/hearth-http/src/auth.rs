//! Client API keys: `Authorization: Bearer KEY`, looked up in the gateway's
//! [`KeyRing`](hearth_gateway::KeyRing); the request then runs as that key's
//! [`Principal`]. Only the key's name ever reaches logs.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_api::{ApiError, ErrorKind};
use hearth_gateway::Principal;

use crate::error::HttpError;
use crate::request_log::RequestLog;
use crate::state::HttpState;

/// Requires a valid key when keys are configured, and puts the request's
/// [`Principal`] in its extensions for the handlers.
pub async fn require_key(State(state): State<HttpState>, mut req: Request, next: Next) -> Response {
    let principal = match authenticate(&state, req.headers()) {
        Ok(p) => p,
        Err(e) => return HttpError(e).into_response(),
    };
    if let Some(log) = req.extensions().get::<RequestLog>() {
        log.set_key(&principal.id);
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The principal presenting `headers`: the owner of their bearer key, or the
/// anonymous caller when the server needs no key (from a loopback name and no
/// other site's page: 403 otherwise, see `host_guard`). 401 otherwise.
pub fn authenticate(state: &HttpState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let keys = state.gateway.keys();
    if !keys.required() {
        state.host_guard.check(headers)?;
        return Ok(keys.anonymous().clone());
    }
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            ErrorKind::Authentication,
            "missing API key: send `Authorization: Bearer YOUR_KEY`",
        )
        .with_code("missing_api_key"));
    };
    keys.find(presented).ok_or_else(|| {
        ApiError::new(ErrorKind::Authentication, "invalid API key").with_code("invalid_api_key")
    })
}
