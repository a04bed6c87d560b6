//! `hearth models pull` and `hearth models list`: wiring over
//! `hearth_engine::download` and `hearth_engine::gguf`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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
    config.storage.data_dir.join("models")
}

fn pull(config: &Config, url: &str, sha256: Option<&str>) -> ExitCode {
    let dir = models_dir(config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            output::err(format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bytes:>10}/{total_bytes:<10} [{bar:30}] {bytes_per_sec:>12} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
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
        }
        PullEvent::Progress { downloaded } => bar.set_position(downloaded),
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
    fn sizes_and_names() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(98_362_432), "93.8 MiB");
        assert_eq!(
            model_name(Path::new("/x/SmolLM2-135M.Q4_1.gguf")),
            "smollm2-135m.q4_1"
        );
    }
}
