//! The relay's side of a stream: an upstream's events, split by the upstream SSE
//! splitter, written to the client by the `/v1` encoder (`Encoder::stream_event`,
//! `hearth_http::sse::put_data`), and the gateway's own typed events written as
//! OpenAI chunks (with the encoder's hand-written JSON string escaping).
//!
//! The client's view is the event stream parsed as the WHATWG spec says (what the
//! OpenAI SDKs and browsers do). Properties:
//! - an upstream's event stream, written from fuzz-chosen events (several `data:`
//!   lines, comments, `event:`/`id:` fields, LF or CRLF, any bytes in the values),
//!   cut into fuzz-chosen reads, reaches the client with the same `data` in every
//!   event, then `[DONE]`;
//! - the gateway's own events (text, reasoning, finish reasons of any text, usage)
//!   reach the client as JSON chunks that serde_json reads, with the text exactly
//!   as it was (every character escaped right), then `[DONE]`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hearth_api::Usage;
use hearth_openai::encode::{Encoder, Format};
use hearth_openai::fuzzing::{COALESCE_BYTES, coalesce};
use hearth_router::{Event, FinishReason, ModelMetrics, Wire};
use serde_json::Value;

use crate::sse::{End, client_events, split_events};

pub fn run(data: &[u8]) {
    let mut p = Params(data);
    match p.u8().map(|m| m % 3) {
        Some(0) => upstream(&mut p),
        Some(1) => typed(&mut p),
        Some(_) => coalescing(&mut p),
        None => {}
    }
}

/// What the relay appends at the end of a stream.
const DONE: &[u8] = b"data: [DONE]\n\n";

fn encoder(format: Format) -> Encoder {
    Encoder::new(format, Arc::new(ModelMetrics::new("m", "upstream")), true)
}

fn upstream(p: &mut Params<'_>) {
    let mut stream = Vec::new();
    let mut want: Vec<Vec<u8>> = Vec::new();
    let mut done = false;
    for _ in 0..p.u8().unwrap_or(0) % 8 {
        let Some(shape) = p.u8() else { break };
        let nl: &[u8] = if shape & 1 == 0 { b"\n" } else { b"\r\n" };
        if shape & 2 != 0 {
            stream.extend_from_slice(b": keep-alive");
            stream.extend_from_slice(nl);
        }
        if shape & 4 != 0 {
            stream.extend_from_slice(b"event: message");
            stream.extend_from_slice(nl);
        }
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for _ in 0..(shape >> 3) % 4 {
            let value = p.line();
            // `data:` alone when the value does not start with the space the
            // parser would take as the separator.
            if value.first() == Some(&b' ') || p.u8().unwrap_or(0).is_multiple_of(2) {
                stream.extend_from_slice(b"data: ");
            } else {
                stream.extend_from_slice(b"data:");
            }
            stream.extend_from_slice(&value);
            stream.extend_from_slice(nl);
            lines.push(value);
        }
        if shape & 0x40 != 0 {
            stream.extend_from_slice(b"id: 7");
            stream.extend_from_slice(nl);
        }
        stream.extend_from_slice(nl);
        if !lines.is_empty() && !done {
            let joined = lines.join(&b'\n');
            if joined == b"[DONE]" {
                done = true;
            } else {
                want.push(joined);
            }
        }
    }
    stream.extend_from_slice(DONE);

    let mut reads = Vec::new();
    let mut left = &stream[..];
    while !left.is_empty() {
        let n = usize::from(p.u8().unwrap_or(255)).clamp(1, left.len());
        let (read, rest) = left.split_at(n);
        reads.push(read);
        left = rest;
    }
    let (events, end) = split_events(&reads, u64::MAX);
    assert_eq!((&events, end), (&want, End::Done), "the splitter");

    let mut enc = encoder(Format::Chat);
    let mut out = BytesMut::new();
    for e in &events {
        enc.stream_event(
            &Event::Wire(Wire::chunk(Bytes::copy_from_slice(e))),
            &mut out,
        );
    }
    out.extend_from_slice(DONE);
    let mut seen = client_events(&out);
    assert_eq!(seen.pop().as_deref(), Some(&b"[DONE]"[..]));
    assert_eq!(
        seen,
        want,
        "the client sees other data than the upstream sent: {:?}",
        String::from_utf8_lossy(&out)
    );
}

fn typed(p: &mut Params<'_>) {
    let format = if p.u8().unwrap_or(0).is_multiple_of(2) {
        Format::Chat
    } else {
        Format::Completion
    };
    let mut enc = encoder(format);
    let mut out = BytesMut::new();
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut usage = None;
    for _ in 0..p.u8().unwrap_or(0) % 8 {
        let Some(kind) = p.u8() else { break };
        let s = String::from_utf8_lossy(&p.bytes()).into_owned();
        let event = match kind % 4 {
            0 => {
                text.push_str(&s);
                Event::Text { index: 0, text: s }
            }
            1 => {
                if format == Format::Chat {
                    reasoning.push_str(&s);
                }
                Event::Reasoning { index: 0, text: s }
            }
            2 => Event::Finish {
                index: 0,
                reason: FinishReason::parse(&s),
            },
            _ => {
                let u = Usage::new(u64::from(kind), s.len() as u64);
                usage = Some(u);
                Event::Usage(u)
            }
        };
        enc.stream_event(&event, &mut out);
    }
    out.extend_from_slice(DONE);
    let mut seen = client_events(&out);
    assert_eq!(seen.pop().as_deref(), Some(&b"[DONE]"[..]));
    let (mut got_text, mut got_reasoning, mut got_usage) = (String::new(), String::new(), None);
    for chunk in &seen {
        let v: Value = match serde_json::from_slice(chunk) {
            Ok(v) => v,
            Err(e) => panic!(
                "a chunk is not JSON ({e}): {:?}",
                String::from_utf8_lossy(chunk)
            ),
        };
        let choice = &v["choices"][0];
        let piece = match format {
            Format::Chat => &choice["delta"]["content"],
            // Embeddings are never streamed: the fuzz target streams the other two.
            Format::Completion | Format::Embeddings { .. } => &choice["text"],
        };
        got_text.push_str(piece.as_str().unwrap_or_default());
        got_reasoning.push_str(
            choice["delta"]["reasoning_content"]
                .as_str()
                .unwrap_or_default(),
        );
        if let Some(u) = Usage::from_response(&v) {
            got_usage = Some(u);
        }
    }
    assert_eq!(got_text, text);
    assert_eq!(got_reasoning, reasoning);
    assert_eq!(got_usage, usage);
}

/// One step of a scripted event source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing has arrived.
    Pending,
    /// An event of this many bytes.
    Event(usize),
}

/// The steps in turn, then the end.
struct Script {
    steps: Vec<Step>,
    at: usize,
}

impl futures::Stream for Script {
    type Item = usize;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<usize>> {
        let this = self.get_mut();
        let step = this.steps.get(this.at).copied();
        this.at += 1;
        match step {
            Some(Step::Pending) => Poll::Pending,
            Some(Step::Event(n)) => Poll::Ready(Some(n)),
            None => Poll::Ready(None),
        }
    }
}

fn coalescing(p: &mut Params<'_>) {
    let mut steps = Vec::new();
    while let (Some(a), Some(b)) = (p.u8(), p.u8()) {
        steps.push(if a % 4 == 0 {
            Step::Pending
        } else {
            Step::Event(1 + usize::from(u16::from_le_bytes([a, b])) % 20_000)
        });
    }
    let sizes: Vec<usize> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Event(n) => Some(*n),
            Step::Pending => None,
        })
        .collect();
    // Event i is its index's byte, repeated; then `[DONE]`.
    let mut want = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        want.extend(std::iter::repeat_n(i as u8, *n));
    }
    want.extend_from_slice(DONE);

    let mut script = Script { steps, at: 0 };
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let (mut writes, mut per_write) = (Vec::new(), Vec::new());
    let (mut pushed, mut finished) = (0usize, false);
    for _ in 0..=script.steps.len() + 1 {
        if finished {
            break;
        }
        let mut count = 0;
        let polled = coalesce(&mut script, &mut cx, |item, out| {
            count += 1;
            match item {
                Some(n) => {
                    out.extend(std::iter::repeat_n(pushed as u8, n));
                    pushed += 1;
                    false
                }
                None => {
                    out.extend_from_slice(DONE);
                    finished = true;
                    true
                }
            }
        });
        if let Poll::Ready(w) = polled {
            assert!(!w.is_empty(), "an empty write");
            writes.push(w);
            per_write.push(count);
        }
    }
    assert!(finished, "the stream never finished");
    assert_eq!(
        writes.concat(),
        want,
        "the writes are not the events in order"
    );
    // Each write: whole events, further ones taken only under the cap, ended
    // short of it only by a moment with nothing arrived, or the end.
    let ends: Vec<usize> = sizes.iter().copied().chain([DONE.len()]).collect();
    let mut event = 0;
    for (w, count) in writes.iter().zip(&per_write) {
        let events = &ends[event..event + count];
        assert_eq!(
            w.len(),
            events.iter().sum::<usize>(),
            "a write cuts an event"
        );
        let before_last: usize = events[..count - 1].iter().sum();
        assert!(before_last < COALESCE_BYTES, "a write went on past the cap");
        event += count;
        let last_is_done = event == ends.len();
        if w.len() < COALESCE_BYTES && !last_is_done {
            // The step after this write's last event was a moment with nothing.
            let at = step_of_event(&script.steps, event - 1) + 1;
            assert_eq!(
                script.steps.get(at),
                Some(&Step::Pending),
                "a write ended while more had arrived"
            );
        }
    }
}

/// Where the `i`th event is among the steps.
fn step_of_event(steps: &[Step], i: usize) -> usize {
    steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Step::Event(_)))
        .nth(i)
        .map_or(steps.len(), |(at, _)| at)
}

/// The fuzz input read as parameters.
struct Params<'a>(&'a [u8]);

impl Params<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    /// Up to 31 bytes of anything.
    fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.u8().unwrap_or(0) % 32).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }
    /// A line's value: any bytes but line ends.
    fn line(&mut self) -> Vec<u8> {
        self.bytes()
            .into_iter()
            .filter(|&b| b != b'\n' && b != b'\r')
            .collect()
    }
}
