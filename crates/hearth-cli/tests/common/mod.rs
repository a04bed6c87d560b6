//! What the CLI test files share.

use std::process::Command;

/// The real `hearth` binary, with none of the caller's `HEARTH_*` variables in
/// its environment (keys, config, log level and format, and what `make test`
/// sets for the tests themselves).
pub fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HEARTH_") {
            c.env_remove(name);
        }
    }
    c
}

/// Keeps the logs a test's `hearth` wrote under `dir` (every `*.log` file, and all
/// under a `logs` folder) in `$LOGSCAN_ROOT/hearth-cli/<label>-<pid>/`
/// before the test's temporary folder goes, for `make logscan` to grep for the
/// test keys (`mk/logscan.mk`). Nothing when the variable is unset (a bare `cargo
/// test`).
#[allow(dead_code, reason = "not every test file keeps logs")]
pub fn keep_logs(dir: &std::path::Path, label: &str) {
    let Some(root) = log_root(label) else { return };
    fn walk(from: &std::path::Path, under_logs: bool, to: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(from) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let logs = under_logs || name == "logs";
            if p.is_dir() {
                walk(&p, logs, &to.join(&name));
            } else if logs || name.to_string_lossy().ends_with(".log") {
                let _ = std::fs::create_dir_all(to);
                let _ = std::fs::copy(&p, to.join(&name));
            }
        }
    }
    walk(dir, false, &root);
}

/// Keeps `text` (a child's captured stdout or stderr: its log lines) as
/// `$LOGSCAN_ROOT/hearth-cli/<label>-<pid>/<name>`, as [`keep_logs`].
#[allow(dead_code, reason = "not every test file keeps logs")]
pub fn keep_log_text(label: &str, name: &str, text: &str) {
    if let Some(root) = log_root(label) {
        let _ = std::fs::create_dir_all(&root);
        let _ = std::fs::write(root.join(name), text);
    }
}

#[allow(dead_code, reason = "not every test file keeps logs")]
fn log_root(label: &str) -> Option<std::path::PathBuf> {
    let root = std::env::var_os("LOGSCAN_ROOT")?;
    Some(
        std::path::PathBuf::from(root)
            .join("hearth-cli")
            .join(format!("{label}-{}", std::process::id())),
    )
}
