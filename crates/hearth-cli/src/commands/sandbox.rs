//! `hearth sandbox`: run untrusted code in the sandbox (`run`, `exec`), or report what
//! this host can enforce (`check`). The isolation itself lives in `hearth-sandbox`.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use hearth_config::{ProcessEnv, SandboxConfig};
use hearth_sandbox::{Options, Outcome, Report, Sandbox, Spec};

use crate::output;

/// Exit code for "the sandbox itself could not run the program" (as `env`/`docker` do).
const SANDBOX_ERROR: u8 = 125;

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Config file ([sandbox] section); default ./hearth.toml when it exists.
    #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SandboxCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Run a Python script in the sandbox and print the outcome as JSON.
    ///
    /// Exit code: the program's own (0 only if it exited 0), 128+N if signal N ended it,
    /// 125 if the sandbox could not run it.
    Run {
        /// The script; it runs as `python3 /sandbox/main.py` with /output as working dir.
        #[arg(value_name = "FILE.py")]
        file: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Run any program in the sandbox (e.g. `hearth sandbox exec -- /bin/true`).
    Exec {
        #[command(flatten)]
        limits: LimitArgs,
        /// Program and arguments (as seen inside the sandbox).
        #[arg(last = true, required = true, value_name = "PROGRAM")]
        argv: Vec<String>,
    },
    /// Report which isolation features this host supports and enforces, and how.
    /// Exit 1 when a required feature is missing (runs would be refused).
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Wall-clock limit, e.g. 120s, 2m, 500ms.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Memory limit for the whole sandbox, e.g. 2G, 512M.
    #[arg(long, default_value = "2G", value_parser = parse_size)]
    pub memory: u64,
    /// CPU cores.
    #[arg(long, default_value_t = 2.0)]
    pub cpus: f64,
    /// Host folder shown read-only at /input.
    #[arg(long, value_name = "DIR")]
    pub input: Option<PathBuf>,
    /// Host folder the files left in /output are copied to (they are listed in the
    /// JSON either way).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// File fed to the program's stdin.
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
}

pub fn run(args: SandboxArgs) -> ExitCode {
    let config = match hearth_config::load(args.config.as_deref(), &ProcessEnv) {
        Ok(c) => c.sandbox,
        Err(e) => {
            for d in &e.diagnostics {
                output::err(format!("error: {d}"));
            }
            return ExitCode::from(SANDBOX_ERROR);
        }
    };
    let options = match options(&config) {
        Ok(o) => o,
        Err(e) => {
            output::err(format!("error: {e}"));
            return ExitCode::from(SANDBOX_ERROR);
        }
    };
    let sandbox = Sandbox::new(options);
    match args.command {
        SandboxCommand::Check { json } => check(&sandbox, json),
        SandboxCommand::Run { file, limits } => {
            let script = match std::fs::read(&file) {
                Ok(s) => s,
                Err(e) => {
                    output::err(format!("error: cannot read {}: {e}", file.display()));
                    return ExitCode::from(SANDBOX_ERROR);
                }
            };
            execute(&sandbox, Spec::python(script), limits)
        }
        SandboxCommand::Exec { limits, argv } => execute(
            &sandbox,
            Spec {
                argv,
                ..Spec::default()
            },
            limits,
        ),
    }
}

/// `[sandbox]` as the sandbox's options (the server reads it the same way).
pub(crate) fn options(config: &SandboxConfig) -> Result<Options, String> {
    hearth_server::sandbox_options(config, &ProcessEnv)
}

fn execute(sandbox: &Sandbox, mut spec: Spec, limits: LimitArgs) -> ExitCode {
    spec.limits.wall_time = limits.timeout;
    spec.limits.memory_bytes = limits.memory;
    spec.limits.cpus = limits.cpus;
    spec.input = limits.input;
    if let Some(path) = &limits.stdin {
        match std::fs::read(path) {
            Ok(data) => spec.stdin = data,
            Err(e) => {
                output::err(format!("error: cannot read {}: {e}", path.display()));
                return ExitCode::from(SANDBOX_ERROR);
            }
        }
    }
    let outcome = match sandbox.run(&spec) {
        Ok(o) => o,
        Err(e) => {
            output::err(format!("error: {e}"));
            return ExitCode::from(SANDBOX_ERROR);
        }
    };
    if let Some((dir, Err(e))) = limits.output.as_ref().map(|d| (d, save_files(&outcome, d))) {
        output::err(format!("error: writing files to {}: {e}", dir.display()));
        return ExitCode::from(SANDBOX_ERROR);
    }
    match serde_json::to_string_pretty(&outcome) {
        Ok(json) => output::line(json),
        Err(e) => output::err(format!("error: {e}")),
    }
    exit_code(&outcome)
}

fn exit_code(o: &Outcome) -> ExitCode {
    match (o.exit_code, o.signal) {
        (Some(0), _) => ExitCode::SUCCESS,
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(255)),
        (None, None) => ExitCode::from(SANDBOX_ERROR),
    }
}

/// Copy the read-back files under `dir`, refusing any path that would leave it.
fn save_files(o: &Outcome, dir: &Path) -> std::io::Result<()> {
    for f in &o.files {
        let rel = Path::new(&f.path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            continue;
        }
        let dest = dir.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dest, &f.data)?;
    }
    Ok(())
}

fn check(sandbox: &Sandbox, json: bool) -> ExitCode {
    let report = sandbox.check();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => output::line(j),
            Err(e) => output::err(format!("error: {e}")),
        }
    } else {
        print_report(&report);
    }
    if report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_report(r: &Report) {
    output::line(format!("isolation:   {}", r.isolation));
    output::line(format!(
        "running as:  {}   kernel {}",
        r.running_as, r.kernel
    ));
    output::line(format!("namespaces:  {}", r.namespaces));
    output::line(format!(
        "landlock:    {} (ABI {})",
        r.landlock, r.landlock_abi
    ));
    output::line(format!(
        "seccomp:     {}",
        if r.seccomp { "yes" } else { "no" }
    ));
    output::line(format!("cgroups:     {}", r.cgroups));
    for (name, how) in &r.cgroup_controllers {
        output::line(format!("  {name:<9}{how}"));
    }
    output::line("");
    output::line(format!(
        "{:<14}{:<10}{:<10}HOW",
        "FEATURE", "ENFORCED", "REQUIRED"
    ));
    for f in &r.features {
        output::line(format!(
            "{:<14}{:<10}{:<10}{}",
            f.feature.name(),
            if f.enforced { "yes" } else { "NO" },
            if f.required { "required" } else { "-" },
            f.how
        ));
    }
    output::line("");
    if r.refused.is_empty() {
        output::line("result: ok (features marked NO run with a warning)");
    } else {
        output::line("result: REFUSED: runs will not start until these are enforced:");
        for m in &r.refused {
            output::line(format!("  {m}"));
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 120s, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad size {s:?} (e.g. 2G, 512M)"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?} (K, M, G)")),
    };
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("size {s:?} must be positive"));
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("120s").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0s").is_err() && parse_duration("5x").is_err());
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn unknown_required_feature_is_an_error() {
        let cfg = SandboxConfig {
            require: vec!["netwrok".into()],
            ..SandboxConfig::default()
        };
        assert!(options(&cfg).unwrap_err().contains("netwrok"));
    }
}
