//! Retrying `clone` when it fails for a passing reason, and the test hook that makes it
//! fail on purpose.
//!
//! `EAGAIN` (a process or thread limit reached for a moment, e.g. while another run's
//! processes exit), `ENOMEM` and `EINTR` say nothing about what the host supports, so
//! they are retried and never taken as "no namespaces". A failed `clone` created no
//! process, so the next attempt reuses the run's plan, descriptors and cgroups as they are.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Waits before the 2nd, 3rd and 4th attempt: long enough for exiting processes to be
/// reaped, short enough that a host truly at its limit is reported within a quarter second.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(200),
];

/// Attempts before giving up (the first plus one per wait).
pub(crate) const ATTEMPTS: u32 = BACKOFF.len() as u32 + 1;

/// Whether `clone` failing with `e` may succeed if simply tried again.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOMEM | libc::EINTR)
    )
}

/// What the operator can do about a transient `clone` failure (for the error message).
pub(crate) fn advice(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => {
            "the host's process limit was reached; try again, or raise the pids limit \
             (RLIMIT_NPROC/`ulimit -u` of Hearth's user, the pids.max of Hearth's cgroup, \
             kernel.pid_max or kernel.threads-max)"
        }
        Some(libc::ENOMEM) => {
            "the host is short of memory; try again when it is less loaded, or give Hearth's \
             cgroup more memory"
        }
        _ => "try again",
    }
}

/// Failures to report from the next `clone` attempts instead of calling the kernel. Only
/// tests set it ([`crate::Sandbox::fail_next_clones`]): a real `EAGAIN` for one call
/// cannot be caused without starving the whole test process.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// errno and how many attempts still fail with it.
    next: Mutex<Option<(i32, u32)>>,
}

impl Faults {
    pub(crate) fn set(&self, errno: i32, count: u32) {
        *self.next.lock().unwrap_or_else(PoisonError::into_inner) =
            (count > 0).then_some((errno, count));
    }

    fn take(&self) -> Option<io::Error> {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let (errno, count) = next.as_mut()?;
        let e = io::Error::from_raw_os_error(*errno);
        *count -= 1;
        if *count == 0 {
            *next = None;
        }
        Some(e)
    }
}

/// Calls `clone` until it succeeds, fails for good, or [`ATTEMPTS`] transient failures
/// in a row; returns the last result.
pub(crate) fn clone_with_retry(
    faults: &Faults,
    mut clone: impl FnMut() -> io::Result<i32>,
) -> io::Result<i32> {
    let mut waits = BACKOFF.iter();
    loop {
        let result = match faults.take() {
            Some(e) => Err(e),
            None => clone(),
        };
        match result {
            Err(e) if is_transient(&e) => match waits.next() {
                Some(wait) => std::thread::sleep(*wait),
                None => return Err(e),
            },
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_retried_then_given_up() {
        let faults = Faults::default();
        let mut calls = 0;
        let r = clone_with_retry(&faults, || {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from_raw_os_error(libc::EAGAIN))
            } else {
                Ok(42)
            }
        });
        assert_eq!(r.unwrap(), 42);
        assert_eq!(calls, 3);

        calls = 0;
        let r = clone_with_retry(&faults, || {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::ENOMEM))
        });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENOMEM));
        assert_eq!(calls, ATTEMPTS);
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let faults = Faults::default();
        let mut calls = 0;
        let r = clone_with_retry(&faults, || {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::EPERM))
        });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(calls, 1);
    }

    #[test]
    fn injected_faults_come_before_the_real_call() {
        let faults = Faults::default();
        faults.set(libc::EAGAIN, 2);
        let mut calls = 0;
        let r = clone_with_retry(&faults, || {
            calls += 1;
            Ok(7)
        });
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls, 1, "the two injected failures were retried first");
        assert!(faults.take().is_none());
    }
}
