//! Zero-downtime upgrades: the running Hearth hands its listening socket to a new
//! Hearth process, and leaves only once that one is ready.
//!
//! SIGUSR2 (`systemctl reload hearth` on a deployed host) makes the running
//! process start `argv[0]` again with its own arguments — on a deployed host
//! `/opt/hearth/current/bin/hearth`, so the release `current` points at now — with
//! the listening socket as fd 3 and one end of a socket pair as fd 4
//! (`LISTEN_FDS=2`, the systemd convention, so the same code also takes a socket
//! from systemd socket activation; `HEARTH_HANDOVER=1` says fd 4 is there). The new
//! process builds everything and waits until its models are loaded without
//! accepting, then says `READY=1` on fd 4 and starts accepting. Only then does the
//! old one stop accepting and drain its in-flight requests and streams
//! (`server.shutdown_grace_secs`). The two share one socket and one accept queue,
//! so no connection is refused or reset at any point. A new process that exits, or
//! is not ready within `server.upgrade_timeout_secs`, is killed, and the old one
//! goes on serving.
//!
//! Under systemd (`Type=notify`) the old process tells systemd the new main pid
//! before it leaves, so the service stays up through the change.
//!
//! Managed model servers are not handed over: the new process starts its own once
//! the old one has exited (their ports and GPU memory are the old one's until
//! then), so requests for those models wait in the queue meanwhile.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use hearth_api::ModelStatus;
use hearth_router::Router;

/// `1` in the environment of a process started to take over; its fd 4 is then
/// the socket it says `READY=1` on.
pub const HANDOVER_ENV: &str = hearth_config::env::HANDOVER;

/// What this process was given at start.
#[derive(Debug, Default)]
pub struct Inherited {
    /// A listening socket to serve on instead of binding `server.listen`.
    pub listener: Option<TcpListener>,
    /// The running Hearth this process takes over from.
    pub from: Option<Predecessor>,
}

/// The Hearth that started this one to take over its socket.
#[derive(Debug)]
pub struct Predecessor {
    notify: UnixDatagram,
    pid: u32,
}

impl Predecessor {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Says this process is ready: the predecessor stops accepting and drains.
    pub fn ready(self) -> io::Result<()> {
        self.notify.send(b"READY=1").map(|_| ())
    }

    /// Resolves once the predecessor has exited (this process has a new parent).
    pub fn gone(&self) -> impl Future<Output = ()> + Send + 'static {
        let pid = self.pid;
        async move {
            while std::os::unix::process::parent_id() == pid {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Takes the sockets this process was started with (`LISTEN_FDS`). Call it first
/// thing, before other threads run: it removes `LISTEN_FDS` from the environment
/// so that processes Hearth starts do not take them too.
pub fn take_inherited() -> io::Result<Inherited> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(Inherited::default());
    }
    let listener = fds.take_tcp_listener(0)?.ok_or_else(|| {
        io::Error::other("LISTEN_FDS is set, but fd 3 is not a listening TCP socket")
    })?;
    let from = if std::env::var(HANDOVER_ENV).as_deref() == Ok("1") {
        let notify = fds.take_unix_datagram(1)?.ok_or_else(|| {
            io::Error::other(format!(
                "{HANDOVER_ENV}=1, but fd 4 is not the handover socket"
            ))
        })?;
        Some(Predecessor {
            notify,
            pid: std::os::unix::process::parent_id(),
        })
    } else {
        None
    };
    Ok(Inherited {
        listener: Some(listener),
        from,
    })
}

/// Waits until this process's models have loaded. An error says why it should
/// not take over: no model loaded (the old one is better left serving).
pub async fn wait_models(router: &Router) -> Result<(), String> {
    // Managed model servers start after the old process leaves (see the module doc).
    let own = |m: &&hearth_router::Model| m.backend.engine().is_none();
    loop {
        let settling = router
            .iter()
            .filter(own)
            .any(|m| matches!(m.status(), ModelStatus::Loading | ModelStatus::Starting));
        if !settling {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut own_models = router.iter().filter(own).peekable();
    if own_models.peek().is_none()
        || router
            .iter()
            .filter(own)
            .any(|m| m.status() == ModelStatus::Ready)
    {
        return Ok(());
    }
    let states: Vec<String> = router
        .iter()
        .filter(own)
        .map(|m| format!("{} {}", m.config.name, m.status().as_str()))
        .collect();
    Err(format!("no model is ready ({})", states.join(", ")))
}

/// Why a new process did not take over.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot share the listening socket with a new process: {0}")]
    Socket(io::Error),
    #[error("cannot start {exe}: {source}")]
    Spawn { exe: String, source: io::Error },
    #[error(
        "the new process ({exe}, pid {pid}) exited ({status}) before it was ready; its log lines above say why"
    )]
    Exited {
        exe: String,
        pid: u32,
        status: String,
    },
    #[error(
        "the new process ({exe}, pid {pid}) was not ready within {secs} s (server.upgrade_timeout_secs), and was stopped"
    )]
    Timeout { exe: String, pid: u32, secs: u64 },
}

/// The SIGUSR2 handler, installed at start: a signal sent before it exists would
/// end the process (SIGUSR2's default action).
pub struct UpgradeSignal(tokio::signal::unix::Signal);

impl UpgradeSignal {
    pub fn install() -> io::Result<UpgradeSignal> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
            .map(UpgradeSignal)
    }
}

/// At each SIGUSR2, starts a new process on `listener`; returns the pid of the
/// first one that took over (after telling systemd it is the main pid now). A
/// failed attempt is logged and the next signal tries again.
pub async fn serve_upgrades(
    mut signal: UpgradeSignal,
    listener: TcpListener,
    timeout: Duration,
) -> u32 {
    loop {
        if signal.0.recv().await.is_none() {
            return std::future::pending().await;
        }
        tracing::info!("upgrade asked (SIGUSR2): starting the new Hearth on this socket");
        match start_successor(&listener, timeout).await {
            Ok(pid) => {
                notify_systemd(&format!("MAINPID={pid}"));
                return pid;
            }
            Err(e) => tracing::error!(error = %e, "upgrade failed; still serving"),
        }
    }
}

/// The program a successor runs: `argv[0]` as this process was started (through
/// `/opt/hearth/current`, the release that is current now), or this executable.
fn successor_exe() -> PathBuf {
    match std::env::args_os().next().map(PathBuf::from) {
        Some(p) if p.components().count() > 1 => p,
        _ => std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hearth")),
    }
}

/// Starts the new process with `listener` and waits until it says it is ready.
pub async fn start_successor(
    listener: &TcpListener,
    timeout: Duration,
) -> Result<u32, HandoverError> {
    let exe = successor_exe();
    let shown = exe.display().to_string();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let socket = OwnedFd::from(listener.try_clone().map_err(HandoverError::Socket)?);
    let (ours, theirs) = UnixDatagram::pair().map_err(HandoverError::Socket)?;
    ours.set_nonblocking(true).map_err(HandoverError::Socket)?;
    let ours = tokio::net::UnixDatagram::from_std(ours).map_err(HandoverError::Socket)?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(args)
        .env("LISTEN_FDS", "2")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS_FIRST_FD")
        .env_remove("LISTEN_FDNAMES")
        .env(HANDOVER_ENV, "1");
    cmd.fd_mappings(vec![
        FdMapping {
            parent_fd: socket,
            child_fd: 3,
        },
        FdMapping {
            parent_fd: OwnedFd::from(theirs),
            child_fd: 4,
        },
    ])
    .map_err(|e| HandoverError::Socket(io::Error::other(e)))?;
    let mut child = cmd.spawn().map_err(|source| HandoverError::Spawn {
        exe: shown.clone(),
        source,
    })?;
    // The fds given to the child are closed here with `cmd`.
    drop(cmd);
    let pid = child.id().unwrap_or(0);
    tracing::info!(pid, exe = %shown, "new Hearth started; it takes over once its models are loaded");
    let ready = async {
        let mut buf = [0u8; 64];
        loop {
            match ours.recv(&mut buf).await {
                Ok(n) if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1") => return true,
                Ok(_) => {}
                // The new process closed its end: it is exiting.
                Err(_) => return std::future::pending().await,
            }
        }
    };
    tokio::select! {
        _ = ready => {
            tracing::info!(pid, "the new Hearth is ready: no new connections here, finishing in-flight requests");
            Ok(pid)
        }
        status = child.wait() => Err(HandoverError::Exited {
            exe: shown,
            pid,
            status: status.map_or_else(|e| e.to_string(), |s| s.to_string()),
        }),
        () = tokio::time::sleep(timeout) => {
            // It has not accepted anything yet (it accepts only once ready).
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(HandoverError::Timeout { exe: shown, pid, secs: timeout.as_secs() })
        }
    }
}

/// Sends `state` to systemd (`NOTIFY_SOCKET`, set for `Type=notify` units); does
/// nothing elsewhere.
pub fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        use std::os::unix::ffi::OsStrExt;
        match path.as_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
            None => sock.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_started_without_sockets_inherits_none() {
        // The test runner sets no LISTEN_FDS.
        let inherited = take_inherited().unwrap();
        assert!(inherited.listener.is_none() && inherited.from.is_none());
    }
}
