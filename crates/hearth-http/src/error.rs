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
        if let Some(s) = self.0.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp.extensions_mut().insert(self.0);
        resp
    }
}
