//! The HTTP/1.1 answer parser and its body decoders (hearth-upstream's `h1`:
//! head, `Content-Length`, chunked, until-close), over reads in memory through
//! `hearth_upstream::fuzzing::read_answer`.
//!
//! The first byte picks the mode.
//! - Raw bytes (with a count and that many read sizes first): no panic; the same
//!   outcome (head, body, error, reuse, bytes left) however the bytes are cut into
//!   reads (whole, at fuzz-chosen sizes, one byte per read); a head that httparse
//!   parses whole, not an interim one, has httparse's status.
//! - Answers this target writes from the input (an interim `1xx` first or not,
//!   HTTP/1.0 or 1.1, a status, `Content-Length`, chunked with fuzz-chosen chunk
//!   sizes in any case, leading zeros, extensions and trailers, a coding before
//!   `chunked`, until-close, `Connection` tokens, content types, `Retry-After`),
//!   cut into fuzz-chosen reads: the reader must give back the status, the event
//!   stream flag, `Retry-After`, exactly the body written, and reuse the connection
//!   exactly when the framing allows it.

use std::time::Duration;

use hearth_upstream::fuzzing::{Read, read_answer};

pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((m, rest)) if m % 2 == 0 => raw(rest),
        Some((_, rest)) => written(&mut Params(rest)),
        None => {}
    }
}

fn raw(data: &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 8).min(rest.len());
    let (sizes, bytes) = rest.split_at(k);
    let whole = read_answer(&[bytes]);
    let reads = crate::cut(bytes, sizes);
    assert_eq!(read_answer(&reads), whole, "reads of {sizes:?}");
    if bytes.len() <= 2048 {
        let ones: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(read_answer(&ones), whole, "one byte per read");
    }
    // httparse on the same bytes: a whole head that is not interim.
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut resp = httparse::Response::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = resp.parse(bytes)
        && let Some(code) = resp.code
        && !(100..200).contains(&code)
        && let Ok((status, ..)) = whole.head
    {
        assert_eq!(status, code, "the status differs from httparse's");
    }
}

/// How a written answer frames its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    /// `Transfer-Encoding: gzip, chunked`: chunked is the last coding.
    CodedChunked,
    /// `Transfer-Encoding: chunked, gzip`: not chunked last, so until the close.
    CodedUntilClose,
    UntilClose,
}

fn written(p: &mut Params<'_>) {
    let Some(shape) = p.u16() else { return };
    let status = [200u16, 201, 204, 304, 400, 404, 429, 500, 503][usize::from(shape % 9)];
    let framing = [
        Framing::Length,
        Framing::Chunked,
        Framing::CodedChunked,
        Framing::CodedUntilClose,
        Framing::UntilClose,
    ][usize::from((shape >> 4) % 5)];
    let http10 = shape & 0x80 != 0;
    let connection = [
        None,
        Some("close"),
        Some("keep-alive"),
        Some("Keep-Alive, Upgrade"),
    ][usize::from((shape >> 8) % 4)];
    let event_stream = shape & 0x400 != 0;
    let interim = shape & 0x800 != 0;
    let retry = (shape & 0x1000 != 0).then(|| u64::from(shape >> 13));
    let trailing = shape & 0x8000 != 0;
    let body = if matches!(status, 204 | 304) {
        Vec::new()
    } else {
        p.bytes(255)
    };

    let mut a = Vec::new();
    if interim {
        a.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let version = if http10 { "1.0" } else { "1.1" };
    a.extend_from_slice(format!("HTTP/{version} {status} Whatever\r\n").as_bytes());
    let ct = if event_stream {
        " Text/Event-Stream; charset=utf-8"
    } else {
        "application/json"
    };
    a.extend_from_slice(format!("Content-Type:{ct}\r\n").as_bytes());
    if let Some(c) = connection {
        a.extend_from_slice(format!("Connection: {c}\r\n").as_bytes());
    }
    if let Some(r) = retry {
        a.extend_from_slice(format!("retry-after: {r}\r\n").as_bytes());
    }
    let no_body = matches!(status, 204 | 304);
    match framing {
        Framing::Length => {
            a.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes())
        }
        Framing::Chunked => a.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::CodedChunked => a.extend_from_slice(b"Transfer-Encoding: gzip, Chunked\r\n"),
        Framing::CodedUntilClose => a.extend_from_slice(b"Transfer-Encoding: chunked, gzip\r\n"),
        Framing::UntilClose => {}
    }
    a.extend_from_slice(b"\r\n");
    if !no_body {
        match framing {
            Framing::Chunked | Framing::CodedChunked => chunked(p, &body, &mut a),
            _ => a.extend_from_slice(&body),
        }
    }
    let until_close = !no_body && matches!(framing, Framing::CodedUntilClose | Framing::UntilClose);
    let mut after = Vec::new();
    if trailing && !until_close {
        after.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    }
    a.extend_from_slice(&after);

    let sizes = p.bytes(8);
    let got = read_answer(&crate::cut(&a, &sizes));
    let close = connection == Some("close");
    let keep_alive_asked =
        connection.is_some_and(|c| c.contains("eep-Alive") || c.contains("eep-alive"));
    let want = Read {
        head: Ok((status, event_stream, retry.map(Duration::from_secs))),
        body: body.clone(),
        body_error: None,
        reusable: !(close || until_close || http10 && !keep_alive_asked) && after.is_empty(),
        left: after,
    };
    assert_eq!(
        got,
        want,
        "the answer read differs from the one written: {:?}",
        String::from_utf8_lossy(&a)
    );
}

/// `body` chunked at fuzz-chosen sizes, each size in hex of either case with
/// leading zeros or an extension, then the last chunk and maybe trailers.
fn chunked(p: &mut Params<'_>, body: &[u8], a: &mut Vec<u8>) {
    let mut left = body;
    while !left.is_empty() {
        let n = usize::from(p.u8().unwrap_or(255)).clamp(1, left.len());
        let (chunk, rest) = left.split_at(n);
        let style = p.u8().unwrap_or(0);
        let mut size = if style & 1 == 0 {
            format!("{n:x}")
        } else {
            format!("{n:X}")
        };
        if style & 2 != 0 {
            size.insert_str(0, "00");
        }
        if style & 4 != 0 {
            size.push_str(";name=value");
        }
        a.extend_from_slice(size.as_bytes());
        a.extend_from_slice(b"\r\n");
        a.extend_from_slice(chunk);
        a.extend_from_slice(b"\r\n");
        left = rest;
    }
    a.extend_from_slice(b"0\r\n");
    if p.u8().unwrap_or(0) % 2 == 1 {
        a.extend_from_slice(b"X-Trailer: 1\r\nOther: x\r\n");
    }
    a.extend_from_slice(b"\r\n");
}

/// The fuzz input read as parameters.
struct Params<'a>(&'a [u8]);

impl Params<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    /// Up to `max` bytes of anything, the count first.
    fn bytes(&mut self, max: u8) -> Vec<u8> {
        let n =
            usize::from(self.u8().unwrap_or(0) % max.saturating_add(1).max(1)).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }
}
