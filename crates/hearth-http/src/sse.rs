//! Server-sent events, as every front end that streams writes them.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};

/// Event-stream headers that keep proxies from buffering.
pub fn headers(resp: &mut Response) {
    const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

/// Appends `data: <payload>\n\n` to `out`.
pub fn put_data(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// `data: <payload>\n\n`
pub fn event(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    put_data(&mut b, payload);
    b.freeze()
}
