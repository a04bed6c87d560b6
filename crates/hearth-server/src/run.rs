//! [`Server::run`]: the event loops, the health probes, and the drain.
//!
//! One event loop is a single-threaded tokio runtime. The server runs one per
//! worker (`server.workers`, default one per core), each accepting from the same
//! listening socket and keeping its own upstream connections, as nginx runs one
//! event loop per worker process: a request is read, relayed and answered on one
//! thread, with no hand-offs (and wake-ups) between threads. The caller's loop is
//! the first of them and also runs the health probes.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::Server;

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot share the listening socket with another worker: {0}")]
    Listener(std::io::Error),
    #[error("cannot start an HTTP worker thread: {0}")]
    Spawn(std::io::Error),
    #[error("an HTTP event loop stopped: {0}")]
    Serve(std::io::Error),
    #[error("an HTTP worker thread panicked")]
    Panicked,
}

impl Server {
    /// Serves on `listener` until `shutdown` resolves, then stops accepting, gives
    /// in-flight requests `server.shutdown_grace_secs` to finish on every loop, and
    /// returns. Call it from a tokio runtime; with `server.workers` above 1 the other
    /// loops run on threads of their own.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let grace = Duration::from_secs(self.config.server.shutdown_grace_secs);
        let workers = worker_count(self.config.server.workers);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut probe_stop = stop_rx.clone();
        tokio::spawn(self.router().clone().run_health_probes(async move {
            let _ = probe_stop.wait_for(|s| *s).await;
        }));

        let addr = listener.local_addr().map_err(RunError::Listener)?;
        // The other event loops accept from clones of the same socket (one accept
        // queue: a busy loop leaves new connections to an idle one).
        let listener = listener.into_std().map_err(RunError::Listener)?;
        let mut threads = Vec::new();
        // Each loop says when it accepts (or that it could not start).
        let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
        for i in 1..workers {
            let listener = listener.try_clone().map_err(RunError::Listener)?;
            let app = self.app.clone();
            let tls = self.tls.clone();
            let mut stop = stop_rx.clone();
            let up = up_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("hearth-http-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let rt = event_loop().inspect_err(|e| {
                        tracing::error!(worker = i, error = %e, "cannot start an HTTP event loop");
                    })?;
                    let served = rt.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        // Sent, then dropped: the first loop counts the loops up until
                        // every sender is gone.
                        let _ = up.send(());
                        drop(up);
                        // Ends when the first loop says stop, or if it is gone.
                        let stopped = async move {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        hearth_http::serve(listener, app, tls, stopped, grace).await
                    });
                    rt.shutdown_timeout(Duration::from_secs(2));
                    if let Err(e) = &served {
                        tracing::error!(worker = i, error = %e, "an HTTP event loop stopped");
                    }
                    served
                })
                .map_err(RunError::Spawn)?;
            threads.push(thread);
        }
        // Said once every loop is up, so whoever waits for this line finds them all.
        drop(up_tx);
        let up = tokio::task::spawn_blocking(move || up_rx.iter().count())
            .await
            .unwrap_or(0);
        if up + 1 < workers {
            tracing::warn!(
                up = up + 1,
                workers,
                "some HTTP event loops did not start; serving with the others"
            );
        }
        let models: Vec<String> = self
            .router()
            .iter()
            .map(|m| format!("{} ({})", m.config.name, m.backend.kind()))
            .collect();
        let base = base_url(addr, self.tls.is_some());
        tracing::info!(
            listen = %addr,
            ui_url = format!("{base}/"),
            api_url = format!("{base}/v1"),
            models = %models.join(", "),
            keys = self.config.resolved_keys.len(),
            workers,
            version = env!("CARGO_PKG_VERSION"),
            "hearth is serving: chat UI at {base}/ , API at {base}/v1"
        );
        if let Some(tls) = self.tls.clone() {
            tokio::spawn(reload_on_sighup(tls));
        }
        let status = self.config.server.status_file.clone().map(|path| {
            let mut stop = stop_rx.clone();
            tokio::spawn(crate::status::keep_written(
                path,
                self.config.clone(),
                self.router().clone(),
                addr,
                self.tls.clone(),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
                self.handed_over.clone(),
            ))
        });
        let closing = self.closing.clone();
        let served = hearth_http::serve(
            TcpListener::from_std(listener).map_err(RunError::Listener)?,
            self.app.clone(),
            self.tls.clone(),
            async move {
                shutdown.await;
                // The jobs' event streams end now (a client reconnects, or polls):
                // they would otherwise hold the drain until the grace runs out.
                closing.cancel();
                tracing::info!(
                    grace_secs = grace.as_secs(),
                    "shutting down: no new connections, finishing in-flight requests"
                );
                let _ = stop_tx.send(true);
            },
            grace,
        )
        .await;
        // The other loops follow this one down (`stop_tx` is sent or dropped by now).
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| match t.join() {
                    Ok(r) => r.map_err(RunError::Serve),
                    Err(_) => Err(RunError::Panicked),
                })
                .collect::<Result<Vec<()>, RunError>>()
        })
        .await
        .map_err(|_| RunError::Panicked)?;
        // Every loop has drained: replies still unfinished are cut, and say so.
        // The job workers stop next (a job mid-step resumes at the next start), then
        // the store they write to closes.
        self.jobs.shutdown().await;
        // The keys' token counts still on their way to the store land first.
        self.gateway.flush(Duration::from_secs(5)).await;
        self.store.close().await;
        // The model servers go last: nothing routes to them any more.
        self.engines.stop().await;
        if let Some(status) = status {
            // It says "stopped" once the stop is sent (by now).
            let _ = tokio::time::timeout(Duration::from_secs(2), status).await;
        }
        served.map_err(RunError::Serve)?;
        joined?;
        Ok(())
    }
}

/// `http://host:port` (`https://` with `tls`) of a server listening on `addr`, as a
/// browser on this machine reaches it: a wildcard bind (`0.0.0.0`, `[::]`) is
/// reached at loopback.
pub fn base_url(addr: std::net::SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    // SocketAddr's Display brackets an IPv6 address.
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Reads the TLS certificate and key again at each SIGHUP (a renewed certificate
/// is served from the next handshake on; a bad one is refused and the old kept).
async fn reload_on_sighup(tls: std::sync::Arc<hearth_http::Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: the TLS certificate is read at start only");
        return;
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!(cert = %tls.cert_path().display(), "TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; still serving the previous one")
            }
        }
    }
}

/// One event loop: a single-threaded tokio runtime.
pub fn event_loop() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// How many HTTP event loops to run: `server.workers`, or one per CPU core this
/// process may use (cgroup quotas included).
fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    }
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn wildcard_binds_are_reached_at_loopback() {
        let url = |a: &str| base_url(a.parse().unwrap(), false);
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("[::]:80"), "http://[::1]:80");
        assert_eq!(url("192.168.1.5:8080"), "http://192.168.1.5:8080");
        assert_eq!(
            base_url("0.0.0.0:443".parse().unwrap(), true),
            "https://127.0.0.1:443"
        );
    }
}
