//! How a request reaches the upstream.
//!
//! A plain `http://` upstream (vLLM, llama-server or Ollama on the same host or
//! network: the self-hosted case) is reached over our own HTTP/1.1 connections
//! (`h1.rs`), kept alive in a per-thread pool (`pool.rs`), written and read by the
//! request's own task. reqwest's layers around hyper's client (redirect following
//! that re-parses the URL of every request and response, a retry layer, proxy
//! matching, request builders) cost more CPU per request than all the rest of a
//! bare relay: 78 against 48 µs per request, side by side; hyper's connection task
//! itself was another quarter of what is left. Everything else goes through
//! reqwest: `https://` (TLS, HTTP/2 by ALPN) and any upstream while a proxy is set
//! in the environment (`HTTP_PROXY`, `ALL_PROXY`, which reqwest honours).
//!
//! Either way each thread keeps its own pool: each of the server's event loops keeps
//! its own upstream connections.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method, Uri, header};
use thread_local::ThreadLocal;

use hearth_router::BackendError;

use crate::h1::Head;
use crate::pool::{IDLE_TIMEOUT as POOL_IDLE, Lease, MAX_IDLE as POOL_MAX_IDLE, Pool, SendError};

/// Which client carries the requests; `Auto` picks by URL and environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Auto,
    /// reqwest whatever the URL (what `Auto` picks for `https://` or with a proxy).
    Reqwest,
}

/// One upstream URL, parsed once for either client.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    url: reqwest::Url,
    /// The path and query, as an HTTP/1.1 request line carries them.
    origin_form: String,
}

impl Endpoint {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let uri: Uri = s
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let origin_form = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_owned();
        Ok(Endpoint {
            url: reqwest::Url::parse(s).map_err(|e| e.to_string())?,
            origin_form,
        })
    }
}

pub(crate) enum Transport {
    Direct(Pool),
    Reqwest {
        clients: ThreadLocal<reqwest::Client>,
        /// Built at start, so a bad setting fails there; should a later build fail,
        /// the thread shares this pool.
        first: reqwest::Client,
        connect_timeout: Duration,
    },
}

/// What the gateway reads of an answer's head, and its body still to read.
pub(crate) struct Answer {
    pub head: Head,
    pub body: AnswerBody,
}

pub(crate) enum AnswerBody {
    /// The body, on its connection.
    Direct(Lease),
    Reqwest(reqwest::Response),
}

impl Transport {
    pub(crate) fn new(
        base_url: &str,
        connect_timeout: Duration,
        via: Via,
    ) -> Result<Self, reqwest::Error> {
        let direct = via == Via::Auto && base_url.starts_with("http://") && !proxy_in_env();
        let pool = direct
            .then(|| base_url.parse::<Uri>().ok())
            .flatten()
            .and_then(|u| Pool::new(&u, connect_timeout).ok());
        Ok(match pool {
            Some(pool) => Transport::Direct(pool),
            None => Transport::Reqwest {
                clients: ThreadLocal::new(),
                first: reqwest_client(connect_timeout)?,
                connect_timeout,
            },
        })
    }

    /// `direct` or `reqwest`, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Transport::Direct { .. } => "direct",
            Transport::Reqwest { .. } => "reqwest",
        }
    }

    /// Sends one request and returns once the answer's headers arrived.
    pub(crate) async fn send(
        &self,
        method: Method,
        to: &Endpoint,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, BackendError> {
        match self {
            Transport::Direct(pool) => {
                let head = request_head(&method, &to.origin_form, &pool.host, headers, &body);
                let (head, lease) = pool.send(&head, &body).await.map_err(|e| match e {
                    SendError::Connect(why) => BackendError::Connect(format!("{}: {why}", to.url)),
                    // Sent, unanswered: the upstream may be running it.
                    SendError::Io(why) => BackendError::Unanswered(format!("{}: {why}", to.url)),
                    SendError::Protocol(why) => {
                        BackendError::Protocol(format!("{}: {why}", to.url))
                    }
                })?;
                Ok(Answer {
                    head,
                    body: AnswerBody::Direct(lease),
                })
            }
            Transport::Reqwest {
                clients,
                first,
                connect_timeout,
            } => {
                let client = clients
                    .get_or(|| reqwest_client(*connect_timeout).unwrap_or_else(|_| first.clone()));
                let resp = client
                    .request(method, to.url.clone())
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| reqwest_error(&e))?;
                let h = resp.headers();
                let head = Head {
                    status: resp.status().as_u16(),
                    event_stream: h
                        .get(header::CONTENT_TYPE)
                        .is_some_and(|v| crate::h1::is_event_stream(v.as_bytes())),
                    retry_after: h
                        .get(header::RETRY_AFTER)
                        .and_then(|v| crate::h1::retry_after(v.as_bytes())),
                };
                Ok(Answer {
                    head,
                    body: AnswerBody::Reqwest(resp),
                })
            }
        }
    }
}

/// An HTTP/1.1 request head: the request line, `Host`, `headers`, the body's length.
fn request_head(
    method: &Method,
    origin_form: &str,
    host: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(origin_form.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == Method::POST {
        head.extend_from_slice(b"content-length: ");
        push_decimal(&mut head, body.len());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is longer than the limit (in bytes) it was read under.
    TooLarge(u64),
    /// The connection broke, or the body's framing is wrong.
    Broken(String),
}

impl AnswerBody {
    /// The whole body, if it is no longer than `max` bytes. Past that the reading
    /// stops and the connection closes: an endless body costs `max`, not all memory.
    pub(crate) async fn bytes(self, max: u64) -> Result<Bytes, BodyError> {
        match self {
            AnswerBody::Direct(lease) => lease.bytes(max).await.map_err(|e| match e {
                crate::h1::Error::TooLarge(max) => BodyError::TooLarge(max),
                e => BodyError::Broken(e.to_string()),
            }),
            AnswerBody::Reqwest(mut r) => {
                if r.content_length().is_some_and(|n| n > max) {
                    return Err(BodyError::TooLarge(max));
                }
                let mut first: Option<Bytes> = None;
                let mut more = bytes::BytesMut::new();
                let mut read = 0u64;
                while let Some(piece) = r
                    .chunk()
                    .await
                    .map_err(|e| BodyError::Broken(error_chain(&e)))?
                {
                    read += piece.len() as u64;
                    if read > max {
                        return Err(BodyError::TooLarge(max));
                    }
                    match &first {
                        None => first = Some(piece),
                        Some(f) => {
                            if more.is_empty() {
                                more.extend_from_slice(f);
                            }
                            more.extend_from_slice(&piece);
                        }
                    }
                }
                Ok(if more.is_empty() {
                    first.unwrap_or_default()
                } else {
                    more.freeze()
                })
            }
        }
    }

    /// The body as it arrives.
    pub(crate) fn into_stream(self) -> BodyStream {
        match self {
            AnswerBody::Direct(lease) => BodyStream::Direct(DirectStream { lease: Some(lease) }),
            AnswerBody::Reqwest(r) => {
                BodyStream::Reqwest(r.bytes_stream().map_err(|e| error_chain(&e)).boxed())
            }
        }
    }
}

/// An answer's body as it arrives.
pub(crate) enum BodyStream {
    Direct(DirectStream),
    Reqwest(BoxStream<'static, Result<Bytes, String>>),
}

impl BodyStream {
    /// The reader has all it wanted (an event stream's `[DONE]`): the connection
    /// may serve the next request once the body's end is read.
    pub(crate) fn finish(self) {
        if let BodyStream::Direct(DirectStream { lease: Some(lease) }) = self {
            lease.finish();
        }
    }
}

impl futures::Stream for BodyStream {
    type Item = Result<Bytes, String>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.get_mut() {
            BodyStream::Direct(d) => d.poll_next_unpin(cx),
            BodyStream::Reqwest(r) => r.poll_next_unpin(cx),
        }
    }
}

/// A direct answer's body as it arrives. Its connection goes back to the pool at
/// the end of the body, or when the reader has all it wanted and only the body's
/// end is still to come (see [`BodyStream::finish`]); dropped halfway, it closes.
pub(crate) struct DirectStream {
    lease: Option<Lease>,
}

impl futures::Stream for DirectStream {
    type Item = Result<Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let Some(lease) = self.lease.as_mut() else {
            return Poll::Ready(None);
        };
        match lease.poll_data(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(data))),
            Poll::Ready(Some(Err(e))) => {
                // Dropping the lease closes the broken connection.
                self.lease = None;
                Poll::Ready(Some(Err(e.to_string())))
            }
            Poll::Ready(None) => {
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
                Poll::Ready(None)
            }
        }
    }
}

fn reqwest_client(connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .tcp_nodelay(true)
        .build()
}

/// A proxy reqwest would use for some upstream: then reqwest carries them all.
fn proxy_in_env() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

fn reqwest_error(e: &reqwest::Error) -> BackendError {
    if e.is_connect() {
        // No connection (connect timeouts included): the request never left.
        BackendError::Connect(error_chain(e))
    } else if e.is_timeout() {
        BackendError::Timeout(error_chain(e))
    } else {
        // The connection broke once the request was (perhaps partly) sent.
        BackendError::Unanswered(error_chain(e))
    }
}

/// An error with its causes ("error sending request: connection refused"), as the
/// top-level message alone often says too little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}
