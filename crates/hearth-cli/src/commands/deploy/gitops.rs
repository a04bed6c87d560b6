//! The GitOps side of `hearth deploy`: `init`, `check`, `plan`, `apply --env`,
//! `status --env`, `history`. Wiring and printing only; `hearth_deploy::gitops`
//! does the work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hearth_deploy::gitops::{
    self, ApplyOptions, GitopsError, INFRA_FILE, Repo, Selection, Site, SshSettings,
    default_state_dir,
};
use hearth_deploy::release::Action;

use super::{GitopsApplyArgs, GitopsPlace, HostArgs};
use crate::output;

/// Exit 2 for what the user must fix before anything can run, 1 for a failed run.
fn failed(e: &GitopsError) -> ExitCode {
    output::err(format!("error: {e}"));
    match e {
        GitopsError::Deploy { .. } => ExitCode::FAILURE,
        GitopsError::Refused(_) => ExitCode::FAILURE,
        _ => ExitCode::from(2),
    }
}

fn open_repo(repo: Option<&Path>) -> Result<Repo, ExitCode> {
    let start = repo.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Repo::find(&start).map_err(|e| failed(&e))
}

pub fn init(dir: &Path) -> ExitCode {
    match gitops::init(dir) {
        Ok(files) => {
            for f in &files {
                output::line(format!("wrote {}", dir.join(f).display()));
            }
            output::line(format!(
                "next: cd {} && git init && git add -A && git commit -m 'infra repository'; label a self-hosted runner per environment (homelab, cloud); see docs/adding-services.md",
                dir.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

pub fn check(repo: Option<&Path>, since: Option<&str>, json: bool) -> ExitCode {
    let repo = match open_repo(repo) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = match gitops::check(&repo, since) {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    if json {
        output::line(gitops::findings_json(&report));
    } else {
        for n in &report.notices {
            output::line(format!("notice: {n}"));
        }
        for f in &report.findings {
            if github {
                output::line(gitops::github_annotation(f));
            }
            output::line(format!("{}:{}: {}: {}", f.file, f.line, f.rule, f.message));
        }
        let what = if report.services.is_empty() {
            "no service".to_string()
        } else {
            report.services.join(", ")
        };
        if report.findings.is_empty() {
            output::line(format!("ok: checked {what}"));
        } else {
            output::line(format!("{} problem(s) in {what}", report.findings.len()));
        }
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn plan(
    repo: Option<&Path>,
    since: Option<&str>,
    head: Option<&str>,
    json: bool,
    github_output: bool,
) -> ExitCode {
    let repo = match open_repo(repo) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let plan = match gitops::plan(&repo, since, head) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    if github_output {
        let Some(path) = std::env::var_os("GITHUB_OUTPUT") else {
            output::err(
                "error: --github-output: GITHUB_OUTPUT is not set (it is, in a GitHub Actions step)",
            );
            return ExitCode::from(2);
        };
        let text = format!("matrix={}\nany={}\n", plan.matrix(), !plan.is_empty());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            output::err(format!(
                "error: cannot append to {}: {e}",
                Path::new(&path).display()
            ));
            return ExitCode::FAILURE;
        }
    }
    if json {
        output::line(plan.to_json());
        return ExitCode::SUCCESS;
    }
    for n in &plan.notices {
        output::line(format!("notice: {n}"));
    }
    if plan.is_empty() {
        output::line("nothing to deploy");
        return ExitCode::SUCCESS;
    }
    for env in &plan.environments {
        output::line(format!(
            "{} (runs-on: [self-hosted, {}]):",
            env.environment, env.runner
        ));
        for (i, s) in env.services.iter().enumerate() {
            output::line(format!(
                "  {}. {:<20} {:<8} {}",
                i + 1,
                s.name,
                s.kind,
                s.reason
            ));
        }
        for name in &env.removals {
            output::line(format!(
                "  -  {name:<20} removed from the repository: apply stops it (unless --keep-removed)"
            ));
        }
    }
    ExitCode::SUCCESS
}

/// The variable that may hold the private key itself, for environments with
/// target = "ssh" (a CI secret; `--identity FILE` wins over it).
pub const SSH_KEY_ENV: &str = "HEARTH_DEPLOY_SSH_KEY";

/// The SSH settings the flags give (`--identity`, `--known-hosts`), and the
/// key in HEARTH_DEPLOY_SSH_KEY.
pub fn ssh_settings(identity: Option<PathBuf>, known_hosts: Option<PathBuf>) -> SshSettings {
    SshSettings {
        identity,
        known_hosts,
        options: Vec::new(),
        key: std::env::var(SSH_KEY_ENV).ok(),
    }
}

pub fn apply(env: &str, args: &GitopsApplyArgs, host: &HostArgs) -> ExitCode {
    let selection = match (&args.since, args.services.is_empty(), args.all) {
        (Some(since), true, false) => Selection::Since {
            since: since.clone(),
            head: args.head.clone(),
        },
        (None, false, false) => Selection::Services(args.services.clone()),
        (None, true, true) => Selection::All,
        _ => {
            output::err(
                "error: say which services to deploy: --since REF (those changed), --services a,b, or --all",
            );
            return ExitCode::from(2);
        }
    };
    let repo = match open_repo(args.place.repo.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = ApplyOptions {
        environment: env.to_string(),
        selection,
        state_dir: args.place.state_dir.clone(),
        lock_timeout: args.lock_timeout,
        hearth_bin: std::env::current_exe().ok(),
        keep: 5,
        keep_removed: args.keep_removed,
        ssh: ssh_settings(host.identity.clone(), host.known_hosts.clone()),
    };
    let secret = |name: &str| std::env::var(name).ok();
    let say = |line: &str| output::line(line);
    match gitops::apply(&repo, &opts, &secret, &say) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// Whether `status` is the GitOps one: asked for (`--env`, `--state-dir`,
/// `--repo`), or run inside a GitOps repository without one-host flags.
pub fn is_gitops_status(
    manifest: Option<&Path>,
    host: &HostArgs,
    env: Option<&str>,
    place: &GitopsPlace,
) -> bool {
    if env.is_some() || place.state_dir.is_some() || place.repo.is_some() {
        return true;
    }
    manifest.is_none()
        && host.root == Path::new("/")
        && host.health_url.is_none()
        && Repo::find(Path::new(".")).is_ok()
}

/// Where the services are: the environment's state folder here or on its
/// SSH host; without an environment, the flag's folder, else the one all
/// local environments share in the repository's infra file, else the default.
fn site(env: Option<&str>, place: &GitopsPlace, ssh: &SshSettings) -> Result<Site, GitopsError> {
    let start = place.repo.clone().unwrap_or_else(|| PathBuf::from("."));
    let repo = Repo::find(&start).ok();
    let infra = repo.as_ref().and_then(|r| r.infra.clone().ok());
    if let (Some(repo), Some(e)) = (&repo, env.and_then(|n| infra.as_ref()?.environments.get(n))) {
        return Site::of(&repo.root, e, place.state_dir.as_deref(), ssh);
    }
    if let Some(dir) = &place.state_dir {
        return Ok(Site::local(dir));
    }
    let Some(infra) = infra else {
        return Ok(Site::local(default_state_dir(None, None)));
    };
    let mut dirs: Vec<PathBuf> = infra
        .environments
        .values()
        .map(|e| default_state_dir(None, Some(e)))
        .collect();
    dirs.dedup();
    Ok(if dirs.len() == 1 {
        Site::local(dirs.remove(0))
    } else {
        Site::local(default_state_dir(None, None))
    })
}

pub fn status(env: Option<&str>, place: &GitopsPlace, host: &HostArgs) -> ExitCode {
    let site = match site(
        env,
        place,
        &ssh_settings(host.identity.clone(), host.known_hosts.clone()),
    ) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    // The health checks get the secrets they declare, when this shell has them.
    let secret = |name: &str| std::env::var(name).ok();
    let services = match gitops::status(&site, env, &secret) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    output::line(format!(
        "services deployed under {}{}",
        site.describe(),
        env.map(|e| format!(" (environment {e})"))
            .unwrap_or_default()
    ));
    if services.is_empty() {
        output::line(format!(
            "  none yet: `hearth deploy apply --env NAME` deploys them (the environments are in {INFRA_FILE})"
        ));
    }
    for s in &services {
        let health = match &s.health {
            Some(h) if h.ready => "healthy".to_string(),
            Some(h) => format!("UNHEALTHY ({})", h.last),
            None => "-".to_string(),
        };
        let last = s.last.as_ref().map_or_else(String::new, |l| {
            format!(
                "; last: {} {:?} {} -> {} {:?}",
                l.time,
                l.action,
                l.from.as_deref().unwrap_or("-"),
                l.to,
                l.outcome
            )
        });
        output::line(format!(
            "  {:<20} {:<12} {:<16} commit {:<12} since {} {}{last}",
            s.name,
            s.environment,
            s.current.as_deref().unwrap_or(
                if s.last.as_ref().is_some_and(|l| l.action == Action::Remove) {
                    "(removed)"
                } else {
                    "(none)"
                }
            ),
            s.commit.chars().take(12).collect::<String>(),
            s.installed,
            health
        ));
    }
    ExitCode::SUCCESS
}

pub fn history(
    service: &str,
    env: Option<&str>,
    json: bool,
    place: &GitopsPlace,
    ssh: &SshSettings,
) -> ExitCode {
    let entries = match site(env, place, ssh).and_then(|s| gitops::history(&s, service)) {
        Ok(e) => e,
        Err(e) => return failed(&e),
    };
    for e in &entries {
        if json {
            output::line(e.to_line().trim_end());
        } else {
            output::line(format!(
                "{} {:?} {} -> {} {:?} {}",
                e.time,
                e.action,
                e.from.as_deref().unwrap_or("-"),
                e.to,
                e.outcome,
                e.message
            ));
        }
    }
    if entries.is_empty() && !json {
        output::line(format!("no deploys of {service} yet"));
    }
    ExitCode::SUCCESS
}
