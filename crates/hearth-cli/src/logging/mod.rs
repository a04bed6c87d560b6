//! Process-wide logging: lines to stdout and JSON lines to
//! `log_dir/hearth.YYYY-MM-DD.log` (rotated daily), pruned to `retention_days` and
//! `max_total_bytes`. The level comes from `HEARTH_LOG`, else `log.level`. Stdout's
//! lines are text on a terminal and JSON otherwise (`log.format`); the file is JSON
//! whatever stdout is. A JSON line logged while serving a request (or a job)
//! carries its span, `"span":{"name":"request","id":...,"key":...}`, so an error
//! deep in the work says which request it belongs to.

mod text;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::io::IsTerminal;

use hearth_config::{Config, Env, LogFormat, env};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const PREFIX: &str = "hearth";
const SUFFIX: &str = "log";

/// Keeps the background writers alive; dropping it flushes the logs.
pub struct Logging {
    _guards: Vec<WorkerGuard>,
    pub dir: PathBuf,
    /// Stdout is for a person (text format): `serve` prints its banner then.
    pub text: bool,
}

/// Whether stdout gets text: `auto` asks whether stdout is a terminal.
pub fn is_text(format: LogFormat, stdout_is_terminal: bool) -> bool {
    match format {
        LogFormat::Auto => stdout_is_terminal,
        LogFormat::Text => true,
        LogFormat::Json => false,
    }
}

pub fn init(config: &Config, env_src: &dyn Env) -> anyhow::Result<Logging> {
    // Read before any thread starts (the non-blocking writers are threads): the
    // `time` crate cannot read it soundly once there are others.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let level = env_src
        .get(env::LOG)
        .unwrap_or_else(|| config.log.level.clone());
    let filter = EnvFilter::try_new(&level).map_err(|e| {
        anyhow::anyhow!("invalid log level `{level}` (HEARTH_LOG or log.level): {e}")
    })?;
    let dir = config.log_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create the log directory {}: {e}", dir.display()))?;
    prune(
        &dir,
        PREFIX,
        config.log.retention_days,
        config.log.max_total_bytes,
    );
    let appender = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(PREFIX)
        .filename_suffix(SUFFIX)
        .build(&dir)
        .map_err(|e| anyhow::anyhow!("cannot open a log file in {}: {e}", dir.display()))?;
    let (file_writer, file_guard) = tracing_appender::non_blocking(appender);
    let mut guards = vec![file_guard];
    let file_layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(file_writer);
    let terminal = std::io::stdout().is_terminal();
    let text = is_text(config.log.format, terminal);
    let (mut json_stdout, mut text_stdout) = (None, None);
    if config.log.stdout && text {
        // Written as it is logged, not from a background thread: the banner
        // `serve` prints between log lines stays in its place.
        text_stdout = Some(
            tracing_subscriber::fmt::layer()
                .event_format(text::TextFormat {
                    ansi: terminal,
                    offset,
                })
                // Spans' fields are formatted by the layer, coloured or not as the lines.
                .with_ansi(terminal)
                .with_writer(std::io::stdout),
        );
    } else if config.log.stdout {
        let (w, g) = tracing_appender::non_blocking(std::io::stdout());
        guards.push(g);
        json_stdout = Some(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(w),
        );
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(json_stdout)
        .with(text_stdout)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(Logging {
        _guards: guards,
        dir,
        text,
    })
}

/// Prunes old logs every hour until the process ends: Hearth's own in `dir`, and
/// each managed model server's (`engines`, by model name) in `dir/engines`, each
/// set by the same policy.
pub fn spawn_pruner(dir: PathBuf, engines: Vec<String>, retention_days: u64, max_total_bytes: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let d = dir.clone();
            let names = engines.clone();
            let _ = tokio::task::spawn_blocking(move || {
                prune(&d, PREFIX, retention_days, max_total_bytes);
                for name in &names {
                    prune(&d.join("engines"), name, retention_days, max_total_bytes);
                }
            })
            .await;
        }
    });
}

/// Whether `file` is one of the daily logs `PREFIX.YYYY-MM-DD.log` (exactly: model
/// `qwen2`'s logs are not `qwen2.5`'s).
fn is_log_of(file: &str, prefix: &str) -> bool {
    file.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.strip_suffix(&format!(".{SUFFIX}")))
        .is_some_and(|date| {
            date.len() == 10
                && date.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
        })
}

/// Deletes the log files of `prefix` older than `retention_days`, then the oldest
/// until the rest fit in `max_total_bytes`. Today's file is never deleted.
pub fn prune(dir: &Path, prefix: &str, retention_days: u64, max_total_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(PathBuf, SystemTime, u64)> = entries
        .filter_map(Result::ok)
        .filter(|e| is_log_of(&e.file_name().to_string_lossy(), prefix))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| {
                (
                    e.path(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                )
            })
        })
        .collect();
    files.sort_by_key(|f| f.1);
    let newest = files.last().map(|f| f.0.clone());
    let max_age = Duration::from_secs(retention_days.saturating_mul(86_400));
    let now = SystemTime::now();
    let mut total: u64 = files.iter().map(|f| f.2).sum();
    for (path, modified, len) in &files {
        if Some(path) == newest.as_ref() {
            continue;
        }
        let too_old = now.duration_since(*modified).unwrap_or_default() > max_age;
        if (too_old || total > max_total_bytes) && std::fs::remove_file(path).is_ok() {
            total = total.saturating_sub(*len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_text_on_a_terminal_only() {
        assert!(is_text(LogFormat::Auto, true));
        assert!(!is_text(LogFormat::Auto, false));
        assert!(is_text(LogFormat::Text, false));
        assert!(!is_text(LogFormat::Json, true));
    }

    #[test]
    fn prunes_by_age_and_size_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, bytes: usize, age_days: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![b'x'; bytes]).unwrap();
            let t = SystemTime::now() - Duration::from_secs(age_days * 86_400 + 60);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        mk("hearth.2026-01-01.log", 10, 30); // too old
        mk("hearth.2026-11-20.log", 100, 3);
        mk("hearth.2026-11-21.log", 100, 2);
        mk("hearth.2026-11-22.log", 100, 0); // newest
        mk("other.log", 10, 30); // not ours
        prune(dir.path(), "hearth", 7, 250);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "hearth.2026-11-21.log",
                "hearth.2026-11-22.log",
                "other.log"
            ]
        );
    }

    #[test]
    fn an_engines_logs_are_its_own_by_exact_name() {
        assert!(is_log_of("qwen2.2026-11-30.log", "qwen2"));
        assert!(!is_log_of("qwen2.5-coder.2026-11-30.log", "qwen2"));
        assert!(is_log_of("qwen2.5-coder.2026-11-30.log", "qwen2.5-coder"));
        assert!(!is_log_of("hearth.log", "hearth"));
        assert!(!is_log_of("hearth.2026-11-30.log.gz", "hearth"));
    }
}
