//! `hearth deploy apply --env NAME`: deploy one environment's services on its
//! runner (or, for `target = "ssh"`, from its runner onto its host), in
//! dependency order, each through the release core; stop the services removed
//! from the repository; and the `status` and `history` that read what it left.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::GitopsError;
use super::check::compose_command;
use super::model::{INFRA_FILE, Kind};
use super::plan::{dependency_order, plan};
use super::remote;
use super::repo::{Repo, git_head, list_files};
use super::secrets::Masker;
use super::service_host::digest_files;
use super::site::{Site, SshSettings};
use crate::release::{
    self, Action, DeployError, EventOutcome, Health, HistoryEntry, Host, Options,
};

/// Which services of the environment to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Those a change from `since` to `head` (None: the working tree) touches.
    Since {
        since: String,
        head: Option<String>,
    },
    /// These, by name.
    Services(Vec<String>),
    All,
}

/// How to run an apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub environment: String,
    pub selection: Selection,
    /// Where releases and history live (None: the environment's `state_dir`,
    /// else [`DEFAULT_STATE_DIR`]).
    pub state_dir: Option<PathBuf>,
    /// How long to wait for another apply on this runner to finish.
    pub lock_timeout: Duration,
    /// The binary that runs `kind = "hearth"` services.
    pub hearth_bin: Option<PathBuf>,
    /// Releases kept per service.
    pub keep: usize,
    /// Leave running the services removed from the repository (they are
    /// named, not stopped).
    pub keep_removed: bool,
    /// How to log in, for an environment reached over SSH.
    pub ssh: SshSettings,
}

/// Deploys the selected services of `opts.environment`, after stopping those
/// removed from the repository (unless `keep_removed`, or the selection names
/// services). `secret` reads a secret's value (the CLI: the process
/// environment); `say` gets each line of progress, secrets masked. The first
/// service that fails is rolled back by the core and ends the run: the
/// services after it are not deployed.
pub fn apply(
    repo: &Repo,
    opts: &ApplyOptions,
    secret: &dyn Fn(&str) -> Option<String>,
    say: &dyn Fn(&str),
) -> Result<(), GitopsError> {
    let infra = repo.infra()?;
    let env = infra.environments.get(&opts.environment).ok_or_else(|| {
        GitopsError::UnknownEnvironment {
            name: opts.environment.clone(),
            file: INFRA_FILE,
            known: infra.names(),
        }
    })?;
    let site = Site::of(&repo.root, env, opts.state_dir.as_deref(), &opts.ssh)?;
    let services = repo.parsed_services()?;
    let order = dependency_order(&services)?;
    let in_env = |n: &String| services[n].environment == env.name;
    let selected: Vec<String> = match &opts.selection {
        Selection::All => order.iter().filter(|n| in_env(n)).cloned().collect(),
        Selection::Since { since, head } => {
            let p = plan(repo, Some(since), head.as_deref())?;
            for n in &p.notices {
                say(&format!("notice: {n}"));
            }
            p.services_of(&env.name)
        }
        Selection::Services(names) => {
            for n in names {
                match services.get(n) {
                    None => {
                        return Err(GitopsError::Refused(format!(
                            "{n} is not a service (no services/{n}/service.toml)"
                        )));
                    }
                    Some(s) if s.environment != env.name => {
                        return Err(GitopsError::Refused(format!(
                            "{n} belongs to environment {}, not {}: its runner deploys it",
                            s.environment, env.name
                        )));
                    }
                    Some(_) => {}
                }
            }
            order
                .iter()
                .filter(|n| names.contains(n))
                .cloned()
                .collect()
        }
    };

    // Everything that can be known before a change: health checks, secrets, engines.
    let mut missing = Vec::new();
    let mut values = Vec::new();
    for n in &selected {
        let s = &services[n];
        if s.health.is_none() {
            return Err(GitopsError::Refused(format!(
                "services/{n}/service.toml declares no [health]: nothing was deployed (`hearth deploy check` says where)"
            )));
        }
        for name in &s.secrets {
            match secret(name) {
                Some(v) if !v.is_empty() => values.push((n.clone(), name.clone(), v)),
                _ => missing.push(format!("{name} (for {n})")),
            }
        }
    }
    if !missing.is_empty() {
        return Err(GitopsError::Refused(format!(
            "missing secrets: {}; set them in the CI's secret store and pass them to the apply step's env (.github/workflows/deploy.yml); nothing was deployed",
            missing.join(", ")
        )));
    }
    if let Some(n) = selected.iter().find(|n| services[*n].kind == Kind::Compose) {
        let ready = match &site.ssh {
            Some(ssh) => remote::engine_ready(ssh),
            None => engine_ready(),
        };
        ready.map_err(|why| {
            GitopsError::Refused(format!(
                "{n} is a compose service and {} has no container engine ({why}); nothing was deployed",
                if site.ssh.is_some() { "the host" } else { "this runner" }
            ))
        })?;
    }
    // What runs there that the repository no longer declares for this environment.
    let removed = match &opts.selection {
        Selection::Services(_) => Vec::new(),
        _ => removed_services(&site, &env.name, |n| {
            services.get(n).is_some_and(|s| s.environment == env.name)
        })?,
    };
    // A stop step gets the secrets its release declares, those this run has.
    for n in &removed {
        let plain = Masker::default();
        let quiet = |_: &str| {};
        for k in site
            .service(n, &env.name, &plain, &quiet)
            .declared_secrets()
        {
            if let Some(v) = secret(&k).filter(|v| !v.is_empty()) {
                values.push((n.clone(), k, v));
            }
        }
    }
    let masker = Masker::new(values.iter().map(|(_, _, v)| v.clone()));
    let vars_of = |n: &str| -> Vec<(String, String)> {
        values
            .iter()
            .filter(|(svc, _, _)| svc == n)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if selected.is_empty() && removed.is_empty() {
        say(&format!("nothing to deploy to {}", env.name));
        return Ok(());
    }

    let _lock = lock_site(&site, opts.lock_timeout, say)?;
    let commit = git_head(&repo.root).unwrap_or_default();
    let files = list_files(&repo.root);
    if let Some(ssh) = &site.ssh {
        say(&format!(
            "{} is reached over ssh: {} (state in {})",
            env.name,
            ssh.destination(),
            site.state_dir.display()
        ));
    }
    if !removed.is_empty() {
        if opts.keep_removed {
            say(&format!(
                "removed from the repository, left running (--keep-removed): {}",
                removed.join(", ")
            ));
        } else {
            for n in &removed {
                remove_service(&site, n, &env.name, vars_of(n), &masker, say)?;
            }
        }
    }
    if selected.is_empty() {
        return Ok(());
    }
    say(&format!(
        "deploying to {}: {}",
        env.name,
        selected.join(", ")
    ));
    for (i, n) in selected.iter().enumerate() {
        let s = &services[n];
        let mut host = site.service(n, &env.name, &masker, say);
        host.commit = commit.clone();
        host.hearth_bin = opts.hearth_bin.clone();
        host.vars = vars_of(n);
        let prefix = format!("services/{n}/");
        let own: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        let src = repo.root.join("services").join(n);
        let fail = |source| GitopsError::Deploy {
            service: n.clone(),
            source: Box::new(source),
        };
        let digest = digest_files(&src, &own).map_err(fail)?;
        let current = host.current().map_err(fail)?;
        if let Some(c) = &current
            && host.release_field(c, "sha256").as_deref() == Some(digest.as_str())
        {
            say(&format!("{n}: unchanged, {c} is current"));
            continue;
        }
        let version = host.next_version().map_err(fail)?;
        say(&format!(
            "{n}: {} -> {version} ({})",
            current.as_deref().unwrap_or("(none)"),
            s.kind.as_str()
        ));
        let core = Options {
            health_url: String::new(),
            health_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            keep: opts.keep.max(2),
            log_lines: 20,
        };
        let result = release::apply_staged(&host, &version, &digest, &core, || {
            host.stage_files(&version, &src, &own, &digest)
        });
        match result {
            Ok(o) => say(&format!(
                "{n}: {version} is current and healthy ({:.1} s){}",
                o.waited.as_secs_f64(),
                if o.pruned.is_empty() {
                    String::new()
                } else {
                    format!("; removed old releases {}", o.pruned.join(", "))
                }
            )),
            Err(e) => {
                let rest = &selected[i + 1..];
                if !rest.is_empty() {
                    say(&format!(
                        "not deployed, after {n} failed: {}",
                        rest.join(", ")
                    ));
                }
                if let Some(lost) = host.lost_connection() {
                    return Err(GitopsError::Refused(masker.mask(&format!(
                        "{n}: the connection to {} failed during {lost}; what runs there now is unknown (the rollback could not run over it either): `hearth deploy status --env {}` shows it once ssh reaches the host again, and the next apply picks up from there",
                        site.ssh.as_ref().map_or("the host", |h| h.destination()),
                        env.name
                    ))));
                }
                return Err(GitopsError::Deploy {
                    service: n.clone(),
                    source: Box::new(e),
                }
                .masked(&masker));
            }
        }
    }
    Ok(())
}

/// The services with a current release recorded for `environment` that
/// `declared` no longer claims: removed from the repository, or moved to
/// another environment.
fn removed_services(
    site: &Site,
    environment: &str,
    declared: impl Fn(&str) -> bool,
) -> Result<Vec<String>, GitopsError> {
    if site.ssh.is_none() && !site.state_dir.join("services").is_dir() {
        return Ok(Vec::new());
    }
    let masker = Masker::default();
    let quiet = |_: &str| {};
    let mut out = Vec::new();
    for n in site.service_names()? {
        if declared(&n) {
            continue;
        }
        let host = site.service(&n, environment, &masker, &quiet);
        let Ok(Some(current)) = host.current() else {
            continue;
        };
        if host.release_field(&current, "environment").as_deref() == Some(environment) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Stops a removed service as its kind says, records it, and leaves no
/// release current (its releases, data and history stay).
fn remove_service(
    site: &Site,
    name: &str,
    environment: &str,
    vars: Vec<(String, String)>,
    masker: &Masker,
    say: &dyn Fn(&str),
) -> Result<(), GitopsError> {
    let mut host = site.service(name, environment, masker, say);
    host.vars = vars;
    let fail = |source| GitopsError::Deploy {
        service: name.to_string(),
        source: Box::new(source),
    };
    let _guard = host.lock().map_err(fail)?;
    let Some(current) = host.current().map_err(fail)? else {
        return Ok(());
    };
    say(&format!(
        "{name}: removed from the repository; stopping {current}"
    ));
    match host.stop_step() {
        Ok(done) => {
            host.append_history(&HistoryEntry::now(
                Action::Remove,
                Some(current.clone()),
                "none",
                EventOutcome::Ok,
                format!("removed from the repository: {done}"),
            ))
            .map_err(fail)?;
            host.unlink_current().map_err(fail)?;
            say(&format!("{name}: removed ({done})"));
            Ok(())
        }
        Err(why) => {
            let why = masker.mask(&why);
            let _ = host.append_history(&HistoryEntry::now(
                Action::Remove,
                Some(current.clone()),
                current.clone(),
                EventOutcome::Failed,
                format!("stopping failed: {why}"),
            ));
            Err(GitopsError::Refused(format!(
                "{name}: removed from the repository, but stopping it failed ({why}); {current} stays current: stop it by hand, or rerun with --keep-removed; nothing else was deployed"
            )))
        }
    }
}

/// One apply at a time per state folder: the runner's lock here, or the
/// host's over SSH; a second apply waits for the first, up to `timeout`.
enum SiteLock {
    Local(#[expect(dead_code, reason = "held for its drop")] fs::File),
    Ssh(#[expect(dead_code, reason = "held for its drop")] release::SshGuard),
}

fn lock_site(site: &Site, timeout: Duration, say: &dyn Fn(&str)) -> Result<SiteLock, GitopsError> {
    let Some(ssh) = &site.ssh else {
        fs::create_dir_all(&site.state_dir).map_err(GitopsError::io("create", &site.state_dir))?;
        return lock_runner(&site.state_dir, timeout, say).map(SiteLock::Local);
    };
    let dir = site.state_dir.display().to_string();
    let host = ssh
        .clone()
        .with_layout(dir.clone(), format!("{dir}/history.jsonl"));
    let start = Instant::now();
    let mut told = false;
    loop {
        match host.lock() {
            Ok(guard) => return Ok(SiteLock::Ssh(guard)),
            Err(DeployError::LockHeld { holder, .. }) => {
                if !told {
                    say(&format!("waiting for another apply on the host ({holder})"));
                    told = true;
                }
                if start.elapsed() > timeout {
                    return Err(GitopsError::Refused(format!(
                        "another apply held {dir}/deploy.lock on {} for more than {:.0} s ({holder}); try again when it is done",
                        ssh.destination(),
                        timeout.as_secs_f64()
                    )));
                }
                thread::sleep(Duration::from_millis(500));
            }
            Err(source) => {
                return Err(GitopsError::Deploy {
                    service: "(all)".to_string(),
                    source: Box::new(source),
                });
            }
        }
    }
}

impl GitopsError {
    /// The same error with secret values masked in its text.
    fn masked(self, masker: &Masker) -> GitopsError {
        let text = self.to_string();
        let masked = masker.mask(&text);
        if masked == text {
            self
        } else {
            GitopsError::Refused(masked)
        }
    }
}

/// Whether a container engine answers (`docker info`).
fn engine_ready() -> Result<(), String> {
    if compose_command().is_none() {
        return Err("no Compose v2 found".to_string());
    }
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("docker info failed")
            .trim()
            .to_string())
    }
}

/// The runner's lock: one apply at a time per state folder. A second apply
/// waits for it (serialized, never interleaved), up to `timeout`.
fn lock_runner(
    state_dir: &Path,
    timeout: Duration,
    say: &dyn Fn(&str),
) -> Result<fs::File, GitopsError> {
    let path = state_dir.join("deploy.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(GitopsError::io("open the lock file", &path))?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) => {
                if !told {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    say(&format!(
                        "waiting for another apply on this runner ({})",
                        holder.trim()
                    ));
                    told = true;
                }
                if start.elapsed() > timeout {
                    return Err(GitopsError::Refused(format!(
                        "another apply held {} for more than {:.0} s; try again when it is done",
                        path.display(),
                        timeout.as_secs_f64()
                    )));
                }
                thread::sleep(Duration::from_millis(100));
            }
            Err(fs::TryLockError::Error(e)) => return Err(GitopsError::io("lock", &path)(e)),
        }
    }
    let note = format!(
        "held since {} by pid {}",
        release::now_rfc3339(),
        std::process::id()
    );
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(note.as_bytes()));
    Ok(file)
}

/// One service's state on this runner.
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub name: String,
    pub environment: String,
    pub current: Option<String>,
    pub commit: String,
    /// When the current release was staged.
    pub installed: String,
    /// One probe of its health check (None when nothing is current).
    pub health: Option<Health>,
    pub last: Option<HistoryEntry>,
}

/// The services deployed at `site` (those of `environment` only, if given),
/// each with one probe of its health check, given the secrets it declares
/// that `secret` has (none are shown: the probe's output is masked).
pub fn status(
    site: &Site,
    environment: Option<&str>,
    secret: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ServiceState>, GitopsError> {
    let quiet = |_: &str| {};
    let mut out = Vec::new();
    for n in site.service_names()? {
        let plain = Masker::default();
        let mut host = site.service(&n, "", &plain, &quiet);
        let fail = |source| GitopsError::Deploy {
            service: n.clone(),
            source: Box::new(source),
        };
        let current = host.current().map_err(fail)?;
        let field = |k: &str| {
            current
                .as_deref()
                .and_then(|c| host.release_field(c, k))
                .unwrap_or_default()
        };
        // A removed service has no current release: its newest one says
        // where it ran.
        let env = current
            .clone()
            .or_else(|| host.releases().ok()?.pop().map(|r| r.version))
            .and_then(|v| host.release_field(&v, "environment"))
            .unwrap_or_default();
        let (commit, installed) = (field("commit"), field("installed"));
        if environment.is_some_and(|want| want != env) {
            continue;
        }
        let history = host.history().map_err(fail)?;
        host.environment = env.clone();
        let vars: Vec<(String, String)> = host
            .declared_secrets()
            .into_iter()
            .filter_map(|k| secret(&k).filter(|v| !v.is_empty()).map(|v| (k, v)))
            .collect();
        let masker = Masker::new(vars.iter().map(|(_, v)| v.clone()));
        let health = if current.is_some() {
            let mut look = site.service(&n, &env, &masker, &quiet);
            // A look, not a deploy: its probe's output is not the deploy log's.
            look.log_steps = false;
            look.vars = vars;
            look.probe_once().map(|mut h| {
                h.last = masker.mask(&h.last);
                h
            })
        } else {
            None
        };
        out.push(ServiceState {
            name: n.clone(),
            environment: env,
            commit,
            installed,
            health,
            current,
            last: history.last().cloned(),
        });
    }
    Ok(out)
}

/// A service's whole history at `site`, oldest first.
pub fn history(site: &Site, service: &str) -> Result<Vec<HistoryEntry>, GitopsError> {
    if !super::model::valid_name(service) {
        return Err(GitopsError::Refused(format!(
            "{service:?} is not a service name"
        )));
    }
    let masker = Masker::default();
    let quiet = |_: &str| {};
    let host = site.service(service, "", &masker, &quiet);
    if !host.exists() {
        return Err(GitopsError::Refused(format!(
            "{service} was never deployed under {}",
            site.describe()
        )));
    }
    host.history().map_err(|source| GitopsError::Deploy {
        service: service.to_string(),
        source: Box::new(source),
    })
}
