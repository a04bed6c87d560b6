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
//! In [`Isolation::Auto`] the choice is made once per [`Sandbox`]: its first run tries
//! namespaces, and starting in them settles it (no extra probe run, which would double
//! a one-shot `hearth sandbox exec`). A namespace failure of that run is put to the probe
//! `hearth sandbox check` runs (`/bin/true` in full isolation): refused for good there too,
//! the fallback is chosen for every run; started there, the failure was only that run's
//! error. Once decided, a run that fails is only that run's error. `clone`
//! failing for a passing reason (`EAGAIN` at the process limit, `ENOMEM`, `EINTR`) is
//! retried a few times and never read as "no namespaces".
//!
//! # Layout
//! - [`spec`]: [`Spec`], [`Limits`], [`Outcome`].
//! - `mechanism`: `Auto`'s choice between namespaces and the fallback.
//! - `run`: one run: cgroups, plan, `clone`, supervision (timeout, stdio), read-back.
//! - `retry`: retrying a transiently failed `clone`.
//! - `child`: the child between `clone` and `execve`.
//! - `seccomp`, `landlock`, `cgroup`: the mechanisms.
//! - `outputs`: reading `/output` back without following links.
//! - [`process`]: owning a child that is not sandboxed (a model server): its own
//!   process group, killed with the thread that spawned it.
//! - [`report`]: what this host enforces (`hearth sandbox check`).
//! - `sys`: safe wrappers over the parent's syscalls.

mod cgroup;
mod child;
mod landlock;
mod mechanism;
mod outputs;
pub mod process;
pub mod report;
mod retry;
mod run;
mod seccomp;
pub mod spec;
mod sys;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use mechanism::Mechanism;

pub use report::{Feature, FeatureStatus, Report};
pub use spec::{LimitKind, Limits, Outcome, OutputFile, Spec, Usage};

/// Which isolation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Namespaces where the host allows them, else the Landlock fallback; decided once
    /// per [`Sandbox`], by its first run or, when that fails, the namespace probe.
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
    /// `clone` failed for a passing reason on every attempt; nothing ran.
    #[error(
        "sandbox could not start the program: clone failed {attempts} times in a row with a transient error ({source}): {}",
        retry::advice(.source)
    )]
    Transient {
        attempts: u32,
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
    /// `Auto` only: the mechanism, once a run started in namespaces or the probe chose.
    mechanism: OnceLock<Mechanism>,
    /// Held while probing, so that concurrent first runs probe once and wait for it.
    probing: Mutex<()>,
    /// Shared with the probe's sandbox, so that injected failures reach the probe too.
    clone_faults: Arc<retry::Faults>,
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
            mechanism: OnceLock::new(),
            probing: Mutex::new(()),
            clone_faults: Arc::default(),
        }
    }

    /// A sandbox on the same host with other options, for probes (no sweep, no decision
    /// of its own).
    fn with_options(&self, options: Options) -> Sandbox {
        Sandbox {
            options,
            cgroups: self.cgroups.clone(),
            mechanism: OnceLock::new(),
            probing: Mutex::new(()),
            clone_faults: Arc::clone(&self.clone_faults),
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Run `spec` to completion (blocking; call from a blocking thread in async code).
    pub fn run(&self, spec: &Spec) -> Result<Outcome, Error> {
        match self.options.isolation {
            Isolation::Namespaces => run::run(self, spec, true),
            Isolation::Landlock => run::run(self, spec, false),
            Isolation::Auto => match self.mechanism.get() {
                Some(m) => self.run_as(m, spec),
                None => self.first_auto_run(spec),
            },
        }
    }

    fn run_as(&self, m: &Mechanism, spec: &Spec) -> Result<Outcome, Error> {
        match m {
            Mechanism::Namespaces => run::run(self, spec, true),
            Mechanism::Landlock { why } => {
                let mut outcome = run::run(self, spec, false)?;
                outcome.warnings.insert(0, Mechanism::warning(why));
                Ok(outcome)
            }
        }
    }

    /// Before `Auto` has decided, a run tries namespaces itself: one that starts in
    /// them proves they work (no probe run beside it, which would double a one-shot
    /// `hearth sandbox exec`'s cost). Only a namespace failure is put to the probe:
    /// if the probe starts, the failure was this run's own and is its error; if the
    /// probe is refused too, the fallback is chosen and this run goes there. A
    /// transient failure decides nothing.
    fn first_auto_run(&self, spec: &Spec) -> Result<Outcome, Error> {
        match run::run(self, spec, true) {
            Ok(outcome) => {
                let _ = self.mechanism.get_or_init(|| Mechanism::Namespaces);
                Ok(outcome)
            }
            Err(failed @ Error::Namespaces { .. }) => match self.auto_mechanism()? {
                Mechanism::Namespaces => Err(failed),
                m @ Mechanism::Landlock { .. } => self.run_as(m, spec),
            },
            Err(other) => Err(other),
        }
    }

    /// `Auto`'s mechanism, probing when undecided. A probe that decides nothing (e.g.
    /// `clone` at the process limit) leaves the next run to try again.
    fn auto_mechanism(&self) -> Result<&Mechanism, Error> {
        if let Some(m) = self.mechanism.get() {
            return Ok(m);
        }
        let _probing = self.probing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = self.mechanism.get() {
            return Ok(m);
        }
        let m = mechanism::decide(report::probe_run(self, Isolation::Namespaces))?;
        Ok(self.mechanism.get_or_init(|| m))
    }

    /// Probe this host: run `/bin/true` in each isolation and report what is enforced.
    pub fn check(&self) -> Report {
        report::check(self)
    }

    /// Test hook: the next `count` `clone` attempts of this sandbox (its `Auto` probe
    /// included) fail with `errno` without calling the kernel. Replaces an earlier setting.
    #[doc(hidden)]
    pub fn fail_next_clones(&self, errno: i32, count: u32) {
        self.clone_faults.set(errno, count);
    }
}
