//! One engine's supervisor: start the process, poll it until it is ready, watch it,
//! restart it with backoff when it exits unasked, stop it when idle or at shutdown.
//!
//! States: `starting` (spawned, not answering HTTP yet) → `loading` (answers, but
//! not 200 on `ready_path`) → `ready`; an exit → `restarting` (1 s doubling to
//! 5 min) or, after `max_failures` in a row, `failed`; `stopped` when idle or not
//! started yet (`on_demand`). The count of failures in a row starts again after
//! 10 minutes ready.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_api::ModelStatus;
use hearth_config::launch::PORT_PLACEHOLDER;
use hearth_config::{PortSetting, RestartPolicy, StartMode};
use hearth_sandbox::process::{Signal, own_group_dying_with_parent, signal_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

use crate::engine::Engine;
use crate::state::Command;

/// A run this long after ready resets the count of failures in a row.
const HEALTHY_RESET: Duration = Duration::from_secs(600);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Between readiness polls (a model server is polled from spawn to ready): often
/// for the first seconds, where a small model is ready (a poll is one loopback
/// connection), then four times a second through a long load.
const POLL_FAST: Duration = Duration::from_millis(25);
const POLL_FAST_FOR: Duration = Duration::from_secs(3);
const POLL_SLOW: Duration = Duration::from_millis(250);

/// How one run of the process ended.
enum Ended {
    /// Hearth is stopping (it stopped the process).
    Shutdown,
    /// Stopped after `idle_stop` without requests.
    Idle,
    /// It exited unasked, could not be spawned, or never got ready.
    Exited {
        reason: String,
        /// Not a clean exit with status 0.
        failure: bool,
        /// How long it had been ready.
        healthy_for: Duration,
    },
}

impl Ended {
    fn failed(reason: String) -> Self {
        Ended::Exited {
            reason,
            failure: true,
            healthy_for: Duration::ZERO,
        }
    }
}

/// Runs until Hearth stops (the `shutdown` channel says so, or is dropped).
pub async fn supervise(
    engine: Arc<Engine>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut gate: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !*gate.borrow() {
        engine.publish(|s| {
            s.state = ModelStatus::Starting;
            s.reason =
                Some("waiting for the previous Hearth process to stop its model servers".into());
        });
        tokio::select! {
            // A gate dropped unopened opens: never wait forever on it.
            _ = gate.wait_for(|open| *open) => {}
            () = stopping(&mut shutdown) => return,
        }
        engine.publish(|s| s.reason = None);
    }
    let mut wanted = engine.launch.start == StartMode::Eager;
    let mut failures = 0u32;
    loop {
        if !wanted {
            engine.publish(|s| {
                s.state = ModelStatus::Stopped;
                s.pid = None;
                s.port = None;
                s.retry_at = None;
            });
            tokio::select! {
                c = commands.recv() => match c {
                    Some(Command::Start) => wanted = true,
                    None => return,
                },
                () = stopping(&mut shutdown) => return,
            }
            continue;
        }
        let (reason, failure, healthy_for) =
            match run_once(&engine, &mut commands, &mut shutdown).await {
                Ended::Shutdown => {
                    engine.publish(|s| {
                        s.state = ModelStatus::Stopped;
                        s.pid = None;
                    });
                    return;
                }
                Ended::Idle => {
                    // A start asked for while it was up is no reason to start again.
                    while commands.try_recv().is_ok() {}
                    wanted = false;
                    continue;
                }
                Ended::Exited {
                    reason,
                    failure,
                    healthy_for,
                } => (reason, failure, healthy_for),
            };
        if healthy_for >= HEALTHY_RESET {
            failures = 0;
        }
        let restart = match engine.launch.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failure,
            RestartPolicy::Never => false,
        };
        if failure {
            failures += 1;
        }
        let tail = engine.output.tail();
        if !restart || failures >= engine.max_failures {
            if failure {
                let why = if restart {
                    format!("{reason} ({failures} failures in a row)")
                } else {
                    reason
                };
                tracing::error!(model = %engine.name, reason = %why, log = %engine.output.path().display(), "model server failed; not restarting it");
                engine.output.note(&format!("failed: {why}"));
                engine.publish(|s| {
                    s.state = ModelStatus::Failed;
                    s.pid = None;
                    s.reason = Some(why);
                    s.retry_at = None;
                    s.stderr_tail = tail;
                });
                stopping(&mut shutdown).await;
                return;
            }
            // A clean exit nobody asked for, under `on-failure`: stopped, and started
            // again by the next request.
            tracing::info!(model = %engine.name, reason = %reason, "model server exited");
            engine.publish(|s| s.reason = Some(reason));
            wanted = false;
            continue;
        }
        let delay = backoff(failures.max(1));
        tracing::warn!(model = %engine.name, reason = %reason, retry_in_secs = delay.as_secs_f64(), log = %engine.output.path().display(), "model server exited; restarting it");
        engine.publish(|s| {
            s.state = ModelStatus::Restarting;
            s.pid = None;
            s.restarts += 1;
            s.reason = Some(reason);
            s.retry_at = Some(Instant::now() + delay);
            s.stderr_tail = tail;
        });
        metrics::counter!("hearth_engine_restarts_total", "model" => engine.name.clone())
            .increment(1);
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                () = stopping(&mut shutdown) => return,
                // A request during the backoff waits for the restart.
                c = commands.recv() => if c.is_none() { return },
            }
        }
    }
}

/// 1 s, 2 s, 4 s... up to 5 minutes, for the `n`th failure in a row (from 1).
fn backoff(n: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(20)))
        .min(BACKOFF_MAX)
}

/// Resolves when Hearth stops: the flag turns true, or its sender is gone.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// One run: spawn, wait until ready, serve until it exits, is idle, or Hearth stops.
async fn run_once(
    engine: &Engine,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let port = match engine.launch.port {
        PortSetting::Fixed(p) => {
            // Another server on the port would answer our readiness polls.
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", p)) {
                return Ended::failed(format!(
                    "port {p} is taken ({e}): stop what listens there (`ss -ltnp 'sport = :{p}'`) or use port = \"auto\""
                ));
            }
            p
        }
        PortSetting::Auto => match free_port() {
            Ok(p) => p,
            Err(e) => return Ended::failed(format!("no free loopback port: {e}")),
        },
    };
    let argv: Vec<String> = engine
        .argv
        .iter()
        .map(|a| a.replace(PORT_PLACEHOLDER, &port.to_string()))
        .collect();
    let attempt = engine.state.borrow().attempt + 1;
    engine.publish(|s| {
        s.state = ModelStatus::Starting;
        s.attempt = attempt;
        s.port = Some(port);
        s.pid = None;
        s.retry_at = None;
    });
    let Some((program, args)) = argv.split_first() else {
        return Ended::failed("the command is empty".into());
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .envs(&engine.launch.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(gpus) = &engine.launch.gpus {
        let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
    }
    own_group_dying_with_parent(&mut cmd);
    let mut child = match tokio::process::Command::from(cmd).spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = spawn_error(program, &e);
            engine.output.note(&format!("cannot start: {why}"));
            return Ended::failed(why);
        }
    };
    let Some(pid) = child.id() else {
        return Ended::failed("the process exited as it started".into());
    };
    engine.output.note(&format!(
        "started (attempt {attempt}, pid {pid}, port {port}): {}",
        argv.join(" ")
    ));
    tracing::info!(model = %engine.name, pid, port, attempt, "model server started; waiting until it is ready");
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(engine.output.clone().pump(out, "stdout")));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(engine.output.clone().pump(err, "stderr")));
    }
    if let Err(e) = engine.connect(port) {
        stop(engine, &mut child, pid).await;
        return Ended::failed(format!("cannot reach it: {e}"));
    }
    engine.publish(|s| s.pid = Some(pid));

    // Until ready.
    let started = Instant::now();
    let deadline = started + engine.ready_timeout;
    loop {
        tokio::select! {
            status = child.wait() => {
                return exited(engine, status, pumps, Duration::ZERO, "before it was ready").await;
            }
            () = stopping(shutdown) => {
                stop(engine, &mut child, pid).await;
                return Ended::Shutdown;
            }
            c = commands.recv() => {
                if c.is_none() {
                    stop(engine, &mut child, pid).await;
                    return Ended::Shutdown;
                }
                continue;
            }
            () = tokio::time::sleep(if started.elapsed() < POLL_FAST_FOR { POLL_FAST } else { POLL_SLOW }) => {}
        }
        match poll(port, engine.launch.ready_path()).await {
            Poll::Ready => break,
            Poll::Answering(status) => {
                if engine.state.borrow().state == ModelStatus::Starting {
                    tracing::info!(model = %engine.name, pid, status, "model server answers; loading");
                    engine.publish(|s| s.state = ModelStatus::Loading);
                }
            }
            Poll::Silent => {}
        }
        if Instant::now() >= deadline {
            let why = format!(
                "not ready within {} s (ready_timeout): `{}` never answered 200",
                engine.ready_timeout.as_secs(),
                engine.launch.ready_path()
            );
            engine.output.note(&why);
            stop(engine, &mut child, pid).await;
            return Ended::failed(why);
        }
    }
    let took = started.elapsed();
    engine
        .output
        .note(&format!("ready in {:.1} s", took.as_secs_f64()));
    tracing::info!(model = %engine.name, pid, port, secs = took.as_secs_f64(), "model server is ready");
    engine.activity.touch();
    engine.publish(|s| {
        s.state = ModelStatus::Ready;
        s.reason = None;
        s.stderr_tail = Vec::new();
    });

    // Serving.
    let ready_at = Instant::now();
    let idle = engine.idle_stop;
    let mut tick = tokio::time::interval(idle.map_or(Duration::from_secs(3600), |d| {
        (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }));
    loop {
        tokio::select! {
            status = child.wait() => {
                return exited(engine, status, pumps, ready_at.elapsed(), "while serving").await;
            }
            () = stopping(shutdown) => {
                stop(engine, &mut child, pid).await;
                return Ended::Shutdown;
            }
            c = commands.recv() => if c.is_none() {
                stop(engine, &mut child, pid).await;
                return Ended::Shutdown;
            },
            _ = tick.tick() => {
                if let (Some(limit), Some(idle_for)) = (idle, engine.activity.idle_for())
                    && idle_for >= limit
                {
                    tracing::info!(model = %engine.name, pid, idle_secs = idle_for.as_secs(), "stopping the model server: idle (idle_stop)");
                    engine.output.note("stopping: idle");
                    stop(engine, &mut child, pid).await;
                    return Ended::Idle;
                }
            }
        }
    }
}

/// The process ended unasked: why, in words, once its last output is read.
async fn exited(
    engine: &Engine,
    status: std::io::Result<ExitStatus>,
    pumps: Vec<tokio::task::JoinHandle<()>>,
    healthy_for: Duration,
    when: &str,
) -> Ended {
    engine.disconnect();
    // Its last words on stderr say why: read them before the tail is taken. A
    // process it left behind may hold the pipes open, hence the bound.
    let _ =
        tokio::time::timeout(Duration::from_millis(500), futures::future::join_all(pumps)).await;
    let (reason, failure) = match status {
        Ok(s) => describe(s),
        Err(e) => (format!("cannot wait for it: {e}"), true),
    };
    let reason = format!("{reason} {when}");
    engine.output.note(&reason);
    if let Some(pid) = engine.state.borrow().pid {
        // What it started dies with it.
        let _ = signal_group(pid, Signal::Kill);
    }
    Ended::Exited {
        reason,
        failure,
        healthy_for,
    }
}

fn describe(status: ExitStatus) -> (String, bool) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => ("exited with status 0".into(), false),
        (Some(c), _) => (format!("exited with status {c}"), true),
        (None, Some(sig)) => (format!("killed by signal {sig}{}", signal_name(sig)), true),
        (None, None) => ("ended".into(), true),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        6 => " (SIGABRT)",
        9 => " (SIGKILL: out of memory, or killed)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// SIGTERM to its process group; SIGKILL after `stop_timeout`; then SIGKILL to
/// whatever of the group is left.
async fn stop(engine: &Engine, child: &mut Child, pid: u32) {
    engine.disconnect();
    engine.output.note("stopping: SIGTERM to its process group");
    if let Err(e) = signal_group(pid, Signal::Term) {
        tracing::warn!(model = %engine.name, pid, error = %e, "cannot signal the model server");
    }
    match tokio::time::timeout(engine.stop_timeout, child.wait()).await {
        Ok(status) => {
            let what = status.map_or_else(|e| e.to_string(), |s| describe(s).0);
            engine.output.note(&format!("stopped: {what}"));
            tracing::info!(model = %engine.name, pid, "model server stopped");
        }
        Err(_) => {
            tracing::warn!(model = %engine.name, pid, timeout_secs = engine.stop_timeout.as_secs_f64(), "model server did not stop on SIGTERM; killing it");
            engine
                .output
                .note("did not stop within stop_timeout: SIGKILL");
            let _ = signal_group(pid, Signal::Kill);
            let _ = child.wait().await;
        }
    }
    let _ = signal_group(pid, Signal::Kill);
}

/// Why a spawn failed, and what to do.
fn spawn_error(program: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "cannot run `{program}`: not found (install it, or give its path as `program` in [models.launch]; `hearth doctor` checks)"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot run `{program}`: permission denied (is it executable?)")
        }
        _ => format!("cannot run `{program}`: {e}"),
    }
}

/// A loopback port free now (the server binds it a moment later: another process
/// could take it in between, and then the start fails and is retried).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

enum Poll {
    /// 200 on the ready path.
    Ready,
    /// An HTTP answer, not 200 (still loading).
    Answering(u16),
    /// No connection, or no answer.
    Silent,
}

/// `GET path` on the loopback port: a bare HTTP/1.1 request, read as far as the
/// status line.
async fn poll(port: u16, path: &str) -> Poll {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < buf.len() {
            let got = s.read(&mut buf[n..]).await?;
            if got == 0 {
                break;
            }
            n += got;
            if buf[..n].windows(2).any(|w| w == b"\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(status_of(&buf[..n]))
    };
    match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(Some(200))) => Poll::Ready,
        Ok(Ok(Some(code))) => Poll::Answering(code),
        _ => Poll::Silent,
    }
}

/// The status code of an HTTP/1.x status line.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_to_five_minutes() {
        let s: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }

    #[test]
    fn exit_statuses_in_words() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe(ExitStatus::from_raw(0)),
            ("exited with status 0".into(), false)
        );
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            ("exited with status 3".into(), true)
        );
        assert!(describe(ExitStatus::from_raw(9)).0.contains("SIGKILL"));
    }
}
