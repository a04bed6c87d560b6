//! [`HttpError`]: an [`ApiError`] as an HTTP response, with `Retry-After` when set.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_api::ApiError;

/// The HTTP form of [`ApiError`]. The error itself travels in the response's
/// extensions so the access log records it once.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.0.to_json()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        plain_headers(h);
        if let Some(s) = self.0.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        // A body cut short (too large, too slow) was not read to its end: the rest
        // is still on the wire, so this connection cannot carry another request.
        // Saying so keeps the client from reusing it (and losing its next request).
        if matches!(status.as_u16(), 408 | 413) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp.extensions_mut().insert(self.0);
        resp
    }
}

/// What every answer of Hearth's own (errors, `/health`, `/ready`, `/metrics`)
/// says besides its body: no MIME sniffing (an error that quotes the request is
/// never read as HTML), and nothing kept in caches (a key's 401 or a metrics page
/// is for this request only).
pub(crate) fn plain_headers(h: &mut axum::http::HeaderMap) {
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// The answer to a request whose handler panicked: 500 with the OpenAI error shape,
/// and the panic logged once. Panics are bugs, but one request's bug must cost that
/// request only, never the process or the other requests on its event loop.
pub fn panic_response(
    panic: Box<dyn std::any::Any + Send + 'static>,
    request_id: Option<&str>,
) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    tracing::error!(request_id, panic = %what, "a request's handler panicked; answered 500");
    HttpError(ApiError::internal()).into_response()
}
