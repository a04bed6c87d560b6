//! What every Ollama endpoint shares: its error shape (`{"error": "..."}`, which
//! the clients show as it is), timestamps, bodies read within the server's
//! limits, and streamed answers as newline-delimited JSON.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use hearth_api::{ApiError, ErrorKind};
use hearth_http::{HttpError, HttpState};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// An error as Ollama writes it: the status of the OpenAI error it comes from
/// (with its `Retry-After`), and `{"error": message}`.
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.0.message }).to_string();
        let mut resp = HttpError(self.0).into_response();
        *resp.body_mut() = Body::from(body);
        resp
    }
}

pub type Answer = Result<Response, OllamaError>;

/// `GET /api/version`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": crate::OLLAMA_VERSION }))
}

/// The body as `T`, read within `limits.max_body_bytes`; a malformed one is a 400
/// that says what serde found.
pub async fn read<T: DeserializeOwned>(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, OllamaError> {
    let limit = state.config.limits.max_body_bytes;
    let bytes = hearth_http::body::bytes(headers, body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        OllamaError(ApiError::new(
            ErrorKind::InvalidRequest,
            format!("the request body is not what this endpoint takes: {e}"),
        ))
    })
}

/// Now, as Ollama's `created_at` (RFC 3339, UTC).
pub fn now() -> String {
    hearth_api::rfc3339(hearth_api::unix_now())
}

/// A whole answer: one JSON object.
pub fn object(v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// A streamed answer: each item one line of JSON (`application/x-ndjson`), sent
/// as it comes.
pub fn ndjson(lines: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    use futures::StreamExt;
    let body = Body::from_stream(lines.map(Ok::<_, std::convert::Infallible>));
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// One NDJSON line.
pub fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// A model name missing from the request: Ollama's clients always send one.
pub fn model_required() -> OllamaError {
    OllamaError(ApiError::invalid_param("model", "model is required"))
}
