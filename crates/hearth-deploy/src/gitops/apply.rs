//! `hearth deploy apply --env NAME`: deploy one environment's services on its
//! runner, in dependency order, each through the release core; and the
//! `status` and `history` that read what it left.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::GitopsError;
use super::check::compose_command;
use super::model::{DEFAULT_STATE_DIR, Environment, INFRA_FILE, Kind, Target};
use super::plan::{dependency_order, plan};
use super::repo::{Repo, git_head, list_files};
use super::secrets::Masker;
use super::service_host::{ServiceHost, digest_files};
use crate::release::{self, Health, HistoryEntry, Host, Options};

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
}

/// The state folder for an environment: the flag's, else the infra file's, else the default.
pub fn default_state_dir(flag: Option<&Path>, env: Option<&Environment>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| env.and_then(|e| e.state_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Deploys the selected services of `opts.environment`. `secret` reads a
/// secret's value (the CLI: the process environment); `say` gets each line of
/// progress, secrets masked. The first service that fails is rolled back by
/// the core and ends the run: the services after it are not deployed.
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
    if let Target::Ssh { address, .. } = &env.target {
        return Err(GitopsError::Refused(format!(
            "environment {} is reached over SSH ({address}); apply over SSH is not supported yet: put the environment's runner on that host with target = \"local\"",
            env.name
        )));
    }
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
    if selected.is_empty() {
        say(&format!("nothing to deploy to {}", env.name));
        return Ok(());
    }

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
        if s.kind == Kind::Compose {
            engine_ready().map_err(|why| {
                GitopsError::Refused(format!(
                    "{n} is a compose service and this runner has no container engine ({why}); nothing was deployed"
                ))
            })?;
        }
    }
    if !missing.is_empty() {
        return Err(GitopsError::Refused(format!(
            "missing secrets: {}; set them in the CI's secret store and pass them to the apply step's env (.github/workflows/deploy.yml); nothing was deployed",
            missing.join(", ")
        )));
    }
    let masker = Masker::new(values.iter().map(|(_, _, v)| v.clone()));

    let state_dir = default_state_dir(opts.state_dir.as_deref(), Some(env));
    fs::create_dir_all(&state_dir).map_err(GitopsError::io("create", &state_dir))?;
    let _lock = lock_runner(&state_dir, opts.lock_timeout, say)?;
    let commit = git_head(&repo.root).unwrap_or_default();
    let files = list_files(&repo.root);
    say(&format!(
        "deploying to {}: {}",
        env.name,
        selected.join(", ")
    ));
    for (i, n) in selected.iter().enumerate() {
        let s = &services[n];
        let mut host = ServiceHost::new(&state_dir, n, &env.name, &masker, say);
        host.commit = commit.clone();
        host.hearth_bin = opts.hearth_bin.clone();
        host.vars = values
            .iter()
            .filter(|(svc, _, _)| svc == n)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
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

/// The services deployed under `state_dir` (those of `environment` only, if given).
pub fn status(
    state_dir: &Path,
    environment: Option<&str>,
) -> Result<Vec<ServiceState>, GitopsError> {
    let dir = state_dir.join("services");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(GitopsError::io("list", &dir)(e)),
    };
    names.sort();
    let masker = Masker::default();
    let quiet = |_: &str| {};
    let mut out = Vec::new();
    for n in names {
        let mut host = ServiceHost::new(state_dir, &n, "", &masker, &quiet);
        // A look, not a deploy: its probe's output is not the deploy log's.
        host.log_steps = false;
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
        let env = field("environment");
        if environment.is_some_and(|want| want != env) {
            continue;
        }
        let history = host.history().map_err(fail)?;
        out.push(ServiceState {
            name: n.clone(),
            environment: env,
            commit: field("commit"),
            installed: field("installed"),
            health: current.as_ref().and_then(|_| host.probe_once()),
            current,
            last: history.last().cloned(),
        });
    }
    Ok(out)
}

/// A service's whole history on this runner, oldest first.
pub fn history(state_dir: &Path, service: &str) -> Result<Vec<HistoryEntry>, GitopsError> {
    if !super::model::valid_name(service) {
        return Err(GitopsError::Refused(format!(
            "{service:?} is not a service name"
        )));
    }
    let masker = Masker::default();
    let quiet = |_: &str| {};
    let host = ServiceHost::new(state_dir, service, "", &masker, &quiet);
    if !host.dir.is_dir() {
        return Err(GitopsError::Refused(format!(
            "{service} was never deployed under {}",
            state_dir.display()
        )));
    }
    host.inner()
        .history()
        .map_err(|source| GitopsError::Deploy {
            service: service.to_string(),
            source: Box::new(source),
        })
}
