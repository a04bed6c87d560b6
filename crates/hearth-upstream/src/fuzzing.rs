//! Byte-level entry points for the fuzz targets (crates/hearth-fuzz); not an API.
//!
//! [`read_answer`] drives the HTTP/1.1 answer parser (`h1`'s head parser and body
//! decoders, the same code a connection runs) over reads held in memory, as a
//! connection drives it over its socket's reads.

use std::time::Duration;

use crate::h1::{Answer, Decoded};

/// What reading one answer gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The status, whether the body is an event stream, and `Retry-After`; or why
    /// no head was read.
    pub head: Result<(u16, bool, Option<Duration>), String>,
    /// The body as handed out, piece after piece.
    pub body: Vec<u8>,
    /// Why the body ended early, if it did.
    pub body_error: Option<String>,
    /// Whether the connection would be pooled for another request: the answer was
    /// read to its end, nothing came after it, and its framing allows reuse.
    pub reusable: bool,
    /// Bytes after the answer (read or not).
    pub left: Vec<u8>,
}

/// Reads one answer from `reads`, each one read of the socket (empty ones are
/// skipped: a read of nothing is the close), the connection closing after the last.
pub fn read_answer(reads: &[&[u8]]) -> Read {
    let mut st = Answer::default();
    let mut reads = reads.iter().filter(|r| !r.is_empty());
    let mut out = Read {
        head: Err(String::new()),
        body: Vec::new(),
        body_error: None,
        reusable: false,
        left: Vec::new(),
    };
    let head = loop {
        match st.parse_head() {
            Ok(Some(head)) => break head,
            Ok(None) => match reads.next() {
                Some(r) => st.buf.extend_from_slice(r),
                None if st.buf.is_empty() => {
                    out.head = Err("closed without answering".into());
                    return out;
                }
                None => {
                    out.head = Err("closed partway through the answer's head".into());
                    return out;
                }
            },
            Err(e) => {
                out.head = Err(e.to_string());
                out.left = st.buf.to_vec();
                reads.for_each(|r| out.left.extend_from_slice(r));
                return out;
            }
        }
    };
    out.head = Ok((head.status, head.event_stream, head.retry_after));
    loop {
        match st.decode() {
            Ok(Decoded::Data(b)) => out.body.extend_from_slice(&b),
            Ok(Decoded::End) => break,
            Ok(Decoded::More) => match reads.next() {
                Some(r) => st.buf.extend_from_slice(r),
                None => {
                    if !st.closed() {
                        out.body_error = Some("closed before the answer's end".into());
                    }
                    break;
                }
            },
            Err(e) => {
                st.keep_alive = false;
                out.body_error = Some(e.to_string());
                break;
            }
        }
    }
    out.left = st.buf.to_vec();
    reads.for_each(|r| out.left.extend_from_slice(r));
    out.reusable = st.keep_alive && st.body_done() && out.left.is_empty();
    out
}
