//! `hearth deploy`: render what a host needs from `deploy.toml`, and install,
//! upgrade, roll back and inspect releases on this machine or over SSH; and
//! GitOps for a repository of services (`init`, `check`, `plan`, `apply --env`,
//! `status --env`, `history`). The work lives in `hearth-deploy`; this is its
//! wiring. `apply` and `status` serve both: `--tarball` is the one-host apply,
//! `--env` the GitOps one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use hearth_deploy::manifest::{Manifest, Target, Tls};
use hearth_deploy::release::{self, LocalHost, NewRelease, Options, RemoteLog, Restart, SshHost};

use crate::output;

mod gitops;
use gitops as gitops_cmd;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    // Boxed: the GitOps flags made it the largest of the CLI's commands.
    #[command(subcommand)]
    pub command: Box<DeployCommand>,
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
    /// One host: install or upgrade the manifest's release on its host (this
    /// machine, or one reached over SSH with your key and known_hosts) with
    /// `--tarball`: stage it beside the others, switch `current`, restart, wait for
    /// /ready; not ready in time, switch back and restart the previous release
    /// (exit 1, with its last log lines). GitOps: with `--env NAME`, deploy that
    /// environment's services from the repository (`--since REF`, `--services` or
    /// `--all`), each health-checked and rolled back on failure.
    Apply {
        /// The deploy manifest (its `[release]` says the version and sha256).
        #[arg(long, short, default_value = "deploy.toml", value_name = "FILE")]
        manifest: PathBuf,
        /// One host: the release tarball (hearth-VERSION-x86_64-unknown-linux-gnu.tar.gz).
        #[arg(long, value_name = "FILE", conflicts_with = "env")]
        tarball: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        gitops: GitopsApplyArgs,
    },
    /// Go back one release (or to `--to VERSION`), restart, wait for /ready.
    Rollback {
        /// The release to go back to; default: the one before the current.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// The deploy manifest, for a host reached over SSH; none: this machine.
        #[arg(long, short, value_name = "FILE")]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// The releases on the host, which is current, the last deploys, health. In
    /// a GitOps repository (or with `--env`): each deployed service's current
    /// release, commit, time and health on this runner.
    Status {
        /// The deploy manifest, for a host reached over SSH; none: this machine.
        #[arg(long, short, value_name = "FILE")]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        /// GitOps: only this environment's services.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        #[command(flatten)]
        place: GitopsPlace,
    },
    /// GitOps: write a new repository of services into DIR: hearth-infra.toml
    /// (homelab and cloud), an example service of each kind, .gitignore,
    /// docs/adding-services.md, and the pr-validation and deploy workflows.
    Init {
        /// Where to write it (created if need be); nothing is overwritten.
        #[arg(default_value = ".", value_name = "DIR")]
        dir: PathBuf,
    },
    /// GitOps: validate the repository: required files, executable scripts,
    /// shellcheck, compose files, environments, health checks, secrets by name
    /// only, depends_on. Exit 1 on any finding; GitHub annotations under
    /// GITHUB_ACTIONS=true.
    Check {
        /// Only the services changed since this commit (and their dependents).
        #[arg(long, value_name = "REF")]
        since: Option<String>,
        /// The findings as JSON.
        #[arg(long)]
        json: bool,
        /// The repository (default: the one holding the current folder).
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// GitOps: the services to deploy: changed since REF, plus their
    /// dependents, dependencies first, grouped by environment.
    Plan {
        /// The commit to compare with (a push's `before`, a pull request's base);
        /// none: every service.
        #[arg(long, value_name = "REF")]
        since: Option<String>,
        /// Compare with this commit (default: the working tree, i.e. the checkout).
        #[arg(long, value_name = "REF", requires = "since")]
        head: Option<String>,
        /// The plan as JSON, with the workflow's matrix.
        #[arg(long)]
        json: bool,
        /// Also write `matrix=` and `any=` to the file $GITHUB_OUTPUT names.
        #[arg(long)]
        github_output: bool,
        /// The repository (default: the one holding the current folder).
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// GitOps: every deploy and rollback of a service on this runner, oldest first.
    History {
        /// The service (its folder's name under services/).
        #[arg(value_name = "SERVICE")]
        service: String,
        /// The environment whose state folder to read (with a repository).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// One JSON object per line, as stored.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: GitopsPlace,
        /// SSH (an environment with target = "ssh"): the private key to log in with.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// SSH: the known_hosts file that must hold the host's key (default:
        /// the environment's known_hosts in the repository, else ssh's own).
        #[arg(long, value_name = "FILE")]
        known_hosts: Option<PathBuf>,
    },
}

/// Where a GitOps command finds the repository and the runner's state.
#[derive(Debug, clap::Args)]
pub struct GitopsPlace {
    /// GitOps: the repository (default: the one holding the current folder).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// GitOps: where releases and history live on this runner (default: the
    /// environment's state_dir in hearth-infra.toml, else /var/lib/hearth/gitops).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// `hearth deploy apply --env NAME`'s own flags.
#[derive(Debug, clap::Args)]
pub struct GitopsApplyArgs {
    /// GitOps: deploy this environment's services (an [environments.NAME] of
    /// hearth-infra.toml) on this machine, or over SSH on its host (target =
    /// "ssh": --identity and --known-hosts apply).
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// GitOps: the services changed since this commit, and their dependents.
    #[arg(long, value_name = "REF", requires = "env", conflicts_with_all = ["services", "all"])]
    since: Option<String>,
    /// GitOps: compare with this commit (default: the working tree).
    #[arg(long, value_name = "REF", requires = "since")]
    head: Option<String>,
    /// GitOps: these services (comma-separated), whatever changed.
    #[arg(
        long,
        value_name = "A,B",
        value_delimiter = ',',
        requires = "env",
        conflicts_with = "all"
    )]
    services: Vec<String>,
    /// GitOps: every service of the environment.
    #[arg(long, requires = "env")]
    all: bool,
    /// GitOps: leave running the services removed from the repository (by
    /// default apply stops them: stop.sh, compose down, or the Hearth process).
    #[arg(long, requires = "env")]
    keep_removed: bool,
    /// GitOps: how long to wait for another apply on this runner to finish.
    #[arg(long, default_value = "15m", value_parser = parse_duration, value_name = "DURATION")]
    lock_timeout: Duration,
    #[command(flatten)]
    place: GitopsPlace,
}

#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Install root (a prefix for packagers and tests); `/` on a real host.
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// How the service is restarted, as a command line (run on the host). The
    /// default hands the socket over to the new release (no request dropped), or
    /// starts a stopped service.
    #[arg(
        long,
        default_value = "systemctl reload-or-restart hearth",
        value_name = "COMMAND"
    )]
    restart: String,
    /// Polled from here until it answers 200 after a restart. Default: the
    /// manifest's listen address on the host (loopback on this machine), else
    /// http://127.0.0.1:8080/ready.
    #[arg(long, value_name = "URL")]
    health_url: Option<String>,
    /// SSH: the private key to log in with (default: ssh's own choice).
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// SSH: the known_hosts file that must hold the host's key (default: ssh's own).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// How long a restarted release has to get ready, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// The service's log file (on the host), whose last lines a failed upgrade shows.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

/// This machine, or one reached over SSH.
enum AnyHost {
    Local(LocalHost),
    Ssh(SshHost),
}

/// Runs `$call` with the host, whichever kind it is (the core is generic over it).
macro_rules! on_host {
    ($host:expr, |$h:ident| $call:expr) => {
        match $host {
            AnyHost::Local($h) => $call,
            AnyHost::Ssh($h) => $call,
        }
    };
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    hearth_config::parse_duration(s)
}

impl HostArgs {
    fn host(&self, manifest: Option<&Manifest>) -> AnyHost {
        match manifest.map(|m| (&m.host.name, &m.host.target)) {
            Some((
                name,
                Target::Ssh {
                    address,
                    user,
                    port,
                },
            )) => {
                let mut host = SshHost::new(format!("{user}@{address}"))
                    .with_name(name.clone())
                    .with_port(*port)
                    .with_root(self.root.display().to_string())
                    .with_restart(self.restart.clone());
                if let Some(key) = &self.identity {
                    host = host.with_identity(key);
                }
                if let Some(file) = &self.known_hosts {
                    host = host.with_known_hosts(file);
                }
                if let Some(log) = &self.log_file {
                    host = host.with_log(RemoteLog::File(log.display().to_string()));
                }
                AnyHost::Ssh(host)
            }
            _ => {
                let mut host = LocalHost::new(&self.root).with_restart(Restart::Command(
                    self.restart.split_whitespace().map(str::to_owned).collect(),
                ));
                if let Some((name, _)) = manifest.map(|m| (&m.host.name, ())) {
                    host = host.with_name(name.clone());
                }
                if let Some(log) = &self.log_file {
                    host = host.with_log_file(log);
                }
                AnyHost::Local(host)
            }
        }
    }

    fn options(&self, manifest: Option<&Manifest>) -> Options {
        Options {
            health_url: self
                .health_url
                .clone()
                .or_else(|| manifest.map(health_url))
                .unwrap_or_else(|| "http://127.0.0.1:8080/ready".to_owned()),
            health_timeout: self.timeout,
            ..Options::default()
        }
    }
}

/// Where the manifest's Hearth answers `/ready`, seen from here: the host's
/// address over SSH, loopback on this machine.
fn health_url(m: &Manifest) -> String {
    let scheme = if m.hearth.tls == Tls::Off {
        "http"
    } else {
        "https"
    };
    let host = match &m.host.target {
        Target::Ssh { address, .. } => address.clone(),
        Target::Local => "127.0.0.1".to_owned(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!("{scheme}://{host}:{}/ready", m.hearth.port())
}

pub fn run(args: DeployArgs) -> ExitCode {
    match *args.command {
        DeployCommand::Render { kind, manifest } => render(&kind, &manifest),
        DeployCommand::Apply {
            manifest,
            tarball,
            host,
            gitops,
        } => match (tarball, &gitops.env) {
            (Some(tarball), None) => apply(&manifest, &tarball, &host),
            (None, Some(env)) => gitops_cmd::apply(env, &gitops, &host),
            // clap refuses both.
            _ => {
                output::err(
                    "error: say what to apply: --tarball FILE (one host, with --manifest) or --env NAME (GitOps: that environment's services)",
                );
                ExitCode::from(2)
            }
        },
        DeployCommand::Rollback { to, manifest, host } => {
            let manifest = match manifest.as_deref().map(load).transpose() {
                Ok(m) => m,
                Err(code) => return code,
            };
            let opts = host.options(manifest.as_ref());
            let result = on_host!(host.host(manifest.as_ref()), |h| release::rollback(
                &h,
                to.as_deref(),
                &opts
            ));
            match result {
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
        DeployCommand::Init { dir } => gitops_cmd::init(&dir),
        DeployCommand::Check { since, json, repo } => {
            gitops_cmd::check(repo.as_deref(), since.as_deref(), json)
        }
        DeployCommand::Plan {
            since,
            head,
            json,
            github_output,
            repo,
        } => gitops_cmd::plan(
            repo.as_deref(),
            since.as_deref(),
            head.as_deref(),
            json,
            github_output,
        ),
        DeployCommand::History {
            service,
            env,
            json,
            place,
            identity,
            known_hosts,
        } => gitops_cmd::history(
            &service,
            env.as_deref(),
            json,
            &place,
            &gitops_cmd::ssh_settings(identity, known_hosts),
        ),
        DeployCommand::Status {
            manifest,
            host,
            env,
            place,
        } => {
            if gitops_cmd::is_gitops_status(manifest.as_deref(), &host, env.as_deref(), &place) {
                return gitops_cmd::status(env.as_deref(), &place, &host);
            }
            let manifest = match manifest.as_deref().map(load).transpose() {
                Ok(m) => m,
                Err(code) => return code,
            };
            status(&host, manifest.as_ref())
        }
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
    let new = NewRelease {
        version: &manifest.release.version,
        tarball,
        sha256: &manifest.release.sha256,
    };
    let opts = args.options(Some(&manifest));
    let result = on_host!(args.host(Some(&manifest)), |h| release::apply(
        &h, new, &opts
    ));
    match result {
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

fn status(args: &HostArgs, manifest: Option<&Manifest>) -> ExitCode {
    let opts = args.options(manifest);
    let result = on_host!(args.host(manifest), |h| release::status(&h, &opts, 5));
    match result {
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
