//! What the CLI test files share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The real `hearth` binary, with none of the caller's `HEARTH_*` variables in
/// its environment (keys, config, log level and format, and what `make test`
/// sets for the tests themselves).
pub fn hearth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HEARTH_") {
            c.env_remove(name);
        }
    }
    c
}

/// A Hearth of `toml` served in this process on a loopback port (the kernel
/// picks it): its URL, and a sender whose drop stops it.
#[allow(dead_code, reason = "not every test file serves in process")]
pub async fn serve_in_process(toml: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config =
        hearth_config::load_str(toml, "test.toml", &hearth_config::MapEnv::default()).unwrap();
    let server = hearth_server::Server::build(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(listener, async move {
        let _ = rx.await;
    }));
    (base, tx)
}

/// A running `hearth serve` child; a test that fails leaves none behind (drop
/// kills it).
#[allow(dead_code, reason = "not every test file serves")]
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as its "serving" log line gave it.
    pub base: String,
    /// Its stdout (JSON log lines), read to the end once it exits.
    lines: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(dead_code, reason = "not every test file serves")]
impl Served {
    /// Starts `cmd` (a `hearth serve`, on port 0 where the test can: the kernel
    /// picks a free one, so no other process can take it between a probe and the
    /// bind) and waits (30 s at most) for the log line that says where it listens.
    pub fn start(cmd: &mut Command) -> Served {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(listen) = v["listen"].as_str()
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("hearth is serving"))
                {
                    let _ = tx.send(listen.to_owned());
                }
                all.push(line);
            }
            all
        });
        let Ok(listen) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not say where it listens within 30 s:\n{}",
                lines.join().unwrap().join("\n")
            );
        };
        Served {
            child,
            base: format!("http://{listen}"),
            lines: Some(lines),
        }
    }

    /// SIGKILL: no code of it runs any more. Its stdout.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.output()
    }

    /// SIGTERM, then its exit code and stdout.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = self.child.wait().unwrap();
        (status.code(), self.output())
    }

    /// Its stdout, once it exited, also kept for `make logscan`.
    fn output(&mut self) -> String {
        let stdout = self.lines.take().unwrap().join().unwrap().join("\n");
        keep_log_text("serve", &format!("stdout-{}.log", self.child.id()), &stdout);
        stdout
    }
}

/// Keeps the logs a test's `hearth` wrote under `dir` (every `*.log` file, and all
/// under a `logs` folder) in `$LOGSCAN_ROOT/hearth-cli/<label>-<pid>/`
/// before the test's temporary folder goes, for `make logscan` to grep for the
/// test keys (`mk/logscan.mk`). Nothing when the variable is unset (a bare `cargo
/// test`).
#[allow(dead_code, reason = "not every test file keeps logs")]
pub fn keep_logs(dir: &std::path::Path, label: &str) {
    let Some(root) = log_root(label) else { return };
    fn walk(from: &std::path::Path, under_logs: bool, to: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(from) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let logs = under_logs || name == "logs";
            if p.is_dir() {
                walk(&p, logs, &to.join(&name));
            } else if logs || name.to_string_lossy().ends_with(".log") {
                let _ = std::fs::create_dir_all(to);
                let _ = std::fs::copy(&p, to.join(&name));
            }
        }
    }
    walk(dir, false, &root);
}

/// Keeps `text` (a child's captured stdout or stderr: its log lines) as
/// `$LOGSCAN_ROOT/hearth-cli/<label>-<pid>/<name>`, as [`keep_logs`].
#[allow(dead_code, reason = "not every test file keeps logs")]
pub fn keep_log_text(label: &str, name: &str, text: &str) {
    if let Some(root) = log_root(label) {
        let _ = std::fs::create_dir_all(&root);
        let _ = std::fs::write(root.join(name), text);
    }
}

#[allow(dead_code, reason = "not every test file keeps logs")]
fn log_root(label: &str) -> Option<std::path::PathBuf> {
    let root = std::env::var_os("LOGSCAN_ROOT")?;
    Some(
        std::path::PathBuf::from(root)
            .join("hearth-cli")
            .join(format!("{label}-{}", std::process::id())),
    )
}

/// A 1×1 PNG: the image the job tests upload.
#[allow(dead_code, reason = "not every test file runs jobs")]
pub const PNG: [u8; 70] = [
    0x89, 0x50, 0x4e, 0x47, 0xd, 0xa, 0x1a, 0xa, 0x0, 0x0, 0x0, 0xd, 0x49, 0x48, 0x44, 0x52, 0x0,
    0x0, 0x0, 0x1, 0x0, 0x0, 0x0, 0x1, 0x8, 0x6, 0x0, 0x0, 0x0, 0x1f, 0x15, 0xc4, 0x89, 0x0, 0x0,
    0x0, 0xd, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f, 0xf, 0x0, 0x2,
    0x87, 0x1, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x0, 0x0, 0x0, 0x0, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// The Python environment sandboxed job scripts run in (`make` exports it).
#[allow(dead_code, reason = "not every test file runs jobs")]
pub fn venv() -> std::path::PathBuf {
    std::env::var_os("HEARTH_SANDBOX_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-sandbox")
        })
}

/// A job upload as `POST /api/jobs` takes it: its `Content-Type` and a
/// `multipart/form-data` body with [`PNG`] as `image` and `prompt`.
fn job_upload(prompt: &str) -> (String, Vec<u8>) {
    let boundary = "hearth-test-job-upload-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"t.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&PNG);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n{prompt}\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Submits [`PNG`] as a job to `base` with `key` (asking for a CSV); its id. Fails
/// the test on any answer but a success.
#[allow(dead_code, reason = "not every test file runs jobs")]
pub async fn submit_job(base: &str, key: &str) -> String {
    let (content_type, body) = job_upload("write it as CSV");
    let r = reqwest::Client::new()
        .post(format!("{base}/api/jobs"))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let job: serde_json::Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {job}");
    job["id"].as_str().unwrap().to_owned()
}

/// Runs `cmd` to its end: exit code (-1 when killed), stdout, stderr.
#[allow(dead_code, reason = "not every test file runs commands this way")]
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run`] off the async runtime (a server in this process runs on it), with
/// `stdin` written to the command (`None`: no stdin at all).
#[allow(dead_code, reason = "not every test file runs commands this way")]
pub async fn run_blocking(mut cmd: Command, stdin: Option<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let Some(text) = stdin else {
            return run(cmd.stdin(Stdio::null()));
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut w = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut w, text.as_bytes()).unwrap();
        drop(w);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `git -C dir ARGS` as a fixed test author; a failure fails the test.
#[allow(dead_code, reason = "not every test file makes repositories")]
pub fn git(dir: &std::path::Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// Commits everything in `dir`'s work tree.
#[allow(dead_code, reason = "not every test file makes repositories")]
pub fn commit(dir: &std::path::Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// Each message of a stored conversation (`GET /api/hearth/conversations/{id}`):
/// its role, content and finish reason.
#[allow(dead_code, reason = "not every test file reads the history")]
pub fn turns(c: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
                m["finish_reason"].clone(),
            )
        })
        .collect()
}
