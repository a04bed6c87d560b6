//! `hearth backup OUT`: a consistent copy of the history database (conversations
//! and jobs), safe while the server runs. docs/operations.md says how to
//! restore it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::output;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Config file whose `storage.data_dir` holds the database; default ./hearth.toml
    /// when it exists, else built-in defaults.
    #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// The file to write, e.g. hearth-2026-12-01.db (refused if it exists, unless
    /// --force).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

pub fn run(args: BackupArgs) -> ExitCode {
    let config = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(url) = &config.storage.database_url {
        // The history is in Postgres: the SQLite file (if any) is not it.
        output::err(format!(
            "error: the history is in Postgres ({}), not in a file hearth backup can copy: use pg_dump (docs/scale-out.md#backups)",
            hearth_config::redact_url(url)
        ));
        return ExitCode::from(2);
    }
    let db = config.storage.data_dir.join(hearth_store::DB_FILE);
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(hearth_store::backup(&db, &args.out, args.force)) {
        Ok(b) => {
            output::line(format!(
                "backed up {} to {} ({}), checked: ok",
                db.display(),
                b.path.display(),
                size(b.bytes)
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::err(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// `1234567` → `1.2 MB (1234567 bytes)`: readable, and exact for scripts.
fn size(bytes: u64) -> String {
    let units = [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    // One decimal shown to a person: f64's precision is plenty.
    let b = bytes as f64;
    let shown = units.iter().find(|(_, n)| b >= *n).map_or_else(
        || format!("{bytes} B"),
        |(u, n)| format!("{:.1} {u}", b / n),
    );
    format!("{shown} ({bytes} bytes)")
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B (512 bytes)");
        assert_eq!(size(1_234_567), "1.2 MB (1234567 bytes)");
    }
}
