//! Where a test's server logs go when `LOGSCAN_ROOT` is set (`make test`
//! sets it): a file of its own under that folder, which `make logscan` greps for
//! every test key once the test run is over (`mk/logscan.mk`). Unset, nothing is
//! installed and the tests log as before (nowhere).
//!
//! The subscriber is process-wide (the server's event loops run on threads of their
//! own) and logs at DEBUG, more than `hearth serve` does by default, so a key that
//! slipped into a debug line is found too. A test that installs its own subscriber
//! first keeps it: this one is then not installed. Panic messages are written to
//! the same file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// The variable naming the folder every test run's logs go to (not `HEARTH_*`:
/// `hearth` warns of `HEARTH_*` variables it does not read).
pub const ENV: &str = "LOGSCAN_ROOT";

/// Sends this process's logs to `$LOGSCAN_ROOT/hearth-server/<binary>-<test>-<pid>.log`
/// (once per process: later calls return the same file). `None` when the variable
/// is unset or a subscriber was installed already.
pub fn install(binary: &str) -> Option<PathBuf> {
    let root = std::env::var_os(ENV)?;
    install_in(&PathBuf::from(root).join("hearth-server"), binary)
}

/// As [`install`], into `dir` (a test that checks its own log without `make test`).
pub fn install_in(dir: &std::path::Path, binary: &str) -> Option<PathBuf> {
    static ONCE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        std::fs::create_dir_all(dir).ok()?;
        // Under nextest each test is a process whose main thread bears its name.
        let test: String = std::thread::current()
            .name()
            .unwrap_or("test")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("{binary}-{test}-{}.log", std::process::id()));
        let file = std::fs::File::create(&path).ok()?;
        let panics = std::sync::Mutex::new(file.try_clone().ok()?);
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
        );
        tracing::subscriber::set_global_default(subscriber).ok()?;
        // Panics (a handler's, caught by the server, or any thread's) are written
        // there too, then reported as before.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut f) = panics.lock() {
                use std::io::Write;
                let _ = writeln!(f, "panic: {info}");
            }
            previous(info);
        }));
        Some(path)
    })
    .clone()
}
