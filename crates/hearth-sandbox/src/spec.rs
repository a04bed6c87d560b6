//! What to run ([`Spec`], [`Limits`]) and what came of it ([`Outcome`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Where the sandboxed program finds things (paths inside the sandbox).
pub mod paths {
    /// Read-only copy of [`super::Spec::files`]; the usual place for the script.
    pub const SCRIPT_DIR: &str = "/sandbox";
    /// Read-only view of [`super::Spec::input`].
    pub const INPUT: &str = "/input";
    /// Writable, size-capped; read back into [`super::Outcome::files`]. Also the working dir.
    pub const OUTPUT: &str = "/output";
    /// Writable, size-capped, private.
    pub const TMP: &str = "/tmp";
    /// The Python venv (numpy, pandas, matplotlib), read-only.
    pub const VENV: &str = "/opt/venv";
}

/// One program to run.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Program and arguments. A name without `/` is looked up in the sandbox's `PATH`
    /// (`/opt/venv/bin:/usr/local/bin:/usr/bin:/bin`).
    pub argv: Vec<String>,
    /// Files placed read-only (and executable) under `/sandbox` (name, content); names
    /// are single path components.
    pub files: Vec<(String, Vec<u8>)>,
    /// Bytes fed to the program's stdin, then EOF.
    pub stdin: Vec<u8>,
    /// Host folder shown read-only at `/input`.
    pub input: Option<PathBuf>,
    /// Host folder (existing, this user's) that `/output`'s files are copied into
    /// as they are read back, each at its relative path, instead of into memory:
    /// each [`OutputFile`]'s `data` is then empty. For outputs of any size; the
    /// caller streams them on from there.
    pub output_dir: Option<PathBuf>,
    /// Extra environment variables. Nothing of Hearth's own environment is passed.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
}

impl Spec {
    /// `python3 /sandbox/main.py` with `script` as `main.py`.
    pub fn python(script: impl Into<Vec<u8>>) -> Spec {
        Spec {
            argv: vec![
                "python3".to_owned(),
                format!("{}/main.py", paths::SCRIPT_DIR),
            ],
            files: vec![("main.py".to_owned(), script.into())],
            ..Spec::default()
        }
    }
}

/// Resource bounds. Each has a safe default.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock time; past it every process is killed (`timeout`).
    pub wall_time: Duration,
    /// CPU bandwidth in cores (cgroup `cpu` quota).
    pub cpus: f64,
    /// CPU time per process (`RLIMIT_CPU`); default `wall_time × cpus`.
    pub cpu_time: Option<Duration>,
    /// Memory of the whole sandbox, tmpfs included (`memory`).
    pub memory_bytes: u64,
    /// Processes and threads of the whole sandbox (`pids`).
    pub pids: u32,
    /// Largest file the program may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Size of the private `/tmp`.
    pub tmp_bytes: u64,
    /// Size of `/output`, and the most bytes read back from it (`output_size`).
    pub output_bytes: u64,
    /// Most files read back from `/output`.
    pub output_files: usize,
    /// Captured stdout; the rest is read and dropped (`truncated`).
    pub stdout_bytes: usize,
    /// Captured stderr; the rest is read and dropped (`truncated`).
    pub stderr_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_time: Duration::from_secs(120),
            cpus: 2.0,
            cpu_time: None,
            memory_bytes: 2 << 30,
            pids: 256,
            file_size_bytes: 64 << 20,
            open_files: 256,
            tmp_bytes: 256 << 20,
            output_bytes: 64 << 20,
            output_files: 256,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// CPU seconds per process: the explicit value, else wall time × cores, at least 1.
    pub fn cpu_seconds(&self) -> u64 {
        let d = self
            .cpu_time
            .unwrap_or_else(|| self.wall_time.mul_f64(self.cpus.max(0.01)));
        d.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// The limit that ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Timeout,
    Memory,
    Cpu,
    Pids,
    OutputSize,
}

/// A file the program left in `/output`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputFile {
    /// Path relative to `/output`, `/`-separated.
    pub path: String,
    /// Bytes read back (after any cap).
    pub size: u64,
    /// The file was cut: it reached the file size limit, or the read-back budget ran out.
    pub truncated: bool,
    /// The bytes, unless the spec's `output_dir` holds them (as `output_dir/path`).
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// Resources the run used.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    /// Where the CPU and memory figures come from (`cgroup v1`, `cgroup v2`, `rusage`).
    pub source: String,
}

/// What came of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Exit status when the program exited.
    pub exit_code: Option<i32>,
    /// Signal number when a signal ended it.
    pub signal: Option<i32>,
    /// The limit that ended it, if one did.
    pub limit: Option<LimitKind>,
    pub stdout: String,
    pub stdout_truncated: bool,
    pub stderr: String,
    pub stderr_truncated: bool,
    pub files: Vec<OutputFile>,
    /// Some files were not read back (count or size cap), or a link/special file was skipped.
    pub files_truncated: bool,
    pub usage: Usage,
    /// `namespaces` or `landlock` (the fallback without user namespaces).
    pub isolation: &'static str,
    /// Isolation that could not be enforced for this run, and read-back notes.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// True when the program exited 0 and no limit ended it.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && self.limit.is_none()
    }

    /// The file at `path` (relative to `/output`).
    pub fn file(&self, path: &str) -> Option<&OutputFile> {
        self.files.iter().find(|f| f.path == path)
    }
}
