//! What this host enforces, feature by feature, and how (`hearth sandbox check`).
//!
//! Nothing is skipped silently: every [`Feature`] is listed with `enforced` and the
//! mechanism (or the reason it cannot be enforced). A run refuses when a feature in
//! [`crate::Options::require`] is not enforced, and warns for the others.

use serde::Serialize;

use crate::cgroup::{self, Applied};
use crate::landlock::{self, Coverage};
use crate::mechanism::{self, Mechanism};
use crate::spec::{Outcome, Spec};
use crate::{Error, Isolation, Options, Sandbox, seccomp, sys};

/// An isolation property or limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    Network,
    Filesystem,
    User,
    Pid,
    Ipc,
    Uts,
    Seccomp,
    NoNewPrivs,
    Environment,
    Memory,
    Cpu,
    Pids,
    WallTime,
    FileSize,
    OpenFiles,
    OutputSize,
}

impl Feature {
    pub const ALL: [Feature; 16] = [
        Feature::Network,
        Feature::Filesystem,
        Feature::User,
        Feature::Pid,
        Feature::Ipc,
        Feature::Uts,
        Feature::Seccomp,
        Feature::NoNewPrivs,
        Feature::Environment,
        Feature::Memory,
        Feature::Cpu,
        Feature::Pids,
        Feature::WallTime,
        Feature::FileSize,
        Feature::OpenFiles,
        Feature::OutputSize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Network => "network",
            Feature::Filesystem => "filesystem",
            Feature::User => "user",
            Feature::Pid => "pid",
            Feature::Ipc => "ipc",
            Feature::Uts => "uts",
            Feature::Seccomp => "seccomp",
            Feature::NoNewPrivs => "no_new_privs",
            Feature::Environment => "environment",
            Feature::Memory => "memory",
            Feature::Cpu => "cpu",
            Feature::Pids => "pids",
            Feature::WallTime => "wall_time",
            Feature::FileSize => "file_size",
            Feature::OpenFiles => "open_files",
            Feature::OutputSize => "output_size",
        }
    }

    pub fn parse(s: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureStatus {
    pub feature: Feature,
    pub enforced: bool,
    /// The mechanism, or why it is not enforced.
    pub how: String,
    /// Listed in `sandbox.require`: a run refuses without it.
    pub required: bool,
}

pub(crate) struct Context<'a> {
    pub namespaces: bool,
    pub root: bool,
    pub host_uid: u32,
    pub applied: &'a Applied,
    pub landlock: Option<Coverage>,
}

fn st(feature: Feature, enforced: bool, how: impl Into<String>) -> FeatureStatus {
    FeatureStatus {
        feature,
        enforced,
        how: how.into(),
        required: false,
    }
}

/// What a run with this context enforces.
pub(crate) fn enforcement(c: &Context<'_>) -> Vec<FeatureStatus> {
    use Feature::*;
    let mut v = Vec::new();
    let ll = c.landlock.map(|l| l.abi).unwrap_or(0);
    if c.namespaces {
        v.push(st(
            Network,
            true,
            "network namespace: no interfaces but a down loopback",
        ));
        v.push(st(
            Filesystem,
            true,
            "mount namespace + pivot_root: read-only system dirs and venv, tmpfs /tmp and /output, nothing else of the host",
        ));
        let who = if c.root {
            format!("host uid {}", c.host_uid)
        } else {
            "Hearth's uid".into()
        };
        v.push(st(
            User,
            true,
            format!("user namespace: uid 1000 inside = {who}; no capabilities"),
        ));
        v.push(st(
            Pid,
            true,
            "PID namespace; the program is PID 1, /proc shows only the sandbox",
        ));
        v.push(st(Ipc, true, "IPC namespace"));
        v.push(st(Uts, true, "UTS namespace (hostname `sandbox`)"));
    } else {
        let tcp = c.landlock.map(|l| l.tcp).unwrap_or(false);
        v.push(st(
            Network,
            true,
            format!(
                "seccomp: socket() denied{}",
                if tcp {
                    "; Landlock denies TCP bind/connect"
                } else {
                    ""
                }
            ),
        ));
        v.push(st(
            Filesystem,
            ll > 0,
            if ll > 0 {
                format!("Landlock ABI {ll}: read-only system dirs and venv, writes only to a private tmp and output folder; /proc denied")
            } else {
                "not enforced: no user namespaces and no Landlock".into()
            },
        ));
        if c.root {
            v.push(st(
                User,
                true,
                format!("host uid {}; no capabilities", c.host_uid),
            ));
        } else {
            v.push(st(
                User,
                false,
                "not isolated: no user namespace, runs as Hearth's uid",
            ));
        }
        let signals = c.landlock.map(|l| l.signals).unwrap_or(false);
        v.push(st(
            Pid,
            false,
            format!(
                "no PID namespace; ptrace denied by seccomp{}",
                if signals {
                    ", signals scoped by Landlock"
                } else {
                    ""
                }
            ),
        ));
        v.push(st(Ipc, false, "no IPC namespace"));
        v.push(st(Uts, false, "no UTS namespace"));
    }
    v.push(st(
        Seccomp,
        true,
        format!("seccomp-bpf deny list: {}", seccomp::DENIED_SUMMARY),
    ));
    v.push(st(NoNewPrivs, true, "prctl(PR_SET_NO_NEW_PRIVS)"));
    v.push(st(
        Environment,
        true,
        "clean environment built from scratch; no supervisor inside carries Hearth's",
    ));
    match &c.applied.memory {
        Ok(how) => v.push(st(
            Memory,
            true,
            format!("{how} memory controller (tmpfs included)"),
        )),
        Err(e) => v.push(st(
            Memory,
            true,
            format!("rlimit RLIMIT_AS per process (cgroup: {e})"),
        )),
    }
    match &c.applied.cpu {
        Ok(how) => v.push(st(
            Cpu,
            true,
            format!("{how} cpu quota; RLIMIT_CPU per process"),
        )),
        Err(e) => v.push(st(
            Cpu,
            false,
            format!(
                "core count not enforced (cgroup: {e}); RLIMIT_CPU caps CPU seconds per process"
            ),
        )),
    }
    match &c.applied.pids {
        Ok(how) => v.push(st(Pids, true, format!("{how} pids controller; clone(CLONE_NEWUSER) denied"))),
        Err(e) if c.namespaces => v.push(st(
            Pids,
            true,
            format!("rlimit RLIMIT_NPROC inside the user namespace; clone(CLONE_NEWUSER) denied (cgroup: {e})"),
        )),
        Err(e) => v.push(st(Pids, true, format!("rlimit RLIMIT_NPROC for the whole uid (cgroup: {e})"))),
    }
    v.push(st(
        WallTime,
        true,
        if c.namespaces {
            "SIGKILL to PID 1; the kernel kills the rest of the PID namespace"
        } else {
            "SIGKILL to the process group (setsid/setpgid denied) and the cgroup"
        },
    ));
    v.push(st(FileSize, true, "rlimit RLIMIT_FSIZE"));
    v.push(st(OpenFiles, true, "rlimit RLIMIT_NOFILE"));
    if c.namespaces {
        v.push(st(
            OutputSize,
            true,
            "tmpfs size and inode caps on /output; capped read-back",
        ));
    } else {
        v.push(st(OutputSize, false, "per file only (RLIMIT_FSIZE) and capped read-back; the folder's total is not capped without a tmpfs"));
    }
    v
}

/// Everything `hearth sandbox check` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The isolation runs will use: `namespaces`, `landlock`, or `none` (runs refused).
    pub isolation: String,
    pub running_as: String,
    pub kernel: String,
    /// Result of starting `/bin/true` in full namespace isolation.
    pub namespaces: String,
    /// Result of starting `/bin/true` under the Landlock fallback.
    pub landlock: String,
    pub landlock_abi: u32,
    pub seccomp: bool,
    pub cgroups: String,
    /// Per controller: how it is used, or why it cannot be.
    pub cgroup_controllers: Vec<(String, String)>,
    pub features: Vec<FeatureStatus>,
    /// Required features that are not enforced: runs are refused while this is non-empty.
    pub refused: Vec<String>,
}

/// Runs `/bin/true` in `isolation` with nothing required. The namespace probe is also
/// what `Auto` decides from (see `mechanism`).
pub(crate) fn probe_run(sb: &Sandbox, isolation: Isolation) -> Result<Outcome, Error> {
    let probe = sb.with_options(Options {
        isolation,
        require: Vec::new(),
        ..sb.options.clone()
    });
    let spec = Spec {
        argv: vec!["/bin/true".into()],
        ..Spec::default()
    };
    probe.run(&spec)
}

fn probe_result(probe: &Result<Outcome, Error>) -> Result<(), String> {
    match probe {
        Ok(o) if o.exit_code == Some(0) => Ok(()),
        Ok(o) => Err(format!(
            "/bin/true ended with {:?} {:?}: {}",
            o.exit_code, o.signal, o.stderr
        )),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn check(sb: &Sandbox) -> Report {
    let root = sys::euid() == 0;
    let ns_probe = probe_run(sb, Isolation::Namespaces);
    let ns = probe_result(&ns_probe);
    let ll = probe_result(&probe_run(sb, Isolation::Landlock));
    // `Auto` as runs decide it; a probe that decided nothing leaves runs on namespaces.
    let auto = mechanism::decide(ns_probe);
    let namespaces = match sb.options.isolation {
        Isolation::Landlock => false,
        Isolation::Namespaces => true,
        Isolation::Auto => !matches!(auto, Ok(Mechanism::Landlock { .. })),
    };
    let usable = if namespaces { ns.is_ok() } else { ll.is_ok() };
    let applied = cgroup::probe(&sb.cgroups);
    let abi = landlock::abi_version();
    let ctx = Context {
        namespaces,
        root,
        host_uid: sb.options.host_uid,
        applied: &applied,
        landlock: (abi > 0).then_some(Coverage {
            abi,
            tcp: abi >= 4,
            signals: abi >= 6,
        }),
    };
    let mut features = enforcement(&ctx);
    let mut refused = Vec::new();
    for f in &mut features {
        f.required = sb.options.require.contains(&f.feature);
        if !usable {
            f.enforced = false;
        }
        if f.required && !f.enforced {
            refused.push(format!("{}: {}", f.feature.name(), f.how));
        }
    }
    if !usable {
        let why = if sb.options.isolation == Isolation::Auto && auto.is_err() {
            "the namespace probe failed without showing whether namespaces work (see namespaces); auto runs fail until it does"
        } else {
            "no isolation works on this host (see namespaces/landlock)"
        };
        refused.insert(0, why.into());
    }
    let describe = |r: &Result<&'static str, String>| match r {
        Ok(v) => format!("{v}: ok"),
        Err(e) => format!("unavailable: {e}"),
    };
    Report {
        isolation: if !usable {
            "none".into()
        } else if namespaces {
            "namespaces".into()
        } else {
            "landlock".into()
        },
        running_as: if root {
            "root".into()
        } else {
            format!("uid {}", sys::euid())
        },
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        namespaces: ns.map(|()| "ok".to_owned()).unwrap_or_else(|e| e),
        landlock: ll.map(|()| "ok".to_owned()).unwrap_or_else(|e| e),
        landlock_abi: abi,
        seccomp: std::fs::read_to_string("/proc/self/status")
            .map(|s| s.contains("Seccomp:"))
            .unwrap_or(false),
        cgroups: sb.cgroups.layout().to_owned(),
        cgroup_controllers: vec![
            ("memory".into(), describe(&applied.memory)),
            ("pids".into(), describe(&applied.pids)),
            ("cpu".into(), describe(&applied.cpu)),
            ("cpuacct".into(), describe(&applied.accounting)),
        ],
        features,
        refused,
    }
}
