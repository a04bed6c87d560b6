//! The upstream SSE splitter (`hearth_upstream::sse::events`), against a
//! line-by-line reference, and the client's view of an event stream (a parser
//! that follows the WHATWG spec, which `relay` uses).
//!
//! The input: a byte for the event-size cap (`max_event`), a count and that many
//! read sizes, then the stream. Properties:
//! - the events (their `data`), and how the stream ends (at `[DONE]`, with an
//!   error, or with an event over the cap), are those of the reference;
//! - they do not depend on how the stream is cut into reads: whole, at the
//!   fuzz-chosen sizes, and one byte per read give the same;
//! - no event longer than the cap is ever handed on.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hearth_router::{BackendError, Event};

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At `data: [DONE]`.
    Done,
    /// An event was over the cap.
    TooLarge,
    /// The stream ended before `[DONE]`.
    Cut,
}

pub fn run(data: &[u8]) {
    let Some((&cap, rest)) = data.split_first() else {
        return;
    };
    let Some((&k, rest)) = rest.split_first() else {
        return;
    };
    let k = usize::from(k % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let max_event = if cap & 0x80 != 0 {
        u64::from(cap & 0x7f)
    } else {
        u64::MAX
    };

    let want = reference(stream, max_event);
    let whole = split_events(&[stream], max_event);
    assert_eq!(whole, want, "one read");
    for e in &whole.0 {
        assert!(
            e.len() as u64 <= max_event,
            "an event over the cap was handed on"
        );
    }
    let reads = crate::cut(stream, sizes);
    assert_eq!(split_events(&reads, max_event), want, "reads of {sizes:?}");
    if stream.len() <= 4096 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(split_events(&bytes, max_event), want, "one byte per read");
    }
}

/// The events `sse::events` hands on for `reads`, and how it ended.
pub fn split_events(reads: &[&[u8]], max_event: u64) -> (Vec<Vec<u8>>, End) {
    let reads: Vec<Result<Bytes, std::io::Error>> = reads
        .iter()
        .map(|r| Ok(Bytes::copy_from_slice(r)))
        .collect();
    let stream = hearth_upstream::sse::events(
        futures::stream::iter(reads),
        Duration::from_secs(3600),
        max_event,
        drop,
    );
    let items: Vec<Result<Event, BackendError>> = futures::executor::block_on(stream.collect());
    let mut events = Vec::new();
    let mut end = End::Done;
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(Event::Wire(w)) => {
                assert_eq!(end, End::Done, "an event after the stream's error");
                events.push(w.data.to_vec());
            }
            Ok(other) => panic!("the splitter made a typed event: {other:?}"),
            Err(e) => {
                assert_eq!(i + 1, items.len(), "more after an error: {items:?}");
                end = match e {
                    BackendError::TooLarge(_) => End::TooLarge,
                    _ => End::Cut,
                };
            }
        }
    }
    (events, end)
}

/// The events of `stream` as the splitter documents them: an event ends at a
/// blank line (a `\n` followed by `\n` or `\r\n`); its lines end at `\n` (a `\r`
/// before it dropped); its `data:` lines (one space after the colon dropped) are
/// joined by `\n`; `data: [DONE]` ends the stream. An event over `max_event` bytes
/// (its text, without the blank line) ends it too, as does, when the stream ends,
/// an unfinished one over the cap (with at most the `\n\r` of a blank line begun).
pub fn reference(stream: &[u8], max_event: u64) -> (Vec<Vec<u8>>, End) {
    let max = usize::try_from(max_event).unwrap_or(usize::MAX);
    let mut events = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while i < stream.len() {
        let skip = match &stream[i..] {
            [b'\n', b'\n', ..] => 2,
            [b'\n', b'\r', b'\n', ..] => 3,
            _ => {
                i += 1;
                continue;
            }
        };
        let text = &stream[pos..i];
        pos = i + skip;
        i = pos;
        if text.len() > max {
            return (events, End::TooLarge);
        }
        let mut data: Option<Vec<u8>> = None;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(v) = line.strip_prefix(b"data:") {
                let v = v.strip_prefix(b" ").unwrap_or(v);
                match &mut data {
                    None => data = Some(v.to_vec()),
                    Some(d) => {
                        d.push(b'\n');
                        d.extend_from_slice(v);
                    }
                }
            }
        }
        match data {
            Some(d) if d == b"[DONE]" => return (events, End::Done),
            Some(d) => events.push(d),
            None => {}
        }
    }
    if stream.len() - pos > max.saturating_add(2) {
        return (events, End::TooLarge);
    }
    (events, End::Cut)
}

/// The `data` of each event a client that follows the WHATWG spec dispatches:
/// lines end at CRLF, LF or CR; `data` fields (with or without a colon) are
/// joined by LF; a blank line dispatches; an unfinished last event is dropped.
pub fn client_events(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf: Option<Vec<u8>> = None;
    let mut rest = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let line = &rest[..end];
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if let Some(d) = buf.take() {
                out.push(d);
            }
            continue;
        }
        if line.starts_with(b":") {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            match &mut buf {
                None => buf = Some(value.to_vec()),
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
            }
        }
    }
    out
}
