//! Incremental SSE parsing: bytes in, one [`Chunk`] per `data:` event out, each
//! forwarded as soon as its blank line arrives.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use hearth_router::{BackendError, Chunk};

/// Turns an SSE byte stream into chunks; ends at `data: [DONE]`, handing the byte
/// stream to `at_done` (the upstream transport returns its connection then). A
/// stream that ends without `[DONE]`, or stalls for `idle`, is an error (the relay
/// turns it into an SSE error event for the client).
pub fn events<S, E, F>(
    bytes: S,
    idle: Duration,
    at_done: F,
) -> impl Stream<Item = Result<Chunk, BackendError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
    F: FnOnce(S) + Send + 'static,
{
    struct State<S, F> {
        bytes: S,
        buf: BytesMut,
        done: bool,
        at_done: F,
    }
    futures::stream::unfold(
        State {
            bytes,
            buf: BytesMut::new(),
            done: false,
            at_done,
        },
        move |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                if let Some(event) = next_event(&mut st.buf) {
                    match data_of(&event) {
                        Some(d) if d.as_ref() == b"[DONE]" => {
                            (st.at_done)(st.bytes);
                            return None;
                        }
                        Some(data) => {
                            let usage = hearth_api::Usage::in_chunk(&data);
                            return Some((Ok(Chunk { data, usage }), st));
                        }
                        None => continue, // comment or keep-alive
                    }
                }
                match tokio::time::timeout(idle, st.bytes.next()).await {
                    Err(_) => {
                        st.done = true;
                        return Some((
                            Err(BackendError::Timeout("the upstream stream stalled".into())),
                            st,
                        ));
                    }
                    Ok(Some(Ok(b))) => st.buf.extend_from_slice(&b),
                    Ok(Some(Err(e))) => {
                        st.done = true;
                        return Some((
                            Err(BackendError::Protocol(format!(
                                "the upstream stream broke: {e}"
                            ))),
                            st,
                        ));
                    }
                    Ok(None) => {
                        st.done = true;
                        return Some((
                            Err(BackendError::Protocol(
                                "the upstream closed the stream before [DONE]".into(),
                            )),
                            st,
                        ));
                    }
                }
            }
        },
    )
}

/// Splits off one complete event (up to a blank line), if the buffer holds one.
fn next_event(buf: &mut BytesMut) -> Option<Bytes> {
    for i in memchr::memchr_iter(b'\n', buf) {
        let skip = match &buf[i + 1..] {
            [b'\n', ..] => 2,
            [b'\r', b'\n', ..] => 3,
            _ => continue,
        };
        let event = buf.split_to(i).freeze();
        let _ = buf.split_to(skip);
        return Some(event);
    }
    None
}

/// The `data` of an event: its `data:` lines joined by newlines. The usual event,
/// one `data:` line, is a slice of the event (no copy).
fn data_of(event: &Bytes) -> Option<Bytes> {
    if event.starts_with(b"data:") && memchr::memchr(b'\n', event).is_none() {
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
            let e = Bytes::copy_from_slice(e);
            assert_eq!(
                data_of(&e),
                data_joined(&e),
                "{:?}",
                String::from_utf8_lossy(&e)
            );
        }
    }

    #[test]
    fn events_split_at_blank_lines_of_either_ending() {
        let mut buf =
            BytesMut::from(&b"data: 1\n\ndata: 2\r\n\r\ndata: 3\n\rdata: 3b\n\ndata: 4"[..]);
        let mut got = Vec::new();
        while let Some(e) = next_event(&mut buf) {
            got.push(String::from_utf8_lossy(&e).into_owned());
        }
        assert_eq!(got, ["data: 1", "data: 2\r", "data: 3\n\rdata: 3b"]);
        assert_eq!(&buf[..], b"data: 4", "the incomplete event stays");
    }

    async fn collect(parts: Vec<&'static [u8]>) -> Vec<Result<String, String>> {
        let s = futures::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))),
        );
        events(s, Duration::from_secs(5), drop)
            .map(|r| {
                r.map(|c| String::from_utf8_lossy(&c.data).into_owned())
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
    }

    #[tokio::test]
    async fn missing_done_is_an_error() {
        let out = collect(vec![b"data: {\"a\":1}\n\n"]).await;
        assert_eq!(out.len(), 2);
        assert!(out[1].as_ref().unwrap_err().contains("before [DONE]"));
    }
}
