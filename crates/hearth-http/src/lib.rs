//! The HTTP server that the front ends plug into: what every request gets whatever
//! its API.
//!
//! It owns the accept loop ([`serve`]: one per event loop, `TCP_NODELAY`, graceful
//! drain, caps on open connections, deadlines for a request's head and body), the [`App`] service assembled from the front ends' routes (with the hot
//! path for their completions), client authentication (a bearer key to the
//! gateway's `Principal`), request ids and the access log, CORS, body limits, the
//! OpenAI-shaped [`HttpError`], panic containment, SSE helpers, and its own routes:
//! `/health`, `/ready`, `/metrics`. The APIs themselves live in their front-end
//! crates (`hearth-openai` for `/v1`, `hearth-webui` for the chat UI's
//! `/api/hearth`), which reach the models only through `hearth_gateway::Gateway`.
//! It knows nothing of backends, the store or any one API's wire format.
//!
//! # Layout
//! - `app`: [`App`] and [`AppBuilder`]; the hot path ([`FastRoutes`]).
//! - [`serve`]: the accept loop on a bound listener until a shutdown future resolves
//!   (tests bind port 0).
//! - [`tls`]: HTTPS (`[server.tls]`): self-signed, from files (reloadable) or
//!   from an ACME CA ([`acme`]: ordered, answered with TLS-ALPN-01, renewed).
//! - [`connections`]: the caps on open connections; [`deadline`]: the body's;
//!   [`linger`]: closing gently, so an answer sent before the whole request was
//!   read (413) reaches the client.
//! - [`auth`], [`request_log`], `cors`, [`body`], [`error`], [`sse`], [`metrics`],
//!   `routes/` (health, metrics), `state` ([`HttpState`]).

pub mod acme;
mod app;
pub mod auth;
pub mod body;
pub mod connections;
mod cors;
pub mod deadline;
pub mod error;
mod host_guard;
pub mod linger;
pub mod metrics;
pub mod request_log;
mod routes;
pub mod sse;
mod state;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use app::{App, AppBuilder, FastRoutes, NoFastRoutes};
pub use error::HttpError;
pub use request_log::RequestLog;
pub use state::HttpState;
pub use tls::{Tls, TlsError};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and
/// gives in-flight requests up to `grace` to finish.
///
/// Each connection is served by hyper (HTTP/1.1, or HTTP/2 with prior knowledge)
/// on a task of the calling event loop, with `TCP_NODELAY` set, as nginx sets it
/// for kept-alive connections: an event stream's small writes go out at once.
/// With `tls`, each connection's handshake runs on its own task first, so a slow
/// client never holds up the accept loop. At the stop, idle connections close at
/// once, and one that has not sent its first request yet is given
/// [`FIRST_REQUEST_WAIT`] to send it, and is answered.
pub async fn serve<F: FastRoutes>(
    listener: TcpListener,
    app: App<F>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioExecutor;
    use hyper_util::server::conn::auto::Builder;

    let mut builder = Builder::new(TokioExecutor::new());
    // A request's head within `header_timeout_secs` of the connection's start or
    // of the previous answer's end (slow-loris; idle keep-alive connections).
    let head = Duration::from_secs(app.state.config.server.header_timeout_secs.max(1));
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(head);
    let _watched = metrics::watch_this_runtime();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // Each connection's task holds a clone; `recv` ends once all are gone.
    let (open_tx, mut open) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if !is_connection_error(&e) {
                    // Out of file descriptors, most likely: give others time to close.
                    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let slot = match app.state.connections.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                connections::refuse(stream, why, tls.is_some());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (builder, app, stop, open) =
            (builder.clone(), app.clone(), stop.clone(), open_tx.clone());
        match &tls {
            Some(tls) => {
                let acceptor = tls.acceptor().clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        // The CA's TLS-ALPN-01 check ends with its handshake.
                        Ok(Ok(s)) if tls::is_acme_challenge(s.get_ref().1) => return,
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    };
                    serve_connection(&builder, stream, app, stop).await;
                    drop((open, slot));
                });
            }
            None => {
                tokio::spawn(async move {
                    serve_connection(&builder, stream, app, stop).await;
                    drop((open, slot));
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    tokio::select! {
        _ = open.recv() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "grace period over; closing remaining connections"
            );
        }
    }
    Ok(())
}

/// How long a connection accepted just before the stop has to send its first
/// request, which is then answered. Closed unread, its request already on the way
/// would be reset: during an upgrade the socket is handed over mid-traffic.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(2);

/// Serves one connection until it ends; once `stop` is set, finishes what it has
/// (its first request, if none came yet) and closes it. A connection that ends on
/// its own is closed gently ([`linger`]).
async fn serve_connection<F, I>(
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    io: I,
    app: App<F>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    F: FastRoutes,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let first = Arc::new(FirstRequest::default());
    let marked = Marked {
        app,
        first: first.clone(),
    };
    let (io, back) = linger::Back::wrap(io);
    let result = {
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), marked);
        tokio::pin!(conn);
        let ended = tokio::select! {
            r = conn.as_mut() => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let ended = match ended {
            Some(r) => Some(r),
            None if !first.seen.load(std::sync::atomic::Ordering::Acquire) => tokio::select! {
                r = conn.as_mut() => Some(r),
                () = first.wait() => None,
                () = tokio::time::sleep(FIRST_REQUEST_WAIT) => None,
            },
            None => None,
        };
        match ended {
            Some(r) => r,
            None => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
        // hyper's connection, and with it the socket, is dropped here.
    };
    let timed_out = result.as_ref().is_err_and(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
    });
    if timed_out {
        ::metrics::counter!("hearth_connections_timed_out_total").increment(1);
    }
    if let Err(e) = result {
        tracing::trace!(error = %e, "connection ended with an error");
    }
    // A slow-loris client is cut at once; at the stop, the grace period rules.
    if let Some(io) = back.take().filter(|_| !timed_out && !*stop.borrow()) {
        linger::linger(io).await;
    }
}

/// Whether a connection has had a request yet.
#[derive(Default)]
struct FirstRequest {
    seen: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl FirstRequest {
    fn mark(&self) {
        use std::sync::atomic::Ordering;
        if !self.seen.load(Ordering::Relaxed) && !self.seen.swap(true, Ordering::AcqRel) {
            // Stores a permit if nobody waits yet: `wait` cannot miss it.
            self.notify.notify_one();
        }
    }

    async fn wait(&self) {
        if !self.seen.load(std::sync::atomic::Ordering::Acquire) {
            self.notify.notified().await;
        }
    }
}

/// The app, marking its connection's first request.
#[derive(Clone)]
struct Marked<F: FastRoutes> {
    app: App<F>,
    first: Arc<FirstRequest>,
}

impl<F: FastRoutes> hyper::service::Service<http::Request<hyper::body::Incoming>> for Marked<F> {
    type Response =
        <App<F> as hyper::service::Service<http::Request<hyper::body::Incoming>>>::Response;
    type Error = <App<F> as hyper::service::Service<http::Request<hyper::body::Incoming>>>::Error;
    type Future = <App<F> as hyper::service::Service<http::Request<hyper::body::Incoming>>>::Future;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.first.mark();
        self.app.call(req)
    }
}

/// Errors of one connection (its peer reset it while queued), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
