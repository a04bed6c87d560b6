//! `hearth db`: moving a single machine's data onto the shared servers.
//! - `import-sqlite --from DATA_DIR`: a SQLite data folder's conversations, messages,
//!   jobs, steps and file records copied into the Postgres database of
//!   `storage.database_url` (docs/scale-out.md), all in one transaction, into an
//!   empty database only (a second run is refused, not doubled).
//! - `import-files --from DATA_DIR`: the job files' bytes of a data folder
//!   (`DATA_DIR/files`) copied into the config's object store (the S3 bucket of
//!   `[storage] objects = "s3"`, or its own folder), each checked against its name
//!   (its SHA-256) first, streamed, and skipped when the store has it already, so
//!   a run cut short is simply run again.

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Copy a data folder's job files (DATA_DIR/files) into the object store of
    /// the config: the S3 bucket of `[storage] objects = "s3"`, or its own
    /// data_dir/files.
    ///
    /// Each file is checked against its name (its SHA-256) and streamed; one the
    /// store has already is skipped, so a run cut short can be run again. A file
    /// whose bytes do not match its name is named and not copied (exit status 1).
    ImportFiles(ImportArgs),
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
        DbCommand::ImportFiles(a) => import_files(a),
    }
}

fn import(args: ImportArgs) -> ExitCode {
    let config = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(url) = config.storage.database_url.clone() else {
        output::err(
            "error: storage.database_url is not set: the import copies into Postgres. Set it in \
             the config (or HEARTH_DATABASE_URL) to the target database, \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE",
        );
        return ExitCode::from(2);
    };
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
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
                 {} files ({} job file records), {} keys' token counts",
                args.from.join(hearth_store::DB_FILE).display(),
                d.conversations,
                d.messages,
                d.jobs,
                d.steps,
                d.files,
                d.job_files,
                d.key_usage,
            ));
            if d.files > 0 {
                output::line(format!(
                    "the job files' bytes are in {}: `hearth db import-files --from {}` copies them into the object store of the servers' config (the S3 bucket, or its data_dir/files)",
                    args.from.join("files").display(),
                    args.from.display()
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

/// A job file of the source folder: its digest (its name) and path.
struct SourceFile {
    sha: String,
    path: PathBuf,
    size: u64,
}

/// What `import-files` did.
#[derive(Debug, Default)]
struct FilesDone {
    copied: u64,
    copied_bytes: u64,
    already: u64,
    damaged: Vec<String>,
}

fn import_files(args: ImportArgs) -> ExitCode {
    let config = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = args.from.join(hearth_jobs::blobs::FILES_DIR);
    let files = match source_files(&source) {
        Ok(f) => f,
        Err(e) => {
            output::err(format!("error: cannot read {}: {e}", source.display()));
            return ExitCode::from(2);
        }
    };
    let target = match hearth_jobs::blobs::Blobs::from_config(&config.storage) {
        Ok(b) => b,
        Err(e) => {
            output::err(format!("error: {e}"));
            return ExitCode::from(2);
        }
    };
    let same = config.storage.objects == hearth_config::ObjectsBackend::Local
        && same_folder(
            &config.storage.data_dir.join(hearth_jobs::blobs::FILES_DIR),
            &source,
        );
    if same {
        output::err(format!(
            "error: {} is already the object store of this config: nothing to copy",
            source.display()
        ));
        return ExitCode::from(2);
    }
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let total: u64 = files.iter().map(|f| f.size).sum();
    output::line(format!(
        "copying {} files ({}) from {} into {}",
        files.len(),
        hearth_engine::human_bytes(total),
        source.display(),
        target.describe()
    ));
    let done = runtime.block_on(copy_files(&files, &target));
    match done {
        Ok(d) => {
            output::line(format!(
                "copied {} files ({}) into {}; {} were there already{}",
                d.copied,
                hearth_engine::human_bytes(d.copied_bytes),
                target.describe(),
                d.already,
                if d.damaged.is_empty() {
                    String::new()
                } else {
                    format!("; {} damaged, not copied", d.damaged.len())
                }
            ));
            if d.damaged.is_empty() {
                ExitCode::SUCCESS
            } else {
                for p in &d.damaged {
                    output::err(format!(
                        "damaged: {p}: its bytes are not the content its name (a SHA-256) says; restore it from a backup, or leave it (the job that made it shows it missing)"
                    ));
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            output::err(format!(
                "error: {e}; the files copied so far are in place: run the command again to go on"
            ));
            ExitCode::FAILURE
        }
    }
}

/// The job files under `dir` (`ab/abcdef…`, named by their SHA-256), in name
/// order; staging files and anything else are left out.
fn source_files(dir: &std::path::Path) -> std::io::Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir)? {
        let shard = shard?;
        let name = shard.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !shard.file_type()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(shard.path())? {
            let f = f?;
            let sha = f.file_name().to_string_lossy().into_owned();
            let meta = f.metadata()?;
            let digest = sha.len() == 64
                && sha.starts_with(&name)
                && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if digest && meta.is_file() {
                out.push(SourceFile {
                    sha,
                    path: f.path(),
                    size: meta.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.sha.cmp(&b.sha));
    Ok(out)
}

/// Copies each file the target lacks, after checking it against its name; says
/// how it goes every 5 seconds.
async fn copy_files(
    files: &[SourceFile],
    target: &hearth_jobs::blobs::Blobs,
) -> Result<FilesDone, hearth_jobs::blobs::ObjectsError> {
    let mut done = FilesDone::default();
    let mut said = std::time::Instant::now();
    for (i, f) in files.iter().enumerate() {
        if said.elapsed() >= std::time::Duration::from_secs(5) {
            said = std::time::Instant::now();
            output::line(format!(
                "  {} of {} files: {} copied ({}), {} there already",
                i,
                files.len(),
                done.copied,
                hearth_engine::human_bytes(done.copied_bytes),
                done.already
            ));
        }
        if target.exists(&f.sha).await? {
            done.already += 1;
            continue;
        }
        match hearth_engine::download::hash_file(&f.path).await {
            Ok(sha) if sha == f.sha => {}
            Ok(_) => {
                done.damaged.push(f.path.display().to_string());
                continue;
            }
            Err(e) => {
                done.damaged
                    .push(format!("{} (cannot be read: {e})", f.path.display()));
                continue;
            }
        }
        let file = tokio::fs::File::open(&f.path).await.map_err(|source| {
            hearth_jobs::blobs::ObjectsError::Io {
                store: f.path.display().to_string(),
                source,
            }
        })?;
        let (sha, size) = target
            .put_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20))
            .await?;
        if sha != f.sha {
            // Changed between the check and the copy: stored under what it is now.
            done.damaged.push(format!(
                "{} (changed while it was copied)",
                f.path.display()
            ));
            continue;
        }
        done.copied += 1;
        done.copied_bytes += size;
    }
    Ok(done)
}

/// Whether two paths are one folder.
fn same_folder(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
