//! Where an environment's services live: a state folder on this machine, or
//! one on a host reached over SSH (`target = "ssh"`), with the settings to
//! log in there.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::GitopsError;
use super::model::{DEFAULT_STATE_DIR, Environment, Target};
use super::remote;
use super::secrets::Masker;
use super::service_host::ServiceHost;
use crate::release::SshHost;

/// How to reach an environment's host over SSH, beyond what the infra file
/// says (address, user, port, known_hosts). ssh's own configuration applies
/// too: the runner's agent, `~/.ssh/config`, `~/.ssh/known_hosts`.
#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    /// The private key (default: ssh's own choice).
    pub identity: Option<PathBuf>,
    /// The known_hosts file (default: the environment's `known_hosts` in the
    /// repository, else ssh's own).
    pub known_hosts: Option<PathBuf>,
    /// More `-o` options, before Hearth's (ssh keeps an option's first value).
    pub options: Vec<String>,
    /// The private key itself (a CI secret, `HEARTH_DEPLOY_SSH_KEY`), when
    /// no `identity` file is given: written to a private temporary file for
    /// ssh, removed when done.
    pub key: Option<String>,
}

/// Where an environment's services live: a state folder on this machine,
/// or one on a host reached over SSH.
#[derive(Debug, Clone)]
pub struct Site {
    pub state_dir: PathBuf,
    /// The host, for an environment with `target = "ssh"`: one connection
    /// shared by every step of a command.
    pub ssh: Option<SshHost>,
    /// The hearth binary on the SSH host.
    pub hearth_bin: Option<String>,
    /// Holds the key file written from [`SshSettings::key`] while the site lives.
    _key: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Site {
    /// A state folder on this machine.
    pub fn local(state_dir: impl Into<PathBuf>) -> Site {
        Site {
            state_dir: state_dir.into(),
            ssh: None,
            hearth_bin: None,
            _key: None,
        }
    }

    /// Where `env` keeps its services: the state folder (the flag's, else the
    /// environment's, else the default) here, or on its host over SSH.
    pub fn of(
        repo_root: &Path,
        env: &Environment,
        state_dir: Option<&Path>,
        settings: &SshSettings,
    ) -> Result<Site, GitopsError> {
        let state_dir = default_state_dir(state_dir, Some(env));
        let Target::Ssh {
            address,
            user,
            port,
            known_hosts,
            hearth_bin,
        } = &env.target
        else {
            return Ok(Site::local(state_dir));
        };
        let mut host = SshHost::new(format!("{user}@{address}")).with_port(*port);
        let mut key_dir = None;
        if let Some(key) = &settings.identity {
            host = host.with_identity(key);
        } else if let Some(text) = settings.key.as_deref().filter(|k| !k.trim().is_empty()) {
            let (dir, path) = key_file(text)?;
            host = host.with_identity(path);
            key_dir = Some(std::sync::Arc::new(dir));
        }
        let known = settings
            .known_hosts
            .clone()
            .or_else(|| known_hosts.as_ref().map(|k| repo_root.join(k)));
        if let Some(file) = known {
            host = host.with_known_hosts(file);
        }
        for o in &settings.options {
            host = host.with_option(o.clone());
        }
        // A dead link is noticed within a minute, not at TCP's pace.
        host = host
            .with_option("ConnectTimeout=15")
            .with_option("ServerAliveInterval=15")
            .with_option("ServerAliveCountMax=4");
        Ok(Site {
            state_dir,
            ssh: Some(host),
            hearth_bin: hearth_bin.clone(),
            _key: key_dir,
        })
    }

    /// The state folder, and the host it is on.
    pub fn describe(&self) -> String {
        match &self.ssh {
            Some(h) => format!("{} on {}", self.state_dir.display(), h.destination()),
            None => self.state_dir.display().to_string(),
        }
    }

    pub(crate) fn service<'a>(
        &self,
        name: &str,
        environment: &str,
        masker: &'a Masker,
        say: &'a dyn Fn(&str),
    ) -> ServiceHost<'a> {
        let host = ServiceHost::new(&self.state_dir, name, environment, masker, say);
        match &self.ssh {
            Some(ssh) => {
                let mut host = host.over_ssh(ssh);
                if let Some(bin) = &self.hearth_bin {
                    host.remote_hearth = bin.clone();
                }
                host
            }
            None => host,
        }
    }

    /// The services that have a folder in the state folder, by name.
    pub(crate) fn service_names(&self) -> Result<Vec<String>, GitopsError> {
        if let Some(ssh) = &self.ssh {
            return remote::list_services(ssh, &self.state_dir.display().to_string()).map_err(
                |source| GitopsError::Deploy {
                    service: "(all)".to_string(),
                    source: Box::new(source),
                },
            );
        }
        let dir = self.state_dir.join("services");
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
        Ok(names)
    }
}

/// The state folder for an environment: the flag's, else the infra file's, else the default.
pub fn default_state_dir(flag: Option<&Path>, env: Option<&Environment>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| env.and_then(|e| e.state_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Writes a private key given as text into a 0600 file in a fresh 0700
/// temporary folder (removed with the folder); ssh wants a final newline.
fn key_file(text: &str) -> Result<(tempfile::TempDir, PathBuf), GitopsError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = tempfile::Builder::new()
        .prefix("hearth-ssh-key-")
        .tempdir()
        .map_err(GitopsError::io(
            "create a temporary folder for",
            "the ssh key",
        ))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .map_err(GitopsError::io("chmod", dir.path()))?;
    let path = dir.path().join("id");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(GitopsError::io("create", &path))?;
    let mut text = text.trim().replace("\r\n", "\n");
    text.push('\n');
    file.write_all(text.as_bytes())
        .map_err(GitopsError::io("write", &path))?;
    Ok((dir, path))
}
