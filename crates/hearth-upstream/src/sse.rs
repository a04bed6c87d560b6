//! Incremental SSE parsing: bytes in, one [`Event::Wire`] per `data:` event out,
//! each forwarded as soon as its blank line arrives. A Responses API stream
//! ([`responses_events`]) keeps each event whole and ends at its last event.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use hearth_router::{BackendError, Event, Wire};

/// Turns an SSE byte stream into events; ends at `data: [DONE]`, handing the byte
/// stream to `at_done` (the upstream transport returns its connection then). A
/// stream that ends without `[DONE]`, stalls for `idle`, or sends an event longer
/// than `max_event` bytes is an error (the relay turns it into an SSE error event
/// for the client); the byte stream is dropped then, which closes its connection.
pub fn events<S, E, F>(
    bytes: S,
    idle: Duration,
    max_event: u64,
    at_done: F,
) -> impl Stream<Item = Result<Event, BackendError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
    F: FnOnce(S) + Send + Unpin + 'static,
{
    Events::new(bytes, idle, max_event, at_done, false)
}

/// As [`events`], for a stream of OpenAI's Responses API: each [`Wire`] holds a
/// whole SSE event as it came (its `event:` line too, without the blank line
/// after it), with the usage of `response.completed` (`response.usage`). The
/// stream ends after its last event (`response.completed`, `response.incomplete`,
/// `response.failed` or `error`; the API sends no `[DONE]`); a stream that closes
/// before one is an error.
pub fn responses_events<S, E, F>(
    bytes: S,
    idle: Duration,
    max_event: u64,
    at_done: F,
) -> impl Stream<Item = Result<Event, BackendError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
    F: FnOnce(S) + Send + Unpin + 'static,
{
    Events::new(bytes, idle, max_event, at_done, true)
}

/// What a Responses API event says of the stream: whether it is the last one,
/// and the answer's usage (in `response.completed`'s `response`).
fn responses_event(data: &[u8]) -> (bool, Option<hearth_api::Usage>) {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: Option<String>,
        response: Option<Body>,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        usage: Option<hearth_api::Usage>,
    }
    match serde_json::from_slice::<Head>(data) {
        Ok(h) => (
            matches!(
                h.kind.as_deref(),
                Some("response.completed" | "response.incomplete" | "response.failed" | "error")
            ),
            h.response.and_then(|r| r.usage),
        ),
        Err(_) => (false, None),
    }
}

/// The state of [`events`], polled in place (a combinator would move it on every
/// event).
struct Events<S, F> {
    /// A Responses API stream ([`responses_events`]).
    responses: bool,
    /// Its last event went out: the next poll ends the stream.
    ended: bool,
    /// The upstream's bytes; `None` once the stream ended.
    bytes: Option<S>,
    /// The unread part of the last read; events are sliced out of it (no copy).
    cur: Bytes,
    /// An event begun in an earlier read, with what came since (joined by copy).
    buf: BytesMut,
    /// How much of `buf` was searched for an event's end already: an event arriving
    /// in many reads is searched once, not once per read (which made a long event
    /// cost its length squared).
    scanned: usize,
    /// The longest event accepted.
    max_event: usize,
    at_done: Option<F>,
    idle: Duration,
    /// One timer for the whole stream, armed when a read has to wait.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl<S, F: FnOnce(S)> Events<S, F> {
    fn new(bytes: S, idle: Duration, max_event: u64, at_done: F, responses: bool) -> Self {
        Events {
            responses,
            ended: false,
            bytes: Some(bytes),
            cur: Bytes::new(),
            buf: BytesMut::new(),
            scanned: 0,
            max_event: usize::try_from(max_event).unwrap_or(usize::MAX),
            at_done: Some(at_done),
            idle,
            timer: None,
            waiting: false,
        }
    }

    /// The stream's end was read: the byte stream goes to `at_done`.
    fn done(&mut self) {
        if let (Some(bytes), Some(at_done)) = (self.bytes.take(), self.at_done.take()) {
            at_done(bytes);
        }
    }

    /// The next complete event already read, with whether it is one line.
    fn next_event(&mut self) -> Option<(Bytes, bool)> {
        if self.buf.is_empty() {
            let found = split_event(&mut self.cur);
            if found.is_none() && !self.cur.is_empty() {
                self.buf.extend_from_slice(&self.cur);
                self.cur = Bytes::new();
                self.scanned = self.buf.len();
            }
            found
        } else {
            if !self.cur.is_empty() {
                self.buf.extend_from_slice(&self.cur);
                self.cur = Bytes::new();
            }
            // An end spans at most 3 bytes (`\n\r\n`): search again from just before
            // where the last search stopped.
            let found = next_event(&mut self.buf, self.scanned.saturating_sub(2));
            self.scanned = if found.is_some() { 0 } else { self.buf.len() };
            found
        }
    }

    /// The error for an event over the limit, with the stream dropped.
    fn too_large(&mut self) -> BackendError {
        self.bytes = None;
        self.buf = BytesMut::new();
        self.cur = Bytes::new();
        BackendError::TooLarge(format!(
            "an event of the upstream's stream is over {} bytes (the model's max_event_bytes); the stream was cut off",
            self.max_event
        ))
    }
}

impl<S, E, F> Stream for Events<S, F>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
    F: FnOnce(S) + Unpin,
{
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            this.done();
            return Poll::Ready(None);
        }
        loop {
            if this.bytes.is_none() {
                return Poll::Ready(None);
            }
            if let Some((event, one_line)) = this.next_event() {
                if event.len() > this.max_event {
                    return Poll::Ready(Some(Err(this.too_large())));
                }
                match data_of(&event, one_line) {
                    Some(d) if d.as_ref() == b"[DONE]" => {
                        this.done();
                        return Poll::Ready(None);
                    }
                    Some(data) if this.responses => {
                        let (last, usage) = responses_event(&data);
                        this.ended = last;
                        return Poll::Ready(Some(Ok(Event::Wire(Wire {
                            data: event,
                            usage,
                            whole: false,
                        }))));
                    }
                    Some(data) => return Poll::Ready(Some(Ok(Event::Wire(Wire::chunk(data))))),
                    None => continue, // comment or keep-alive
                }
            }
            // An unfinished event may be followed by the first two bytes of its
            // blank line (`\n\r`): only past those is it surely over the limit,
            // whatever the reads (found by fuzzing: an event at the limit was
            // refused when its blank line came in a later read).
            if this.buf.len() > this.max_event.saturating_add(2) {
                return Poll::Ready(Some(Err(this.too_large())));
            }
            let Some(bytes) = this.bytes.as_mut() else {
                return Poll::Ready(None);
            };
            let failed = match bytes.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    this.cur = b;
                    this.waiting = false;
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    BackendError::Protocol(format!("the upstream stream broke: {e}"))
                }
                Poll::Ready(None) => BackendError::Protocol(
                    if this.responses {
                        "the upstream closed the stream before its response.completed event"
                    } else {
                        "the upstream closed the stream before [DONE]"
                    }
                    .into(),
                ),
                Poll::Pending => {
                    if !this.waiting {
                        this.waiting = true;
                        let deadline = tokio::time::Instant::now() + this.idle;
                        match &mut this.timer {
                            Some(timer) => timer.as_mut().reset(deadline),
                            None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                        }
                    }
                    let stalled = this
                        .timer
                        .as_mut()
                        .is_some_and(|t| t.as_mut().poll(cx).is_ready());
                    if !stalled {
                        return Poll::Pending;
                    }
                    BackendError::Timeout("the upstream stream stalled".into())
                }
            };
            this.bytes = None;
            return Poll::Ready(Some(Err(failed)));
        }
    }
}

/// Where the first event in `b` ends, searching from `from` (no event ends before
/// it): the event's length, the length of the blank line after it, and whether the
/// event is one line.
fn event_end(b: &[u8], from: usize) -> Option<(usize, usize, bool)> {
    let from = from.min(b.len());
    for i in memchr::memchr_iter(b'\n', &b[from..]).map(|i| i + from) {
        let skip = match &b[i + 1..] {
            [b'\n', ..] => 2,
            [b'\r', b'\n', ..] => 3,
            _ => continue,
        };
        return Some((i, skip, memchr::memchr(b'\n', &b[..i]).is_none()));
    }
    None
}

/// Slices one complete event (up to a blank line) off `b`, if it holds one.
fn split_event(b: &mut Bytes) -> Option<(Bytes, bool)> {
    use bytes::Buf;
    let (end, skip, one_line) = event_end(b, 0)?;
    let event = b.split_to(end);
    b.advance(skip);
    Some((event, one_line))
}

/// Splits off one complete event (up to a blank line), if the buffer holds one
/// ending at or after `from`.
fn next_event(buf: &mut BytesMut, from: usize) -> Option<(Bytes, bool)> {
    let (end, skip, one_line) = event_end(buf, from)?;
    let event = buf.split_to(end).freeze();
    let _ = buf.split_to(skip);
    Some((event, one_line))
}

/// The `data` of an event: its `data:` lines joined by newlines. The usual event,
/// one `data:` line, is a slice of the event (no copy).
fn data_of(event: &Bytes, one_line: bool) -> Option<Bytes> {
    if one_line && event.starts_with(b"data:") {
        let start = if event.get(5) == Some(&b' ') { 6 } else { 5 };
        let mut end = event.len();
        if end > start && event[end - 1] == b'\r' {
            end -= 1;
        }
        return Some(event.slice(start..end));
    }
    let mut lines = event
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut out: Option<BytesMut> = None;
    for line in lines.by_ref() {
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            match &mut out {
                None => out = Some(BytesMut::from(rest)),
                Some(o) => {
                    o.extend_from_slice(b"\n");
                    o.extend_from_slice(rest);
                }
            }
        }
    }
    out.map(BytesMut::freeze)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joining path, for comparison with the one-line fast path.
    fn data_joined(event: &Bytes) -> Option<Bytes> {
        let mut out: Option<BytesMut> = None;
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                match &mut out {
                    None => out = Some(BytesMut::from(rest)),
                    Some(o) => {
                        o.extend_from_slice(b"\n");
                        o.extend_from_slice(rest);
                    }
                }
            }
        }
        out.map(BytesMut::freeze)
    }

    #[test]
    fn one_line_events_are_sliced_like_joined_ones() {
        for e in [
            &b"data: {\"a\":1}"[..],
            b"data:{\"a\":1}",
            b"data: x\r",
            b"data:",
            b"data: ",
            b"data:\r",
            b"data: \r",
            b"data:  two spaces",
            b"data: a\ndata: b",
            b"event: x\ndata: y",
            b": comment",
            b"id: 3",
        ] {
            let one_line = !e.contains(&b'\n');
            let e = Bytes::copy_from_slice(e);
            assert_eq!(
                data_of(&e, one_line),
                data_joined(&e),
                "{:?}",
                String::from_utf8_lossy(&e)
            );
        }
    }

    #[test]
    fn events_split_at_blank_lines_of_either_ending() {
        let text = &b"data: 1\n\ndata: 2\r\n\r\ndata: 3\n\rdata: 3b\n\ndata: 4"[..];
        let want = [
            ("data: 1", true),
            ("data: 2\r", true),
            ("data: 3\n\rdata: 3b", false),
        ]
        .map(|(e, o)| (e.to_owned(), o));
        let mut buf = BytesMut::from(text);
        let mut got = Vec::new();
        while let Some((e, one)) = next_event(&mut buf, 0) {
            got.push((String::from_utf8_lossy(&e).into_owned(), one));
        }
        assert_eq!(got, want);
        assert_eq!(&buf[..], b"data: 4", "the incomplete event stays");
        let mut cur = Bytes::from_static(text);
        let mut got = Vec::new();
        while let Some((e, one)) = split_event(&mut cur) {
            got.push((String::from_utf8_lossy(&e).into_owned(), one));
        }
        assert_eq!(got, want);
        assert_eq!(&cur[..], b"data: 4");
    }

    async fn collect(parts: Vec<&'static [u8]>) -> Vec<Result<String, String>> {
        collect_max(parts.into_iter().map(<[u8]>::to_vec).collect(), u64::MAX).await
    }

    async fn collect_max(parts: Vec<Vec<u8>>, max: u64) -> Vec<Result<String, String>> {
        let s = futures::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from(p))),
        );
        events(s, Duration::from_secs(5), max, drop)
            .map(|r| {
                r.map(|e| match e {
                    Event::Wire(w) => String::from_utf8_lossy(&w.data).into_owned(),
                    other => format!("{other:?}"),
                })
                .map_err(|e| e.to_string())
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn splits_events_across_reads() {
        let out = collect(vec![
            b"data: {\"a\"",
            b":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\n",
            b"data: [DONE]\n\n",
        ])
        .await;
        assert_eq!(
            out,
            vec![Ok("{\"a\":1}".to_owned()), Ok("{\"b\":2}".to_owned())]
        );
        // Blank lines split across reads, several events in one read, then a read
        // that starts mid-event after whole ones.
        let out = collect(vec![
            b"data: 1\n",
            b"\ndata: 2\r\n\r",
            b"\ndata: 3\n\ndata: 4\n\ndata: 5",
            b"5\n\ndata: [DONE]\n\n",
        ])
        .await;
        let want: Vec<Result<String, String>> = ["1", "2", "3", "4", "55"]
            .iter()
            .map(|s| Ok((*s).to_owned()))
            .collect();
        assert_eq!(out, want);
    }

    #[tokio::test]
    async fn missing_done_is_an_error() {
        let out = collect(vec![b"data: {\"a\":1}\n\n"]).await;
        assert_eq!(out.len(), 2);
        assert!(out[1].as_ref().unwrap_err().contains("before [DONE]"));
    }

    #[tokio::test]
    async fn events_read_in_pieces_of_any_size_are_the_same_events() {
        let text = b"data: 1\n\ndata: 2\r\n\r\n: c\n\ndata: 3\n\rdata: 3b\n\ndata: 4\ndata: 4b\r\n\r\ndata: [DONE]\n\n";
        let whole = collect_max(vec![text.to_vec()], u64::MAX).await;
        assert_eq!(whole.len(), 4, "{whole:?}");
        for n in 1..8 {
            let parts = text.chunks(n).map(<[u8]>::to_vec).collect();
            assert_eq!(collect_max(parts, u64::MAX).await, whole, "pieces of {n}");
        }
    }

    #[tokio::test]
    async fn an_event_over_the_limit_ends_the_stream() {
        // At the limit: served.
        let at = [b"data: ".as_slice(), &[b'x'; 1018], b"\n\ndata: [DONE]\n\n"].concat();
        let out = collect_max(vec![at.clone()], 1024).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap().len(), 1018);
        // At the limit, the rest of its blank line in a later read (after its `\n`,
        // or its `\n\r`).
        let crlf = [
            b"data: ".as_slice(),
            &[b'x'; 1018],
            b"\n\r\ndata: [DONE]\n\n",
        ]
        .concat();
        for (text, cut) in [(&at, 1025), (&crlf, 1025), (&crlf, 1026)] {
            let (a, b) = text.split_at(cut);
            let out = collect_max(vec![a.to_vec(), b.to_vec()], 1024).await;
            assert_eq!(out.len(), 1, "cut at {cut}: {out:?}");
            assert_eq!(out[0].as_ref().unwrap().len(), 1018);
        }
        // One byte over, in one read or many.
        let over = [b"data: ".as_slice(), &[b'x'; 1019], b"\n\ndata: [DONE]\n\n"].concat();
        for n in [over.len(), 100, 7] {
            let parts = over.chunks(n).map(<[u8]>::to_vec).collect();
            let out = collect_max(parts, 1024).await;
            assert_eq!(out.len(), 1, "pieces of {n}: {out:?}");
            assert!(
                out[0].as_ref().unwrap_err().contains("max_event_bytes"),
                "{out:?}"
            );
        }
        // An event that never ends: refused once the limit is passed, not at its end
        // (the stream here would go on for 100 MiB).
        let endless = futures::stream::iter(std::iter::repeat_n(
            Bytes::from_static(&[b'x'; 4096]),
            25_600,
        ))
        .map(Ok::<_, std::io::Error>);
        let first = std::pin::pin!(events(endless, Duration::from_secs(5), 64 * 1024, drop))
            .next()
            .await;
        assert!(
            matches!(first, Some(Err(BackendError::TooLarge(_)))),
            "{first:?}"
        );
    }

    #[tokio::test]
    async fn a_responses_stream_keeps_its_events_whole_and_ends_at_its_last() {
        let handed_back = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = handed_back.clone();
        let text: &[u8] = b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n\
            : keep-alive\n\n\
            event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\r\n\r\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":\
            {\"input_tokens\":5,\"output_tokens\":2,\"total_tokens\":7,\"input_tokens_details\":{\"cached_tokens\":0}}}}\n\n\
            event: never.read\ndata: {}\n\n";
        for n in [1, 7, text.len()] {
            let parts: Vec<Result<Bytes, std::io::Error>> = text
                .chunks(n)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let flag = flag.clone();
            let out: Vec<_> = responses_events(
                futures::stream::iter(parts),
                Duration::from_secs(5),
                u64::MAX,
                move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst),
            )
            .collect()
            .await;
            let wires: Vec<Wire> = out
                .into_iter()
                .map(|e| match e {
                    Ok(Event::Wire(w)) => w,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(wires.len(), 3, "pieces of {n}");
            assert_eq!(
                &wires[1].data[..],
                b"event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\r"
            );
            assert!(
                wires[2]
                    .data
                    .starts_with(b"event: response.completed\ndata: ")
            );
            assert_eq!(wires[0].usage, None);
            let u = wires[2].usage.unwrap();
            assert_eq!(
                (u.prompt_tokens, u.completion_tokens, u.total_tokens),
                (5, 2, 7)
            );
            assert!(handed_back.swap(false, std::sync::atomic::Ordering::SeqCst));
        }
    }

    #[tokio::test]
    async fn a_responses_stream_cut_before_its_last_event_is_an_error() {
        let s = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
            b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n",
        ))]);
        let out: Vec<_> = responses_events(s, Duration::from_secs(5), u64::MAX, drop)
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        let e = out[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("before its response.completed"), "{e}");
        // `error` and `response.failed` end it too.
        for last in ["error", "response.failed", "response.incomplete"] {
            let text = format!("event: {last}\ndata: {{\"type\":\"{last}\"}}\n\n");
            let s = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(text))]);
            let out: Vec<_> = responses_events(s, Duration::from_secs(5), u64::MAX, drop)
                .collect()
                .await;
            assert_eq!(out.len(), 1, "{last}: {out:?}");
            assert!(out[0].is_ok());
        }
    }
}
