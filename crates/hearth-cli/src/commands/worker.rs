//! `hearth worker`: only the job workers, no HTTP API. Beside API-only replicas
//! (`[jobs] concurrency = 0`) on a shared database, or as extra job capacity on
//! one machine (SQLite is shared by processes). Stops on SIGTERM/SIGINT: a job
//! mid-step is taken by another worker when its lease runs out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hearth_config::ProcessEnv;

use crate::output;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Config file (the same one the servers use); default ./hearth.toml when it
    /// exists, else built-in defaults.
    #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: WorkerArgs) -> ExitCode {
    let (config, logging) = match super::serve::start(args.config.as_deref(), &ProcessEnv) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            output::err(format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let worker = hearth_server::Server::builder(config)
            .build_worker()
            .await?;
        worker.run(super::serve::shutdown_signal()).await;
        Ok::<(), hearth_server::BuildError>(())
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => {
            drop(logging);
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "hearth worker failed");
            drop(logging);
            output::err(format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
