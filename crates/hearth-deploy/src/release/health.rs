//! The health wait: poll `/ready` until it answers 200 or time runs out.
//!
//! A bare HTTP/1.1 GET over `std::net::TcpStream` (inside rustls for `https://`):
//! the probe needs only a status line, and this keeps the core synchronous and
//! free of an HTTP client (the workspace's reqwest has no blocking feature).
//!
//! Over HTTPS the probe does not check the certificate's chain or name: it asks
//! a service on its own host whether it is ready, sends nothing secret, and the
//! host's certificate is often self-signed (`[server.tls] mode = "self-signed"`).
//! The handshake's signatures are still verified.

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
    /// The answering process's `X-Hearth-Instance` (each Hearth process has its
    /// own), when it sent one.
    pub instance: Option<String>,
}

/// Probes `url` every `interval` until it answers 200 or `timeout` passes. With
/// `not_from`, a 200 counts only from another process than that instance: after
/// an upgrade (a handover, where the old process answers until the new one takes
/// over) only the new one's answer says the new release is serving.
pub fn wait_ready(
    url: &str,
    timeout: Duration,
    interval: Duration,
    not_from: Option<&str>,
) -> Health {
    let start = Instant::now();
    loop {
        let remaining = timeout.saturating_sub(start.elapsed());
        let mut instance = None;
        let last = match probe(
            url,
            remaining.clamp(Duration::from_millis(100), Duration::from_secs(5)),
        ) {
            Ok(answer)
                if answer.code == 200
                    && (not_from.is_none() || answer.instance.as_deref() != not_from) =>
            {
                return Health {
                    ready: true,
                    last: "HTTP 200".to_string(),
                    waited: start.elapsed(),
                    instance: answer.instance,
                };
            }
            Ok(answer) if answer.code == 200 => {
                instance = answer.instance;
                "HTTP 200, but from the process that was serving before the restart: \
                 the new one has not taken over"
                    .to_string()
            }
            Ok(answer) => {
                instance = answer.instance;
                format!("HTTP {}", answer.code)
            }
            Err(e) => e,
        };
        if start.elapsed() + interval > timeout {
            return Health {
                ready: false,
                last,
                waited: start.elapsed(),
                instance,
            };
        }
        thread::sleep(interval);
    }
}

/// One GET: the status code, or why there was none.
pub fn check(url: &str, timeout: Duration) -> Health {
    match probe(url, timeout) {
        Ok(answer) => Health {
            ready: answer.code == 200,
            last: format!("HTTP {}", answer.code),
            waited: Duration::ZERO,
            instance: answer.instance,
        },
        Err(last) => Health {
            ready: false,
            last,
            waited: Duration::ZERO,
            instance: None,
        },
    }
}

/// What one probe read: the status code and the `X-Hearth-Instance` header.
struct Answer {
    code: u16,
    instance: Option<String>,
}

fn probe(url: &str, timeout: Duration) -> Result<Answer, String> {
    let (tls, authority, path) = split_url(url)?;
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
    if tls {
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let mut stream = https::connect(host, stream).map_err(|e| format!("GET {url}: {e}"))?;
        stream.write_all(request.as_bytes()).map_err(io_err)?;
        return read_head(&mut stream, url);
    }
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    read_head(&mut stream, url)
}

/// The status code and instance of the answer read from `stream`.
fn read_head(stream: &mut impl Read, url: &str) -> Result<Answer, String> {
    let io_err = |e: std::io::Error| format!("GET {url}: {e}");
    // The head fits in a small buffer; the body is not needed.
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).map_err(io_err)?;
        len += n;
        if n == 0 || buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let code = match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/") => code,
        _ => return Err(format!("GET {url}: not an HTTP answer: {status_line:?}")),
    };
    let instance = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-hearth-instance"))
        .map(|(_, value)| value.trim().to_string());
    Ok(Answer { code, instance })
}

/// `http(s)://host:port/path` into (TLS or not, `host:port`, `/path`).
fn split_url(url: &str) -> Result<(bool, String, String), String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err(format!(
                "health URL {url:?} must start with http:// or https://"
            ));
        }
    };
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
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    Ok((tls, authority, path.to_string()))
}

/// The TLS side of the probe (see the module's header on what is checked).
mod https {
    use std::net::TcpStream;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    pub fn connect(
        host: &str,
        tcp: TcpStream,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    /// Accepts the server's certificate whatever signed it; checks the signatures
    /// of the handshake with it.
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_answer(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Every probe gets the same answer.
        thread::spawn(move || {
            while let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        format!("http://{addr}/ready")
    }

    #[test]
    fn a_200_is_ready_and_a_503_is_not() {
        let url = serve_answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(check(&url, Duration::from_secs(2)).ready);
        let url = serve_answer("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let h = check(&url, Duration::from_secs(2));
        assert!(!h.ready);
        assert_eq!(h.last, "HTTP 503");
    }

    #[test]
    fn after_a_handover_only_the_new_process_counts() {
        let old = "HTTP/1.1 200 OK\r\nx-hearth-instance: aaa\r\nContent-Length: 0\r\n\r\n";
        let url = serve_answer(old);
        assert_eq!(
            check(&url, Duration::from_secs(2)).instance.as_deref(),
            Some("aaa")
        );
        // Still the old process: not ready, and it says why.
        let url = serve_answer(old);
        let h = wait_ready(
            &url,
            Duration::from_millis(300),
            Duration::from_millis(50),
            Some("aaa"),
        );
        assert!(!h.ready);
        assert!(h.last.contains("has not taken over"), "{}", h.last);
        let url = serve_answer("HTTP/1.1 200 OK\r\nX-Hearth-Instance: bbb\r\n\r\n");
        let h = wait_ready(
            &url,
            Duration::from_secs(2),
            Duration::from_millis(50),
            Some("aaa"),
        );
        assert!(h.ready, "{h:?}");
        assert_eq!(h.instance.as_deref(), Some("bbb"));
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
            None,
        );
        assert!(!h.ready);
        assert!(h.last.contains("connect"), "{}", h.last);
        assert!(h.waited >= Duration::from_millis(200), "{:?}", h.waited);
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/ready").unwrap(),
            (false, "127.0.0.1:8080".into(), "/ready".into())
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            (false, "localhost:80".into(), "/".into())
        );
        assert_eq!(
            split_url("https://127.0.0.1/ready").unwrap(),
            (true, "127.0.0.1:443".into(), "/ready".into())
        );
        assert!(split_url("ftp://x/ready").is_err());
    }

    /// One HTTPS answer, with a self-signed certificate (as a host with
    /// `[server.tls] mode = "self-signed"` has).
    fn serve_once_tls(answer: &'static str) -> String {
        use std::sync::Arc;
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(made.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            if let Ok((tcp, _)) = listener.accept() {
                let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
                let _ = s.flush();
            }
        });
        format!("https://{addr}/ready")
    }

    #[test]
    fn a_self_signed_https_service_is_probed_too() {
        let url = serve_once_tls("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let h = check(&url, Duration::from_secs(5));
        assert!(h.ready, "{}", h.last);
        // Plain HTTP to it is not an answer.
        let plain = serve_once_tls("HTTP/1.1 200 OK\r\n\r\n").replace("https://", "http://");
        assert!(!check(&plain, Duration::from_secs(2)).ready);
    }
}
