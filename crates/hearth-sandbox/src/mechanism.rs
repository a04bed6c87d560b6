//! `Isolation::Auto`'s choice between namespaces and the Landlock fallback, made from the
//! namespace probe that `hearth sandbox check` runs (`/bin/true` in full isolation).
//!
//! A [`crate::Sandbox`] decides once, on its first run, and keeps the answer: a later run
//! that fails is that run's error, never a reason to weaken every run after it.

use crate::spec::Outcome;
use crate::{Error, retry};

/// How `Auto` runs are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Namespaces,
    /// The host does not allow them; `why` is the probe's failure ("step: error").
    Landlock {
        why: String,
    },
}

impl Mechanism {
    /// The warning every fallback run carries.
    pub(crate) fn warning(why: &str) -> String {
        format!("namespaces unavailable ({why}); ran with the Landlock fallback")
    }
}

/// What the namespace probe says. Only a namespace step refused for good (EPERM, EINVAL,
/// ENOSPC from `clone`, a refused uid map, a denied mount) means "no namespaces"; a
/// started program means they work. Anything else — a transient errno, a probe that could
/// not be set up at all — decides nothing and is returned, so the caller fails this run
/// and probes again on the next.
pub(crate) fn decide(probe: Result<Outcome, Error>) -> Result<Mechanism, Error> {
    match probe {
        // Even a program that then failed was started inside the namespaces.
        Ok(_) => Ok(Mechanism::Namespaces),
        Err(Error::Namespaces { step, source }) if !retry::is_transient(&source) => {
            Ok(Mechanism::Landlock {
                why: format!("{step}: {source}"),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn ns_error(step: &str, errno: i32) -> Result<Outcome, Error> {
        Err(Error::Namespaces {
            step: step.into(),
            source: io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn refused_namespaces_choose_the_fallback() {
        for (step, errno) in [
            ("clone", libc::EPERM),
            ("clone", libc::EINVAL),
            ("clone", libc::ENOSPC),
            ("writing uid/gid maps", libc::EPERM),
            ("mounting the base tmpfs", libc::EPERM),
        ] {
            match decide(ns_error(step, errno)) {
                Ok(Mechanism::Landlock { why }) => assert!(why.starts_with(step), "{why}"),
                other => panic!("{step} {errno}: {other:?}"),
            }
        }
    }

    #[test]
    fn transient_or_unrelated_failures_decide_nothing() {
        for errno in [libc::EAGAIN, libc::ENOMEM, libc::EINTR] {
            assert!(decide(ns_error("clone", errno)).is_err(), "{errno}");
        }
        let transient = Err(Error::Transient {
            attempts: retry::ATTEMPTS,
            source: io::Error::from_raw_os_error(libc::EAGAIN),
        });
        assert!(matches!(decide(transient), Err(Error::Transient { .. })));
        let setup = Err(Error::Io(io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(matches!(decide(setup), Err(Error::Io(_))));
    }

    #[test]
    fn a_started_program_means_namespaces_work() {
        let ran = Outcome {
            exit_code: Some(1),
            signal: None,
            limit: None,
            stdout: String::new(),
            stdout_truncated: false,
            stderr: String::new(),
            stderr_truncated: false,
            files: Vec::new(),
            files_truncated: false,
            usage: crate::spec::Usage::default(),
            isolation: "namespaces",
            warnings: Vec::new(),
        };
        assert_eq!(decide(Ok(ran)).ok(), Some(Mechanism::Namespaces));
    }
}
