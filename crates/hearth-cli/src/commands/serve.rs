//! `hearth serve`: load config, build backends, run the HTTP server until
//! SIGTERM/SIGINT, then drain within the grace period and flush the logs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hearth_config::{Config, Env, ProcessEnv};

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
    let runtime = match hearth_server::event_loop() {
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

async fn serve(config: Config, log_dir: std::path::PathBuf) -> anyhow::Result<()> {
    crate::logging::spawn_pruner(
        log_dir,
        config.log.retention_days,
        config.log.max_total_bytes,
    );
    let server = hearth_server::Server::build(config).await?;
    let config = server.config().clone();
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.listen or --listen)",
                config.server.listen
            )
        })?;
    server.run(listener, shutdown_signal()).await?;
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
