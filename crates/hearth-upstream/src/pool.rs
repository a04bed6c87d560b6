//! Keep-alive HTTP/1.1 connections to one plain `http://` upstream, on hyper's
//! connection API.
//!
//! Each thread keeps its own idle connections (each of the server's event loops
//! runs on one thread, so a request never wakes a connection task on another), in a
//! stack: the most recently used connection is reused first, and the others age
//! out. A connection goes back to its stack only once its answer was read to the
//! end; an answer dropped halfway (the client went away) closes its connection, so
//! the upstream stops generating.
//!
//! hyper-util's pooled client did the same with more machinery per request: a race
//! between checkout and a lazy connect, a hash map keyed by scheme and host, a
//! `Host` header built per request, a spawned task to return each connection. It
//! was a sixth of the gateway's instructions per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;

/// Idle connections are closed after this long.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per thread.
pub(crate) const MAX_IDLE: usize = 256;

type Sender = SendRequest<Full<Bytes>>;

/// The connections to one upstream (`host:port`).
pub(crate) struct Pool {
    /// Where to connect, as `host:port` (resolved at each new connection).
    addr: String,
    /// The `Host` header every request carries.
    pub(crate) host: HeaderValue,
    connect_timeout: Duration,
    idle: ThreadLocal<Arc<Mutex<Vec<Idle>>>>,
}

struct Idle {
    tx: Sender,
    since: Instant,
    /// The end of the last answer's body, when the reader stopped before reading
    /// it (an event stream's `[DONE]`): the connection is reused only if it has
    /// ended by then.
    tail: Option<Incoming>,
}

/// A connection in use; [`Lease::release`] returns it once its answer was read.
pub(crate) struct Lease {
    tx: Sender,
    idle: Arc<Mutex<Vec<Idle>>>,
}

impl Lease {
    /// Puts the connection back for the next request on this thread.
    pub(crate) fn release(self) {
        self.put(None);
    }

    /// Puts the connection back once `body`, whose reader has all it wanted, has
    /// ended. Its end normally follows within a turn of the connection's task
    /// (polled here, so that task reads it); the next checkout checks.
    pub(crate) fn release_after(self, mut body: Incoming) {
        use hyper::body::Body as _;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            std::task::Poll::Ready(None) => self.put(None),
            std::task::Poll::Pending => self.put(Some(body)),
            // More data after the end (or an error): not reusable.
            std::task::Poll::Ready(Some(_)) => {}
        }
    }

    fn put(self, tail: Option<Incoming>) {
        if self.tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= MAX_IDLE {
            idle.retain(|c| !c.tx.is_closed());
            if idle.len() >= MAX_IDLE {
                return; // dropped: closes
            }
        }
        idle.push(Idle {
            tx: self.tx,
            since: Instant::now(),
            tail,
        });
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).finish()
    }
}

/// Why a request got no answer; every case means the upstream did not process it,
/// or the connection broke before its answer's headers.
#[derive(Debug)]
pub(crate) enum SendError {
    Connect(String),
    Http(hyper::Error),
}

impl Pool {
    /// `uri` is any URL of the upstream (its scheme must be `http`).
    pub(crate) fn new(uri: &http::Uri, connect_timeout: Duration) -> Result<Self, String> {
        let authority = uri.authority().ok_or("the URL has no host")?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = format!("{}:{port}", authority.host());
        Ok(Pool {
            addr,
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            connect_timeout,
            idle: ThreadLocal::new(),
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection of this thread,
    /// or on a new one, and returns the answer's head once it arrived.
    pub(crate) async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let idle = self.idle.get_or_default();
        loop {
            let next = {
                let mut stack = idle.lock().unwrap_or_else(|p| p.into_inner());
                stack.pop()
            };
            let Some(Idle {
                mut tx,
                since,
                tail,
            }) = next
            else {
                break;
            };
            if tx.is_closed() || since.elapsed() > IDLE_TIMEOUT {
                continue; // dropped: closes
            }
            if let Some(mut tail) = tail {
                // Asked for when the reader stopped; the connection's task reads it
                // at its next turn, which may not have come yet: one yield lets it.
                if !ended(&mut tail) {
                    tokio::task::yield_now().await;
                    if !ended(&mut tail) {
                        continue; // dropped: closes
                    }
                }
            }
            // An idle connection whose task has not run since its last answer ended
            // becomes ready at once; a closed one fails here.
            if tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        tx,
                        idle: idle.clone(),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent (the upstream closed the connection meanwhile): the
                    // next connection, or a new one, gets it.
                    Some(back) => req = back,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let mut tx = self.connect().await?;
        let resp = tx.send_request(req).await.map_err(SendError::Http)?;
        Ok((
            resp,
            Lease {
                tx,
                idle: idle.clone(),
            },
        ))
    }

    async fn connect(&self) -> Result<Sender, SendError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.addr),
        )
        .await
        .map_err(|_| {
            SendError::Connect(format!(
                "connecting to {} timed out after {:?}",
                self.addr, self.connect_timeout
            ))
        })?
        .map_err(|e| SendError::Connect(format!("cannot connect to {}: {e}", self.addr)))?;
        let _ = stream.set_nodelay(true);
        let (tx, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}

/// Whether the unread end of the last answer on a connection has come.
fn ended(body: &mut Incoming) -> bool {
    use hyper::body::Body as _;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(
        std::pin::Pin::new(body).poll_frame(&mut cx),
        std::task::Poll::Ready(None)
    )
}
