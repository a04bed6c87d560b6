//! The Responses API's calls on a stored response: `GET` and `DELETE
//! /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and `POST
//! /v1/responses/{id}/cancel`, as `client.responses.retrieve`, `.delete`,
//! `.input_items.list` and `.cancel` call them.
//!
//! Only an upstream that serves this API stores responses (a model with
//! `responses_api = true`, asked with `store: true`), and Hearth keeps no table of
//! which one holds which id: every replica, after any restart, answers alike. So
//! each distinct upstream that serves the API (one server and key asked once,
//! however many models point at it) is asked in config order, and the first
//! answer that is not a 404 goes back as it came: its status, its JSON body, or
//! (a `GET` with `stream=true`) its events. All 404: a 404 of ours. None answered
//! and one failed: that failure, as a 502 or 503 naming its model.

use std::collections::HashSet;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use hearth_api::{ApiError, ErrorKind};
use hearth_gateway::Principal;
use hearth_http::{HttpError, HttpState, RequestLog};
use hearth_router::{BackendError, RawAnswer, RawBody, Request, StoredCall};

pub const RESPONSE_PATH: &str = "/v1/responses/{id}";
pub const INPUT_ITEMS_PATH: &str = "/v1/responses/{id}/input_items";
pub const CANCEL_PATH: &str = "/v1/responses/{id}/cancel";

/// The longest response id passed on (OpenAI's are about 50 characters).
const MAX_ID: usize = 256;

type Id = Result<Path<String>, PathRejection>;

/// The route for `call` on the stored response `{id}` followed by `suffix` (its
/// method is the call's): `GET {id}` (`include[]`, `stream`, `starting_after` pass
/// on), `DELETE {id}`, `GET {id}/input_items` (`after`, `before`, `limit`,
/// `order`, `include` pass on) and `POST {id}/cancel` (a response made with
/// `background: true`).
pub fn route(call: StoredCall, suffix: &'static str) -> MethodRouter<HttpState> {
    let method = match call {
        StoredCall::Get => MethodFilter::GET,
        StoredCall::Delete => MethodFilter::DELETE,
        StoredCall::Post => MethodFilter::POST,
    };
    axum::routing::on(
        method,
        move |State(state): State<HttpState>,
              Extension(principal): Extension<Principal>,
              Extension(log): Extension<RequestLog>,
              id: Id,
              uri: Uri| async move {
            serve(&state, &principal, &log, call, id, suffix, uri.query()).await
        },
    )
}

async fn serve(
    state: &HttpState,
    principal: &Principal,
    log: &RequestLog,
    call: StoredCall,
    id: Id,
    suffix: &str,
    query: Option<&str>,
) -> Response {
    match ask(state, principal, log, call, id, suffix, query).await {
        Ok(r) => r,
        Err(e) => HttpError(e).into_response(),
    }
}

async fn ask(
    state: &HttpState,
    principal: &Principal,
    log: &RequestLog,
    call: StoredCall,
    id: Id,
    suffix: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let id = checked_id(id)?;
    // Each call is a request to the upstreams: it counts against the key's
    // requests per minute (429 with `Retry-After` past it), as a completion does.
    let quota = state.gateway.admit(principal).await?;
    let stream = call == StoredCall::Get
        && suffix.is_empty()
        && query.is_some_and(|q| q.split('&').any(|p| p == "stream=true"));
    log.set_stream(stream);
    // The id is checked and the query is as the client's URI had it (a valid one):
    // nothing here can reach another path of the upstream.
    let mut path = format!("{}/{id}{suffix}", Request::RESPONSES_PATH);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(q);
    }
    let mut seen = HashSet::new();
    let mut asked = 0u32;
    let mut failure = None;
    for model in state.gateway.router().iter() {
        let backend = &model.backend;
        if !backend.serves_responses() {
            continue;
        }
        if let Some(store) = backend.responses_store()
            && !seen.insert(store)
        {
            continue;
        }
        asked += 1;
        match backend.responses_call(call, &path).await {
            Ok(None) => {}
            Ok(Some(a)) if a.status == 404 => {}
            Ok(Some(a)) => {
                log.set_dispatched(&model.metrics, backend.kind(), asked, stream);
                let mut r = answer(a, log);
                crate::relay::quota_headers(&quota, r.headers_mut());
                return Ok(r);
            }
            Err(e) => {
                // The detail (the upstream's URL) stays here; the client's error
                // names the model.
                tracing::warn!(model = %model.config.name, error = %e, "a call on a stored response failed");
                if failure.is_none() {
                    log.set_dispatched(&model.metrics, backend.kind(), asked, stream);
                    failure = Some(failed(&id, &model.config.name, &e));
                }
            }
        }
    }
    Err(failure.unwrap_or_else(|| not_found(&id)))
}

/// The id as a response id is written: 1 to 256 of `[A-Za-z0-9_-]`, so it is one
/// path segment on the upstream, whatever the client sent.
fn checked_id(id: Id) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorKind::InvalidRequest,
            format!(
                "not a response id: an id is 1 to {MAX_ID} letters, digits, `_` or `-` (as `resp_…` ids are)"
            ),
        )
        .with_param("response_id")
        .with_code("invalid_response_id")
    };
    let Ok(Path(id)) = id else {
        return Err(invalid());
    };
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(id) } else { Err(invalid()) }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!(
            "no upstream holds response '{id}': responses are stored only by the upstreams of models with `responses_api = true`, when the request that made them said `store: true`"
        ),
    )
    .with_code("not_found")
}

/// No upstream answered, and this one failed: its failure, naming its model.
fn failed(id: &str, model: &str, e: &BackendError) -> ApiError {
    let (kind, what) = match e {
        BackendError::Connect(_) | BackendError::Unavailable(_) => {
            (ErrorKind::Unavailable, "could not be reached".to_owned())
        }
        BackendError::Status { status, error, .. } => (
            ErrorKind::BadGateway,
            format!("answered {status}: {}", error.message),
        ),
        BackendError::Timeout(_) => (ErrorKind::BadGateway, "did not answer in time".to_owned()),
        BackendError::TooLarge(why) => (ErrorKind::BadGateway, why.clone()),
        _ => (ErrorKind::BadGateway, "broke off its answer".to_owned()),
    };
    let e = ApiError::new(
        kind,
        format!(
            "no upstream answered for response '{id}': the upstream of model `{model}` {what}, and no other holds it"
        ),
    );
    if kind == ErrorKind::Unavailable {
        e.with_code("upstream_unavailable").with_retry_after(5)
    } else {
        e.with_code("upstream_error")
    }
}

/// The upstream's answer as it came.
fn answer(a: RawAnswer, log: &RequestLog) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = match a.body {
        RawBody::Events(events) => crate::responses::wire_sse(events, log),
        RawBody::Whole(body) => {
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    *r.status_mut() = status;
    if let Some(after) = a.retry_after {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(s: &str) -> Result<String, ApiError> {
        checked_id(Ok(Path(s.to_owned())))
    }

    #[test]
    fn ids_are_one_plain_segment() {
        assert_eq!(id("resp_68a1-b2").unwrap(), "resp_68a1-b2");
        assert_eq!(id(&"a".repeat(256)).unwrap().len(), 256);
        for bad in [
            "",
            "../x",
            "a/b",
            "a?b",
            "a%2Fb",
            "a b",
            "résp",
            &"a".repeat(257),
        ] {
            let e = id(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert_eq!(e.code.as_deref(), Some("invalid_response_id"));
        }
    }

    #[test]
    fn a_failure_names_the_model_and_its_status() {
        let e = failed("r1", "m", &BackendError::Connect("x".into()));
        assert_eq!((e.status(), e.retry_after), (503, Some(5)));
        assert!(e.message.contains("model `m`"), "{}", e.message);
        let e = failed(
            "r1",
            "m",
            &BackendError::Status {
                status: 500,
                retry_after: None,
                error: ApiError::new(ErrorKind::Unavailable, "upstream: boom"),
            },
        );
        assert_eq!(e.status(), 502);
        assert!(
            e.message.contains("answered 500: upstream: boom"),
            "{}",
            e.message
        );
        assert_eq!(not_found("r1").code.as_deref(), Some("not_found"));
    }
}
