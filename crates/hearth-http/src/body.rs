//! Reading a JSON request body within the configured size limit.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use hearth_api::{ApiError, ErrorKind};
use http_body_util::BodyExt;

/// Reads the whole body (413 past `limit`), requires JSON, and parses it (400 with
/// the parser's position when malformed).
pub async fn json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Value, ApiError> {
    let bytes = self::bytes(headers, body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid_json(&e))
}

/// Reads the whole body of a JSON request, unparsed: 415 when its Content-Type is
/// not JSON, 413 past `limit`, 400 when it is empty. The caller parses it.
pub async fn bytes(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !(mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")) {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!("the body must be JSON (Content-Type: application/json), not `{mime}`"),
            ));
        }
    }
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the request body is larger than the limit of {limit} bytes (limits.max_body_bytes)"
            ),
        )
        .with_code("request_too_large")
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let unreadable = |e: axum::Error| read_error(&e);
    // Frame by frame: the usual body is one frame, kept as it came (no copy).
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue; // trailers
        };
        let len = first.as_ref().map_or(0, Bytes::len) + more.as_ref().map_or(0, BytesMut::len);
        if len + data.len() > limit {
            return Err(too_large());
        }
        match (&first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut m =
                    BytesMut::with_capacity(declared.unwrap_or(0).max(f.len() + data.len()));
                m.extend_from_slice(f);
                m.extend_from_slice(&data);
                more = Some(m);
            }
            (Some(_), Some(m)) => m.extend_from_slice(&data),
        }
    }
    let bytes = match more {
        Some(m) => m.freeze(),
        None => first.unwrap_or_default(),
    };
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body is empty; send a JSON object",
        ));
    }
    Ok(bytes)
}

/// A body that could not be read: 408 when it did not arrive in time
/// (`server.body_timeout_secs`), else 400.
pub fn read_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    if crate::deadline::is_too_slow(e) {
        let why = std::iter::successors(Some(e), |e| e.source())
            .find(|e| e.is::<crate::deadline::TooSlow>())
            .map_or_else(|| e.to_string(), ToString::to_string);
        return ApiError::new(ErrorKind::RequestTimeout, why).with_code("body_timeout");
    }
    ApiError::new(
        ErrorKind::InvalidRequest,
        format!("could not read the request body: {e}"),
    )
}
