//! A service's steps on a host reached over SSH (`target = "ssh"`): each is
//! one short POSIX `sh` script through [`SshHost::run_script`], on the one
//! connection the whole apply shares.
//!
//! Secrets never go on a command line (this machine's `ps` shows ssh's, the
//! host's shows `sh -c`'s): a step's variables travel on the script's stdin
//! as `export NAME='value'` lines, which the script reads into its own
//! environment with `eval` and hands to the step. Nothing of them is written
//! to the host's disk by Hearth. A step's output is kept in a private file on
//! the host while it runs (a server it starts in the background may hold its
//! output open for ever, which would hold ssh too), then sent back and masked
//! here before anything shows or logs it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::release::{DeployError, SshHost, sh_quote};

/// Exit codes the scripts use for their known failures.
const EXIT_MISSING: i32 = 3;
const EXIT_TAR: i32 = 66;
const EXIT_NO_BINARY: i32 = 67;
/// `timeout`'s own status when the step ran past its time.
const EXIT_TIMEOUT: i32 = 124;

/// The lines that put `vars` into a script's environment, fed on its stdin.
pub(crate) fn exports(vars: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        // Names are checked when service.toml is parsed ([A-Z_][A-Z0-9_]*)
        // or are our own DEPLOY_*; values are quoted.
        let _ = writeln!(out, "export {k}={}", sh_quote(v));
    }
    out
}

/// The start of every script that takes variables: read them from stdin
/// (never from the command line), then let nothing else read stdin.
const READ_VARS: &str = "vars=$(cat) || exit 1\neval \"$vars\"\nunset vars\nexec </dev/null\n";

/// A file's text on the host, None when it is not there.
pub(crate) fn read(ssh: &SshHost, path: &str) -> Result<Option<String>, DeployError> {
    let script = format!(
        "f={f}\nif [ -f \"$f\" ]; then cat \"$f\"; else exit {EXIT_MISSING}; fi\n",
        f = sh_quote(path)
    );
    let out = ssh.run_script("read a file", &script, b"")?;
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned())),
        Some(EXIT_MISSING) => Ok(None),
        _ => Err(ssh.failure("read a file", &out)),
    }
}

/// Copies `files` (relative to `src`) into `releases/VERSION` under `home` on
/// the host: a tar on the script's stdin, unpacked into `.VERSION.partial`,
/// `RELEASE` written, then renamed into place (a failed upload never looks
/// like a release). Modes travel with the tar, so scripts stay executable.
pub(crate) fn stage(
    ssh: &SshHost,
    home: &str,
    version: &str,
    src: &Path,
    files: &[String],
    release_text: &str,
) -> Result<(), DeployError> {
    let list: Vec<u8> = files
        .iter()
        .flat_map(|f| f.bytes().chain(std::iter::once(0)))
        .collect();
    let mut tar = Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(src)
        .args(["--null", "-T", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DeployError::io("run tar for", src))?;
    let stdin = tar.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = std::io::Write::write_all(&mut stdin, &list);
        }
    });
    let out = tar
        .wait_with_output()
        .map_err(DeployError::io("run tar for", src))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(DeployError::Io {
            action: "pack the service's files with tar",
            path: src.to_path_buf(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    let script = format!(
        r#"d={h}/releases
v={v}
p="$d/.$v.partial"
mkdir -p "$d" || exit 1
rm -rf "$p" || exit 1
mkdir "$p" || exit 1
trap 'rm -rf "$p"' EXIT
tar -xf - -C "$p" --no-same-owner || exit {EXIT_TAR}
printf '%s' {release} > "$p/RELEASE" || exit 1
rm -rf "${{d:?}}/$v" || exit 1
mv -T "$p" "$d/$v" || exit 1
trap - EXIT
"#,
        h = sh_quote(home),
        v = sh_quote(version),
        release = sh_quote(release_text),
    );
    let done = ssh.run_script("upload the service's files", &script, &out.stdout)?;
    match done.status.code() {
        Some(0) => Ok(()),
        Some(EXIT_TAR) => Err(ssh.ssh_error(
            "unpack the service's files",
            format!(
                "tar on the host failed: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            ),
        )),
        _ => Err(ssh.failure("upload the service's files", &done)),
    }
}

/// What a step did on the host: its exit status and its whole output, raw
/// (the caller masks it before anything shows it).
pub(crate) struct StepOutput {
    pub code: Option<i32>,
    pub text: String,
}

impl StepOutput {
    /// Why the step failed, None when it succeeded.
    pub fn failure(&self, label: &str, timeout: Duration, last: &str) -> Option<String> {
        match self.code {
            Some(0) => None,
            Some(EXIT_TIMEOUT) => Some(format!(
                "{label} ran past its {:.0}s timeout and was killed",
                timeout.as_secs_f64()
            )),
            Some(c) if last.is_empty() => Some(format!("{label} exited with exit status: {c}")),
            Some(c) => Some(format!("{label} exited with exit status: {c}: {last}")),
            None => Some(format!("{label} was killed by a signal")),
        }
    }
}

/// Runs `command` (a shell command line) in `cwd` on the host with `vars` in
/// its environment, for at most `timeout` (then `timeout` kills its process
/// group), its output in a private file under `DIR/.run` until it ends. An
/// ssh failure (no connection, or a connection lost meanwhile) is an error.
pub(crate) fn run_step(
    ssh: &SshHost,
    dir: &str,
    cwd: &str,
    command: &str,
    vars: &[(String, String)],
    timeout: Duration,
) -> Result<StepOutput, DeployError> {
    let script = format!(
        r#"{READ_VARS}d={d}
mkdir -p "$d/.run" "$d/data" || exit 1
chmod 700 "$d/.run" || exit 1
o="$d/.run/step.$$.out"
cd {cwd} || exit 1
timeout -k 5 {secs} sh -c {command} >"$o" 2>&1
rc=$?
cat "$o"
rm -f "$o"
exit "$rc"
"#,
        d = sh_quote(dir),
        cwd = sh_quote(cwd),
        secs = timeout.as_secs().max(1),
        command = sh_quote(command),
    );
    let out = ssh.run_script("run a step", &script, exports(vars).as_bytes())?;
    if out.status.code() == Some(255) {
        return Err(ssh.failure("run a step", &out));
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(StepOutput {
        code: out.status.code(),
        text,
    })
}

/// Appends `text` (already masked) to a file on the host.
pub(crate) fn append(ssh: &SshHost, path: &str, text: &str) -> Result<(), DeployError> {
    let script = format!(
        "f={f}\nmkdir -p \"$(dirname \"$f\")\" || exit 1\ncat >> \"$f\"\n",
        f = sh_quote(path)
    );
    let out = ssh.run_script("append to the deploy log", &script, text.as_bytes())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ssh.failure("append to the deploy log", &out))
    }
}

/// A shell function that stops the process a pid file names: TERM, up to
/// 15 s, then KILL.
const STOP_PID: &str = r#"stop_pid() {
  [ -f "$1" ] || return 0
  p=$(cat "$1")
  case "$p" in ''|*[!0-9]*) rm -f "$1"; return 0 ;; esac
  if kill -TERM "$p" 2>/dev/null; then
    i=0
    while kill -0 "$p" 2>/dev/null && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$p" 2>/dev/null
  fi
  rm -f "$1"
  return 0
}
"#;

/// A Hearth instance on the host: stop the one `data/hearth.pid` names,
/// start `BIN serve --config hearth.toml` from `current`, detached, its
/// database and files in `data/hearth`, its log in `data/hearth.log`.
pub(crate) fn start_hearth(
    ssh: &SshHost,
    dir: &str,
    bin: &str,
    vars: &[(String, String)],
) -> Result<(), String> {
    let script = format!(
        r#"{READ_VARS}{STOP_PID}d={d}
bin={bin}
command -v "$bin" >/dev/null 2>&1 || exit {EXIT_NO_BINARY}
mkdir -p "$d/data/hearth" || exit 1
stop_pid "$d/data/hearth.pid"
cd "$d/current" || exit 1
HEARTH_STORAGE_DATA_DIR="$d/data/hearth" setsid nohup "$bin" serve --config hearth.toml >>"$d/data/hearth.log" 2>&1 </dev/null &
echo "$!" >"$d/data/hearth.pid"
"#,
        d = sh_quote(dir),
        bin = sh_quote(bin),
    );
    let out = ssh
        .run_script(
            "start the Hearth instance",
            &script,
            exports(vars).as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    match out.status.code() {
        Some(0) => Ok(()),
        Some(EXIT_NO_BINARY) => Err(format!(
            "no hearth binary {bin:?} on the host: install Hearth there, or set hearth_bin in the environment's entry of hearth-infra.toml"
        )),
        _ => Err(ssh.failure("start the Hearth instance", &out).to_string()),
    }
}

/// Stops the process `pid_file` names on the host.
pub(crate) fn stop_pid_file(ssh: &SshHost, pid_file: &str) -> Result<(), String> {
    let script = format!("{STOP_PID}stop_pid {}\n", sh_quote(pid_file));
    let out = ssh
        .run_script("stop the process", &script, b"")
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ssh.failure("stop the process", &out).to_string())
    }
}

/// One GET of `url` from the host itself (its `127.0.0.1` is the host's):
/// Ok("HTTP 200") or Err(what it saw). With curl, else wget.
pub(crate) fn probe_url(ssh: &SshHost, url: &str, timeout: Duration) -> Result<String, String> {
    let script = format!(
        r#"u={u}
t={t}
if command -v curl >/dev/null 2>&1; then
  code=$(curl -k -s -o /dev/null -m "$t" -w '%{{http_code}}' "$u")
  if [ "$code" = 200 ]; then echo "HTTP 200"; exit 0; fi
  if [ "$code" = 000 ]; then echo "no answer from $u"; else echo "HTTP $code"; fi
  exit 1
elif command -v wget >/dev/null 2>&1; then
  if wget -q --no-check-certificate -T "$t" -O /dev/null "$u"; then echo "HTTP 200"; exit 0; fi
  echo "no 200 from $u (wget)"
  exit 1
fi
echo "neither curl nor wget on the host to probe $u: install one, or declare a health command"
exit 1
"#,
        u = sh_quote(url),
        t = timeout.as_secs().max(1),
    );
    let out = ssh
        .run_script("probe the health URL", &script, b"")
        .map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(said),
        Some(255) => Err(ssh.failure("probe the health URL", &out).to_string()),
        _ => Err(said),
    }
}

/// Whether a container engine answers on the host (`docker info`).
pub(crate) fn engine_ready(ssh: &SshHost) -> Result<(), String> {
    let script = "command -v docker >/dev/null 2>&1 || { echo 'no docker command'; exit 1; }\n\
                  docker compose version >/dev/null 2>&1 || { echo 'no Compose v2 (docker compose)'; exit 1; }\n\
                  docker info >/dev/null 2>&1 || { echo 'docker info fails: the engine does not answer'; exit 1; }\n";
    let out = ssh
        .run_script("look for a container engine", script, b"")
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else if out.status.code() == Some(255) {
        Err(ssh.failure("look for a container engine", &out).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// The service folders under `STATE/services` on the host.
pub(crate) fn list_services(ssh: &SshHost, state_dir: &str) -> Result<Vec<String>, DeployError> {
    let script = format!(
        "cd {d}/services 2>/dev/null || exit 0\nfor s in *; do if [ -d \"$s\" ]; then printf '%s\\n' \"$s\"; fi; done\n",
        d = sh_quote(state_dir)
    );
    let out = ssh.run_script("list the services", &script, b"")?;
    if !out.status.success() {
        return Err(ssh.failure("list the services", &out));
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && *l != "*")
        .map(str::to_owned)
        .collect();
    names.sort();
    Ok(names)
}

/// Removes the `current` link under `home` on the host.
pub(crate) fn unlink_current(ssh: &SshHost, home: &str) -> Result<(), DeployError> {
    let script = format!("rm -f {}/current\n", sh_quote(home));
    let out = ssh.run_script("remove the current link", &script, b"")?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ssh.failure("remove the current link", &out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exports, read back by the same lines a step's script starts
    /// with, give the values whole (quotes, newlines, `$`).
    #[test]
    fn exports_survive_the_shell() {
        let vars = vec![
            ("A".to_string(), "it's $HOME `id`".to_string()),
            ("B".to_string(), "two\nlines".to_string()),
        ];
        let script = format!("{READ_VARS}printf '%s|%s' \"$A\" \"$B\"");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| unreachable!("sh: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = std::io::Write::write_all(&mut stdin, exports(&vars).as_bytes());
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| unreachable!("sh: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "it's $HOME `id`|two\nlines"
        );
    }
}
