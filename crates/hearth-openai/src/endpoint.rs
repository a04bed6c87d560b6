//! What the completion endpoints share: the body read within its limit, the request
//! parsed and checked, then relayed through the gateway. Each endpoint's module says
//! how its request is parsed and checked ([`Endpoint`]).

use axum::Extension;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use hearth_api::{ApiError, ErrorKind};
use hearth_gateway::Principal;
use hearth_http::{HttpState, RequestLog};
use hearth_router::Request;
use serde_json::{Map, Value};

/// A completion request type, as one endpoint takes it.
pub(crate) trait Endpoint: Sized + Send + 'static {
    /// Parses a body, naming the offending field in the error.
    fn parse(body: &[u8]) -> Result<Self, ApiError>;
    /// Checks the fields against `[limits]`.
    fn check(&self, state: &HttpState) -> Result<(), ApiError>;
    /// Whether it asks for a stream (logged even when it is refused).
    fn stream(&self) -> bool;
    fn into_request(self) -> Request;
}

/// The axum route (browsers, and every request with an `Origin`).
pub(crate) async fn handler<E: Endpoint>(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    http: HttpRequest,
) -> Response {
    serve::<E>(state, principal, log, http).await
}

/// The endpoint itself, also called by the hot path (`crate::Fast`). Its arguments
/// are owned and its errors answered here, so that the hot path awaits it with no
/// wrapper future around it (each level of futures is copied as it is started).
pub(crate) async fn serve<E: Endpoint>(
    state: HttpState,
    principal: Principal,
    log: RequestLog,
    http: HttpRequest,
) -> Response {
    // The headers are read in place (a `HeaderMap` extractor would copy them all).
    let (parts, body) = http.into_parts();
    let limit = state.config.limits.max_body_bytes;
    let body = or_answer!(hearth_http::body::bytes(&parts.headers, body, limit).await);
    let req = or_answer!(E::parse(&body));
    log.set_stream(req.stream());
    or_answer!(req.check(&state));
    or_answer!(crate::relay::relay(&state, &principal, &log, req.into_request()).await)
}

/// The body of a front end that reads its request as any JSON object (the
/// Responses API, `/infill`): read within `[limits] max_body_bytes`, parsed, and
/// an object.
pub(crate) async fn json_object(
    state: &HttpState,
    http: HttpRequest,
) -> Result<Map<String, Value>, ApiError> {
    let (parts, body) = http.into_parts();
    let limit = state.config.limits.max_body_bytes;
    let body = hearth_http::body::bytes(&parts.headers, body, limit).await?;
    match serde_json::from_slice(&body).map_err(|e| ApiError::invalid_json(&e))? {
        Value::Object(req) => Ok(req),
        _ => Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the body must be a JSON object",
        )),
    }
}

/// Such a front end's answer: 200, with the gateway's warning (a model's tools
/// policy) in `X-Hearth-Warning`.
pub(crate) fn answered(mut resp: Response, warning: Option<String>) -> Response {
    *resp.status_mut() = StatusCode::OK;
    if let Some(w) = warning.and_then(|w| HeaderValue::try_from(w).ok()) {
        resp.headers_mut().insert("x-hearth-warning", w);
    }
    resp
}
