//! How a request reaches the upstream.
//!
//! A plain `http://` upstream (vLLM, llama-server or Ollama on the same host or
//! network: the self-hosted case) is reached over hyper's HTTP/1.1 connections
//! directly, kept alive in our own per-thread pool (`pool.rs`). reqwest's layers around that same client (redirect following that
//! re-parses the URL of every request and response, a retry layer, proxy matching,
//! request builders) cost more CPU per request than all the rest of a bare relay:
//! 78 against 48 µs per request, side by side. Everything else goes through
//! reqwest: `https://` (TLS, HTTP/2 by ALPN) and any upstream while a proxy is set
//! in the environment (`HTTP_PROXY`, `ALL_PROXY`, which reqwest honours).
//!
//! Either way each thread keeps its own pool: each of the server's event loops keeps
//! its own upstream connections, so a request is never handed to a connection task
//! on another thread (and woken from there).

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use thread_local::ThreadLocal;

use hearth_router::BackendError;

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
    origin_form: Uri,
}

impl Endpoint {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let uri: Uri = s
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let origin_form = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
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

/// The status and headers of an answer, and its body still to read.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: AnswerBody,
}

pub(crate) enum AnswerBody {
    /// The body, and its connection until the body was read to the end.
    Direct(hyper::body::Incoming, Lease),
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

    /// The `Host` header requests must carry themselves (reqwest adds its own).
    pub(crate) fn host_header(&self) -> Option<HeaderValue> {
        match self {
            Transport::Direct(pool) => Some(pool.host.clone()),
            Transport::Reqwest { .. } => None,
        }
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
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, BackendError> {
        match self {
            Transport::Direct(pool) => {
                // `headers` carry `Host` (see `host_header`).
                let mut req = http::Request::new(Full::new(body));
                *req.method_mut() = method;
                *req.uri_mut() = to.origin_form.clone();
                *req.headers_mut() = headers;
                let (resp, lease) = pool.send(req).await.map_err(|e| {
                    // Whether it failed to connect or broke before the answer's
                    // headers, the request got no answer: retryable.
                    let why = match e {
                        SendError::Connect(why) => why,
                        SendError::Http(e) => error_chain(&e),
                    };
                    BackendError::Connect(format!("{}: {why}", to.url))
                })?;
                let (parts, body) = resp.into_parts();
                Ok(Answer {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body: AnswerBody::Direct(body, lease),
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
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| reqwest_error(&e))?;
                Ok(Answer {
                    status: resp.status().as_u16(),
                    headers: resp.headers().clone(),
                    body: AnswerBody::Reqwest(resp),
                })
            }
        }
    }
}

impl AnswerBody {
    /// The whole body.
    pub(crate) async fn bytes(self) -> Result<Bytes, String> {
        match self {
            AnswerBody::Direct(b, lease) => {
                let bytes = b
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .map_err(|e| error_chain(&e))?;
                lease.release();
                Ok(bytes)
            }
            AnswerBody::Reqwest(r) => r.bytes().await.map_err(|e| error_chain(&e)),
        }
    }

    /// The body as it arrives.
    pub(crate) fn into_stream(self) -> BodyStream {
        match self {
            AnswerBody::Direct(body, lease) => BodyStream::Direct(DirectStream {
                body: Some(body),
                lease: Some(lease),
            }),
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
        if let BodyStream::Direct(d) = self {
            d.finish();
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

/// A direct answer's data frames as they arrive. Its connection goes back to the
/// pool at the end of the body, or when the reader has all it wanted and only the
/// body's end is still to come (see [`DirectStream::finish`]).
pub(crate) struct DirectStream {
    body: Option<hyper::body::Incoming>,
    lease: Option<Lease>,
}

impl DirectStream {
    fn finish(mut self) {
        if let (Some(body), Some(lease)) = (self.body.take(), self.lease.take()) {
            lease.release_after(body);
        }
    }
}

impl futures::Stream for DirectStream {
    type Item = Result<Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match std::pin::Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // Dropping the lease closes the broken connection.
                    self.lease = None;
                    return Poll::Ready(Some(Err(error_chain(&e))));
                }
                Poll::Ready(None) => {
                    if let Some(lease) = self.lease.take() {
                        lease.release();
                    }
                    return Poll::Ready(None);
                }
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
    if e.is_timeout() {
        BackendError::Timeout(error_chain(e))
    } else {
        // Connect errors, and a connection reset before the response: either way the
        // request did not reach the upstream.
        BackendError::Connect(error_chain(e))
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
