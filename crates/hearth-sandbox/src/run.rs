//! One run: cgroups → plan → `clone` → id maps → go → supervise (stdio, timeout) →
//! accounting → read `/output` back → [`Outcome`].

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cgroup::{Applied, Cgroup};
use crate::child::{self, ExecArgs, Op, Plan, step};
use crate::report;
use crate::spec::{LimitKind, Outcome, Spec, Usage, paths};
use crate::{Error, Sandbox, landlock, outputs, retry, seccomp, sys};

/// The uid and gid the program has inside its user namespace.
const INSIDE_ID: u32 = 1000;
const HOSTNAME: &str = "sandbox";
/// How long to keep reading stdout/stderr after the program ended.
const DRAIN: Duration = Duration::from_millis(500);

/// System directories shown read-only (symlinks, as on merged-/usr systems, are copied
/// as symlinks).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Small files from the host's `/etc` that the dynamic loader and Python read.
const ETC_FILES: &[&str] = &["/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf"];
/// Host `/etc` folders shown read-only when present (fontconfig, used by matplotlib).
const ETC_DIRS: &[&str] = &["/etc/fonts"];
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, Error> {
    CString::new(s.as_ref().to_vec()).map_err(|_| Error::InvalidSpec("NUL byte in a string".into()))
}

fn cpath(p: &Path) -> Result<CString, Error> {
    cstr(p.as_os_str().as_encoded_bytes())
}

fn validate(spec: &Spec) -> Result<(), Error> {
    if spec.argv.is_empty() {
        return Err(Error::InvalidSpec("argv is empty".into()));
    }
    for (name, _) in &spec.files {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::InvalidSpec(format!(
                "file name {name:?} is not a single name"
            )));
        }
    }
    for (k, _) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(Error::InvalidSpec(format!(
                "bad environment variable name {k:?}"
            )));
        }
    }
    if let Some(input) = spec.input.as_ref().filter(|i| !i.is_dir()) {
        return Err(Error::InvalidSpec(format!(
            "input {} is not a folder",
            input.display()
        )));
    }
    Ok(())
}

/// Paths as the program sees them: fixed ones inside namespaces, real host folders in the
/// Landlock fallback.
struct Layout {
    script_dir: PathBuf,
    input: PathBuf,
    output: PathBuf,
    tmp: PathBuf,
    venv: Option<PathBuf>,
}

impl Layout {
    fn map(&self, arg: &str) -> String {
        for (inside, host) in [
            (paths::SCRIPT_DIR, &self.script_dir),
            (paths::INPUT, &self.input),
            (paths::OUTPUT, &self.output),
            (paths::TMP, &self.tmp),
        ] {
            if arg == inside {
                return host.display().to_string();
            }
            if let Some(rest) = arg.strip_prefix(inside).filter(|r| r.starts_with('/')) {
                return format!("{}{rest}", host.display());
            }
        }
        arg.to_owned()
    }

    fn path_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.venv.iter().map(|v| v.join("bin")).collect();
        v.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
        v
    }
}

fn environment(spec: &Spec, layout: &Layout) -> Vec<String> {
    let threads = spec.limits.cpus.ceil().max(1.0) as u64;
    let path: Vec<String> = layout
        .path_dirs()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let tmp = layout.tmp.display();
    let mut env = vec![
        format!("PATH={}", path.join(":")),
        format!("HOME={tmp}"),
        format!("TMPDIR={tmp}"),
        "LANG=C.UTF-8".to_owned(),
        "LC_ALL=C.UTF-8".to_owned(),
        "MPLBACKEND=Agg".to_owned(),
        format!("MPLCONFIGDIR={tmp}/.matplotlib"),
        "PYTHONDONTWRITEBYTECODE=1".to_owned(),
        "PYTHONUNBUFFERED=1".to_owned(),
        format!("OMP_NUM_THREADS={threads}"),
        format!("OPENBLAS_NUM_THREADS={threads}"),
        format!("MKL_NUM_THREADS={threads}"),
        format!("HEARTH_OUTPUT={}", layout.output.display()),
        format!("HEARTH_INPUT={}", layout.input.display()),
        format!("USER=sandbox"),
    ];
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// A private host folder for the Landlock fallback (`/sandbox`, `/tmp`, `/output`),
/// removed at the end.
struct HostDirs {
    root: PathBuf,
}

impl Drop for HostDirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Remove fallback folders of Hearth processes that are gone.
pub(crate) fn sweep_stale_host_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(crate::cgroup::is_stale) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Kills and reaps the child if the run fails half-way.
struct ChildGuard {
    pid: i32,
    reaped: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::wait4(self.pid);
        }
    }
}

pub(crate) fn run(sb: &Sandbox, spec: &Spec, namespaces: bool) -> Result<Outcome, Error> {
    validate(spec)?;
    let start = Instant::now();
    let limits = &spec.limits;
    let root = sys::euid() == 0;
    let opts = sb.options();

    let (mut cg, applied) = Cgroup::create(&sb.cgroups, limits);

    // Landlock fallback: private host folders and the ruleset.
    let mut host_dirs = None;
    let mut ruleset = None;
    let layout = if namespaces {
        Layout {
            script_dir: PathBuf::from(paths::SCRIPT_DIR),
            input: PathBuf::from(paths::INPUT),
            output: PathBuf::from(paths::OUTPUT),
            tmp: PathBuf::from(paths::TMP),
            venv: opts.venv.as_ref().map(|_| PathBuf::from(paths::VENV)),
        }
    } else {
        let dirs = HostDirs {
            root: std::env::temp_dir().join(format!(
                "hearth-sbx-{}-{}",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            )),
        };
        fs::create_dir(&dirs.root)?;
        fs::set_permissions(&dirs.root, fs::Permissions::from_mode(0o711))?;
        let layout = Layout {
            script_dir: dirs.root.join("sandbox"),
            input: spec
                .input
                .clone()
                .unwrap_or_else(|| dirs.root.join("input")),
            output: dirs.root.join("output"),
            tmp: dirs.root.join("tmp"),
            // The program walks to it with its own uid: through a link, not via a
            // folder only Hearth may enter (as the namespace path's bind does).
            venv: opts
                .venv
                .as_ref()
                .map(|v| fs::canonicalize(v).unwrap_or_else(|_| v.clone())),
        };
        for d in [&layout.script_dir, &layout.output, &layout.tmp] {
            fs::create_dir(d)?;
        }
        fs::create_dir_all(&layout.input)?;
        for (name, data) in &spec.files {
            let path = layout.script_dir.join(name);
            fs::write(&path, data)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
        for d in [&layout.output, &layout.tmp] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o700))?;
            if root {
                chown(d, Some(opts.host_uid), Some(opts.host_gid))?;
            }
        }
        let mut read: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
        read.extend(ETC_FILES.iter().chain(ETC_DIRS).map(PathBuf::from));
        read.extend(DEVICES.iter().map(|d| Path::new("/dev").join(d)));
        read.push(layout.script_dir.clone());
        read.push(layout.input.clone());
        read.extend(layout.venv.clone());
        let read_refs: Vec<&Path> = read.iter().map(PathBuf::as_path).collect();
        let mut write = vec![layout.output.as_path(), layout.tmp.as_path()];
        write.push(Path::new("/dev/null"));
        ruleset = Some(
            landlock::ruleset(&read_refs, &write).map_err(|e| Error::Setup {
                step: "building the Landlock ruleset".into(),
                source: e,
            })?,
        );
        host_dirs = Some(dirs);
        layout
    };

    // Refuse before starting anything if a required feature is not enforced.
    let ctx = report::Context {
        namespaces,
        root,
        host_uid: opts.host_uid,
        applied: &applied,
        landlock: ruleset.as_ref().map(|r| r.coverage),
    };
    let features = report::enforcement(&ctx);
    let mut warnings = Vec::new();
    let mut missing = Vec::new();
    for f in &features {
        if !f.enforced {
            if opts.require.contains(&f.feature) {
                missing.push(format!("{}: {}", f.feature.name(), f.how));
            } else {
                warnings.push(format!("{} not enforced: {}", f.feature.name(), f.how));
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::Refused(missing));
    }

    // Descriptors: stdio, go signal, setup report, output-folder passing.
    let (stdin_r, stdin_w) = sys::pipe()?;
    let (stdout_r, stdout_w) = sys::pipe()?;
    let (stderr_r, stderr_w) = sys::pipe()?;
    let (sync_r, sync_w) = sys::pipe()?;
    let (report_r, report_w) = sys::pipe()?;
    let (sock_parent, sock_child) = sys::socketpair()?;

    let mut plan = build_plan(
        sb,
        spec,
        namespaces,
        root,
        &layout,
        &applied,
        ruleset.as_ref().map(|r| r.fd.as_raw_fd()).unwrap_or(-1),
        [
            &stdin_r,
            &stdout_w,
            &stderr_w,
            &sync_r,
            &report_w,
            &sock_child,
        ]
        .map(|f| f.as_raw_fd()),
    )?;
    let task_files = cg.v1_task_files()?;
    plan.cgroup_tasks = task_files.iter().map(|f| f.as_raw_fd()).collect();
    let exec_args = ExecArgs::new(&plan);

    let flags = if namespaces {
        libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
    } else {
        0
    };
    // A failed clone started nothing, so retries reuse the plan, descriptors, cgroups and
    // fallback folders above as they are; they are released as usual when this returns.
    let pid = retry::clone_with_retry(&sb.clone_faults, || child::spawn(&plan, &exec_args, flags))
        .map_err(|e| {
            if retry::is_transient(&e) {
                Error::Transient {
                    attempts: retry::ATTEMPTS,
                    source: e,
                }
            } else if namespaces {
                Error::Namespaces {
                    step: "clone".into(),
                    source: e,
                }
            } else {
                Error::Setup {
                    step: "clone".into(),
                    source: e,
                }
            }
        })?;
    let mut guard = ChildGuard { pid, reaped: false };
    drop((stdin_r, stdout_w, stderr_w, sync_r, report_w, sock_child));
    drop(ruleset);
    drop(task_files);
    let pidfd = sys::pidfd_open(pid)?;

    if namespaces {
        write_id_maps(pid, root, opts.host_uid, opts.host_gid).map_err(|e| Error::Namespaces {
            step: "writing uid/gid maps".into(),
            source: e,
        })?;
    }
    if let Err(e) = cg.add_v2(pid) {
        warnings.push(format!("could not move the sandbox into its cgroups: {e}"));
    }
    sys::write_all(sync_w.as_fd(), b"g")?;
    drop(sync_w);

    // Set-up is bounded by the same deadline as the run: a child stuck before execve is
    // killed (by the guard) rather than waited on forever.
    let deadline = start + limits.wall_time;
    let setup_timeout = || Error::Setup {
        step: "setting up (deadline passed before execve)".into(),
        source: std::io::Error::from(std::io::ErrorKind::TimedOut),
    };
    if !sys::wait_readable(sock_parent.as_fd(), deadline)? {
        return Err(setup_timeout());
    }
    let output_fd = sys::recv_fd(sock_parent.as_fd())?;
    drop(sock_parent);
    read_setup_report(&report_r, &plan, namespaces, deadline, &mut warnings)?;
    let Some(output_fd) = output_fd else {
        return Err(Error::Setup {
            step: "receiving the output folder".into(),
            source: std::io::Error::other("the child ended before passing it"),
        });
    };

    // Supervise.
    let sup = supervise(
        pid,
        &pidfd,
        stdin_w,
        stdout_r,
        stderr_r,
        &spec.stdin,
        deadline,
        limits.stdout_bytes,
        limits.stderr_bytes,
        namespaces,
        &cg,
    )?;
    guard.reaped = true;
    let wall = start.elapsed();

    let stats = cg.stats();
    cg.kill_all();
    cg.remove();

    // Read /output back.
    let rb = outputs::read_back(
        output_fd.as_fd(),
        limits.output_files,
        limits.output_bytes,
        limits.file_size_bytes,
        spec.output_dir.as_deref(),
    );
    let output_full = namespaces
        && sys::fs_space(output_fd.as_fd())
            .map(|(free, _)| free < 8192)
            .unwrap_or(false);
    drop(output_fd);
    drop(host_dirs);
    warnings.extend(rb.notes);

    let status = sup.status;
    let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    let clean = exit_code == Some(0);
    let main_cpu = tv_secs(&sup.rusage.ru_utime) + tv_secs(&sup.rusage.ru_stime);
    let limit = if sup.timed_out {
        Some(LimitKind::Timeout)
    } else if stats.oom_kills > 0 && !clean {
        Some(LimitKind::Memory)
    } else if matches!(signal, Some(libc::SIGKILL | libc::SIGXCPU))
        && main_cpu + 0.5 >= limits.cpu_seconds() as f64
    {
        Some(LimitKind::Cpu)
    } else if stats.pids_max_hits > 0 && !clean {
        Some(LimitKind::Pids)
    } else if !clean && (output_full || rb.files.iter().any(|f| f.truncated)) {
        Some(LimitKind::OutputSize)
    } else {
        None
    };

    let (cpu_ms, peak, source) = match (stats.cpu_ns, stats.peak_memory) {
        (Some(ns), Some(peak)) => (ns / 1_000_000, peak, applied_source(&applied)),
        (cpu, peak) => (
            cpu.map(|ns| ns / 1_000_000)
                .unwrap_or((main_cpu * 1000.0) as u64),
            peak.unwrap_or(sup.rusage.ru_maxrss.max(0) as u64 * 1024),
            "rusage".to_owned(),
        ),
    };

    Ok(Outcome {
        exit_code,
        signal,
        limit,
        stdout: String::from_utf8_lossy(&sup.stdout.buf).into_owned(),
        stdout_truncated: sup.stdout.truncated,
        stderr: String::from_utf8_lossy(&sup.stderr.buf).into_owned(),
        stderr_truncated: sup.stderr.truncated,
        files: rb.files,
        files_truncated: rb.truncated,
        usage: Usage {
            wall_ms: wall.as_millis() as u64,
            cpu_ms,
            peak_memory_bytes: peak,
            source,
        },
        isolation: if namespaces { "namespaces" } else { "landlock" },
        warnings,
    })
}

fn applied_source(a: &Applied) -> String {
    a.memory.clone().unwrap_or("rusage").to_owned()
}

fn tv_secs(tv: &libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

fn write_id_maps(pid: i32, root: bool, host_uid: u32, host_gid: u32) -> std::io::Result<()> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let (uid, gid) = if root {
        (host_uid, host_gid)
    } else {
        (sys::euid(), sys::egid())
    };
    if !root {
        // An ordinary user may map only its own ids, and only after giving up setgroups.
        fs::write(proc.join("setgroups"), "deny")?;
    }
    fs::write(proc.join("gid_map"), format!("{INSIDE_ID} {gid} 1\n"))?;
    fs::write(proc.join("uid_map"), format!("{INSIDE_ID} {uid} 1\n"))
}

fn read_setup_report(
    report: &OwnedFd,
    plan: &Plan,
    namespaces: bool,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let mut data = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        if !sys::wait_readable(report.as_fd(), deadline)? {
            return Err(Error::Setup {
                step: "setting up (deadline passed before execve)".into(),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            });
        }
        match sys::read(report.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    for rec in data.chunks_exact(child::REPORT_LEN) {
        let fatal = rec[0] != 0;
        let code = u32::from_le_bytes([rec[1], rec[2], rec[3], rec[4]]);
        let errno = i32::from_le_bytes([rec[5], rec[6], rec[7], rec[8]]);
        let what = if code >= step::OP_BASE {
            plan.ops
                .get((code - step::OP_BASE) as usize)
                .map(Op::describe)
                .unwrap_or_default()
        } else {
            step::name(code).to_owned()
        };
        let source = std::io::Error::from_raw_os_error(errno);
        if !fatal {
            warnings.push(format!("{what}: {source}"));
            continue;
        }
        let ns_step =
            namespaces && code != step::EXEC && code != step::CHDIR && code != step::CGROUP;
        return Err(if ns_step {
            Error::Namespaces { step: what, source }
        } else if code == step::EXEC {
            Error::Setup {
                step: format!("starting {:?}", plan.argv[0]),
                source,
            }
        } else {
            Error::Setup { step: what, source }
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_plan(
    sb: &Sandbox,
    spec: &Spec,
    namespaces: bool,
    root: bool,
    layout: &Layout,
    applied: &Applied,
    landlock_fd: i32,
    fds: [i32; 6],
) -> Result<Plan, Error> {
    let opts = sb.options();
    let limits = &spec.limits;
    let mut ops = Vec::new();
    if namespaces {
        ops = root_ops(spec, opts.venv.as_deref())?;
    }
    let mut rlimits = vec![
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_FSIZE, limits.file_size_bytes),
        (libc::RLIMIT_NOFILE, limits.open_files),
        (libc::RLIMIT_CPU, limits.cpu_seconds()),
    ];
    // Inside a user namespace RLIMIT_NPROC counts only the sandbox's processes; on the
    // host it would count every process of the uid, so there it is a last resort.
    // With a pids cgroup the rlimit is only a backstop, set above it so that the cgroup
    // (whose hits are counted, giving `pids` as the reason) fires first.
    match (namespaces, applied.pids.is_ok()) {
        (true, true) => rlimits.push((libc::RLIMIT_NPROC, u64::from(limits.pids) * 2)),
        (_, false) => rlimits.push((libc::RLIMIT_NPROC, u64::from(limits.pids))),
        (false, true) => {}
    }
    if applied.memory.is_err() {
        rlimits.push((libc::RLIMIT_AS, limits.memory_bytes));
    }
    let argv0 = layout.map(&spec.argv[0]);
    let exec_paths = if argv0.contains('/') {
        vec![cstr(&argv0)?]
    } else {
        layout
            .path_dirs()
            .iter()
            .map(|d| cpath(&d.join(&argv0)))
            .collect::<Result<Vec<_>, _>>()?
    };
    let (uid, gid, set_ids) = match (namespaces, root) {
        (true, _) => (INSIDE_ID, INSIDE_ID, true),
        (false, true) => (opts.host_uid, opts.host_gid, true),
        (false, false) => (0, 0, false),
    };
    let [stdin, stdout, stderr, sync, report, fd_sock] = fds;
    Ok(Plan {
        namespaces,
        uid,
        gid,
        set_ids,
        clear_groups: root,
        base: cstr("/tmp")?,
        ops,
        output_dir: if namespaces {
            cstr(format!("/newroot{}", paths::OUTPUT))?
        } else {
            cpath(&layout.output)?
        },
        hostname: cstr(HOSTNAME)?,
        cwd: cpath(&layout.output)?,
        rlimits,
        filter: seccomp::filter(if namespaces {
            seccomp::Profile::Namespaces
        } else {
            seccomp::Profile::Landlock
        }),
        landlock_fd,
        cgroup_tasks: Vec::new(),
        exec_paths,
        argv: spec
            .argv
            .iter()
            .map(|a| cstr(layout.map(a)))
            .collect::<Result<_, _>>()?,
        envp: environment(spec, layout)
            .iter()
            .map(cstr)
            .collect::<Result<_, _>>()?,
        stdin,
        stdout,
        stderr,
        sync,
        report,
        fd_sock,
    })
}

/// The new root, built under `/newroot` from host paths under `/oldroot`.
fn root_ops(spec: &Spec, venv: Option<&Path>) -> Result<Vec<Op>, Error> {
    let limits = &spec.limits;
    let nr = |p: &str| cstr(format!("/newroot{p}"));
    let old = |p: &Path| cstr(format!("/oldroot{}", p.display()));
    let mkdir = |p: &str, mode: u32| -> Result<Op, Error> { Ok(Op::Mkdir { path: nr(p)?, mode }) };
    let tmpfs = |p: &str, data: String, flags: libc::c_ulong| -> Result<Op, Error> {
        Ok(Op::Tmpfs {
            path: nr(p)?,
            data: cstr(data)?,
            flags,
        })
    };
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let files_size: usize = spec.files.iter().map(|(_, d)| d.len()).sum();
    let mut ops = vec![
        mkdir("", 0o755)?,
        tmpfs(
            "",
            format!("size={},mode=0755", files_size + (4 << 20)),
            nosuid_nodev,
        )?,
    ];
    for dir in SYSTEM_DIRS {
        let host = Path::new(dir);
        match fs::symlink_metadata(host) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(host)?;
                ops.push(Op::Symlink {
                    target: cpath(&target)?,
                    path: nr(dir)?,
                });
            }
            Ok(m) if m.is_dir() => {
                ops.push(mkdir(dir, 0o755)?);
                ops.push(Op::BindRo {
                    src: old(&fs::canonicalize(host)?)?,
                    dst: nr(dir)?,
                });
            }
            _ => {}
        }
    }
    // /etc: a few copied files and our own passwd/group/hosts; nothing else of the host.
    ops.push(mkdir("/etc", 0o755)?);
    let write = |p: &str, data: Vec<u8>| -> Result<Op, Error> {
        Ok(Op::WriteFile {
            path: nr(p)?,
            data,
            mode: 0o644,
        })
    };
    ops.push(write(
        "/etc/passwd",
        format!("root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:{INSIDE_ID}:{INSIDE_ID}:sandbox:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n").into_bytes(),
    )?);
    ops.push(write(
        "/etc/group",
        format!("root:x:0:\nsandbox:x:{INSIDE_ID}:\nnogroup:x:65534:\n").into_bytes(),
    )?);
    ops.push(write(
        "/etc/hosts",
        b"127.0.0.1 localhost\n::1 localhost\n".to_vec(),
    )?);
    ops.push(write(
        "/etc/hostname",
        format!("{HOSTNAME}\n").into_bytes(),
    )?);
    for f in ETC_FILES {
        let host = Path::new(f);
        match fs::symlink_metadata(host) {
            Ok(m) if m.file_type().is_symlink() => {
                ops.push(Op::Symlink {
                    target: cpath(&fs::read_link(host)?)?,
                    path: nr(f)?,
                });
            }
            Ok(m) if m.is_file() && m.len() < (4 << 20) => {
                ops.push(write(f, fs::read(host)?)?);
            }
            _ => {}
        }
    }
    for d in ETC_DIRS {
        let host = Path::new(d);
        if host.is_dir() {
            ops.push(mkdir(d, 0o755)?);
            ops.push(Op::BindRo {
                src: old(&fs::canonicalize(host)?)?,
                dst: nr(d)?,
            });
        }
    }
    // /dev: the harmless devices, stdio links, a small /dev/shm.
    ops.push(mkdir("/dev", 0o755)?);
    ops.push(tmpfs(
        "/dev",
        "size=64k,mode=0755".into(),
        libc::MS_NOSUID | libc::MS_NOEXEC,
    )?);
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if host.exists() {
            ops.push(Op::BindDev {
                src: old(&host)?,
                dst: nr(&format!("/dev/{d}"))?,
            });
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            target: cstr(target)?,
            path: nr(&format!("/dev/{name}"))?,
        });
    }
    ops.push(mkdir("/dev/shm", 0o1777)?);
    ops.push(tmpfs(
        "/dev/shm",
        format!("size={},mode=1777", limits.tmp_bytes.clamp(4096, 64 << 20)),
        nosuid_nodev,
    )?);
    ops.push(Op::RemountRo { path: nr("/dev")? });
    // /proc of the new PID namespace only.
    ops.push(mkdir("/proc", 0o555)?);
    ops.push(Op::Proc { path: nr("/proc")? });
    // Writable, capped: /tmp and /output.
    ops.push(mkdir(paths::TMP, 0o1777)?);
    ops.push(tmpfs(
        paths::TMP,
        format!("size={},mode=1777", limits.tmp_bytes.max(4096)),
        nosuid_nodev,
    )?);
    ops.push(mkdir(paths::OUTPUT, 0o755)?);
    ops.push(tmpfs(
        paths::OUTPUT,
        format!(
            "size={},nr_inodes={},mode=0755,uid={INSIDE_ID},gid={INSIDE_ID}",
            limits.output_bytes.max(4096),
            limits.output_files.max(16) * 4
        ),
        nosuid_nodev,
    )?);
    if let Some(input) = &spec.input {
        ops.push(mkdir(paths::INPUT, 0o755)?);
        ops.push(Op::BindRo {
            src: old(&fs::canonicalize(input)?)?,
            dst: nr(paths::INPUT)?,
        });
    }
    if let Some(venv) = venv {
        ops.push(mkdir("/opt", 0o755)?);
        ops.push(mkdir(paths::VENV, 0o755)?);
        ops.push(Op::BindRo {
            src: old(&fs::canonicalize(venv)?)?,
            dst: nr(paths::VENV)?,
        });
    }
    ops.push(mkdir(paths::SCRIPT_DIR, 0o755)?);
    for (name, data) in &spec.files {
        let path = nr(&format!("{}/{name}", paths::SCRIPT_DIR))?;
        ops.push(Op::WriteFile {
            path,
            data: data.clone(),
            mode: 0o755,
        });
    }
    Ok(ops)
}

struct Capture {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn push(&mut self, data: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }
}

struct Supervised {
    status: i32,
    rusage: libc::rusage,
    timed_out: bool,
    stdout: Capture,
    stderr: Capture,
}

/// Feed stdin, capture stdout/stderr, wait for the program, kill it at the deadline.
#[allow(clippy::too_many_arguments)]
fn supervise(
    pid: i32,
    pidfd: &OwnedFd,
    stdin_w: OwnedFd,
    stdout_r: OwnedFd,
    stderr_r: OwnedFd,
    stdin_data: &[u8],
    deadline: Instant,
    stdout_cap: usize,
    stderr_cap: usize,
    namespaces: bool,
    cg: &Cgroup,
) -> Result<Supervised, Error> {
    for fd in [&stdin_w, &stdout_r, &stderr_r] {
        sys::set_nonblocking(fd.as_fd())?;
    }
    let mut stdin = if stdin_data.is_empty() {
        None
    } else {
        Some(stdin_w)
    };
    let mut stdin_pos = 0;
    let mut out = Some(stdout_r);
    let mut err = Some(stderr_r);
    let mut cap_out = Capture {
        buf: Vec::new(),
        cap: stdout_cap,
        truncated: false,
    };
    let mut cap_err = Capture {
        buf: Vec::new(),
        cap: stderr_cap,
        truncated: false,
    };
    let mut reaped: Option<(i32, libc::rusage)> = None;
    let mut drain_until = None;
    let mut timed_out = false;
    let mut chunk = vec![0u8; 64 * 1024];

    let kill_all = || {
        sys::kill(pid, libc::SIGKILL);
        if !namespaces {
            sys::kill(-pid, libc::SIGKILL); // the program's process group (setsid is denied)
        }
        cg.kill_all();
    };

    loop {
        if reaped.is_some() && out.is_none() && err.is_none() {
            break;
        }
        let now = Instant::now();
        let wait = match (reaped.is_some(), drain_until) {
            (true, Some(until)) if now >= until => break,
            (true, Some(until)) => until - now,
            _ if now >= deadline => {
                if !timed_out {
                    timed_out = true;
                    kill_all();
                }
                Duration::from_millis(50)
            }
            _ => deadline - now,
        };
        let mut pfds = Vec::with_capacity(4);
        let mut slots = Vec::with_capacity(4);
        for (slot, fd, events) in [
            (0, out.as_ref(), libc::POLLIN),
            (1, err.as_ref(), libc::POLLIN),
            (2, stdin.as_ref(), libc::POLLOUT),
            (
                3,
                if reaped.is_none() { Some(pidfd) } else { None },
                libc::POLLIN,
            ),
        ] {
            if let Some(fd) = fd {
                pfds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                });
                slots.push(slot);
            }
        }
        let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        sys::poll(&mut pfds, ms)?;
        for (p, slot) in pfds.iter().zip(slots) {
            if p.revents == 0 {
                continue;
            }
            match slot {
                0 | 1 => {
                    let (fd, cap) = if slot == 0 {
                        (&mut out, &mut cap_out)
                    } else {
                        (&mut err, &mut cap_err)
                    };
                    if let Some(f) = fd.as_ref() {
                        match sys::read(f.as_fd(), &mut chunk) {
                            Ok(0) => *fd = None,
                            Ok(n) => cap.push(&chunk[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => *fd = None,
                        }
                    }
                }
                2 => {
                    if let Some(f) = stdin.as_ref() {
                        let end = (stdin_pos + 64 * 1024).min(stdin_data.len());
                        match sys::write(f.as_fd(), &stdin_data[stdin_pos..end]) {
                            Ok(n) => stdin_pos += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => stdin_pos = stdin_data.len(),
                        }
                        if stdin_pos >= stdin_data.len() {
                            stdin = None; // EOF for the program
                        }
                    }
                }
                _ => {
                    reaped = Some(sys::wait4(pid)?);
                    // PID 1 gone: in a PID namespace the kernel has killed the rest; on
                    // the host, kill the group and the cgroup ourselves.
                    if !namespaces {
                        sys::kill(-pid, libc::SIGKILL);
                        cg.kill_all();
                    }
                    drain_until = Some(Instant::now() + DRAIN);
                    stdin = None;
                }
            }
        }
    }
    let Some((status, rusage)) = reaped else {
        return Err(Error::Io(std::io::Error::other(
            "supervision ended before the program",
        )));
    };
    Ok(Supervised {
        status,
        rusage,
        timed_out,
        stdout: cap_out,
        stderr: cap_err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Feature;

    #[test]
    fn landlock_layout_maps_inside_paths_to_host_folders() {
        let l = Layout {
            script_dir: "/h/sandbox".into(),
            input: "/h/input".into(),
            output: "/h/output".into(),
            tmp: "/h/tmp".into(),
            venv: None,
        };
        assert_eq!(l.map("/sandbox/main.py"), "/h/sandbox/main.py");
        assert_eq!(l.map("/output"), "/h/output");
        assert_eq!(l.map("/outputs/x"), "/outputs/x");
        assert_eq!(l.map("-c"), "-c");
    }

    #[test]
    fn feature_list_is_consistent() {
        assert!(
            Feature::ALL
                .iter()
                .all(|f| Feature::parse(f.name()) == Some(*f))
        );
    }
}
