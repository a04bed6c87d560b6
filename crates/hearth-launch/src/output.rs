//! An engine's stdout and stderr: every line to its log file
//! (`log_dir/engines/NAME.YYYY-MM-DD.log`, rotated daily like Hearth's own), to
//! `tracing` at debug level, and stderr's last lines kept for the failure report.

use hearth_api::civil_from_days;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing_appender::rolling::{Builder, RollingFileAppender, Rotation};

/// Lines of stderr kept for `/v1/models` when the engine fails.
const TAIL_LINES: usize = 50;
/// Longer lines are cut there (in the tail; the log file keeps them whole).
const TAIL_LINE_BYTES: usize = 500;

/// The engine's log file and the tail of its stderr, shared by the two readers.
pub struct Output {
    model: String,
    file: Mutex<Option<RollingFileAppender>>,
    tail: Mutex<VecDeque<String>>,
    path: PathBuf,
}

impl Output {
    /// Opens (creates) `dir/NAME.<date>.log`. A log that cannot be opened is
    /// reported once and the lines still go to the tail and to `tracing`.
    pub fn open(dir: &Path, model: &str) -> Arc<Output> {
        let file = std::fs::create_dir_all(dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                Builder::new()
                    .rotation(Rotation::DAILY)
                    .filename_prefix(model)
                    .filename_suffix("log")
                    .build(dir)
                    .map_err(|e| e.to_string())
            });
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(model, dir = %dir.display(), error = %e, "cannot open the engine's log file; its output goes to the debug log only");
                None
            }
        };
        Arc::new(Output {
            model: model.to_owned(),
            file: Mutex::new(file),
            tail: Mutex::new(VecDeque::with_capacity(TAIL_LINES)),
            path: dir.join(format!("{model}.YYYY-MM-DD.log")),
        })
    }

    /// The log files' pattern, as shown to users.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A line Hearth itself writes into the engine's log (started, exited, stopped).
    pub fn note(&self, line: &str) {
        self.write("hearth", line);
    }

    /// The last lines of stderr (of this run and the ones before it).
    pub fn tail(&self) -> Vec<String> {
        lock(&self.tail).iter().cloned().collect()
    }

    /// Reads `stream` line by line until it closes.
    pub async fn pump(self: Arc<Self>, stream: impl AsyncRead + Unpin, name: &'static str) {
        let mut lines = BufReader::new(stream).lines();
        // A line that is not UTF-8 ends the reading of this one stream: rare
        // enough (the servers we run log text) not to lose sleep over.
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target: "hearth::engine_output", model = %self.model, stream = name, "{line}");
            if name == "stderr" {
                let mut tail = lock(&self.tail);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(cut(&line, TAIL_LINE_BYTES));
            }
            self.write(name, &line);
        }
    }

    fn write(&self, stream: &str, line: &str) {
        if let Some(f) = lock(&self.file).as_mut() {
            let _ = writeln!(f, "{} {stream} {line}", utc_now());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `2026-11-30T14:03:07.123Z`.
fn utc_now() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_422), (2025, 11, 30));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn the_tail_keeps_the_last_lines_of_stderr_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::open(dir.path(), "m");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err: String = (0..60).map(|i| format!("e{i}\n")).collect();
        rt.block_on(out.clone().pump(err.as_bytes(), "stderr"));
        rt.block_on(out.clone().pump(&b"o1\n"[..], "stdout"));
        let tail = out.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "e10");
        assert_eq!(tail[49], "e59");
        out.note("stopped");
        drop(out);
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(
            file.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("m.")
        );
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains(" stderr e59\n"), "{text}");
        assert!(text.contains(" stdout o1\n"));
        assert!(text.contains(" hearth stopped\n"));
        assert_eq!(cut("ééé", 3), "é…");
    }
}
