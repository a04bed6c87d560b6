//! `hearth deploy`: render what a host needs from `deploy.toml`, and install,
//! upgrade, roll back and inspect releases on this machine. The work lives in
//! `hearth-deploy`; this is its wiring.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use hearth_deploy::manifest::{Manifest, Target};
use hearth_deploy::release::{self, LocalHost, NewRelease, Options, Restart};

use crate::output;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeployCommand {
    /// Print one artifact rendered from the manifest: cloud-init (user data for a
    /// fresh VM), stackscript, install-sh (the installer for an existing host),
    /// systemd-unit, systemd-env, hearth-toml, or compose.
    Render {
        /// What to render.
        #[arg(value_name = "KIND")]
        kind: String,
        /// The deploy manifest.
        #[arg(long, short, default_value = "deploy.toml", value_name = "FILE")]
        manifest: PathBuf,
    },
    /// Install or upgrade the manifest's release on this machine: stage it beside
    /// the others, switch `current`, restart, wait for /ready; not ready in time,
    /// switch back and restart the previous release (exit 1, with its last log lines).
    Apply {
        /// The deploy manifest (its `[release]` says the version and sha256).
        #[arg(long, short, default_value = "deploy.toml", value_name = "FILE")]
        manifest: PathBuf,
        /// The release tarball (hearth-VERSION-x86_64-unknown-linux-gnu.tar.gz).
        #[arg(long, value_name = "FILE")]
        tarball: PathBuf,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Go back one release (or to `--to VERSION`), restart, wait for /ready.
    Rollback {
        /// The release to go back to; default: the one before the current.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// The releases on this machine, which is current, the last deploys, health.
    Status {
        #[command(flatten)]
        host: HostArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Install root (a prefix for packagers and tests); `/` on a real host.
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// How the service is restarted, as a command line.
    #[arg(
        long,
        default_value = "systemctl restart hearth",
        value_name = "COMMAND"
    )]
    restart: String,
    /// Polled until it answers 200 after a restart.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/ready",
        value_name = "URL"
    )]
    health_url: String,
    /// How long a restarted release has to get ready, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// The service's log file, whose last lines a failed upgrade shows.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    hearth_config::parse_duration(s)
}

impl HostArgs {
    fn host(&self) -> LocalHost {
        let mut host = LocalHost::new(&self.root).with_restart(Restart::Command(
            self.restart.split_whitespace().map(str::to_owned).collect(),
        ));
        if let Some(log) = &self.log_file {
            host = host.with_log_file(log);
        }
        host
    }

    fn options(&self) -> Options {
        Options {
            health_url: self.health_url.clone(),
            health_timeout: self.timeout,
            ..Options::default()
        }
    }
}

pub fn run(args: DeployArgs) -> ExitCode {
    match args.command {
        DeployCommand::Render { kind, manifest } => render(&kind, &manifest),
        DeployCommand::Apply {
            manifest,
            tarball,
            host,
        } => apply(&manifest, &tarball, &host),
        DeployCommand::Rollback { to, host } => {
            match release::rollback(&host.host(), to.as_deref(), &host.options()) {
                Ok(o) => {
                    output::line(format!(
                        "rolled back from {} to {} (ready in {:.1} s)",
                        o.from.as_deref().unwrap_or("-"),
                        o.to,
                        o.waited.as_secs_f64()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => failed(&e),
            }
        }
        DeployCommand::Status { host } => status(&host),
    }
}

fn load(path: &Path) -> Result<Manifest, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        output::err(format!("error: cannot read {}: {e}", path.display()));
        ExitCode::from(2)
    })?;
    Manifest::from_str(&text, &path.display().to_string()).map_err(|e| {
        output::err(format!("error: {e}"));
        ExitCode::from(2)
    })
}

fn render(kind: &str, path: &Path) -> ExitCode {
    let manifest = match load(path) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match hearth_deploy::render::render(kind, &manifest) {
        Some(text) => {
            // The artifact as is (it ends in a newline of its own).
            output::line(text.trim_end_matches('\n'));
            ExitCode::SUCCESS
        }
        None => {
            output::err(format!(
                "error: `{kind}` is not a rendering; one of: {}",
                hearth_deploy::render::KINDS.join(", ")
            ));
            ExitCode::from(2)
        }
    }
}

fn apply(path: &Path, tarball: &Path, args: &HostArgs) -> ExitCode {
    let manifest = match load(path) {
        Ok(m) => m,
        Err(code) => return code,
    };
    if matches!(manifest.host.target, Target::Ssh { .. }) {
        output::err(
            "error: apply over SSH is not built yet: run `hearth deploy render install-sh` on the host, \
             or `hearth deploy apply` there with the tarball",
        );
        return ExitCode::from(2);
    }
    let new = NewRelease {
        version: &manifest.release.version,
        tarball,
        sha256: &manifest.release.sha256,
    };
    match release::apply(&args.host(), new, &args.options()) {
        Ok(o) => {
            match o.action {
                None => output::line(format!("{} is already current: nothing to do", o.to)),
                Some(action) => output::line(format!(
                    "{action:?} {} -> {}: ready in {:.1} s{}",
                    o.from.as_deref().unwrap_or("(none)"),
                    o.to,
                    o.waited.as_secs_f64(),
                    if o.pruned.is_empty() {
                        String::new()
                    } else {
                        format!("; removed old releases {}", o.pruned.join(", "))
                    }
                )),
            }
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

fn status(args: &HostArgs) -> ExitCode {
    match release::status(&args.host(), &args.options(), 5) {
        Ok(s) => {
            output::line(format!("host {}", s.host));
            for r in &s.releases {
                let mark = if s.current.as_deref() == Some(r.version.as_str()) {
                    "* "
                } else if s.previous.as_deref() == Some(r.version.as_str()) {
                    "< "
                } else {
                    "  "
                };
                output::line(format!("{mark}{:<16} installed {}", r.version, r.installed));
            }
            if s.releases.is_empty() {
                output::line("  no release installed");
            }
            output::line(format!("health {:?}", s.health));
            for h in &s.history {
                output::line(format!(
                    "  {} {:?} {} -> {} {:?} {}",
                    h.time,
                    h.action,
                    h.from.as_deref().unwrap_or("-"),
                    h.to,
                    h.outcome,
                    h.message
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &release::DeployError) -> ExitCode {
    output::err(format!("error: {e}"));
    ExitCode::FAILURE
}
