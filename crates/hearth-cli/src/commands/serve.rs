//! `hearth serve`: load config, build backends, run the HTTP server until
//! SIGTERM/SIGINT, then drain within the grace period and flush the logs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hearth_config::{Config, Env, ProcessEnv};
use hearth_server::handover::{self, Inherited, UpgradeSignal};
use std::os::fd::AsFd;

use crate::banner::Banner;
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
    // First, while this is the only thread: it takes LISTEN_FDS out of the environment.
    let inherited = match hearth_server::handover::take_inherited() {
        Ok(i) => i,
        Err(e) => {
            output::err(format!(
                "error: cannot take the inherited listening socket: {e}"
            ));
            return ExitCode::from(2);
        }
    };
    let env = ArgsEnv {
        listen: args.listen.clone(),
    };
    let (config, logging) = match start(args.config.as_deref(), &env) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let runtime = match hearth_server::event_loop() {
        Ok(r) => r,
        Err(e) => {
            output::err(format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let shown = Shown {
        config: args
            .config
            .clone()
            .or_else(|| Some(PathBuf::from("hearth.toml")).filter(|p| p.exists())),
        log_dir: logging.dir.clone(),
        banner: logging.text,
    };
    let result = runtime.block_on(serve(config, shown, inherited));
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

/// Loads the config (printing its diagnostics, exit 2) and starts the logs (the
/// config's warnings go there): the start of `hearth serve` and `hearth worker`.
pub(crate) fn start(
    file: Option<&std::path::Path>,
    env: &dyn Env,
) -> Result<(Config, crate::logging::Logging), ExitCode> {
    let config = match hearth_config::load(file, env) {
        Ok(c) => c,
        Err(e) => {
            for d in &e.diagnostics {
                output::err(format!("error: {d}"));
            }
            output::err("hint: `hearth config check` validates a config without starting");
            return Err(ExitCode::from(2));
        }
    };
    let logging = match crate::logging::init(&config, env) {
        Ok(l) => l,
        Err(e) => {
            output::err(format!("error: {e:#}"));
            return Err(ExitCode::from(2));
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok((config, logging))
}

/// What the banner shows that the config does not say.
struct Shown {
    /// The config file read (`--config`, or `./hearth.toml` when it exists).
    config: Option<PathBuf>,
    log_dir: PathBuf,
    /// Print the banner: stdout is for a person (text logs).
    banner: bool,
}

async fn serve(config: Config, shown: Shown, inherited: Inherited) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let upgrades = UpgradeSignal::install().context("cannot watch SIGUSR2 (upgrades)")?;
    let engines = config
        .models
        .iter()
        .filter(|m| m.upstream_config().is_some_and(|u| u.launch.is_some()))
        .map(|m| m.name.clone())
        .collect();
    crate::logging::spawn_pruner(
        shown.log_dir.clone(),
        engines,
        config.log.retention_days,
        config.log.max_total_bytes,
    );
    let mut builder = hearth_server::Server::builder(config);
    if let Some(from) = &inherited.from {
        tracing::info!(
            pid = from.pid(),
            "taking over from the running Hearth: its socket, once the models here are loaded"
        );
        builder = builder.hold_engines(from.gone());
    }
    let server = builder.build().await?;
    let config = server.config().clone();
    let listener = match inherited.listener {
        Some(l) => {
            let addr = l
                .local_addr()
                .context("cannot read the inherited socket's address")?;
            if config.server.listen.parse() != Ok(addr) {
                tracing::warn!(
                    listen = %config.server.listen,
                    inherited = %addr,
                    "serving on the inherited socket, not server.listen: restart (not reload) to move"
                );
            }
            l.set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
                .context("cannot serve on the inherited socket")?
        }
        None => tokio::net::TcpListener::bind(&config.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.listen or --listen)",
                    config.server.listen
                )
            })?,
    };
    if shown.banner {
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        let banner = Banner {
            version: env!("CARGO_PKG_VERSION"),
            addr,
            // As known now: an embedded model is still loading, and its own log
            // line says when it is ready.
            models: server
                .router()
                .iter()
                .map(|m| (m.config.name.clone(), m.backend.kind(), m.status().as_str()))
                .collect(),
            config: shown.config.as_deref(),
            data_dir: &config.storage.data_dir,
            log_dir: &shown.log_dir,
            keys: config.resolved_keys.len(),
            tls: server.tls().is_some(),
        };
        for line in banner.lines() {
            output::line(line);
        }
    }
    match inherited.from {
        // Not accepting yet: the old process serves until this one is ready.
        Some(from) => {
            handover::wait_models(server.router())
                .await
                .map_err(|e| anyhow::anyhow!("not taking over from the running Hearth: {e}"))?;
            from.ready()
                .context("cannot tell the running Hearth that this one is ready")?;
            tracing::info!("took over the listening socket");
        }
        None => handover::notify_systemd("READY=1"),
    }
    let socket = listener
        .as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpListener::from)
        .context("cannot keep the listening socket for upgrades")?;
    let timeout = Duration::from_secs(config.server.upgrade_timeout_secs);
    let handed_over = server.handed_over().clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            pid = handover::serve_upgrades(upgrades, socket, timeout) => {
                handed_over.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(pid, "handed over to the new Hearth");
            }
        }
    };
    server.run(listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called,
/// not when the future is first polled: a signal sent as soon as "hearth is
/// serving" is read must stop the server, not kill it.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
