//! `hearth models pull` and `hearth models list`: wiring over
//! `hearth_engine::download` and `hearth_engine::gguf`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hearth_config::{Config, ProcessEnv};
use hearth_engine::download::{self, PullEvent};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output;

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Download a GGUF model over HTTP(S) into `data_dir/models`.
    ///
    /// An interrupted download resumes where it stopped when run again. The file
    /// gets its final name only once it is complete, matches `--sha256` (when
    /// given) and has a valid GGUF header.
    Pull {
        /// URL of the .gguf file, e.g. https://huggingface.co/.../resolve/main/model.Q4_K_M.gguf
        url: String,
        /// Expected SHA-256 of the file (64 hex digits); the download is deleted on a mismatch.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Config file (for `storage.data_dir`); default ./hearth.toml when it exists.
        #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List local GGUF files and configured models, with size, architecture,
    /// quantization and context length read from the files.
    List {
        /// Config file; default ./hearth.toml when it exists.
        #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(args: ModelsArgs) -> ExitCode {
    match args.command {
        ModelsCommand::Pull {
            url,
            sha256,
            config,
        } => with_config(config.as_deref(), |c| pull(c, &url, sha256.as_deref())),
        ModelsCommand::List { config } => with_config(config.as_deref(), list),
    }
}

fn with_config(path: Option<&Path>, f: impl FnOnce(&Config) -> ExitCode) -> ExitCode {
    match hearth_config::load(path, &ProcessEnv) {
        Ok(c) => f(&c),
        Err(e) => {
            for d in &e.diagnostics {
                output::err(format!("error: {d}"));
            }
            ExitCode::FAILURE
        }
    }
}

fn models_dir(config: &Config) -> PathBuf {
    config.models_dir()
}

fn pull(config: &Config, url: &str, sha256: Option<&str>) -> ExitCode {
    let dir = models_dir(config);
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let name = url.rsplit('/').next().unwrap_or(url).to_owned();
    // On a terminal, one updating bar; elsewhere (CI, a log) a line every 10%.
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bytes:>10}/{total_bytes:<10} [{bar:30}] {bytes_per_sec:>12} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let lines = std::cell::RefCell::new(Steps::new(&name, bar.is_hidden()));
    let on_event = |event: PullEvent| match event {
        PullEvent::Started {
            total,
            resumed_from,
        } => {
            if let Some(total) = total {
                bar.set_length(total);
            }
            if resumed_from > 0 {
                bar.println(format!("resuming at byte {resumed_from}"));
            }
            bar.set_position(resumed_from);
            bar.enable_steady_tick(Duration::from_millis(200));
            lines
                .borrow_mut()
                .start(total, resumed_from, Instant::now());
        }
        PullEvent::Progress { downloaded } => {
            bar.set_position(downloaded);
            if let Some(line) = lines.borrow_mut().progress(downloaded, Instant::now()) {
                output::err(line);
            }
        }
        PullEvent::Verifying => bar.set_message("verifying"),
    };
    let result = runtime.block_on(download::pull(url, &dir, sha256, on_event));
    bar.finish_and_clear();
    match result {
        Ok(p) => {
            let verb = if p.already_present {
                "already present"
            } else {
                "saved"
            };
            output::line(format!("{verb}: {}", p.path.display()));
            output::line(format!("  sha256        {}", p.sha256));
            output::line(format!(
                "  architecture  {}",
                p.info.architecture().unwrap_or("?")
            ));
            output::line(format!(
                "  quantization  {}",
                p.info.quantization().unwrap_or_else(|| "?".into())
            ));
            output::line(format!(
                "  context       {}",
                p.info
                    .context_length()
                    .map_or("?".into(), |c| c.to_string())
            ));
            output::line(format!(
                "serve it with:\n  [[models]]\n  name = \"{}\"\n  backend = \"embedded\"\n  path = \"{}\"",
                model_name(&p.path),
                p.path.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::err(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Progress as a line every 10% (or every 100 MB when the size is unknown), for
/// output that is not a terminal, where an updating bar would be noise.
struct Steps {
    name: String,
    on: bool,
    total: Option<u64>,
    start: Option<(Instant, u64)>,
    next: u64,
}

impl Steps {
    fn new(name: &str, on: bool) -> Self {
        Steps {
            name: name.to_owned(),
            on,
            total: None,
            start: None,
            next: 0,
        }
    }

    fn step(&self) -> u64 {
        self.total.map_or(100_000_000, |t| (t / 10).max(1))
    }

    fn start(&mut self, total: Option<u64>, from: u64, now: Instant) {
        self.total = total;
        self.start = Some((now, from));
        self.next = from + self.step();
    }

    /// The line to print at `downloaded` bytes, if one is due.
    fn progress(&mut self, downloaded: u64, now: Instant) -> Option<String> {
        if !self.on || downloaded < self.next {
            return None;
        }
        while self.next <= downloaded {
            self.next += self.step();
        }
        let (t0, from) = self.start?;
        let secs = now.duration_since(t0).as_secs_f64();
        let rate = if secs > 0.0 {
            format!(
                ", {}/s",
                hearth_engine::human_bytes(((downloaded - from) as f64 / secs) as u64)
            )
        } else {
            String::new()
        };
        Some(match self.total {
            Some(t) if t > 0 => format!(
                "downloading {}: {}% of {}{rate}",
                self.name,
                downloaded * 100 / t,
                hearth_engine::human_bytes(t)
            ),
            _ => format!(
                "downloading {}: {}{rate}",
                self.name,
                hearth_engine::human_bytes(downloaded)
            ),
        })
    }
}

/// A served name suggested from a file name: lowercase, without `.gguf`.
fn model_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

struct Row {
    name: String,
    file: String,
    size: String,
    arch: String,
    quant: String,
    context: String,
}

fn row(name: String, path: &Path) -> Row {
    let file = path.display().to_string();
    match hearth_engine::inspect(path) {
        Ok(info) => Row {
            name,
            file,
            size: human_size(info.file_size),
            arch: info.architecture().unwrap_or("?").to_owned(),
            quant: info.quantization().unwrap_or_else(|| "?".into()),
            context: info.context_length().map_or("?".into(), |c| c.to_string()),
        },
        Err(e) => Row {
            name,
            file,
            size: "-".into(),
            arch: format!("error: {}", short_error(&e)),
            quant: String::new(),
            context: String::new(),
        },
    }
}

fn short_error(e: &hearth_engine::GgufError) -> &'static str {
    use hearth_engine::GgufError::*;
    match e {
        NotFound { .. } => "missing",
        Io { .. } => "unreadable",
        NotGguf { .. } => "not GGUF",
        UnsupportedVersion { .. } => "unsupported GGUF version",
        Truncated { .. } => "truncated",
        Corrupt { .. } => "corrupt",
    }
}

fn list(config: &Config) -> ExitCode {
    let mut configured = Vec::new();
    for m in &config.models {
        if let Some(e) = m.embedded_config() {
            configured.push(row(m.name.clone(), &e.path));
        }
    }
    let dir = models_dir(config);
    let mut local = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        paths.sort();
        for p in paths {
            local.push(row("-".into(), &p));
        }
    }
    output::line("Configured models:");
    print_table(&configured);
    output::line("");
    output::line(format!("Files in {}:", dir.display()));
    if local.is_empty() {
        output::line("  (none; `hearth models pull URL` downloads one)");
    } else {
        print_table(&local);
    }
    ExitCode::SUCCESS
}

fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        output::line("  (none)");
        return;
    }
    let header = Row {
        name: "NAME".into(),
        file: "FILE".into(),
        size: "SIZE".into(),
        arch: "ARCH".into(),
        quant: "QUANT".into(),
        context: "CONTEXT".into(),
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let w = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let (wn, ws, wa, wq, wc) = (
        w(|r| &r.name),
        w(|r| &r.size),
        w(|r| &r.arch),
        w(|r| &r.quant),
        w(|r| &r.context),
    );
    for r in all {
        output::line(
            format!(
                "  {:wn$}  {:>ws$}  {:wa$}  {:wq$}  {:>wc$}  {}",
                r.name, r.size, r.arch, r.quant, r.context, r.file
            )
            .trim_end(),
        );
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_progress_is_a_line_every_tenth() {
        let t0 = Instant::now();
        let mut s = Steps::new("m.gguf", true);
        s.start(Some(270_000_000), 0, t0);
        assert_eq!(s.progress(10_000_000, t0 + Duration::from_secs(1)), None);
        assert_eq!(
            s.progress(122_000_000, t0 + Duration::from_secs(10))
                .as_deref(),
            Some("downloading m.gguf: 45% of 270 MB, 12 MB/s")
        );
        // The next is due at 50%, not at every chunk.
        assert_eq!(s.progress(123_000_000, t0 + Duration::from_secs(10)), None);
        assert!(
            s.progress(135_000_000, t0 + Duration::from_secs(11))
                .is_some()
        );
        let mut quiet = Steps::new("m.gguf", false);
        quiet.start(Some(100), 0, t0);
        assert_eq!(quiet.progress(100, t0), None);
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(98_362_432), "93.8 MiB");
        assert_eq!(
            model_name(Path::new("/x/SmolLM2-135M.Q4_1.gguf")),
            "smollm2-135m.q4_1"
        );
    }
}
