//! One service's releases on its runner, as a [`Host`] of the release core.
//!
//! Under the state folder, each service has the core's layout:
//!
//! ```text
//! services/<name>/releases/<seq>-<commit>/{the service's files, RELEASE}
//! services/<name>/current -> releases/<seq>-<commit>
//! services/<name>/deploy.lock
//! services/<name>/history.jsonl
//! services/<name>/deploy.log        (masked output of deploy steps and checks)
//! services/<name>/data/             (kept across releases: DEPLOY_DATA_DIR)
//! ```
//!
//! Staging copies the service's folder; "restart" runs the kind's deploy step
//! from `current` (so a rollback re-runs the previous release's own step); the
//! health check is the one `current`'s service.toml declares, with retries.
//!
//! For an environment reached over SSH the same layout lives under the state
//! folder on that host: the core's operations go through an [`SshHost`] with
//! that layout, and the steps through `remote` (a script each, variables on
//! stdin). The masking, the retries and the deploy log's lines are the same.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::check::compose_command;
use super::model::{Kind, Probe, Service};
use super::remote;
use super::secrets::Masker;
use crate::release::{
    self, DeployError, Health, HistoryEntry, Host, LocalGuard, LocalHost, Options, ReleaseInfo,
    RemoteLog, SshGuard, SshHost,
};

/// The state of one service under the state folder.
pub(crate) struct ServiceHost<'a> {
    inner: LocalHost,
    /// Set for an environment reached over SSH: the service's layout there
    /// (then `dir` is a path on that host).
    remote: Option<SshHost>,
    /// The Hearth binary on the SSH host (`hearth` on its PATH by default).
    pub remote_hearth: String,
    pub name: String,
    pub environment: String,
    pub dir: PathBuf,
    /// Variables the deploy step and health check get: context and secrets.
    pub vars: Vec<(String, String)>,
    pub masker: &'a Masker,
    pub commit: String,
    pub hearth_bin: Option<PathBuf>,
    pub say: &'a dyn Fn(&str),
    /// Whether steps' output goes to deploy.log (not for status's probes).
    pub log_steps: bool,
    /// Why the SSH connection failed during a step, if it did: the state on
    /// the host is then unknown, whatever the core makes of it.
    lost: std::cell::RefCell<Option<String>>,
}

impl<'a> ServiceHost<'a> {
    pub fn new(
        state_dir: &Path,
        name: &str,
        environment: &str,
        masker: &'a Masker,
        say: &'a dyn Fn(&str),
    ) -> ServiceHost<'a> {
        let dir = state_dir.join("services").join(name);
        let inner = LocalHost::new(&dir)
            .with_layout(&dir, dir.join("history.jsonl"))
            .with_name(name)
            .with_log_file(dir.join("deploy.log"));
        ServiceHost {
            inner,
            remote: None,
            remote_hearth: "hearth".to_string(),
            name: name.to_string(),
            environment: environment.to_string(),
            dir,
            vars: Vec::new(),
            masker,
            commit: String::new(),
            hearth_bin: None,
            say,
            log_steps: true,
            lost: std::cell::RefCell::new(None),
        }
    }

    /// The same service on a host over SSH, on `ssh`'s connection, under the
    /// state folder there.
    pub fn over_ssh(mut self, ssh: &SshHost) -> Self {
        let dir = self.dir.display().to_string();
        self.remote = Some(
            ssh.clone()
                .with_layout(dir.clone(), format!("{dir}/history.jsonl"))
                .with_log(RemoteLog::File(format!("{dir}/deploy.log"))),
        );
        self
    }

    /// A path under the service's folder, as the host (local or not) names it.
    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// A file under the service's folder, wherever it lives.
    fn read(&self, rel: &str) -> Option<String> {
        match &self.remote {
            Some(ssh) => remote::read(ssh, &self.path(rel)).ok().flatten(),
            None => fs::read_to_string(self.dir.join(rel)).ok(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn current_dir(&self) -> PathBuf {
        self.dir.join("current")
    }

    /// The `key=value` lines of a release's RELEASE file.
    pub fn release_field(&self, version: &str, key: &str) -> Option<String> {
        let text = self.read(&format!("releases/{version}/RELEASE"))?;
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    }

    /// The next release's name: one more than any seen, then the commit.
    pub fn next_version(&self) -> Result<String, DeployError> {
        let seq_of = |v: &str| v.split('-').next().and_then(|n| n.parse::<u64>().ok());
        let mut max = 0;
        for r in Host::releases(self)? {
            max = max.max(seq_of(&r.version).unwrap_or(0));
        }
        for e in Host::history(self)? {
            max = max.max(seq_of(&e.to).unwrap_or(0));
            if let Some(f) = &e.from {
                max = max.max(seq_of(f).unwrap_or(0));
            }
        }
        let short: String = self.commit.chars().take(7).collect();
        Ok(if short.is_empty() {
            format!("{}", max + 1)
        } else {
            format!("{}-{short}", max + 1)
        })
    }

    /// Copies `files` (relative to `src`) into a new release folder.
    pub fn stage_files(
        &self,
        version: &str,
        src: &Path,
        files: &[String],
        digest: &str,
    ) -> Result<(), DeployError> {
        let text = format!(
            "version={version}\nsha256={digest}\ninstalled={}\ncommit={}\nenvironment={}\nservice={}\n",
            release::now_rfc3339(),
            self.commit,
            self.environment,
            self.name,
        );
        if let Some(ssh) = &self.remote {
            return remote::stage(ssh, &self.path(""), version, src, files, &text);
        }
        let releases = self.dir.join("releases");
        let partial = releases.join(format!(".{version}.partial"));
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(DeployError::io("remove", &partial))?;
        }
        let copy = || -> Result<(), DeployError> {
            for f in files {
                let to = partial.join(f);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(DeployError::io("create", parent))?;
                }
                fs::copy(src.join(f), &to).map_err(DeployError::io("copy", src.join(f)))?;
            }
            fs::create_dir_all(&partial).map_err(DeployError::io("create", &partial))?;
            let file = partial.join("RELEASE");
            fs::write(&file, text).map_err(DeployError::io("write", &file))
        };
        if let Err(e) = copy() {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        let final_dir = releases.join(version);
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(DeployError::io("remove", &final_dir))?;
        }
        fs::rename(&partial, &final_dir).map_err(DeployError::io("rename into place", &final_dir))
    }

    /// The service as `current`'s own service.toml declares it.
    fn current_service(&self) -> Result<Service, String> {
        let path = self.current_dir().join("service.toml");
        let text = self
            .read("current/service.toml")
            .ok_or_else(|| format!("cannot read {}", path.display()))?;
        match Service::parse(&self.name, &text) {
            (Some(s), p) if p.is_empty() => Ok(s),
            (_, p) => Err(format!(
                "{}: {}",
                path.display(),
                p.first().map_or("does not parse", |p| p.message.as_str())
            )),
        }
    }

    fn current_version(&self) -> String {
        Host::current(self).ok().flatten().unwrap_or_default()
    }

    /// A step's variables: the context, then the secrets.
    fn step_vars(&self) -> Vec<(String, String)> {
        let version = self.current_version();
        let path = |p: PathBuf| p.display().to_string();
        let mut vars = vec![
            ("DEPLOY_SERVICE".to_string(), self.name.clone()),
            ("DEPLOY_ENVIRONMENT".to_string(), self.environment.clone()),
            (
                "DEPLOY_RELEASE_DIR".to_string(),
                path(self.dir.join("releases").join(&version)),
            ),
            ("DEPLOY_DATA_DIR".to_string(), path(self.data_dir())),
            (
                "DEPLOY_COMMIT".to_string(),
                self.release_field(&version, "commit").unwrap_or_default(),
            ),
            ("DEPLOY_RELEASE".to_string(), version),
        ];
        vars.extend(self.vars.iter().cloned());
        vars
    }

    /// The environment of a step: the context, the secrets, and not the
    /// runner's tracking id, so that what the step starts outlives the job
    /// (GitHub's runner kills the processes that carry its job's id).
    fn command(&self, program: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd).env_remove("RUNNER_TRACKING_ID");
        for (k, v) in self.step_vars() {
            cmd.env(k, v);
        }
        cmd
    }

    /// A step as a shell command line run in `current`: here, or on the SSH host.
    fn run_shell(
        &self,
        command: &str,
        label: &str,
        timeout: Duration,
        show: bool,
    ) -> Result<String, String> {
        let Some(ssh) = &self.remote else {
            let mut cmd = self.command("sh", &self.current_dir());
            cmd.args(["-c", command]);
            return self.run_step(cmd, label, timeout, show);
        };
        let out = remote::run_step(
            ssh,
            &self.path(""),
            &self.path("current"),
            command,
            &self.step_vars(),
            timeout,
        )
        .map_err(|e| {
            let why = self.masker.mask(&e.to_string());
            self.lost
                .borrow_mut()
                .get_or_insert_with(|| format!("{label}: {why}"));
            why
        })?;
        let last = self.show_and_log(label, &out.text, show);
        match out.failure(label, timeout, &last) {
            None => Ok(last),
            Some(why) => Err(why),
        }
    }

    /// Masks a step's output, appends it to the deploy log (unless this is a
    /// look, not a deploy) and shows it when asked; its last line.
    fn show_and_log(&self, label: &str, text: &str, show: bool) -> String {
        let masked = self.masker.mask(text);
        let stamp = release::now_rfc3339();
        let version = self.current_version();
        let mut log = String::new();
        for line in masked.lines() {
            log.push_str(&format!("{stamp} {version} {label}: {line}\n"));
            if show {
                (self.say)(&format!("  [{}] {line}", self.name));
            }
        }
        if self.log_steps && !log.is_empty() {
            match &self.remote {
                Some(ssh) => {
                    let _ = remote::append(ssh, &self.path("deploy.log"), &log);
                }
                None => {
                    if let Ok(mut f) = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.join("deploy.log"))
                    {
                        let _ = f.write_all(log.as_bytes());
                    }
                }
            }
        }
        masked.lines().last().unwrap_or("").to_string()
    }

    /// Runs a step with its output in a private file (a background process
    /// it starts may hold its output open for ever, so no pipe), then shows
    /// and logs that output masked. Ok(last line) or Err(why).
    fn run_step(
        &self,
        mut cmd: Command,
        label: &str,
        timeout: Duration,
        show: bool,
    ) -> Result<String, String> {
        let run_dir = self.dir.join(".run");
        fs::create_dir_all(&run_dir).map_err(|e| format!("create {}: {e}", run_dir.display()))?;
        let _ = fs::set_permissions(&run_dir, fs::Permissions::from_mode(0o700));
        let raw_path = run_dir.join(format!("{label}.{}.out", std::process::id()));
        let raw =
            File::create(&raw_path).map_err(|e| format!("create {}: {e}", raw_path.display()))?;
        let raw2 = raw.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(raw))
            .stderr(Stdio::from(raw2))
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() > timeout => {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", child.id())])
                        .status();
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "{label} ran past its {:.0}s timeout and was killed",
                        timeout.as_secs_f64()
                    ));
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(e) => break Err(format!("waiting for {label}: {e}")),
            }
        };
        let text = fs::read(&raw_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let _ = fs::remove_file(&raw_path);
        let last = self.show_and_log(label, &text, show);
        match status {
            Ok(s) if s.success() => Ok(last),
            Ok(s) => Err(if last.is_empty() {
                format!("{label} exited with {s}")
            } else {
                format!("{label} exited with {s}: {last}")
            }),
            Err(e) => Err(e),
        }
    }

    /// The kind's deploy step, run from `current`.
    fn deploy_step(&self) -> Result<(), String> {
        let service = self.current_service()?;
        let cwd = self.current_dir();
        if self.remote.is_none() {
            fs::create_dir_all(self.data_dir())
                .map_err(|e| format!("create the data folder: {e}"))?;
        }
        let compose_up = format!(
            "-p hearth-{} -f compose.yaml up -d --remove-orphans",
            self.name
        );
        match (service.kind, &self.remote) {
            (Kind::Script, None) => self
                .run_step(
                    self.command("./deploy.sh", &cwd),
                    "deploy.sh",
                    service.deploy_timeout,
                    true,
                )
                .map(|_| ()),
            (Kind::Script, Some(_)) => self
                .run_shell("./deploy.sh", "deploy.sh", service.deploy_timeout, true)
                .map(|_| ()),
            (Kind::Compose, None) => {
                let argv = compose_command().ok_or_else(|| {
                    "no Compose v2 (docker compose) on this runner: install a container engine with the compose plugin".to_string()
                })?;
                let mut cmd = self.command(&argv[0], &cwd);
                cmd.args(&argv[1..]).args(compose_up.split(' '));
                self.run_step(cmd, "compose up", service.deploy_timeout, true)
                    .map(|_| ())
            }
            (Kind::Compose, Some(_)) => self
                .run_shell(
                    &format!("docker compose {compose_up}"),
                    "compose up",
                    service.deploy_timeout,
                    true,
                )
                .map(|_| ()),
            (Kind::Hearth, None) => self.start_hearth(&cwd),
            (Kind::Hearth, Some(ssh)) => {
                remote::start_hearth(ssh, &self.path(""), &self.remote_hearth, &self.step_vars())
                    .map_err(|e| self.masker.mask(&e))
            }
        }
    }

    /// Stops the service that `current` runs, as its kind says: its release's
    /// own `stop.sh` (script), `docker compose down` (compose), the process
    /// its pid file names (hearth). Ok(what was done).
    pub fn stop_step(&self) -> Result<String, String> {
        let service = self.current_service()?;
        let timeout = service.deploy_timeout;
        match service.kind {
            Kind::Script => {
                if self.read("current/stop.sh").is_none() {
                    return Ok(
                        "its release has no stop.sh, so nothing was stopped: stop what its deploy.sh started by hand"
                            .to_string(),
                    );
                }
                self.run_shell("./stop.sh", "stop.sh", timeout, true)
                    .map(|_| "stop.sh ran".to_string())
            }
            Kind::Compose => {
                let down = format!("-p hearth-{} -f compose.yaml down", self.name);
                if self.remote.is_some() {
                    self.run_shell(
                        &format!("docker compose {down}"),
                        "compose down",
                        timeout,
                        true,
                    )?;
                } else {
                    let argv = compose_command().ok_or_else(|| {
                        "no Compose v2 (docker compose) on this runner to stop it with".to_string()
                    })?;
                    let mut cmd = self.command(&argv[0], &self.current_dir());
                    cmd.args(&argv[1..]).args(down.split(' '));
                    self.run_step(cmd, "compose down", timeout, true)?;
                }
                Ok("docker compose down ran".to_string())
            }
            Kind::Hearth => {
                let pid_file = self.path("data/hearth.pid");
                match &self.remote {
                    Some(ssh) => remote::stop_pid_file(ssh, &pid_file)?,
                    None => {
                        if let Ok(pid) = fs::read_to_string(&pid_file) {
                            stop_pid(pid.trim());
                        }
                        let _ = fs::remove_file(&pid_file);
                    }
                }
                Ok("the Hearth instance was stopped".to_string())
            }
        }
    }

    /// After a removal: no release is current any more (the releases, data
    /// and history stay, for the record and for a rollback by hand).
    pub fn unlink_current(&self) -> Result<(), DeployError> {
        match &self.remote {
            Some(ssh) => remote::unlink_current(ssh, &self.path("")),
            None => match fs::remove_file(self.current_dir()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(DeployError::io("remove", self.current_dir())(e))
                }
                _ => Ok(()),
            },
        }
    }

    /// A Hearth instance: stop the one the pid file names, start `hearth
    /// serve --config hearth.toml` from `current`, detached, logging to the
    /// data folder.
    fn start_hearth(&self, cwd: &Path) -> Result<(), String> {
        let bin = self
            .hearth_bin
            .clone()
            .ok_or_else(|| "no hearth binary to run the instance with".to_string())?;
        let pid_file = self.data_dir().join("hearth.pid");
        if let Ok(pid) = fs::read_to_string(&pid_file) {
            stop_pid(pid.trim());
        }
        let log_path = self.data_dir().join("hearth.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = self.command(&bin.display().to_string(), cwd);
        // Its database and files stay in the data folder across releases.
        cmd.env("HEARTH_STORAGE_DATA_DIR", self.data_dir().join("hearth"))
            .args(["serve", "--config", "hearth.toml"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        fs::write(&pid_file, format!("{}\n", child.id()))
            .map_err(|e| format!("write {}: {e}", pid_file.display()))?;
        // Not waited for: it runs on after this process ends.
        drop(child);
        Ok(())
    }

    /// One probe of the declared health check.
    fn probe(&self, service: &Service) -> Result<String, String> {
        let Some(h) = &service.health else {
            return Err("no [health] declared".to_string());
        };
        match &h.probe {
            Probe::Url(url) => match &self.remote {
                Some(ssh) => remote::probe_url(ssh, url, h.timeout),
                None => {
                    let r = release::check_health(url, h.timeout);
                    if r.ready { Ok(r.last) } else { Err(r.last) }
                }
            },
            Probe::Command(c) => self
                .run_shell(c, "health check", h.timeout, false)
                .map(|_| "exit 0".to_string()),
        }
    }

    /// The health check with its retries, as the core's [`Health`].
    pub fn wait_healthy(&self) -> Health {
        let start = Instant::now();
        let service = match self.current_service() {
            Ok(s) => s,
            Err(e) => return not_ready(e, start),
        };
        let Some(h) = service.health.clone() else {
            return not_ready("no [health] declared".to_string(), start);
        };
        let mut last = String::new();
        for attempt in 1..=h.retries {
            match self.probe(&service) {
                Ok(_) => {
                    return Health {
                        ready: true,
                        last: format!("healthy on attempt {attempt}"),
                        waited: start.elapsed(),
                        instance: None,
                    };
                }
                Err(e) => last = e,
            }
            if attempt < h.retries {
                thread::sleep(h.interval);
            }
        }
        not_ready(
            format!("unhealthy after {} attempts: {last}", h.retries),
            start,
        )
    }

    /// The secrets `current`'s service.toml names (none if unreadable).
    pub fn declared_secrets(&self) -> Vec<String> {
        self.current_service()
            .map(|s| s.secrets)
            .unwrap_or_default()
    }

    /// One probe, for status.
    pub fn probe_once(&self) -> Option<Health> {
        let service = self.current_service().ok()?;
        Some(match self.probe(&service) {
            Ok(last) => Health {
                ready: true,
                last,
                waited: Duration::ZERO,
                instance: None,
            },
            Err(last) => Health {
                ready: false,
                last,
                waited: Duration::ZERO,
                instance: None,
            },
        })
    }

    /// Why the SSH connection failed during a step, if it did.
    pub fn lost_connection(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Whether the service's folder exists (here, or on the SSH host).
    pub fn exists(&self) -> bool {
        match &self.remote {
            Some(ssh) => {
                let script = format!("[ -d {} ]\n", release::sh_quote(&self.path("")));
                ssh.run_script("look for the service", &script, b"")
                    .is_ok_and(|o| o.status.success())
            }
            None => self.dir.is_dir(),
        }
    }
}

fn not_ready(last: String, start: Instant) -> Health {
    Health {
        ready: false,
        last,
        waited: start.elapsed(),
        instance: None,
    }
}

/// SIGTERM, up to 15 s for it to go, then SIGKILL.
fn stop_pid(pid: &str) {
    if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) {
        return;
    }
    let alive = || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                // The state follows the command's closing parenthesis; Z is gone.
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    if !alive() {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", pid]).status();
    let start = Instant::now();
    while alive() && start.elapsed() < Duration::from_secs(15) {
        thread::sleep(Duration::from_millis(100));
    }
    if alive() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

/// The sha256 of a set of files (relative to `root`): names, whether
/// executable, and contents. Two checkouts of the same folder agree.
pub(crate) fn digest_files(root: &Path, files: &[String]) -> Result<String, DeployError> {
    let mut h = Sha256::new();
    for f in files {
        let path = root.join(f);
        let bytes = fs::read(&path).map_err(DeployError::io("read", &path))?;
        let exec = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        h.update(f.as_bytes());
        h.update([0, u8::from(exec), 0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A service's lock, here or on the SSH host.
pub(crate) enum ServiceGuard {
    Local(#[expect(dead_code, reason = "held for its drop")] LocalGuard),
    Ssh(#[expect(dead_code, reason = "held for its drop")] SshGuard),
}

impl Host for ServiceHost<'_> {
    type Guard = ServiceGuard;

    fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> Result<ServiceGuard, DeployError> {
        match &self.remote {
            Some(ssh) => ssh.lock().map(ServiceGuard::Ssh),
            None => self.inner.lock().map(ServiceGuard::Local),
        }
    }

    fn current(&self) -> Result<Option<String>, DeployError> {
        match &self.remote {
            Some(ssh) => ssh.current(),
            None => self.inner.current(),
        }
    }

    fn releases(&self) -> Result<Vec<ReleaseInfo>, DeployError> {
        match &self.remote {
            Some(ssh) => ssh.releases(),
            None => self.inner.releases(),
        }
    }

    fn stage_release(&self, version: &str, _src: &Path, _sha256: &str) -> Result<(), DeployError> {
        // apply stages through `stage_files`; the core never calls this.
        Err(DeployError::UnknownRelease {
            host: self.name.clone(),
            version: version.to_string(),
        })
    }

    fn switch_current(&self, version: &str) -> Result<(), DeployError> {
        match &self.remote {
            Some(ssh) => ssh.switch_current(version),
            None => self.inner.switch_current(version),
        }
    }

    fn restart(&self) -> Result<(), DeployError> {
        self.deploy_step().map_err(|detail| DeployError::Restart {
            host: self.name.clone(),
            detail,
        })
    }

    fn remove_release(&self, version: &str) -> Result<(), DeployError> {
        match &self.remote {
            Some(ssh) => ssh.remove_release(version),
            None => self.inner.remove_release(version),
        }
    }

    fn append_history(&self, entry: &HistoryEntry) -> Result<(), DeployError> {
        let mut e = entry.clone();
        e.message = self.masker.mask(&e.message);
        match &self.remote {
            Some(ssh) => ssh.append_history(&e),
            None => self.inner.append_history(&e),
        }
    }

    fn history(&self) -> Result<Vec<HistoryEntry>, DeployError> {
        match &self.remote {
            Some(ssh) => ssh.history(),
            None => self.inner.history(),
        }
    }

    fn last_log_lines(&self, n: usize) -> Result<Vec<String>, DeployError> {
        match &self.remote {
            Some(ssh) => ssh.last_log_lines(n),
            None => self.inner.last_log_lines(n),
        }
    }

    fn restart_and_wait(&self, _opts: &Options) -> Health {
        let start = Instant::now();
        if let Err(e) = self.deploy_step() {
            return not_ready(
                self.masker.mask(&format!("the deploy step failed: {e}")),
                start,
            );
        }
        let mut h = self.wait_healthy();
        h.last = self.masker.mask(&h.last);
        h.waited = start.elapsed();
        h
    }
}
