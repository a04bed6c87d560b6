//! Isolated execution of untrusted code (model-written Python) on an ordinary Linux host,
//! started as root or as an ordinary user, with or without Docker or Kubernetes.
//!
//! This crate owns the isolation: namespaces, the new root filesystem, seccomp, Landlock,
//! cgroups, rlimits, and reading results back. It knows nothing of jobs, HTTP or config
//! files: callers pass [`Options`] and a [`Spec`] and get an [`Outcome`].
//!
//! # Mechanism, and why
//! Our own code on raw `libc` syscalls, the same design as bubblewrap: one `clone` into
//! new user, PID, mount, network, IPC and UTS namespaces; `pivot_root` into a tmpfs
//! assembled from read-only binds; the program is `execve`d as PID 1 of its namespace,
//! so no supervisor process inside carries Hearth's memory or environment (`/proc/1/environ`
//! is the program's own, clean one) and every process dies with it. We did not take
//! `hakoniwa` (needs the libseccomp C library, cgroup v2 only) nor `seccompiler` (no
//! x32/`clone`-flag rules of the kind we need): the code between `clone` and `execve` must
//! be allocation-free in a multi-threaded parent, which is easiest to guarantee when every
//! step is a syscall we wrote down ourselves (`child.rs`). Without user namespaces (some
//! containers and pods) we fall back to Landlock + seccomp + rlimits and say so.
//!
//! # Layout
//! - [`spec`]: [`Spec`], [`Limits`], [`Outcome`].
//! - `run`: one run: cgroups, plan, `clone`, supervision (timeout, stdio), read-back.
//! - `child`: the child between `clone` and `execve`.
//! - `seccomp`, `landlock`, `cgroup`: the mechanisms.
//! - `outputs`: reading `/output` back without following links.
//! - [`report`]: what this host enforces (`hearth sandbox check`).
//! - `sys`: safe wrappers over the parent's syscalls.

mod cgroup;
mod child;
mod landlock;
mod outputs;
pub mod report;
mod run;
mod seccomp;
pub mod spec;
mod sys;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

pub use report::{Feature, FeatureStatus, Report};
pub use spec::{LimitKind, Limits, Outcome, OutputFile, Spec, Usage};

/// Which isolation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Namespaces where the host allows them, else the Landlock fallback.
    #[default]
    Auto,
    Namespaces,
    /// Landlock + seccomp + rlimits on the host's namespaces.
    Landlock,
}

/// How the sandbox is set up on this host.
#[derive(Debug, Clone)]
pub struct Options {
    /// Features that must be enforced, else a run is refused (see [`Feature`]).
    pub require: Vec<Feature>,
    /// The Python venv shown at `/opt/venv` (its `bin` first on `PATH`).
    pub venv: Option<PathBuf>,
    /// Host uid/gid the program runs as when Hearth runs as root. As an ordinary user,
    /// Hearth can only map its own ids.
    pub host_uid: u32,
    pub host_gid: u32,
    pub isolation: Isolation,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            require: vec![Feature::Network, Feature::Filesystem],
            venv: None,
            host_uid: 65534,
            host_gid: 65534,
            isolation: Isolation::Auto,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sandbox refused to run: required isolation not enforced on this host: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("sandbox setup failed while {step}: {source}")]
    Setup {
        step: String,
        source: std::io::Error,
    },
    /// User namespaces (or mounting inside them) are not allowed on this host.
    #[error("namespaces unavailable while {step}: {source}")]
    Namespaces {
        step: String,
        source: std::io::Error,
    },
    #[error("sandbox: {0}")]
    Io(#[from] std::io::Error),
}

/// A configured sandbox. Cheap to create; [`Sandbox::run`] may be called from many
/// threads at once (each run has its own namespaces, cgroups and tmpfs).
#[derive(Debug)]
pub struct Sandbox {
    options: Options,
    cgroups: cgroup::Host,
    /// Set once namespaces failed in `Auto`, so later runs go straight to the fallback.
    namespaces_broken: AtomicBool,
}

impl Sandbox {
    /// Also sweeps what Hearth processes killed mid-run left behind (empty cgroups,
    /// fallback folders).
    pub fn new(options: Options) -> Sandbox {
        let cgroups = cgroup::Host::detect();
        cgroup::sweep_stale(&cgroups);
        run::sweep_stale_host_dirs();
        Sandbox {
            options,
            cgroups,
            namespaces_broken: AtomicBool::new(false),
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Run `spec` to completion (blocking; call from a blocking thread in async code).
    pub fn run(&self, spec: &Spec) -> Result<Outcome, Error> {
        let use_ns = match self.options.isolation {
            Isolation::Namespaces => true,
            Isolation::Landlock => false,
            Isolation::Auto => !self.namespaces_broken.load(Ordering::Relaxed),
        };
        if !use_ns {
            return run::run(self, spec, false);
        }
        match run::run(self, spec, true) {
            Err(Error::Namespaces { step, source })
                if self.options.isolation == Isolation::Auto =>
            {
                self.namespaces_broken.store(true, Ordering::Relaxed);
                let mut outcome = run::run(self, spec, false)?;
                outcome.warnings.insert(
                    0,
                    format!(
                        "namespaces unavailable ({step}: {source}); ran with the Landlock fallback"
                    ),
                );
                Ok(outcome)
            }
            other => other,
        }
    }

    /// Probe this host: run `/bin/true` in each isolation and report what is enforced.
    pub fn check(&self) -> Report {
        report::check(self)
    }
}
