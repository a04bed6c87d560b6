//! A sandbox run that a cancel can stop, and the words for a limit that ended one.
//!
//! `hearth-sandbox` runs a program to completion on the calling thread, so the run
//! goes to a blocking thread, which notes where its children are listed
//! (`/proc/<pid>/task/<tid>/children`): the sandboxed program is that thread's only
//! child while the run lasts. Cancel kills it (in namespaces, the kernel then kills
//! everything else in the sandbox), and the run returns its outcome as usual. The
//! note is cleared, under the same lock the canceller holds, before the thread is
//! given back, so a kill can never reach another job's run on a reused thread.
//! (A kernel without that file, `CONFIG_PROC_CHILDREN`, leaves a cancelled run to
//! end at its time limit; the job still ends `cancelled`.) A cancel hook in
//! `hearth-sandbox` itself would make this simpler.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hearth_sandbox::{LimitKind, Limits, Outcome, Sandbox, Spec};
use tokio_util::sync::CancellationToken;

/// What came of a run that may have been cancelled.
#[derive(Debug)]
pub enum Ran {
    Done(Outcome),
    /// Cancelled: the program was killed (its outcome, when it ended, is kept).
    Cancelled(Option<Outcome>),
}

/// Runs `spec`; `cancel` kills it.
pub async fn run(
    sandbox: Arc<Sandbox>,
    spec: Spec,
    cancel: &CancellationToken,
) -> Result<Ran, hearth_sandbox::Error> {
    let children: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let note = children.clone();
    let mut task = tokio::task::spawn_blocking(move || {
        *lock(&note) = std::fs::read_link("/proc/thread-self")
            .ok()
            .map(|p| PathBuf::from("/proc").join(p).join("children"));
        let out = sandbox.run(&spec);
        *lock(&note) = None;
        out
    });
    let ended = tokio::select! {
        r = &mut task => return joined(r).map(Ran::Done),
        () = cancel.cancelled() => loop {
            // Until the run returns: it may not have started its program yet.
            kill_children(&children);
            tokio::select! {
                r = &mut task => break r,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        },
    };
    Ok(Ran::Cancelled(joined(ended).ok()))
}

fn joined(
    r: Result<Result<Outcome, hearth_sandbox::Error>, tokio::task::JoinError>,
) -> Result<Outcome, hearth_sandbox::Error> {
    r.map_err(|e| hearth_sandbox::Error::Io(std::io::Error::other(e.to_string())))?
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SIGKILL to the children of the run's thread, if it is running.
fn kill_children(children: &Mutex<Option<PathBuf>>) {
    let guard = lock(children);
    let Some(path) = guard.as_ref() else { return };
    let Ok(list) = std::fs::read_to_string(path) else {
        return;
    };
    for pid in list
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Bytes in plain words: `2 GiB`, `512 MiB`.
pub fn bytes_in_words(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else {
        format!("{} MiB", n >> 20)
    }
}

/// The limit that ended a run, in plain words, with its short code.
pub fn explain_limit(limit: LimitKind, limits: &Limits) -> (&'static str, String) {
    match limit {
        LimitKind::Timeout => (
            "timeout",
            format!(
                "stopped after its {} s time limit",
                limits.wall_time.as_secs()
            ),
        ),
        LimitKind::Memory => (
            "memory",
            format!(
                "used more than its {} of memory",
                bytes_in_words(limits.memory_bytes)
            ),
        ),
        LimitKind::Cpu => (
            "cpu",
            format!("used up its {} s of CPU time", limits.cpu_seconds()),
        ),
        LimitKind::Pids => (
            "pids",
            format!(
                "started more than its {} processes and threads",
                limits.pids
            ),
        ),
        LimitKind::OutputSize => (
            "output_size",
            format!(
                "wrote more than its {} of output",
                bytes_in_words(limits.output_bytes)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_explained_in_plain_words() {
        let l = Limits::default();
        assert_eq!(
            explain_limit(LimitKind::Timeout, &l),
            ("timeout", "stopped after its 120 s time limit".to_owned())
        );
        assert_eq!(
            explain_limit(LimitKind::Memory, &l).1,
            "used more than its 2 GiB of memory"
        );
        let small = Limits {
            memory_bytes: 256 << 20,
            ..Limits::default()
        };
        assert_eq!(
            explain_limit(LimitKind::Memory, &small).1,
            "used more than its 256 MiB of memory"
        );
    }
}
