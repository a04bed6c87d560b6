//! What one client may hold: a request body has `server.body_timeout_secs` to
//! arrive (408 past it), and open connections are capped overall and per client
//! address (503 with `Retry-After` past a cap). Each driven by a real misbehaving
//! client over TCP.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use hearth_testkit::FakeUpstream;

/// A request head whose body (of `len` bytes) is then sent only in part.
fn head(path: &str, len: usize, content_type: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_body_that_trickles_in_is_answered_408_and_its_connection_closed() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "[server]\nbody_timeout_secs = 1\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    // The completions' hot path, the UI's API through the router, and the jobs'
    // multipart upload.
    let cases = [
        (
            "/v1/chat/completions",
            "application/json",
            "{\"model\": \"m\", ",
        ),
        (
            "/api/hearth/conversations",
            "application/json",
            "{\"title\": ",
        ),
        (
            "/api/jobs",
            "multipart/form-data; boundary=XyZ",
            "--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nplot",
        ),
    ];
    for (path, content_type, part) in cases {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(head(path, 4096, content_type).as_bytes())
            .await
            .unwrap();
        s.write_all(part.as_bytes()).await.unwrap();
        let start = Instant::now();
        let (mut r, mut w) = s.into_split();
        // A byte every 200 ms (the body would take over 13 minutes), while the
        // answer is read as it comes.
        let trickle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if w.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
        let mut answer = Vec::new();
        let closed = loop {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        trickle.abort();
        let answer = String::from_utf8_lossy(&answer);
        let took = start.elapsed();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{path}: after {took:?}: {answer}"
        );
        assert!(
            answer.contains("\"code\":\"body_timeout\""),
            "{path}: {answer}"
        );
        assert!(
            answer.contains("server.body_timeout_secs"),
            "{path}: {answer}"
        );
        assert!(closed, "{path}: the connection is closed after the 408");
        assert!(took >= Duration::from_millis(900), "{path}: {took:?}");
    }
    // A whole body sent in pieces within the deadline is served.
    let body = serde_json::to_vec(&chat_body("m", false)).unwrap();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(head("/v1/chat/completions", body.len(), "application/json").as_bytes())
        .await
        .unwrap();
    for piece in body.chunks(body.len() / 3 + 1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(piece).await.unwrap();
    }
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("hearth_request_bodies_timed_out_total 3"),
        "{metrics}"
    );
}

/// Connects and waits for the refusal Hearth sends at once, if it sends one.
async fn refused(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (got, closed) = read_to_close(&mut s, Duration::from_millis(500)).await;
    (closed && !got.is_empty()).then_some(got)
}

/// Waits until a new connection is served again (the held ones closed).
async fn served_again(gw: &Gateway, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (got, _) = read_to_close(&mut s, Duration::from_secs(2)).await;
        if got.starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(Instant::now() < deadline, "still refused: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = gw;
    }
}

#[tokio::test]
async fn connections_past_the_overall_cap_are_refused_with_503() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "[server]\nmax_connections = 3\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    // Three clients that connect and send nothing hold every slot (both event
    // loops count against the one cap).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = refused(gw.addr)
        .await
        .expect("the fourth connection is refused");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        answer.contains("\"code\":\"too_many_connections\""),
        "{answer}"
    );
    assert!(answer.contains("server.max_connections"), "{answer}");
    // One leaves: the next client is served.
    held.pop();
    served_again(&gw, gw.addr).await;
    drop(held);
    served_again(&gw, gw.addr).await;
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("hearth_connections_refused_total{cap=\"max_connections\"}"),
        "{metrics}"
    );
    // This scrape's own connection is the one open (others may be closing still).
    assert!(metrics.contains("hearth_connections_open"), "{metrics}");
    assert!(metrics.contains("hearth_tasks_alive"), "{metrics}");
}

/// This machine's address toward other hosts (not loopback), if it has one.
fn non_loopback_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.255:9").ok()?; // no packet is sent: this picks a route
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_and_loopback_is_not_counted() {
    let Some(ip) = non_loopback_address() else {
        eprintln!(
            "NOTICE: no non-loopback address on this machine; per-address cap not tested here"
        );
        return;
    };
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start_bound(
        &format!(
            "[server]\nmax_connections_per_address = 2\n[[keys]]\nname = \"k\"\nkey = \"sk-cap-0123456789\"\n{}",
            upstream_model("m", &up.base_url(), "")
        ),
        "0.0.0.0:0",
    )
    .await;
    let far = SocketAddr::new(ip, gw.addr.port());
    let local = SocketAddr::new("127.0.0.1".parse().unwrap(), gw.addr.port());
    let mut held = vec![
        TcpStream::connect(far).await.unwrap(),
        TcpStream::connect(far).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = refused(far)
        .await
        .expect("a third connection from one address is refused");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("server.max_connections_per_address"),
        "{answer}"
    );
    // Loopback peers (a proxy on this host) are not held to the per-address cap.
    for _ in 0..3 {
        held.push(TcpStream::connect(local).await.unwrap());
    }
    served_again(&gw, local).await;
    held.remove(0);
    served_again(&gw, far).await;
}

/// A chunked body that never ends (no Content-Length to refuse up front) is cut
/// at the route's limit with a 413, on every route that reads a body: had any of
/// them buffered it whole, it would never answer.
#[tokio::test]
async fn an_endless_chunked_body_is_refused_at_the_limit_on_every_route() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "[limits]\nmax_body_bytes = 65536\n[jobs]\nmax_upload_bytes = 65536\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    let cases = [
        (
            "/v1/chat/completions",
            "application/json",
            "{\"model\": \"m\", \"x\": \"",
        ),
        (
            "/v1/completions",
            "application/json",
            "{\"model\": \"m\", \"prompt\": \"",
        ),
        (
            "/api/hearth/conversations",
            "application/json",
            "{\"title\": \"",
        ),
        (
            "/api/jobs",
            "multipart/form-data; boundary=XyZ",
            "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n",
        ),
    ];
    for (path, content_type, start) in cases {
        let first =
            futures::stream::once(
                async move { Ok::<_, std::io::Error>(start.as_bytes().to_vec()) },
            );
        let endless = futures::stream::repeat_with(|| Ok::<_, std::io::Error>(vec![b'x'; 8192]));
        let body = reqwest::Body::wrap_stream(futures::StreamExt::chain(first, endless));
        let resp = tokio::time::timeout(
            Duration::from_secs(20),
            gw.post(path)
                .header("content-type", content_type)
                .body(body)
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer to an endless body"));
        let resp = resp.unwrap_or_else(|e| panic!("{path}: {e}"));
        let (status, e) = error_of(resp).await;
        assert_eq!(status, 413, "{path}: {e}");
    }
    assert_eq!(up.hits(), 0);
}
