//! Command-line arguments (clap derive). Doc comments become `--help`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{
    backup::BackupArgs, chat::ChatArgs, db::DbArgs, deploy::DeployArgs, doctor::DoctorArgs,
    history::HistoryArgs, jobs::JobsArgs, keys::KeysArgs, models::ModelsArgs, sandbox::SandboxArgs,
    status::StatusArgs, worker::WorkerArgs,
};

const EXAMPLES: &str = "\
Examples:
  hearth serve                              serve ./hearth.toml, or the default model
  hearth serve --config /etc/hearth.toml --listen 127.0.0.1:9000
  hearth config check hearth.toml           validate a config file
  hearth chat \"Why is the sky blue?\"        ask the running server's default model
  hearth deploy render cloud-init -m deploy.toml   user data for a fresh GPU VM
  hearth doctor                             check GPUs, launchers, ports, disk, sandbox
  hearth backup hearth-backup.db            a consistent copy of the history, while serving
  HEARTH_API_KEYS=sk-local-123 hearth serve -c tls.toml   (public: keys and [server.tls])

Then point any OpenAI client at http://127.0.0.1:8080/v1";

/// Hearth: a private, self-hosted AI platform in one binary.
///
/// An OpenAI-compatible API that routes each model name to the embedded
/// llama.cpp engine or to an upstream OpenAI-compatible server.
#[derive(Debug, Parser)]
// `--version`: "hearth 0.1.0 (commit 0f7fdc7d1a2b, features: cpu)", or "features: cuda
// (sm_90)" for a CUDA build, from build.rs.
#[command(name = "hearth", version = env!("HEARTH_LONG_VERSION"), after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server (API, UI, metrics).
    Serve(ServeArgs),
    /// Run only the agent jobs' workers (no HTTP API), from the shared queue of
    /// storage.database_url: worker pods beside API-only replicas (docs/scale-out.md).
    Worker(WorkerArgs),
    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Download and inspect local models.
    Models(ModelsArgs),
    /// Run untrusted code in the sandbox, or check what this host can enforce.
    Sandbox(SandboxArgs),
    /// Talk to a model of a running Hearth: one question answered on stdout, or a
    /// conversation on the terminal.
    Chat(ChatArgs),
    /// The chat UI's conversations of a running Hearth: a list (newest first,
    /// searched), or one whole as Markdown or JSON. `hearth chat --resume ID` goes
    /// on with one.
    History(HistoryArgs),
    /// Agent jobs on a running Hearth: an image in, Python run in the sandbox, its
    /// charts and files out.
    Jobs(JobsArgs),
    /// Every API key of a running Hearth: its limits, the tokens its budget has
    /// left this period and when it renews. Needs an admin key (`admin = true`).
    Keys(KeysArgs),
    /// Check this host and config: GPUs, launchers, ports, disk, sandbox.
    ///
    /// Each check says ok, warn or fail, why, and what to do. Exit 1 on any fail,
    /// 2 when the config file cannot be read.
    Doctor(DoctorArgs),
    /// Put Hearth on a host (render cloud-init, the installer, the unit; install,
    /// upgrade, roll back), or deploy a GitOps repository of services (init, check,
    /// plan, apply --env, status, history).
    Deploy(DeployArgs),
    /// What the running Hearth says of itself: URLs, where the key is, each model's
    /// state (the login banner's lines). Exit 3 when it is not running.
    Status(StatusArgs),
    /// Copy the history database (conversations, jobs) to OUT, consistently, while
    /// the server runs; the copy is checked. docs/operations.md says how to restore.
    Backup(BackupArgs),
    /// The Postgres database of storage.database_url: import a SQLite data folder
    /// into it (docs/scale-out.md).
    Db(DbArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file; default ./hearth.toml when it exists, else built-in defaults.
    #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (overrides server.listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (with HEARTH_* overrides applied); exit 1 on any error.
    Check {
        /// Config file; default ./hearth.toml when it exists, else built-in defaults.
        #[arg(value_name = "FILE", env = "HEARTH_CONFIG")]
        file: Option<PathBuf>,
    },
}
