//! `hearth serve`: load config, build backends, run the HTTP server until
//! SIGTERM/SIGINT, then drain within the grace period and flush the logs.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hearth_config::{Config, Env, ModelBackend, ModelConfig, ProcessEnv};
use hearth_router::{Backend, Router};

use crate::cli::ServeArgs;
use crate::output;

/// The process environment, with `--listen` laid over it as `HEARTH_SERVER_LISTEN`
/// so the flag goes through the same validation as the file.
struct ArgsEnv {
    listen: Option<String>,
}

impl Env for ArgsEnv {
    fn get(&self, name: &str) -> Option<String> {
        match (&self.listen, name) {
            (Some(l), "HEARTH_SERVER_LISTEN") => Some(l.clone()),
            _ => ProcessEnv.get(name),
        }
    }

    fn hearth_vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = ProcessEnv
            .hearth_vars()
            .into_iter()
            .filter(|(k, _)| !(self.listen.is_some() && k == "HEARTH_SERVER_LISTEN"))
            .collect();
        if let Some(l) = &self.listen {
            v.push(("HEARTH_SERVER_LISTEN".to_owned(), l.clone()));
        }
        v
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    let env = ArgsEnv {
        listen: args.listen.clone(),
    };
    let config = match hearth_config::load(args.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            for d in &e.diagnostics {
                output::err(format!("error: {d}"));
            }
            output::err("hint: `hearth config check` validates a config without starting");
            return ExitCode::from(2);
        }
    };
    let logging = match crate::logging::init(&config, &env) {
        Ok(l) => l,
        Err(e) => {
            output::err(format!("error: {e:#}"));
            return ExitCode::from(2);
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match event_loop() {
        Ok(r) => r,
        Err(e) => {
            output::err(format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config, logging.dir.clone()));
    // Let background writers finish before the logs are flushed.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => {
            drop(logging);
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "hearth serve failed");
            drop(logging);
            output::err(format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// One event loop: a single-threaded tokio runtime. `hearth serve` runs one per
/// worker thread, each accepting from the same listening socket and keeping its own
/// upstream connections, as nginx runs one event loop per worker process: a request
/// is read, relayed and answered on one thread, with no hand-offs (and wake-ups)
/// between threads. The main thread's loop also runs the background tasks (health
/// probes, log pruning, signals).
fn event_loop() -> std::io::Result<tokio::runtime::Runtime> {
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

/// Builds the backend of one configured model.
pub fn backend(m: &ModelConfig, env: &dyn Env) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match &m.backend {
        ModelBackend::Upstream(u) => {
            let key = u.api_key_env.as_ref().and_then(|v| env.get(v));
            Arc::new(hearth_upstream::UpstreamBackend::new(m, key)?)
        }
        ModelBackend::Embedded(_) => {
            let engine = hearth_engine::EmbeddedBackend::start(m)
                .with_context(|| format!("model `{}`", m.name))?;
            engine as Arc<dyn Backend>
        }
    })
}

async fn serve(config: Config, log_dir: std::path::PathBuf) -> anyhow::Result<()> {
    crate::logging::spawn_pruner(
        log_dir,
        config.log.retention_days,
        config.log.max_total_bytes,
    );
    let config = Arc::new(config);
    let backends = config
        .models
        .iter()
        .map(|m| backend(m, &ProcessEnv).map(|b| (m.clone(), b)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let router = Arc::new(Router::new(
        backends,
        config.default_model.as_deref(),
        config.health.clone(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut probe_stop = stop_rx.clone();
    tokio::spawn(router.clone().run_health_probes(async move {
        let _ = probe_stop.wait_for(|s| *s).await;
    }));

    let store = hearth_store::Store::open(&config.storage.data_dir)
        .await
        .with_context(|| {
            format!(
                "cannot open the conversation store in {} (storage.data_dir)",
                config.storage.data_dir.display()
            )
        })?;
    let api = hearth_http::conversations::routes_with_limits(
        router.clone(),
        Arc::new(store),
        hearth_http::conversations::ApiLimits::from(&config.limits),
    );
    let state = hearth_http::AppState::new(config.clone(), router.clone());
    let app = hearth_http::app(state, api, hearth_http::ui::routes());
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.listen or --listen)",
                config.server.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let workers = worker_count(config.server.workers);
    let models: Vec<String> = router
        .iter()
        .map(|m| format!("{} ({})", m.config.name, m.backend.kind()))
        .collect();
    tracing::info!(
        listen = %addr,
        models = %models.join(", "),
        keys = config.resolved_keys.len(),
        workers,
        version = env!("CARGO_PKG_VERSION"),
        "hearth is serving: chat UI at http://{addr}/ , API at http://{addr}/v1"
    );
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);

    // The other event loops accept from clones of the same socket (one accept queue:
    // a busy loop leaves new connections to an idle one).
    let listener = listener.into_std()?;
    let mut threads = Vec::new();
    for i in 1..workers {
        let listener = listener
            .try_clone()
            .context("cannot share the listening socket with another worker")?;
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hearth-http-{i}"))
            .spawn(move || -> std::io::Result<()> {
                let rt = event_loop().inspect_err(|e| {
                    tracing::error!(worker = i, error = %e, "cannot start an HTTP event loop");
                })?;
                let served = rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    // Ends when the main loop says stop, or if it is gone.
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    hearth_http::serve(listener, app, stopped, grace).await
                });
                rt.shutdown_timeout(Duration::from_secs(2));
                if let Err(e) = &served {
                    tracing::error!(worker = i, error = %e, "an HTTP event loop stopped");
                }
                served
            })
            .context("cannot start an HTTP worker thread")?;
        threads.push(thread);
    }
    let served = hearth_http::serve(
        tokio::net::TcpListener::from_std(listener)?,
        app,
        async move {
            shutdown_signal().await;
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
                Ok(r) => r.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow::anyhow!("an HTTP worker thread panicked")),
            })
            .collect::<anyhow::Result<Vec<()>>>()
    })
    .await
    .context("waiting for the HTTP workers")?;
    served?;
    joined?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
