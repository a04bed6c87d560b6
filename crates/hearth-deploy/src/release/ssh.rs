//! [`SshHost`]: the release layout on a remote machine, reached with the
//! system `ssh` client.
//!
//! Every [`Host`] operation is one `ssh DEST -- sh -c '<script>'` with a short
//! POSIX `sh` script that does on the remote side what `local.rs` does here:
//! the same paths, `RELEASE` file, history lines, `.VERSION.partial` staging
//! and atomic `current` switch. The system client (not an SSH crate) is used
//! so that the user's keys, agent, `~/.ssh/config` and known_hosts apply as
//! they do for a plain `ssh`. `BatchMode=yes` is always set: a deploy never
//! stops at a password or host-key prompt.
//!
//! Every value put into a script goes through [`sh_quote`].

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use super::host::{Host, ReleaseInfo};
use super::{DeployError, HistoryEntry, history, version};

/// Exit codes the scripts use to say which known failure happened; anything
/// else is an unexpected failure (255 is ssh's own: no connection).
const EXIT_LOCK_HELD: i32 = 75;
const EXIT_CHECKSUM: i32 = 65;
const EXIT_TAR: i32 = 66;
const EXIT_NO_BINARY: i32 = 67;
const EXIT_UNKNOWN_RELEASE: i32 = 69;

/// Where [`Host::last_log_lines`] reads the service's log on the remote host.
#[derive(Debug, Clone)]
pub enum RemoteLog {
    /// A file the service logs to, read with `tail`.
    File(String),
    /// A shell command that prints the recent log, e.g.
    /// `journalctl -u hearth -n 50 --no-pager`; its last lines are kept.
    Command(String),
}

/// A host reached over SSH, its release layout under `root` (`/` by default).
#[derive(Debug, Clone)]
pub struct SshHost {
    destination: String,
    name: String,
    ssh: PathBuf,
    port: Option<u16>,
    identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    options: Vec<String>,
    root: String,
    /// Another layout than Hearth's own: where `releases/`, `current` and
    /// `deploy.lock` live, and the history file (see [`SshHost::with_layout`]).
    layout: Option<(String, String)>,
    restart: String,
    log: Option<RemoteLog>,
    /// One connection for all of a deploy's steps (started at the first), or
    /// `None` once it could not start: each step then connects on its own.
    multiplex: bool,
    master: Arc<OnceLock<Option<Master>>>,
}

/// The connection a deploy's steps share: `ssh -M -N -f` with its control socket
/// in a private temporary folder. Dropped with the last clone of its [`SshHost`]:
/// `ssh -O exit` ends it.
#[derive(Debug)]
struct Master {
    socket: PathBuf,
    /// `ssh` and the options it was started with, for `-O exit`.
    exit: Vec<std::ffi::OsString>,
    _dir: tempfile::TempDir,
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some((ssh, args)) = self.exit.split_first() {
            let _ = Command::new(ssh)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Holds the remote flock: a running `ssh … flock -n FILE … cat` whose stdin
/// stays open while the guard lives. Dropping it closes stdin, the remote
/// `cat` exits, and flock releases the lock; if the connection dies instead,
/// the remote side sees the same end of input, so the lock cannot go stale.
#[derive(Debug)]
pub struct SshGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for SshGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Waiting means the lock is free when the guard is gone, so the next
        // deploy from this process does not find its own lock still held.
        let _ = self.child.wait();
    }
}

/// Quotes `s` as one word for a POSIX shell: inside single quotes nothing is
/// special, and an embedded `'` becomes `'\''`.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

impl SshHost {
    /// A host at `destination` (`host` or `user@host`, as given to `ssh`),
    /// named after it, installed under `/`, restarted with
    /// `systemctl reload-or-restart hearth` (a handover: no request dropped),
    /// without a log source.
    pub fn new(destination: impl Into<String>) -> Self {
        let destination = destination.into();
        SshHost {
            name: destination.clone(),
            destination,
            ssh: PathBuf::from("ssh"),
            port: None,
            identity: None,
            known_hosts: None,
            options: Vec::new(),
            root: "/".to_string(),
            layout: None,
            restart: "systemctl reload-or-restart hearth".to_string(),
            log: None,
            multiplex: true,
            master: Arc::default(),
        }
    }

    /// Each step on a connection of its own, as before connection sharing (for
    /// an `ssh` that cannot multiplex, or to count connections).
    pub fn without_multiplexing(mut self) -> Self {
        self.multiplex = false;
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The `ssh` program to run (default: `ssh` from `PATH`).
    pub fn with_ssh_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.ssh = program.into();
        self
    }

    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The private key (`-i`), used alone (`IdentitiesOnly=yes`).
    pub fn with_identity(mut self, key: impl Into<PathBuf>) -> Self {
        self.identity = Some(key.into());
        self
    }

    /// A known_hosts file that must already hold the host's key
    /// (`UserKnownHostsFile`, `StrictHostKeyChecking=yes`).
    pub fn with_known_hosts(mut self, file: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(file.into());
        self
    }

    /// One more `-o` option, e.g. `ConnectTimeout=10` or `ControlMaster=auto`.
    pub fn with_option(mut self, option: impl Into<String>) -> Self {
        self.options.push(option.into());
        self
    }

    /// The install root on the remote host.
    pub fn with_root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into();
        self
    }

    /// Another layout than Hearth's own, as [`super::LocalHost::with_layout`]:
    /// `releases/`, `current` and `deploy.lock` under `home`, the history in
    /// `history` (remote paths; the GitOps services keep one layout each).
    pub fn with_layout(mut self, home: impl Into<String>, history: impl Into<String>) -> Self {
        self.layout = Some((home.into(), history.into()));
        self
    }

    /// The remote shell command that restarts the service. It must not keep
    /// ssh's stdout or stderr open (a service started by hand redirects them),
    /// or ssh waits for it.
    pub fn with_restart(mut self, command: impl Into<String>) -> Self {
        self.restart = command.into();
        self
    }

    pub fn with_log(mut self, log: RemoteLog) -> Self {
        self.log = Some(log);
        self
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// `ROOT/opt/hearth` (or the layout's home), quoted for sh.
    fn hearth_dir(&self) -> String {
        match &self.layout {
            Some((home, _)) => sh_quote(home),
            None => sh_quote(&format!("{}/opt/hearth", self.root.trim_end_matches('/'))),
        }
    }

    fn history_path(&self) -> String {
        match &self.layout {
            Some((_, history)) => sh_quote(history),
            None => sh_quote(&format!(
                "{}/var/lib/hearth/deploy-history.jsonl",
                self.root.trim_end_matches('/')
            )),
        }
    }

    /// The options every connection gets: batch mode, port, key, known_hosts,
    /// then the caller's `-o` options (ssh takes the first value of an option,
    /// so these win over what comes after).
    fn options(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-o".into(), "BatchMode=yes".into()];
        if let Some(port) = self.port {
            args.extend(["-p".into(), port.to_string().into()]);
        }
        if let Some(key) = &self.identity {
            args.extend([
                "-i".into(),
                key.into(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        if let Some(file) = &self.known_hosts {
            let mut opt = OsString::from("UserKnownHostsFile=");
            opt.push(file);
            args.extend([
                "-o".into(),
                opt,
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
            ]);
        }
        for option in &self.options {
            args.extend(["-o".into(), option.into()]);
        }
        args
    }

    /// The shared connection's control socket, the connection started on the
    /// first call; `None` when sharing is off or the connection could not start
    /// (the step then connects by itself, and reports what went wrong).
    fn control_socket(&self) -> Option<&Path> {
        if !self.multiplex {
            return None;
        }
        let master = self.master.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("hearth-ssh-")
                .tempdir()
                .ok()?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).ok()?;
            let socket = dir.path().join("c");
            let mut control = OsString::from("ControlPath=");
            control.push(&socket);
            let mut base = self.options();
            base.extend(["-o".into(), control]);
            // -f: into the background once authenticated; its output is not ours
            // to wait for (a step's own output goes through its own channel).
            // It ends at the host's drop, or 5 minutes after its last step if
            // this process was killed first (a step then finding no socket
            // connects by itself).
            let started = Command::new(&self.ssh)
                .args(&base)
                .args([
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=300",
                    "-N",
                    "-f",
                ])
                .arg(&self.destination)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()?
                .success();
            if !started {
                return None;
            }
            let mut exit = vec![self.ssh.clone().into_os_string()];
            exit.extend(base);
            exit.extend(["-O".into(), "exit".into(), self.destination.clone().into()]);
            Some(Master {
                socket,
                exit,
                _dir: dir,
            })
        });
        master.as_ref().map(|m| m.socket.as_path())
    }

    /// `ssh [options] DEST -- sh -c SCRIPT`, through the shared connection when
    /// there is one.
    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new(&self.ssh);
        cmd.arg("-T").args(self.options());
        if let Some(socket) = self.control_socket() {
            let mut control = OsString::from("ControlPath=");
            control.push(socket);
            cmd.args(["-o".into(), control, "-o".into(), "ControlMaster=no".into()]);
        }
        // The remote login shell joins the words and parses them again, so
        // the script travels as one quoted word.
        cmd.arg(&self.destination)
            .arg("--")
            .arg(format!("sh -c {}", sh_quote(script)));
        cmd
    }

    pub(crate) fn ssh_error(&self, action: &'static str, detail: String) -> DeployError {
        DeployError::Ssh {
            host: self.name.clone(),
            action,
            detail,
        }
    }

    /// The error for a script that failed: ssh's own (255) or the script's.
    pub(crate) fn failure(&self, action: &'static str, out: &Output) -> DeployError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let detail = match out.status.code() {
            Some(255) => ssh_255(&stderr),
            _ => format!(
                "the remote script exited with {}: {}",
                out.status,
                stderr.trim()
            ),
        };
        self.ssh_error(action, detail)
    }

    /// Runs `script` remotely with `input` on its stdin; the output whatever
    /// the exit status (callers match the known codes).
    fn run_with_input(
        &self,
        action: &'static str,
        script: &str,
        input: Option<&Path>,
    ) -> Result<Output, DeployError> {
        match input {
            None => self.run_feeding(action, script, None),
            Some(path) => {
                let mut file =
                    std::fs::File::open(path).map_err(DeployError::io("open the tarball", path))?;
                self.run_feeding(action, script, Some(&mut file))
            }
        }
    }

    /// Runs `script` remotely with `input` on its stdin and returns its output
    /// whatever its exit status. What a script must not have on its command
    /// line (a secret: the remote `ps` shows a command line, and so does this
    /// machine's) travels this way. Exit status 255 is ssh's own: no
    /// connection, or a connection lost while the script ran.
    pub fn run_script(
        &self,
        action: &'static str,
        script: &str,
        input: &[u8],
    ) -> Result<Output, DeployError> {
        let mut bytes = input;
        self.run_feeding(action, script, Some(&mut bytes))
    }

    fn run_feeding(
        &self,
        action: &'static str,
        script: &str,
        input: Option<&mut (dyn Read + Send)>,
    ) -> Result<Output, DeployError> {
        let mut cmd = self.command(script);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            self.ssh_error(action, format!("cannot run {}: {e}", self.ssh.display()))
        })?;
        let Some(input) = input else {
            return child
                .wait_with_output()
                .map_err(|e| self.ssh_error(action, format!("waiting for ssh: {e}")));
        };
        let stdin = child.stdin.take();
        // Written from a thread while this one drains stdout and stderr, so
        // neither side can fill a pipe and wait on the other.
        std::thread::scope(|s| {
            let writer = s.spawn(move || {
                if let Some(mut stdin) = stdin {
                    // A remote script that fails early closes its stdin; its
                    // exit status tells why, so a broken pipe here is no news.
                    let _ = std::io::copy(input, &mut stdin);
                }
            });
            let out = child
                .wait_with_output()
                .map_err(|e| self.ssh_error(action, format!("waiting for ssh: {e}")));
            let _ = writer.join();
            out
        })
    }

    /// Runs `script` remotely and returns its stdout, failing on any non-zero exit.
    fn run(&self, action: &'static str, script: &str) -> Result<String, DeployError> {
        let out = self.run_with_input(action, script, None)?;
        if !out.status.success() {
            return Err(self.failure(action, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What ssh's own exit status 255 means, from what it said: it never got in,
/// or the connection went away while a script ran (the remote side's state is
/// then unknown).
pub(crate) fn ssh_255(stderr: &str) -> String {
    let said = stderr.trim();
    let lost = [
        "closed by remote host",
        "Broken pipe",
        "Connection reset",
        "read header failed",
        "Timeout, server",
        "client_loop",
    ];
    if lost.iter().any(|l| said.contains(l)) {
        format!("the ssh connection was lost while the step ran: {said}")
    } else if said.is_empty() {
        "ssh exited with 255 (no connection, or the connection was lost)".to_string()
    } else {
        format!("ssh could not connect: {said}")
    }
}

/// Splits the `releases` script's output: `==> NAME` then that release's
/// `RELEASE` lines.
fn parse_releases(text: &str) -> Vec<ReleaseInfo> {
    let mut releases = Vec::new();
    let mut current: Option<(&str, String)> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("==> ") {
            if let Some((v, body)) = current.take() {
                releases.push(ReleaseInfo::parse(v, &body));
            }
            current = Some((name, String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((v, body)) = current {
        releases.push(ReleaseInfo::parse(v, &body));
    }
    releases.sort_by(|a, b| version::compare(&a.version, &b.version));
    releases
}

/// This machine's name for the lock note, so a refused deploy says where the
/// holder runs.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "an unknown machine".to_string())
}

impl Host for SshHost {
    type Guard = SshGuard;

    fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> Result<SshGuard, DeployError> {
        let action = "take the deploy lock";
        let note = format!(
            "held since {} by pid {} on {} (over ssh)",
            history::now_rfc3339(),
            std::process::id(),
            local_hostname()
        );
        // flock's file is opened without truncating, so a refused attempt
        // can still read the holder's note; the holder then writes its own
        // note and waits on its stdin.
        let script = format!(
            r#"h={h}
mkdir -p "$h" || exit 1
f="$h/deploy.lock"
flock -n -E {EXIT_LOCK_HELD} "$f" sh -c 'printf "%s\n" "$1" > "$2" && echo locked && exec cat > /dev/null' sh {note} "$f"
rc=$?
if [ "$rc" = {EXIT_LOCK_HELD} ]; then cat "$f"; fi
exit "$rc"
"#,
            h = self.hearth_dir(),
            note = sh_quote(&note),
        );
        let mut child = self
            .command(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                self.ssh_error(action, format!("cannot run {}: {e}", self.ssh.display()))
            })?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().map(BufReader::new);
        let mut first = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_line(&mut first);
        }
        if first.trim_end() == "locked" {
            return Ok(SshGuard { child, stdin });
        }
        // Not locked: the rest of stdout is the holder's note, if any.
        drop(stdin);
        let mut rest = first;
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_string(&mut rest);
        }
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        let status = child
            .wait()
            .map_err(|e| self.ssh_error(action, format!("waiting for ssh: {e}")))?;
        if status.code() == Some(EXIT_LOCK_HELD) {
            let holder = rest.trim();
            return Err(DeployError::LockHeld {
                host: self.name.clone(),
                holder: if holder.is_empty() {
                    "a deploy that is just starting".to_string()
                } else {
                    holder.to_string()
                },
            });
        }
        let detail = match status.code() {
            Some(255) => ssh_255(&stderr),
            _ => format!("the remote script exited with {status}: {}", stderr.trim()),
        };
        Err(self.ssh_error(action, detail))
    }

    fn current(&self) -> Result<Option<String>, DeployError> {
        let script = format!(
            "l={h}/current\nif [ -L \"$l\" ]; then readlink \"$l\"; fi\n",
            h = self.hearth_dir()
        );
        let out = self.run("read the current link", &script)?;
        let target = out.trim_end_matches('\n');
        if target.is_empty() {
            return Ok(None);
        }
        Ok(Path::new(target)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()))
    }

    fn releases(&self) -> Result<Vec<ReleaseInfo>, DeployError> {
        // `*` skips dot-names (staging folders); a folder without RELEASE is not ours.
        let script = format!(
            r#"cd {h}/releases 2>/dev/null || exit 0
for d in *; do
  if [ -f "$d/RELEASE" ]; then printf '==> %s\n' "$d"; cat "$d/RELEASE"; echo; fi
done
"#,
            h = self.hearth_dir()
        );
        Ok(parse_releases(&self.run("list the releases", &script)?))
    }

    fn stage_release(
        &self,
        version: &str,
        tarball: &Path,
        sha256: &str,
    ) -> Result<(), DeployError> {
        version::validate(version)?;
        let expected = sha256;
        let release_text = format!(
            "version={version}\nsha256={expected}\ninstalled={}\n",
            history::now_rfc3339()
        );
        // Checked again there, so a corrupt transfer is not installed either.
        // The trap removes the upload and a half-unpacked folder on any failure.
        let script = format!(
            r#"d={h}/releases
v={v}
p="$d/.$v.partial"
t="$d/.$v.partial.tar.gz"
mkdir -p "$d" || exit 1
rm -rf "$p" "$t" || exit 1
trap 'rm -rf "$p" "$t"' EXIT
cat > "$t" || exit 1
actual=$(sha256sum "$t" | cut -d' ' -f1)
if [ "$actual" != {sha} ]; then echo "$actual"; exit {EXIT_CHECKSUM}; fi
mkdir "$p" || exit 1
tar -xzf "$t" --strip-components=1 --no-same-owner -C "$p" || exit {EXIT_TAR}
[ -f "$p/bin/hearth" ] || exit {EXIT_NO_BINARY}
printf '%s' {release} > "$p/RELEASE" || exit 1
rm -rf "$d/$v" || exit 1
mv -T "$p" "$d/$v" || exit 1
rm -f "$t"
trap - EXIT
"#,
            h = self.hearth_dir(),
            v = sh_quote(version),
            sha = sh_quote(expected),
            release = sh_quote(&release_text),
        );
        let out = self.run_with_input("upload the release", &script, Some(tarball))?;
        let bad = |detail: String| DeployError::BadTarball {
            path: tarball.to_path_buf(),
            detail,
        };
        match out.status.code() {
            Some(0) => Ok(()),
            Some(EXIT_CHECKSUM) => Err(DeployError::ChecksumMismatch {
                path: tarball.to_path_buf(),
                expected: expected.to_string(),
                actual: format!(
                    "{} once uploaded to {}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    self.name
                ),
            }),
            Some(EXIT_TAR) => Err(bad(format!(
                "tar on {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Some(EXIT_NO_BINARY) => Err(bad("it has no hearth-VERSION/bin/hearth".to_string())),
            _ => Err(self.failure("upload the release", &out)),
        }
    }

    fn switch_current(&self, version: &str) -> Result<(), DeployError> {
        version::validate(version)?;
        // Relative, as LocalHost makes it; `mv -T` is rename(2), so `current`
        // always exists.
        let script = format!(
            r#"h={h}
v={v}
[ -f "$h/releases/$v/RELEASE" ] || exit {EXIT_UNKNOWN_RELEASE}
rm -f "$h/current.new" || exit 1
ln -s "releases/$v" "$h/current.new" || exit 1
mv -T "$h/current.new" "$h/current"
"#,
            h = self.hearth_dir(),
            v = sh_quote(version),
        );
        let out = self.run_with_input("switch the current link", &script, None)?;
        match out.status.code() {
            Some(0) => Ok(()),
            Some(EXIT_UNKNOWN_RELEASE) => Err(DeployError::UnknownRelease {
                host: self.name.clone(),
                version: version.to_string(),
            }),
            _ => Err(self.failure("switch the current link", &out)),
        }
    }

    fn restart(&self) -> Result<(), DeployError> {
        let out = self.run_with_input("restart", &self.restart, None)?;
        if out.status.success() {
            return Ok(());
        }
        if out.status.code() == Some(255) {
            return Err(self.failure("restart", &out));
        }
        Err(DeployError::Restart {
            host: self.name.clone(),
            detail: format!(
                "`{}` exited with {}: {}",
                self.restart,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }

    fn remove_release(&self, version: &str) -> Result<(), DeployError> {
        version::validate(version)?;
        // Renamed first so a half-deleted folder never looks like a release.
        let script = format!(
            r#"d={h}/releases
v={v}
rm -rf "$d/.$v.removing" || exit 1
mv -T "$d/$v" "$d/.$v.removing" || exit 1
rm -rf "$d/.$v.removing"
"#,
            h = self.hearth_dir(),
            v = sh_quote(version),
        );
        self.run("remove a release", &script).map(drop)
    }

    fn append_history(&self, entry: &HistoryEntry) -> Result<(), DeployError> {
        // One printf of one line: O_APPEND keeps concurrent lines whole.
        let script = format!(
            r#"f={f}
mkdir -p "$(dirname "$f")" || exit 1
printf '%s' {line} >> "$f" || exit 1
sync "$f" 2>/dev/null || true
"#,
            f = self.history_path(),
            line = sh_quote(&entry.to_line()),
        );
        self.run("append to the history", &script).map(drop)
    }

    fn history(&self) -> Result<Vec<HistoryEntry>, DeployError> {
        let script = format!(
            "f={f}\nif [ -f \"$f\" ]; then cat \"$f\"; fi\n",
            f = self.history_path()
        );
        Ok(history::parse(&self.run("read the history", &script)?))
    }

    fn last_log_lines(&self, n: usize) -> Result<Vec<String>, DeployError> {
        let script = match &self.log {
            None => return Ok(Vec::new()),
            Some(RemoteLog::File(path)) => format!(
                "f={f}\nif [ -f \"$f\" ]; then tail -n {n} \"$f\"; fi\n",
                f = sh_quote(path)
            ),
            Some(RemoteLog::Command(cmd)) => format!("( {cmd} ) 2>&1 | tail -n {n}\n"),
        };
        let out = self.run("read the service log", &script)?;
        Ok(out.lines().map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of a quoted word: `printf %s WORD`.
    fn through_sh(word: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {word}"))
            .output()
            .unwrap_or_else(|e| unreachable!("sh: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn sh_quote_wraps_in_single_quotes() {
        assert_eq!(sh_quote("abc"), "'abc'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("''"), r"''\'''\'''");
    }

    #[test]
    fn sh_quote_survives_the_shell() {
        for s in [
            "plain",
            "",
            "with space",
            "it's",
            "'",
            "''x''",
            "$HOME `id` $(id) \\ \" ; & | * ? ~ # !",
            "line\nbreak",
            "tab\there",
            "/tmp/a b/c'd",
        ] {
            assert_eq!(through_sh(&sh_quote(s)), s, "{s:?}");
        }
        // Quoted twice, as the remote login shell parses `sh -c 'SCRIPT'`.
        let script = format!("printf %s {}", sh_quote("a'b $x"));
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("sh -c {}", sh_quote(&script)))
            .output()
            .unwrap_or_else(|e| unreachable!("sh: {e}"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a'b $x");
    }

    #[test]
    fn the_ssh_command_line_carries_the_options() {
        let host = SshHost::new("deploy@example.org")
            .with_port(2222)
            .with_identity("/k/id")
            .with_known_hosts("/k/known")
            .with_option("ConnectTimeout=5")
            .without_multiplexing();
        let cmd = host.command("echo hi");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-T",
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "-i",
                "/k/id",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "UserKnownHostsFile=/k/known",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=5",
                "deploy@example.org",
                "--",
                "sh -c 'echo hi'",
            ]
        );
        // The defaults leave the user's ssh config in charge.
        let plain = SshHost::new("example.org").without_multiplexing();
        let n = plain.command("true").get_args().count();
        assert_eq!(n, 6);
    }

    #[test]
    fn releases_output_is_parsed_and_sorted() {
        let text = "==> 0.10.0\nversion=0.10.0\nsha256=bb\ninstalled=2025-01-02T00:00:00Z\n\n\
                    ==> 0.9.0\nversion=0.9.0\nsha256=aa\ninstalled=2025-01-01T00:00:00Z\n\n";
        let r = parse_releases(text);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].version.as_str(), r[0].sha256.as_str()),
            ("0.9.0", "aa")
        );
        assert_eq!(r[1].installed, "2025-01-02T00:00:00Z");
        assert!(parse_releases("").is_empty());
    }
}
