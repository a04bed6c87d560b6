//! How a request reaches the upstream.
//!
//! A plain `http://` upstream (vLLM, llama-server or Ollama on the same host or
//! network: the self-hosted case) is reached with hyper's pooled HTTP/1.1 client
//! directly. reqwest's layers around that same client (redirect following that
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
use http::{HeaderMap, Method, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thread_local::ThreadLocal;

use hearth_router::BackendError;

/// Idle upstream connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream host, per thread.
const POOL_MAX_IDLE: usize = 256;

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
    uri: Uri,
}

impl Endpoint {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        Ok(Endpoint {
            url: reqwest::Url::parse(s).map_err(|e| e.to_string())?,
            uri: s
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?,
        })
    }
}

type Direct = Client<HttpConnector, Full<Bytes>>;

pub(crate) enum Transport {
    Direct {
        clients: ThreadLocal<Direct>,
        connect_timeout: Duration,
    },
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
    Direct(hyper::body::Incoming),
    Reqwest(reqwest::Response),
}

impl Transport {
    pub(crate) fn new(
        base_url: &str,
        connect_timeout: Duration,
        via: Via,
    ) -> Result<Self, reqwest::Error> {
        let direct = via == Via::Auto && base_url.starts_with("http://") && !proxy_in_env();
        Ok(if direct {
            Transport::Direct {
                clients: ThreadLocal::new(),
                connect_timeout,
            }
        } else {
            Transport::Reqwest {
                clients: ThreadLocal::new(),
                first: reqwest_client(connect_timeout)?,
                connect_timeout,
            }
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
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, BackendError> {
        match self {
            Transport::Direct {
                clients,
                connect_timeout,
            } => {
                let client = clients.get_or(|| direct_client(*connect_timeout));
                let mut req = http::Request::new(Full::new(body));
                *req.method_mut() = method;
                *req.uri_mut() = to.uri.clone();
                *req.headers_mut() = headers;
                let resp = client.request(req).await.map_err(|e| {
                    BackendError::Connect(format!("{}: {}", to.url, error_chain(&e)))
                })?;
                let (parts, body) = resp.into_parts();
                Ok(Answer {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body: AnswerBody::Direct(body),
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
            AnswerBody::Direct(b) => b
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .map_err(|e| error_chain(&e)),
            AnswerBody::Reqwest(r) => r.bytes().await.map_err(|e| error_chain(&e)),
        }
    }

    /// The body as it arrives.
    pub(crate) fn into_stream(self) -> BoxStream<'static, Result<Bytes, String>> {
        match self {
            AnswerBody::Direct(b) => BodyDataStream::new(b).map_err(|e| error_chain(&e)).boxed(),
            AnswerBody::Reqwest(r) => r.bytes_stream().map_err(|e| error_chain(&e)).boxed(),
        }
    }
}

fn direct_client(connect_timeout: Duration) -> Direct {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .build(connector)
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
