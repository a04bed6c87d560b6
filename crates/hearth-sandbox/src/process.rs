//! Ownership of a long-running child process that is not sandboxed (a model server
//! Hearth runs): it gets a process group of its own, so a stop reaches every process
//! it started, and it is killed when the thread that spawned it dies, so a Hearth
//! killed with SIGKILL leaves no server holding a GPU.
#![allow(unsafe_code)] // reason: prctl and kill have no safe std equivalent; each call is local.

use std::io;
use std::os::unix::process::CommandExt;

/// A signal for [`signal_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
}

/// Makes the child `command` spawns the leader of a new process group, and has the
/// kernel send it SIGKILL when the spawning thread exits (`PR_SET_PDEATHSIG`).
///
/// The parent-death signal follows the *thread* that forked, not the process: spawn
/// from a thread that lives as long as the child should (Hearth's engine thread).
/// It reaches the child only; processes the child starts stay in its group, which
/// [`signal_group`] reaches.
pub fn own_group_dying_with_parent(command: &mut std::process::Command) {
    command.process_group(0);
    // SAFETY: getpid before the fork; between fork and exec the closure only makes
    // async-signal-safe syscalls (prctl, getppid) and allocates nothing.
    let parent = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between the fork and the prctl: then no signal
            // will ever come, so give up now.
            if libc::getppid() != parent {
                return Err(io::Error::other("the parent exited while starting"));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to every process of the group `pgid` (the leader's pid, for a
/// child started by [`own_group_dying_with_parent`]). A group that is gone is not an
/// error.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    if pgid <= 1 {
        // kill(0) and kill(-1) mean "my group" and "everyone": never.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: plain syscall on a pgid checked above.
    if unsafe { libc::kill(-pgid, sig) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Whether any process of group `pgid` is left (signal 0 probes without sending).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; pgid > 1 is checked first.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_gone(pgid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !group_alive(pgid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_group_signal_reaches_the_childs_own_children() {
        // The shell starts a grandchild in the same group, then waits on it.
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "sleep 300 & wait"]);
        own_group_dying_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let pgid = child.id();
        std::thread::sleep(Duration::from_millis(100));
        assert!(group_alive(pgid));
        signal_group(pgid, Signal::Kill).unwrap();
        let _ = child.wait();
        assert!(wait_gone(pgid), "a process of the group is left");
        // Gone is not an error.
        signal_group(pgid, Signal::Term).unwrap();
    }

    #[test]
    fn the_child_dies_with_the_thread_that_spawned_it() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("300");
            own_group_dying_with_parent(&mut cmd);
            let child = cmd.spawn().unwrap();
            tx.send(child.id()).unwrap();
            // The thread ends without waiting: the kernel kills the child.
            std::mem::forget(child);
        })
        .join()
        .unwrap();
        let pid = rx.recv().unwrap() as i32;
        // Killed, it is our zombie until reaped: reap it, without blocking for good.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = 0;
        loop {
            // SAFETY: test-only wait on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            assert!(Instant::now() < deadline, "the child outlived its thread");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(libc::WIFSIGNALED(status));
        assert_eq!(libc::WTERMSIG(status), libc::SIGKILL);
    }

    #[test]
    fn refuses_the_groups_that_mean_everyone() {
        assert!(signal_group(0, Signal::Term).is_err());
        assert!(signal_group(1, Signal::Term).is_err());
    }
}
