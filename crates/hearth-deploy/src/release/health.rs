//! The health wait: poll `/ready` until it answers 200 or time runs out.
//!
//! A bare HTTP/1.1 GET over `std::net::TcpStream`: the probe needs only a status
//! line, and this keeps the core synchronous and free of an HTTP client (the
//! workspace's reqwest has no blocking feature).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

/// The result of one probe or of a whole wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
    /// What the last probe saw: `HTTP 200`, `HTTP 503`, or the connect error.
    pub last: String,
    /// How long the wait took (zero for a single probe).
    pub waited: Duration,
}

/// Probes `url` every `interval` until it answers 200 or `timeout` passes.
pub fn wait_ready(url: &str, timeout: Duration, interval: Duration) -> Health {
    let start = Instant::now();
    loop {
        let remaining = timeout.saturating_sub(start.elapsed());
        let last = match probe(
            url,
            remaining.clamp(Duration::from_millis(100), Duration::from_secs(5)),
        ) {
            Ok(200) => {
                return Health {
                    ready: true,
                    last: "HTTP 200".to_string(),
                    waited: start.elapsed(),
                };
            }
            Ok(code) => format!("HTTP {code}"),
            Err(e) => e,
        };
        if start.elapsed() + interval > timeout {
            return Health {
                ready: false,
                last,
                waited: start.elapsed(),
            };
        }
        thread::sleep(interval);
    }
}

/// One GET: the status code, or why there was none.
pub fn check(url: &str, timeout: Duration) -> Health {
    match probe(url, timeout) {
        Ok(code) => Health {
            ready: code == 200,
            last: format!("HTTP {code}"),
            waited: Duration::ZERO,
        },
        Err(last) => Health {
            ready: false,
            last,
            waited: Duration::ZERO,
        },
    }
}

fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let (authority, path) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connect to {authority}: {e}"))?;
    let io_err = |e: std::io::Error| format!("GET {url}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: hearth-deploy\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    // The status line fits in the first read of a small buffer; the body is not needed.
    let mut buf = [0u8; 256];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).map_err(io_err)?;
        if n == 0 || buf[..len + n].contains(&b'\n') {
            len += n;
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("GET {url}: not an HTTP answer: {status_line:?}")),
    }
}

/// `http://host:port/path` into (`host:port`, `/path`); only plain HTTP, since
/// the probe targets the service on its own host.
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("health URL {url:?} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("health URL {url:?} has no host"));
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        format!("http://{addr}/ready")
    }

    #[test]
    fn a_200_is_ready_and_a_503_is_not() {
        let url = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(check(&url, Duration::from_secs(2)).ready);
        let url = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let h = check(&url, Duration::from_secs(2));
        assert!(!h.ready);
        assert_eq!(h.last, "HTTP 503");
    }

    #[test]
    fn a_closed_port_times_out_with_the_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = wait_ready(
            &format!("http://127.0.0.1:{port}/ready"),
            Duration::from_millis(300),
            Duration::from_millis(50),
        );
        assert!(!h.ready);
        assert!(h.last.contains("connect"), "{}", h.last);
        assert!(h.waited >= Duration::from_millis(200), "{:?}", h.waited);
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/ready").unwrap(),
            ("127.0.0.1:8080".into(), "/ready".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "/".into())
        );
        assert!(split_url("https://x/ready").is_err());
    }
}
