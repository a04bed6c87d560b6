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

/// Appends `data: <payload>\n\n` to `out`: one `data:` line per line of the
/// payload. An upstream's event of several `data:` lines arrives joined by `\n`;
/// written as one line, a client would read only its first line (found by the
/// `relay` fuzz target).
pub fn put_data(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    if !payload.contains(&b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
        return;
    }
    for line in payload.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
}

/// `data: <payload>\n\n`
pub fn event(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    put_data(&mut b, payload);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_of_several_lines_is_written_as_several_data_lines() {
        assert_eq!(&event(b"{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(&event(b"{\"a\":\n1}")[..], b"data: {\"a\":\ndata: 1}\n\n");
        assert_eq!(&event(b"x\n\n")[..], b"data: x\ndata: \ndata: \n\n");
    }
}
