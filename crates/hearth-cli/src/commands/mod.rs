//! One module per command.

pub mod backup;
pub mod chat;
pub mod client;
pub mod config;
pub mod db;
pub mod deploy;
pub mod doctor;
pub mod history;
pub mod jobs;
pub mod keys;
pub mod models;
pub mod sandbox;
pub mod serve;
pub mod status;
pub mod worker;

use std::path::Path;
use std::process::ExitCode;

use hearth_config::{Config, ProcessEnv};

use crate::cli::{Cli, Command, ConfigCommand};
use crate::output;

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Config(ConfigCommand::Check { file }) => config::check(file.as_deref()),
        Command::Models(args) => models::run(args),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Status(args) => status::run(args),
        Command::Jobs(args) => jobs::run(args),
        Command::Keys(args) => keys::run(args),
        Command::History(args) => history::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Db(args) => db::run(args),
    }
}

/// The config a command runs with (`path`, else HEARTH_CONFIG or ./hearth.toml);
/// when it does not load, its diagnostics are printed and the command exits 2.
pub(crate) fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    hearth_config::load(path, &ProcessEnv).map_err(|e| {
        for d in &e.diagnostics {
            output::err(format!("error: {d}"));
        }
        ExitCode::from(2)
    })
}

/// A single-threaded runtime for a command's async work; when none can start,
/// the error is printed and the command fails.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            output::err(format!("error: cannot start the async runtime: {e}"));
            ExitCode::FAILURE
        })
}

/// Does a command's async `work` on a [`runtime`]: exit 0 when it succeeded, else
/// its error printed and exit 1.
pub(crate) fn finish(work: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::err(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
