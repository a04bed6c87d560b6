//! `hearth db`: the Postgres database of `storage.database_url`.
//! - `import-sqlite --from DATA_DIR`: a SQLite data folder's conversations, messages,
//!   jobs, steps and file records copied into it (docs/scale-out.md), all in one
//!   transaction, into an empty database only (a second run is refused, not
//!   doubled).

use std::path::PathBuf;
use std::process::ExitCode;

use hearth_config::ProcessEnv;
use hearth_store::{PgOptions, PgStore};

use crate::output;

#[derive(Debug, clap::Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Copy a SQLite data folder's history (conversations, messages, jobs, their
    /// steps and file records) into the Postgres database of storage.database_url.
    ///
    /// Stop the Hearth using the folder first. The target's tables are made (or
    /// migrated) first; it must hold no conversation or job yet. The job files'
    /// bytes stay in DATA_DIR/files: copy that folder to the servers'
    /// storage.data_dir, or into the bucket of `[storage] objects = "s3"`
    /// (docs/scale-out.md).
    ImportSqlite(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Config file whose storage.database_url is the target (HEARTH_DATABASE_URL
    /// works too); default ./hearth.toml when it exists.
    #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data folder to copy from: the one holding hearth.db (the old
    /// storage.data_dir).
    #[arg(long, value_name = "DATA_DIR")]
    pub from: PathBuf,
}

pub fn run(args: DbArgs) -> ExitCode {
    match args.command {
        DbCommand::ImportSqlite(a) => import(a),
    }
}

fn import(args: ImportArgs) -> ExitCode {
    let config = match hearth_config::load(args.config.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            for d in &e.diagnostics {
                output::err(format!("error: {d}"));
            }
            return ExitCode::from(2);
        }
    };
    let Some(url) = config.storage.database_url.clone() else {
        output::err(
            "error: storage.database_url is not set: the import copies into Postgres. Set it in \
             the config (or HEARTH_DATABASE_URL) to the target database, \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE",
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::err(format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let options = PgOptions {
        max_connections: 2,
        keeper: false,
        ..PgOptions::default()
    };
    let done = runtime.block_on(async {
        let target = PgStore::connect(&url, options).await?;
        let done = hearth_store::import_sqlite(&args.from, &target).await;
        hearth_store::ConversationStore::close(&target).await;
        done.map(|d| (d, target.server().to_owned()))
    });
    match done {
        Ok((d, server)) => {
            output::line(format!(
                "imported {} into {server}: {} conversations, {} messages, {} jobs, {} steps, \
                 {} files ({} job file records)",
                args.from.join(hearth_store::DB_FILE).display(),
                d.conversations,
                d.messages,
                d.jobs,
                d.steps,
                d.files,
                d.job_files,
            ));
            if d.files > 0 {
                output::line(format!(
                    "the job files' bytes are in {}: copy that folder to storage.data_dir/files of the servers, or into the S3 bucket (aws s3 sync; docs/scale-out.md)",
                    args.from.join("files").display()
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::err(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
