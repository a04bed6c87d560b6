//! What a person sees: `hearth serve`'s stdout as text with a banner on a
//! terminal (or with `log.format = "text"`), JSON otherwise, and llama.cpp's own
//! lines only when asked for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

mod common;
use common::hearth;

/// A config in `dir` with an upstream model (nothing to load: the server is up at
/// once), plus `extra` TOML.
fn upstream_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join("hearth.toml");
    std::fs::write(
        &file,
        format!(
            "{extra}\n[storage]\ndata_dir = \"{}\"\n[[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    file
}

/// A running child whose stdout lines arrive on a channel.
struct Child {
    child: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Child {
    fn spawn(cmd: &mut Command) -> Child {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Child {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `done` (20 s at most), keeping them all.
    fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = done(&line);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no {what} within 20 s; stdout so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// SIGTERM, then every line it wrote.
    fn stop(mut self) -> Vec<String> {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
        self.seen.extend(self.lines.iter());
        self.seen
    }
}

fn is_json(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object())
}

/// `HH:MM:SS LEVEL message`.
fn is_text_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 15
        && b[2] == b':'
        && b[5] == b':'
        && ["ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"]
            .iter()
            .any(|l| line[9..].starts_with(l))
}

#[test]
fn text_format_prints_the_banner_with_the_bound_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = upstream_config(dir.path(), "");
    let mut served = Child::spawn(
        hearth()
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .env(hearth_config::env::LOG_FORMAT, "text"),
    );
    served.until("banner", |l| l == "Press Ctrl+C to stop.");
    let ui = served
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("  Chat UI   "))
        .expect("a Chat UI line")
        .to_owned();
    let port: u16 = ui
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("a URL with the bound port: {ui}"));
    assert_ne!(port, 0);
    // The URL is where it listens.
    served.until("serving line", |l| l.contains("hearth is serving"));
    let health = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(health.is_ok(), "{ui} accepts connections");
    let lines = served.stop();
    let out = lines.join("\n");

    assert!(
        lines.iter().all(|l| !is_json(l)),
        "no JSON on stdout:\n{out}"
    );
    assert!(
        lines.contains(&format!("Hearth v{}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let api = format!(
        "  API       http://127.0.0.1:{port}/v1  (OpenAI-compatible; no key needed on loopback)"
    );
    assert!(lines.contains(&api), "{out}");
    assert!(
        lines.contains(&"  Models    m (upstream, ready)".to_owned()),
        "{out}"
    );
    let config_line = format!("  Config    {}", config.display());
    assert!(lines.contains(&config_line), "{out}");
    let logs = format!("  Logs      {}", dir.path().join("data/logs").display());
    assert!(lines.contains(&logs), "{out}");
    // Every other line is a one-line log event, without colours off a terminal.
    let banner_end = lines
        .iter()
        .position(|l| l == "Press Ctrl+C to stop.")
        .unwrap();
    let banner_start = lines
        .iter()
        .position(|l| l.starts_with("Hearth v"))
        .unwrap();
    for (i, l) in lines.iter().enumerate() {
        if !(banner_start..=banner_end).contains(&i) {
            assert!(is_text_log_line(l), "not a text log line: {l:?}\n{out}");
        }
    }
    assert!(!out.contains('\x1b'), "no colours off a terminal");
    assert!(out.contains(" INFO  stopped"), "{out}");
    // The file stays JSON.
    let file = std::fs::read_dir(dir.path().join("data/logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.lines().all(is_json), "{text}");
}

#[test]
fn json_format_from_the_file_gives_json_lines_with_the_urls() {
    let dir = tempfile::tempdir().unwrap();
    let config = upstream_config(dir.path(), "[log]\nformat = \"json\"");
    let mut served = Child::spawn(
        hearth()
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"]),
    );
    served.until("serving line", |l| l.contains("hearth is serving"));
    let lines = served.stop();
    let out = lines.join("\n");
    assert!(lines.iter().all(|l| is_json(l)), "only JSON:\n{out}");
    assert!(!out.contains("Press Ctrl+C"), "no banner with JSON logs");
    let serving: serde_json::Value = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("hearth is serving"))
        })
        .unwrap();
    let listen = serving["listen"].as_str().unwrap();
    assert_eq!(serving["ui_url"], format!("http://{listen}/"));
    assert_eq!(serving["api_url"], format!("http://{listen}/v1"));
}

/// `script` (util-linux) runs the command on a pseudo-terminal: auto is text there.
fn script() -> Option<&'static str> {
    let found = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "skipped: util-linux `script` is not installed, so there is no terminal to test on"
        );
    }
    found.then_some("script")
}

/// Runs `hearth serve` with `args` on a terminal for `secs`, then Ctrl+C; its output.
fn on_a_terminal(args: &str, secs: u32) -> String {
    let cmd = format!(
        "timeout -s INT {secs} {} serve {args}",
        env!("CARGO_BIN_EXE_hearth")
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("HEARTH_LOG")
        .env_remove("HEARTH_CONFIG")
        .env_remove("HEARTH_API_KEYS")
        .env_remove(hearth_config::env::LOG_FORMAT)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn auto_on_a_terminal_is_coloured_text_with_the_banner() {
    if script().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = upstream_config(dir.path(), "");
    let out = on_a_terminal(
        &format!("--config {} --listen 127.0.0.1:0", config.display()),
        3,
    );
    assert!(out.contains("\n  Chat UI   http://127.0.0.1:"), "{out}");
    assert!(out.contains("Press Ctrl+C to stop."), "{out}");
    assert!(
        out.contains("\x1b[32mINFO \x1b[0m"),
        "coloured levels: {out:?}"
    );
    assert!(out.lines().all(|l| !is_json(l)), "{out}");

    // `log.format = "json"` wins over the terminal.
    let config = upstream_config(dir.path(), "[log]\nformat = \"json\"");
    let out = on_a_terminal(
        &format!("--config {} --listen 127.0.0.1:0", config.display()),
        3,
    );
    assert!(!out.contains("Press Ctrl+C"), "{out}");
    assert!(out.lines().filter(|l| !l.is_empty()).all(is_json), "{out}");
}

/// The real default model: loading it says "loading" and "ready" and nothing of
/// llama.cpp's loader at the default level; `HEARTH_LOG=debug` shows those.
#[test]
fn llama_cpp_lines_only_at_debug() {
    let model = hearth_testkit::test_model_path();
    let run = |level: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hearth.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\ndata_dir = \"{}\"\n[[models]]\nname = \"smollm2-135m\"\npath = \"{}\"\ncontext = 512\nparallel = 1\n",
                dir.path().join("data").display(),
                model.display()
            ),
        )
        .unwrap();
        let mut cmd = hearth();
        cmd.args(["serve", "--config", config.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(level) = level {
            cmd.env("HEARTH_LOG", level);
        }
        let mut served = Child::spawn(&mut cmd);
        served.until("ready line", |l| l.contains("smollm2-135m ready in"));
        served.stop()
    };
    let lines = run(None);
    let out = lines.join("\n");
    assert!(!out.contains("\"target\":\"llama_cpp\""), "{out}");
    assert!(
        out.contains("\"message\":\"loading smollm2-135m ("),
        "{out}"
    );
    // loading, serving, ready, shutting down, stopped: a start reads in a glance.
    // A slow load adds its progress lines (`loading smollm2-135m: 50%`), which
    // are how a start shows it is moving, so they are not counted here.
    let progress = "\"message\":\"loading smollm2-135m: ";
    let counted = lines.iter().filter(|l| !l.contains(progress)).count();
    assert!(counted <= 8, "{counted} lines:\n{out}");

    let lines = run(Some("info,llama_cpp=debug"));
    let llama = lines
        .iter()
        .filter(|l| l.contains("\"target\":\"llama_cpp\""))
        .count();
    assert!(llama > 20, "llama.cpp's loader lines at debug: {llama}");
}
