//! One module per command.

pub mod backup;
pub mod config;
pub mod db;
pub mod deploy;
pub mod doctor;
pub mod jobs;
pub mod models;
pub mod sandbox;
pub mod serve;
pub mod status;
pub mod worker;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand};

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
        Command::Backup(args) => backup::run(args),
        Command::Db(args) => db::run(args),
    }
}
