//! Keep-alive HTTP/1.1 connections to one plain `http://` upstream (`h1.rs`).
//!
//! Each thread keeps its own idle connections (each of the server's event loops
//! runs on one thread), in a stack: the most recently used connection is reused
//! first, and the others age out. A connection goes back to its stack only once
//! its answer was read to the end; an answer dropped halfway (the client went away)
//! closes its connection, so the upstream stops generating.
//!
//! hyper-util's pooled client did the same with more machinery per request: a race
//! between checkout and a lazy connect, a hash map keyed by scheme and host, a
//! `Host` header built per request, a spawned task to return each connection. It
//! was a sixth of the gateway's instructions per request.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thread_local::ThreadLocal;

use crate::h1::{Conn, Error, Head};

/// Idle connections are closed after this long.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per thread.
pub(crate) const MAX_IDLE: usize = 256;

/// The connections to one upstream (`host:port`).
pub(crate) struct Pool {
    /// Where to connect, as `host:port` (resolved at each new connection).
    addr: String,
    /// The `Host` header every request carries.
    pub(crate) host: String,
    connect_timeout: Duration,
    idle: ThreadLocal<Arc<Mutex<Vec<Idle>>>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection in use, carrying an answer's body; it goes back to its thread's
/// stack once the body was read to the end.
pub(crate) struct Lease {
    conn: Conn,
    idle: Arc<Mutex<Vec<Idle>>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.conn.fmt(f)
    }
}

impl Lease {
    /// The next piece of the body; at its end the connection goes back.
    pub(crate) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        self.conn.poll_data(cx)
    }

    /// The whole body, up to `max` bytes; the connection goes back.
    pub(crate) async fn bytes(mut self, max: u64) -> Result<Bytes, Error> {
        let body = self.conn.read_to_end(max).await?;
        self.release();
        Ok(body)
    }

    /// Puts the connection back for the next request on this thread, if its body
    /// was read to the end (else it closes).
    pub(crate) fn release(self) {
        if self.conn.is_reusable() {
            self.put();
        }
    }

    /// The reader has all it wanted (an event stream's `[DONE]`): the connection
    /// goes back once the body's end is read. The end usually came with `[DONE]`;
    /// if not yet, the connection goes back with its end still to read, and the next
    /// checkout reads it (or closes the connection if it still has not come).
    pub(crate) fn finish(mut self) {
        match self.conn.try_finish() {
            Poll::Ready(true) => self.release(),
            Poll::Ready(false) => {} // dropped: closes
            Poll::Pending => self.put(),
        }
    }

    fn put(self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The oldest are at the bottom: those idle too long close here.
        let stale = idle
            .iter()
            .take_while(|c| c.since.elapsed() > IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        if idle.len() >= MAX_IDLE {
            return; // dropped: closes
        }
        idle.push(Idle {
            conn: self.conn,
            since: Instant::now(),
        });
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).finish()
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made: the upstream did not get the request.
    Connect(String),
    /// The connection broke after the request was sent, before the answer's head.
    Io(String),
    /// What came back is not HTTP/1.1.
    Protocol(String),
}

impl Pool {
    /// `uri` is any URL of the upstream (its scheme must be `http`).
    pub(crate) fn new(uri: &http::Uri, connect_timeout: Duration) -> Result<Self, String> {
        let authority = uri.authority().ok_or("the URL has no host")?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = format!("{}:{port}", authority.host());
        Ok(Pool {
            addr,
            host: authority.as_str().to_owned(),
            connect_timeout,
            idle: ThreadLocal::new(),
        })
    }

    /// Sends a request (`head` ends with its blank line) on an idle connection of
    /// this thread, or on a new one, and returns the answer's head once it arrived.
    pub(crate) async fn send(&self, head: &[u8], body: &[u8]) -> Result<(Head, Lease), SendError> {
        let idle = self.idle.get_or_default();
        loop {
            let next = {
                let mut stack = idle.lock().unwrap_or_else(|p| p.into_inner());
                stack.pop()
            };
            let Some(Idle { mut conn, since }) = next else {
                break;
            };
            if !conn.body_done() {
                // Its reader stopped at `[DONE]` before the body's end came. It has
                // usually come since; one yield lets the event loop see it if not.
                let mut end = conn.try_finish();
                if end.is_pending() {
                    tokio::task::yield_now().await;
                    end = conn.try_finish();
                }
                if end != Poll::Ready(true) {
                    continue; // dropped: closes
                }
            }
            if since.elapsed() > IDLE_TIMEOUT || !conn.is_reusable() {
                continue; // dropped: closes
            }
            match conn.request(head, body).await {
                Ok(answer) => {
                    let lease = Lease {
                        conn,
                        idle: idle.clone(),
                    };
                    return Ok((answer, lease));
                }
                // Reset by the upstream before the request's first byte (it closed
                // the idle connection as it was picked): the request provably did
                // not get there; the next connection, or a new one, carries it. A
                // request that left and got no answer is not sent again here: the
                // upstream may be running it (the router decides, by config).
                Err(Error::NotSent(why)) => {
                    tracing::debug!(upstream = %self.addr, %why, "a kept-alive connection was closed as it was reused; sending again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut conn = self.connect().await?;
        let answer = conn.request(head, body).await?;
        Ok((
            answer,
            Lease {
                conn,
                idle: idle.clone(),
            },
        ))
    }

    async fn connect(&self) -> Result<Conn, SendError> {
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
        Ok(Conn::new(stream))
    }
}

impl From<Error> for SendError {
    fn from(e: Error) -> Self {
        match e {
            // On a new connection (the pool retries it on a kept-alive one), a request
            // the upstream refused before its first byte was still never sent.
            Error::NotSent(why) => SendError::Connect(why),
            Error::NoAnswer(why) | Error::Io(why) => SendError::Io(why),
            Error::Protocol(why) => SendError::Protocol(why),
            // No body is read whole while sending.
            Error::TooLarge(max) => SendError::Protocol(format!("an answer over {max} bytes")),
        }
    }
}
