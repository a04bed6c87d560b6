//! The upstream backend over both of its clients, against a real local HTTP server:
//! `Via::Auto` (our own HTTP/1.1 connections, for a plain `http://` upstream) and `Via::Reqwest`
//! (what `https://` upstreams and proxied setups use).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

use std::time::Duration;

use futures::StreamExt;
use hearth_api::ChatCompletionRequest;
use hearth_config::{ModelBackend, ModelConfig, UpstreamConfig};
use hearth_router::{Backend, BackendError, Event, EventStream, Request, Wire};
use hearth_testkit::{Behaviour, FakeUpstream};
use hearth_upstream::{UpstreamBackend, Via};

const VIAS: [Via; 2] = [Via::Auto, Via::Reqwest];

fn config(base_url: String) -> ModelConfig {
    ModelConfig {
        backend: ModelBackend::Upstream(UpstreamConfig {
            base_url,
            upstream_model: Some("up-model".into()),
            first_byte_timeout_secs: 1,
            idle_timeout_secs: 1,
            connect_timeout_secs: 1,
            ..UpstreamConfig::default()
        }),
        ..ModelConfig::upstream("m", "")
    }
}

fn chat(stream: bool) -> Request {
    let v = serde_json::json!({
        "model": "m", "stream": stream, "tools": [],
        "messages": [{"role": "user", "content": "hi"}]
    });
    Request::Chat(ChatCompletionRequest::from_value(v).unwrap())
}

/// A whole (not streamed) answer: its one event, the upstream's body as it came.
async fn whole(b: &UpstreamBackend, req: &Request) -> Result<Wire, BackendError> {
    let mut events = b.call(req).await?;
    let Some(Ok(Event::Wire(w))) = events.next().await else {
        panic!("expected the upstream's body");
    };
    assert!(w.whole);
    assert!(events.next().await.is_none(), "one event only");
    Ok(w)
}

/// Shows a call's result in assertion messages (the stream itself has no `Debug`).
fn shown(r: &Result<EventStream, BackendError>) -> String {
    match r {
        Ok(_) => "Ok(events)".to_owned(),
        Err(e) => format!("Err({e:?})"),
    }
}

fn backend(up: &FakeUpstream, via: Via) -> UpstreamBackend {
    UpstreamBackend::with_transport(&config(up.base_url()), Some("sk-up".into()), via).unwrap()
}

#[tokio::test]
async fn answers_whole_with_usage_and_rewrites_the_model() {
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = backend(&up, via);
        let want = if via == Via::Auto {
            "\"direct\""
        } else {
            "\"reqwest\""
        };
        assert!(format!("{b:?}").contains(want), "{via:?}: {b:?}");
        let Wire { data, usage, .. } = whole(&b, &chat(false)).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(v["object"], "chat.completion", "{via:?}");
        assert!(usage.is_some(), "{via:?}");
        let got = &up.received()[0];
        assert_eq!(got.body["model"], "up-model", "{via:?}");
        assert_eq!(
            got.body["tools"],
            serde_json::json!([]),
            "{via:?}: passed through"
        );
        assert_eq!(
            got.authorization.as_deref(),
            Some("Bearer sk-up"),
            "{via:?}"
        );
    }
}

#[tokio::test]
async fn streams_events_until_done_and_a_dropped_stream_is_an_error() {
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = backend(&up, via);
        let mut s = b.call(&chat(true)).await.unwrap();
        let mut n = 0;
        while let Some(c) = s.next().await {
            c.unwrap_or_else(|e| panic!("{via:?}: {e}"));
            n += 1;
        }
        assert!(n >= 4, "{via:?}: {n} chunks");

        up.push(Behaviour::DropMidStream { after: 1 });
        let mut s = b.call(&chat(true)).await.unwrap();
        let mut failed = false;
        while let Some(c) = s.next().await {
            failed |= c.is_err();
        }
        assert!(
            failed,
            "{via:?}: a stream cut before [DONE] ends in an error"
        );
    }
}

#[tokio::test]
async fn error_statuses_stalls_and_refused_connections() {
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = backend(&up, via);
        up.push(Behaviour::Status {
            status: 503,
            retry_after: Some(2),
        });
        match b.call(&chat(false)).await {
            Err(BackendError::Status {
                status: 503,
                retry_after,
                ..
            }) => assert_eq!(retry_after, Some(Duration::from_secs(2)), "{via:?}"),
            other => panic!("{via:?}: {}", shown(&other)),
        }
        up.push(Behaviour::Stall);
        assert!(
            matches!(b.call(&chat(false)).await, Err(BackendError::Timeout(_))),
            "{via:?}: a stalled upstream times out"
        );
        assert!(b.probe().await.is_ok(), "{via:?}: probe");

        let closed = hearth_testkit::ClosedPort::new();
        let url = format!("http://{}/v1", closed.addr());
        let b = UpstreamBackend::with_transport(&config(url), None, via).unwrap();
        assert!(
            matches!(b.call(&chat(false)).await, Err(BackendError::Connect(_))),
            "{via:?}: nothing listening is a connect error"
        );
    }
}

/// A bare HTTP/1.1 server that counts the connections it accepts. Each answers
/// keep-alive requests with a whole JSON answer, or (for `"stream":true`) with a
/// chunked event stream ending in `[DONE]`, or (with `"hold":true` too) with one
/// event and then nothing more, holding the stream open. With `Close::AfterAnswer`,
/// it closes every connection after its first answer, as an upstream's idle timeout
/// does; with `Close::OnSecondRequest`, it closes it when a second request came,
/// without answering (the idle timeout striking just as the connection is reused).
struct CountingServer {
    url: String,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Close {
    Never,
    AfterAnswer,
    OnSecondRequest,
}

impl CountingServer {
    async fn start(close: Close) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                // As upstream servers do (asyncio, so vLLM, sets it by default): without
                // it a small write after another waits for the first's delayed ACK.
                sock.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut answered = 0;
                    loop {
                        // One request: the head, then Content-Length bytes of body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        if answered == 1 && close == Close::OnSecondRequest {
                            return;
                        }
                        answered += 1;
                        let body = buf[head_end..head_end + len].to_vec();
                        buf.drain(..head_end + len);
                        let body = String::from_utf8_lossy(&body).into_owned();
                        if body.contains("\"stream\":true") && !body.contains("\"hold\":true") {
                            let events = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
                            let out = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{events}\r\n",
                                events.len()
                            );
                            if sock.write_all(out.as_bytes()).await.is_err() {
                                return;
                            }
                            // With `"late_end":true` the body's end comes apart, later
                            // (as an upstream that writes each event separately sends it).
                            if body.contains("\"late_end\":true") {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if sock.write_all(b"0\r\n\r\n").await.is_err() {
                                return;
                            }
                            continue;
                        }
                        if body.contains("\"stream\":true") {
                            let event =
                                "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
                            let out = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                                event.len()
                            );
                            let _ = sock.write_all(out.as_bytes()).await;
                            // Held open until the client goes away.
                            let mut rest = [0u8; 64];
                            while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
                            return;
                        }
                        let answer = r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                        let out = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if sock.write_all(out.as_bytes()).await.is_err()
                            || close == Close::AfterAnswer
                        {
                            return;
                        }
                    }
                });
            }
        });
        CountingServer { url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A streaming chat request with one more flag for `CountingServer` set.
fn stream_with(flag: &str) -> Request {
    let mut v = serde_json::json!({
        "model": "m", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]
    });
    v[flag] = serde_json::json!(true);
    Request::Chat(ChatCompletionRequest::from_value(v).unwrap())
}

/// Calls with a streaming request and reads the stream to its end.
async fn stream_to_end(b: &UpstreamBackend, req: &Request) {
    let mut s = b.call(req).await.unwrap();
    while let Some(c) = s.next().await {
        c.unwrap();
    }
}

#[tokio::test]
async fn the_direct_pool_reuses_connections_and_never_a_half_read_one() {
    let server = CountingServer::start(Close::Never).await;
    let b = UpstreamBackend::with_transport(&config(server.url.clone()), None, Via::Auto).unwrap();
    for _ in 0..5 {
        assert!(whole(&b, &chat(false)).await.unwrap().usage.is_some());
    }
    assert_eq!(
        server.connections(),
        1,
        "one kept-alive connection for five answers"
    );

    // Streams read to their `[DONE]` give their connection back too.
    for _ in 0..3 {
        stream_to_end(&b, &chat(true)).await;
    }
    assert_eq!(
        server.connections(),
        1,
        "streams reused the kept-alive connection"
    );

    // A stream whose body ends after its `[DONE]`, apart: the connection goes back
    // with its end to read, and is reused once the end came.
    for _ in 0..2 {
        stream_to_end(&b, &stream_with("late_end")).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(
        server.connections(),
        1,
        "a stream whose end came late reused the connection"
    );

    // A stream the client drops halfway: its connection is closed, not reused.
    let held = stream_with("hold");
    let mut s = b.call(&held).await.unwrap();
    assert!(s.next().await.unwrap().is_ok());
    drop(s);
    assert_eq!(
        server.connections(),
        1,
        "the stream reused the idle connection"
    );
    assert!(whole(&b, &chat(false)).await.is_ok());
    assert_eq!(
        server.connections(),
        2,
        "the half-read connection was not reused"
    );
}

#[tokio::test]
async fn the_direct_pool_replaces_connections_the_upstream_closed() {
    let server = CountingServer::start(Close::AfterAnswer).await;
    let b = UpstreamBackend::with_transport(&config(server.url.clone()), None, Via::Auto).unwrap();
    for i in 1..=3 {
        assert!(whole(&b, &chat(false)).await.is_ok(), "answer {i}");
        // Time for the close to reach the idle connection: checkout sees it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn a_request_sent_and_left_unanswered_is_not_sent_again() {
    // Closed as it is reused: the request went out on a kept-alive connection that
    // the upstream then closed unanswered. The upstream may have read it (and be
    // running it), so it is not sent again behind the caller's back: the caller gets
    // `Unanswered`, which the router retries only where the config allows.
    let server = CountingServer::start(Close::OnSecondRequest).await;
    let b = UpstreamBackend::with_transport(&config(server.url.clone()), None, Via::Auto).unwrap();
    assert!(whole(&b, &chat(false)).await.is_ok());
    let second = b.call(&chat(false)).await;
    assert!(
        matches!(&second, Err(e @ BackendError::Unanswered(_)) if e.may_have_run() && !e.is_retryable()),
        "{}",
        shown(&second)
    );
    assert_eq!(
        server.connections(),
        1,
        "not sent again on a new connection"
    );
    // The next request gets a new connection and its answer.
    assert!(whole(&b, &chat(false)).await.is_ok());
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn content_parts_with_an_image_reach_the_upstream_unchanged() {
    let content = serde_json::json!([
        {"type": "text", "text": "what is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}}
    ]);
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = backend(&up, via);
        let v = serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": content}]
        });
        let req = Request::Chat(ChatCompletionRequest::from_value(v).unwrap());
        whole(&b, &req).await.unwrap();
        assert_eq!(
            up.received()[0].body["messages"][0]["content"],
            content,
            "{via:?}"
        );
    }
}

/// An upstream that never stops sending (a whole answer, one event, an error body)
/// costs Hearth its configured limit, not its memory: the call fails saying which
/// limit, and the connection is closed (the fake sees its client go).
#[tokio::test]
async fn endless_answers_events_and_error_bodies_are_cut_at_their_limits() {
    let capped = |url: String| {
        let mut c = config(url);
        if let ModelBackend::Upstream(u) = &mut c.backend {
            u.max_answer_bytes = 256 * 1024;
            u.max_event_bytes = 64 * 1024;
        }
        c
    };
    for via in VIAS {
        let up = FakeUpstream::start().await.unwrap();
        let b = UpstreamBackend::with_transport(&capped(up.base_url()), None, via).unwrap();

        up.push(Behaviour::Endless {
            status: 200,
            event_stream: false,
        });
        match b.call(&chat(false)).await {
            Err(BackendError::TooLarge(why)) => {
                assert!(why.contains("max_answer_bytes"), "{via:?}: {why}");
            }
            other => panic!("{via:?}: {}", shown(&other)),
        }

        up.push(Behaviour::Endless {
            status: 200,
            event_stream: true,
        });
        let mut s = b.call(&chat(true)).await.unwrap();
        match s.next().await {
            Some(Err(BackendError::TooLarge(why))) => {
                assert!(why.contains("max_event_bytes"), "{via:?}: {why}");
            }
            other => panic!("{via:?}: {:?}", other.map(|r| r.map(|_| "an event"))),
        }
        assert!(s.next().await.is_none(), "{via:?}: the stream ends there");
        drop(s);

        // An error status with an endless body: the status stands, the body is not
        // read past 64 KiB.
        up.push(Behaviour::Endless {
            status: 503,
            event_stream: false,
        });
        match b.call(&chat(false)).await {
            Err(BackendError::Status { status: 503, .. }) => {}
            other => panic!("{via:?}: {}", shown(&other)),
        }

        // Each of the three connections was closed by Hearth; none is left open.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (up.cancelled() < 3 || up.active() > 0) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(up.cancelled(), 3, "{via:?}: the fake saw each client go");
        assert_eq!(up.active(), 0, "{via:?}");

        // And the backend serves the next request normally.
        up.push(Behaviour::ok("fine"));
        let w = whole(&b, &chat(false)).await.unwrap();
        assert!(String::from_utf8_lossy(&w.data).contains("fine"), "{via:?}");
    }
}
