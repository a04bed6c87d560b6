//! The HTTP server that the front ends plug into: what every request gets whatever
//! its API.
//!
//! It owns the accept loop ([`serve`]: one per event loop, `TCP_NODELAY`, graceful
//! drain), the [`App`] service assembled from the front ends' routes (with the hot
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
//! - [`auth`], [`request_log`], `cors`, [`body`], [`error`], [`sse`], [`metrics`],
//!   `routes/` (health, metrics), `state` ([`HttpState`]).

pub mod acme;
mod app;
pub mod auth;
pub mod body;
mod cors;
pub mod error;
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
/// client never holds up the accept loop.
pub async fn serve<F: FastRoutes>(
    listener: TcpListener,
    app: App<F>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;

    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !is_connection_error(&e) {
                    // Out of file descriptors, most likely: give others time to close.
                    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Some(tls) = &tls {
            let acceptor = tls.acceptor().clone();
            let (builder, app, watcher) = (builder.clone(), app.clone(), graceful.watcher());
            tokio::spawn(async move {
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
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
                let conn = builder
                    .serve_connection(TokioIo::new(stream), app)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
            });
            continue;
        }
        let conn = builder
            .serve_connection(TokioIo::new(stream), app.clone())
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "grace period over; closing remaining connections"
            );
        }
    }
    Ok(())
}

/// Errors of one connection (its peer reset it while queued), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
