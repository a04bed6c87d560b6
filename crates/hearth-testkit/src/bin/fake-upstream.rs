//! `fake-upstream [PORT] [flags]`: the test double as a process, for the SDK suite,
//! benchmarks, and the managed-engine tests (which run it as a model server Hearth
//! owns). Prints `listening on http://ADDR/v1` and serves until killed.
//!
//! Flags:
//! - `--port N`: the port (as the positional PORT); 0 or none = any free port.
//! - `--chunks N --chunk-delay-ms MS`: answers stream N chunks, MS apart.
//! - `--start-delay-ms MS`: wait before listening (a server still starting).
//! - `--load-delay-ms MS`: `/health` and `/v1/models` answer 503 "Loading model" for
//!   MS after listening (a server loading its model).
//! - `--exit-at-start CODE [--message TEXT]`: print TEXT to stderr and exit with CODE
//!   before listening (a server that cannot start).
//! - `--crash-after N`: the Nth completion request is received, left unanswered, and
//!   the process exits with status 1 (a server that dies while answering).
//! - `--ignore-sigterm`: SIGTERM does nothing (a server that does not stop when asked).
//! - `--spawn-child`: start `sleep 3600` in its process group (a server's workers).
//! - `--pid-file PATH`: append this process's pid (and the child's) to PATH.
//! - `--script FILE`: scripted replies by model, a JSON object
//!   `{"MODEL": [REPLY, ...], "*": [...]}`; each request naming MODEL gets that
//!   model's next reply (`"*"`: any model, after its own run out), then the default.
//!   A REPLY is the answer's text, or `{"text": T, "delay_ms": MS}` (answered after
//!   MS), `{"reasoning": R, "text": T, "delay_ms": MS}` (a reasoning model: R as
//!   `reasoning_content`, then T, in chunks MS apart), `{"tool_calls": [...]}`,
//!   `{"stall": true}` (never answered) or `{"status": CODE}` (an error).
//! - `--record FILE`: append each request's body to FILE, one JSON line each.
//!
//! `/v1/responses` keeps what is asked with `store: true` (in memory), for `GET`
//! and `DELETE /v1/responses/{id}`, `/input_items` and `/cancel`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::time::Duration;

use hearth_testkit::{Behaviour, FakeUpstream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Option<&str> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1).map(String::as_str)
    };
    let flag = |name: &str| -> Option<u64> { value(name)?.parse().ok() };
    let has = |name: &str| args.iter().any(|a| a == name);

    // stdout's first line stays `listening on ...` (the SDK suite reads it).
    eprintln!("fake-upstream: starting (pid {})", std::process::id());
    if let Some(path) = value("--pid-file") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // One write per line (an O_APPEND write of a few bytes is atomic): several
        // servers append to the same file at once, and `writeln!` on a File writes
        // the number and the newline apart, so lines interleaved ("2906529067").
        f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        if has("--spawn-child") {
            let child = std::process::Command::new("sleep").arg("3600").spawn()?;
            f.write_all(format!("{}\n", child.id()).as_bytes())?;
        }
    }
    if let Some(code) = flag("--exit-at-start") {
        eprintln!(
            "{}",
            value("--message").unwrap_or("fake-upstream: cannot start")
        );
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    if has("--ignore-sigterm") {
        // Installing a handler replaces the default action (exit); never read it.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        std::mem::forget(term);
    }
    if let Some(ms) = flag("--start-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let port: u16 = flag("--port")
        .and_then(|p| u16::try_from(p).ok())
        .or_else(|| args.first().and_then(|p| p.parse().ok()))
        .unwrap_or(0);
    let up = FakeUpstream::start_on(port).await?;
    if let (Some(chunks), Some(delay)) = (flag("--chunks"), flag("--chunk-delay-ms")) {
        let text: String = (0..chunks).map(|i| format!("w{i} ")).collect();
        up.set_default(Behaviour::slow(
            &text,
            chunks as usize,
            Duration::from_millis(delay),
        ));
    }
    if let Some(ms) = flag("--load-delay-ms") {
        up.set_probe_status(503);
        eprintln!("fake-upstream: loading model");
        let up = up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            up.set_probe_status(200);
            eprintln!("fake-upstream: model loaded");
        });
    }
    if let Some(n) = flag("--crash-after").and_then(|n| usize::try_from(n).ok()) {
        for _ in 1..n {
            up.push(Behaviour::default());
        }
        up.push(Behaviour::Stall);
        let up = up.clone();
        tokio::spawn(async move {
            while up.hits() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            eprintln!("fake-upstream: crashing on request {n}");
            std::process::exit(1);
        });
    }
    if let Some(path) = value("--script") {
        let text = std::fs::read_to_string(path)?;
        let script: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("--script {path}: {e}")))?;
        let Some(models) = script.as_object() else {
            return Err(std::io::Error::other(format!(
                "--script {path}: expected an object of model names"
            )));
        };
        for (model, replies) in models {
            let replies = replies
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    hearth_testkit::scripted(r).map_err(|e| {
                        std::io::Error::other(format!("--script {path}: {model}: {e}"))
                    })
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            if model == "*" {
                replies.into_iter().for_each(|b| up.push(b));
            } else {
                up.script_model(model, replies);
            }
        }
    }
    if let Some(path) = value("--record") {
        up.record_to(std::path::Path::new(path))?;
    }
    println!("listening on {}", up.base_url());
    std::io::stdout().flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
