//! The child between `clone` and `execve`.
//!
//! Hearth is multi-threaded, so after `clone` the child may only make async-signal-safe
//! calls: no allocation, no locks, no `std::io`. Everything it needs (paths, file
//! contents, the seccomp program, argv/envp pointer arrays) is prepared by the parent in
//! a [`Plan`]; the child walks it with raw syscalls and reports the first failure as
//! `(step, errno)` on a close-on-exec pipe, which `execve` closes on success.
//!
//! Order (namespaces): wait for the parent to write the id maps and cgroups → set ids
//! (keeping capabilities inside the new user namespace) → private mounts → tmpfs base,
//! `pivot_root` into it → build the new root from `/oldroot` → pass the `/output`
//! descriptor to the parent → detach the old root, `pivot_root` into the new one,
//! remount it read-only → hostname → session, cwd, rlimits → drop every capability →
//! `no_new_privs` → Landlock (fallback only) → stdio → close all other fds on exec →
//! seccomp → `execve`.
#![allow(unsafe_code)] // reason: raw syscalls in a forked child; see the module docs.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use libc::{c_char, c_ulong};

/// One step of building the new root. Paths are absolute: `/newroot/...` for targets,
/// `/oldroot/...` for host sources.
#[derive(Debug)]
pub enum Op {
    Mkdir {
        path: CString,
        mode: u32,
    },
    Tmpfs {
        path: CString,
        data: CString,
        flags: c_ulong,
    },
    /// Bind a host directory read-only, keeping the flags the kernel locked on it.
    BindRo {
        src: CString,
        dst: CString,
    },
    /// Bind a device node (read-write, no `nodev`).
    BindDev {
        src: CString,
        dst: CString,
    },
    /// A fresh `/proc` for the new PID namespace; failure is a warning.
    Proc {
        path: CString,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    WriteFile {
        path: CString,
        data: Vec<u8>,
        mode: u32,
    },
    RemountRo {
        path: CString,
    },
}

impl Op {
    pub fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Mkdir { path, .. } => format!("mkdir {}", s(path)),
            Op::Tmpfs { path, .. } => format!("mount tmpfs on {}", s(path)),
            Op::BindRo { src, dst } => format!("bind {} on {} read-only", s(src), s(dst)),
            Op::BindDev { src, dst } => format!("bind device {} on {}", s(src), s(dst)),
            Op::Proc { path } => format!("mount proc on {}", s(path)),
            Op::Symlink { path, .. } => format!("symlink {}", s(path)),
            Op::WriteFile { path, .. } => format!("write {}", s(path)),
            Op::RemountRo { path } => format!("remount {} read-only", s(path)),
        }
    }
}

/// Everything the child needs, prepared before `clone`.
#[derive(Debug)]
pub struct Plan {
    /// New namespaces (else the Landlock fallback on the host's namespaces).
    pub namespaces: bool,
    /// Ids to switch to (inside ids in namespace mode, host ids in the fallback).
    pub uid: u32,
    pub gid: u32,
    /// Set the ids at all (the fallback as an ordinary user keeps its own).
    pub set_ids: bool,
    /// Drop supplementary groups (possible when Hearth is root).
    pub clear_groups: bool,
    pub base: CString,
    pub ops: Vec<Op>,
    /// The output folder to pass to the parent (opened after the ops).
    pub output_dir: CString,
    pub hostname: CString,
    pub cwd: CString,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    pub filter: Vec<libc::sock_filter>,
    pub landlock_fd: RawFd,
    /// v1 cgroup `tasks` files to write `0` to (join before anything else).
    pub cgroup_tasks: Vec<RawFd>,
    pub exec_paths: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub sync: RawFd,
    pub report: RawFd,
    pub fd_sock: RawFd,
}

/// Step codes reported by the child; ops are `OP_BASE + index`.
pub mod step {
    pub const WAIT: u32 = 1;
    pub const SETGROUPS: u32 = 2;
    pub const SETGID: u32 = 3;
    pub const SETUID: u32 = 4;
    pub const MS_PRIVATE: u32 = 5;
    pub const BASE_TMPFS: u32 = 6;
    pub const BASE_DIRS: u32 = 7;
    pub const PIVOT_BASE: u32 = 8;
    pub const SEND_OUTPUT: u32 = 9;
    pub const DETACH_OLDROOT: u32 = 10;
    pub const PIVOT_NEWROOT: u32 = 11;
    pub const REMOUNT_ROOT: u32 = 12;
    pub const HOSTNAME: u32 = 13;
    pub const SETSID: u32 = 14;
    pub const CHDIR: u32 = 15;
    pub const RLIMIT: u32 = 16;
    pub const CAPS: u32 = 17;
    pub const NO_NEW_PRIVS: u32 = 18;
    pub const LANDLOCK: u32 = 19;
    pub const STDIO: u32 = 20;
    pub const CLOSE_FDS: u32 = 21;
    pub const SECCOMP: u32 = 22;
    pub const EXEC: u32 = 23;
    pub const CGROUP: u32 = 24;
    pub const OP_BASE: u32 = 1000;

    pub fn name(s: u32) -> &'static str {
        match s {
            WAIT => "waiting for the parent",
            SETGROUPS => "setgroups",
            SETGID => "setresgid",
            SETUID => "setresuid",
            MS_PRIVATE => "making mounts private",
            BASE_TMPFS => "mounting the base tmpfs",
            BASE_DIRS => "creating the base directories",
            PIVOT_BASE => "pivot_root into the base",
            SEND_OUTPUT => "passing the output folder",
            DETACH_OLDROOT => "detaching the host root",
            PIVOT_NEWROOT => "pivot_root into the new root",
            REMOUNT_ROOT => "remounting the root read-only",
            HOSTNAME => "sethostname",
            SETSID => "setsid",
            CHDIR => "chdir",
            RLIMIT => "setrlimit",
            CAPS => "dropping capabilities",
            NO_NEW_PRIVS => "no_new_privs",
            LANDLOCK => "landlock_restrict_self",
            STDIO => "setting up stdio",
            CLOSE_FDS => "closing descriptors",
            SECCOMP => "installing the seccomp filter",
            EXEC => "execve",
            CGROUP => "joining the cgroups",
            _ => "setup",
        }
    }
}

/// A report record: fatal flag, step, errno.
pub const REPORT_LEN: usize = 9;

/// The pointer arrays `execve` wants, built before `clone`.
pub struct ExecArgs {
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl ExecArgs {
    pub fn new(plan: &Plan) -> ExecArgs {
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        ExecArgs {
            argv: ptrs(&plan.argv),
            envp: ptrs(&plan.envp),
        }
    }
}

/// `clone` with `flags` (plus `SIGCHLD`) and run [`child_main`] in the child.
/// Returns the child's pid.
pub fn spawn(plan: &Plan, args: &ExecArgs, flags: libc::c_int) -> std::io::Result<i32> {
    // SAFETY: a raw clone with no new stack behaves like fork; the child runs only
    // child_main, which makes async-signal-safe syscalls and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the fresh child; see above.
        unsafe { child_main(plan, args) }
    }
    Ok(pid as i32)
}

unsafe fn errno() -> i32 {
    // SAFETY: errno location is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

unsafe fn report(fd: RawFd, fatal: bool, step: u32, err: i32) {
    let mut buf = [0u8; REPORT_LEN];
    buf[0] = fatal as u8;
    buf[1..5].copy_from_slice(&step.to_le_bytes());
    buf[5..9].copy_from_slice(&err.to_le_bytes());
    // SAFETY: buf is valid; a failed write only loses the diagnostic.
    unsafe { libc::write(fd, buf.as_ptr().cast(), REPORT_LEN) };
}

unsafe fn fail(plan: &Plan, step: u32) -> ! {
    // SAFETY: see report; _exit is async-signal-safe.
    unsafe {
        report(plan.report, true, step, errno());
        libc::_exit(127)
    }
}

unsafe fn mount(
    src: *const c_char,
    dst: &CStr,
    fstype: *const c_char,
    flags: c_ulong,
    data: *const c_char,
) -> bool {
    // SAFETY: pointers are NUL-terminated strings or null.
    unsafe { libc::mount(src, dst.as_ptr(), fstype, flags, data.cast()) == 0 }
}

/// Mount flags the kernel locks on a mount seen from a user namespace: a read-only
/// remount must repeat them or fail with EPERM.
unsafe fn locked_flags(path: &CStr) -> c_ulong {
    // glibc fills f_flag straight from the kernel's statfs (ST_VALID), without
    // reading /proc/mounts, so this stays allocation-free.
    // SAFETY: zeroed statvfs is valid output storage.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return 0;
    }
    let keep = libc::ST_NOSUID
        | libc::ST_NODEV
        | libc::ST_NOEXEC
        | libc::ST_NOATIME
        | libc::ST_NODIRATIME
        | libc::ST_RELATIME;
    (s.f_flag as c_ulong) & keep
}

unsafe fn do_op(op: &Op) -> Result<(), ()> {
    let null = std::ptr::null();
    let ok = |b: bool| if b { Ok(()) } else { Err(()) };
    // SAFETY: every pointer below comes from a CString or Vec that outlives the call.
    unsafe {
        match op {
            Op::Mkdir { path, mode } => {
                let r = libc::mkdir(path.as_ptr(), *mode);
                ok(r == 0 || errno() == libc::EEXIST)
            }
            Op::Tmpfs { path, data, flags } => ok(mount(
                c"tmpfs".as_ptr(),
                path,
                c"tmpfs".as_ptr(),
                *flags,
                data.as_ptr(),
            )),
            Op::BindRo { src, dst } => {
                if !mount(src.as_ptr(), dst, null, libc::MS_BIND | libc::MS_REC, null) {
                    return Err(());
                }
                let flags = libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | locked_flags(dst);
                ok(mount(null, dst, null, flags, null))
            }
            Op::BindDev { src, dst } => {
                let fd = libc::open(
                    dst.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd < 0 {
                    return Err(());
                }
                libc::close(fd);
                if !mount(src.as_ptr(), dst, null, libc::MS_BIND, null) {
                    return Err(());
                }
                let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | locked_flags(dst);
                ok(mount(null, dst, null, flags & !libc::MS_NODEV, null))
            }
            Op::Proc { path } => ok(mount(
                c"proc".as_ptr(),
                path,
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                null,
            )),
            Op::Symlink { target, path } => ok(libc::symlink(target.as_ptr(), path.as_ptr()) == 0),
            Op::WriteFile { path, data, mode } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT
                        | libc::O_WRONLY
                        | libc::O_TRUNC
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    *mode,
                );
                if fd < 0 {
                    return Err(());
                }
                let mut rest: &[u8] = data;
                while !rest.is_empty() {
                    let n = libc::write(fd, rest.as_ptr().cast(), rest.len());
                    if n <= 0 {
                        libc::close(fd);
                        return Err(());
                    }
                    rest = &rest[n as usize..];
                }
                ok(libc::close(fd) == 0)
            }
            Op::RemountRo { path } => {
                let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | locked_flags(path);
                ok(mount(null, path, null, flags, null))
            }
        }
    }
}

unsafe fn send_fd(sock: RawFd, fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4]; // 32 bytes, aligned: more than CMSG_SPACE(sizeof(int))
    // SAFETY: all pointers refer to the stack buffers above, which outlive sendmsg.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return false;
        }
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        libc::sendmsg(sock, &msg, 0) == 1
    }
}

unsafe fn open_and_send_output(plan: &Plan) {
    // SAFETY: plain syscalls on prepared C strings.
    unsafe {
        let fd = libc::open(
            plan.output_dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        );
        if fd < 0 || !send_fd(plan.fd_sock, fd) {
            fail(plan, step::SEND_OUTPUT);
        }
        libc::close(fd);
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

unsafe fn drop_capabilities() -> bool {
    // SAFETY: prctl/capset with valid arguments; failures are reported by the caller.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let hdr = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) == 0
    }
}

/// `setresuid`/`setresgid` (`nr`) to `id` for real, effective and saved ids, as a raw
/// syscall. glibc's wrappers (and `setgroups`'s) broadcast the change to every thread it
/// knows of (`__nptl_setxid`); after a raw `clone` of a multi-threaded Hearth its thread
/// list names threads the child does not have, and the wrapper can wait for them forever.
/// The syscall changes the calling thread, which here is the whole process.
unsafe fn set_ids(nr: libc::c_long, id: u32) -> bool {
    // SAFETY: integer arguments only.
    unsafe { libc::syscall(nr, id, id, id) == 0 }
}

/// `setgroups(0, NULL)` as a raw syscall (see [`set_ids`]).
unsafe fn clear_groups() -> bool {
    // SAFETY: a zero-length list reads no memory.
    unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) == 0 }
}

unsafe fn dup_onto(fd: RawFd, target: RawFd) -> bool {
    // SAFETY: plain fd syscalls.
    unsafe {
        if fd == target {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == 0
        } else {
            libc::dup2(fd, target) == target
        }
    }
}

/// The child. Never returns: `execve` or `_exit(127)`.
///
/// # Safety
/// Must only run in a freshly cloned child of [`spawn`].
unsafe fn child_main(plan: &Plan, args: &ExecArgs) -> ! {
    // SAFETY: the whole body is raw syscalls on data prepared before clone.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        for &fd in &plan.cgroup_tasks {
            if libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                fail(plan, step::CGROUP);
            }
            libc::close(fd);
        }
        let mut go = [0u8; 1];
        if libc::read(plan.sync, go.as_mut_ptr().cast(), 1) != 1 {
            libc::_exit(1); // the parent gave up (or died)
        }
        libc::close(plan.sync);

        // The bounding set needs CAP_SETPCAP, which setresuid may take away on the host:
        // empty it first. (An ordinary user in the fallback has nothing to drop.)
        if plan.set_ids || plan.namespaces {
            for cap in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno() != libc::EINVAL
                {
                    fail(plan, step::CAPS);
                }
            }
        }
        if plan.set_ids {
            if plan.clear_groups && !clear_groups() {
                fail(plan, step::SETGROUPS);
            }
            if !set_ids(libc::SYS_setresgid, plan.gid) {
                fail(plan, step::SETGID);
            }
            // Inside a new user namespace this keeps our capabilities there (its uid 0 is
            // unmapped, so the kernel's "leaving root" rule does not fire); they are
            // dropped explicitly below. On the host (fallback as root) it clears them.
            if !set_ids(libc::SYS_setresuid, plan.uid) {
                fail(plan, step::SETUID);
            }
        }

        if plan.namespaces {
            let null = std::ptr::null();
            if !mount(null, c"/", null, libc::MS_REC | libc::MS_PRIVATE, null) {
                fail(plan, step::MS_PRIVATE);
            }
            let flags = libc::MS_NOSUID | libc::MS_NODEV;
            if !mount(
                c"tmpfs".as_ptr(),
                &plan.base,
                c"tmpfs".as_ptr(),
                flags,
                c"size=64k,mode=0755".as_ptr(),
            ) {
                fail(plan, step::BASE_TMPFS);
            }
            if libc::chdir(plan.base.as_ptr()) != 0
                || libc::mkdir(c"newroot".as_ptr(), 0o755) != 0
                || libc::mkdir(c"oldroot".as_ptr(), 0o755) != 0
            {
                fail(plan, step::BASE_DIRS);
            }
            if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c"oldroot".as_ptr()) != 0
                || libc::chdir(c"/".as_ptr()) != 0
            {
                fail(plan, step::PIVOT_BASE);
            }
            for (i, op) in plan.ops.iter().enumerate() {
                if do_op(op).is_err() {
                    if matches!(op, Op::Proc { .. }) {
                        report(plan.report, false, step::OP_BASE + i as u32, errno());
                    } else {
                        fail(plan, step::OP_BASE + i as u32);
                    }
                }
            }
            open_and_send_output(plan);
            if libc::umount2(c"/oldroot".as_ptr(), libc::MNT_DETACH) != 0 {
                fail(plan, step::DETACH_OLDROOT);
            }
            if libc::chdir(c"/newroot".as_ptr()) != 0
                || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
                || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
                || libc::chdir(c"/".as_ptr()) != 0
            {
                fail(plan, step::PIVOT_NEWROOT);
            }
            let ro = libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV;
            if !mount(null, c"/", null, ro, null) {
                fail(plan, step::REMOUNT_ROOT);
            }
            let name = plan.hostname.as_bytes();
            if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                fail(plan, step::HOSTNAME);
            }
        } else {
            open_and_send_output(plan);
        }
        libc::close(plan.fd_sock);

        if libc::setsid() < 0 {
            fail(plan, step::SETSID);
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(plan, step::CHDIR);
        }
        for &(res, value) in &plan.rlimits {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(res, &lim) != 0 {
                fail(plan, step::RLIMIT);
            }
        }
        if !drop_capabilities() {
            fail(plan, step::CAPS);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(plan, step::NO_NEW_PRIVS);
        }
        // Credential changes cleared the parent-death signal; set it again.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if plan.landlock_fd >= 0 && libc::syscall(446, plan.landlock_fd, 0u32) != 0 {
            fail(plan, step::LANDLOCK);
        }
        // Signal dispositions and the mask survive execve: give the program the defaults,
        // not Hearth's (Rust ignores SIGPIPE; runtimes may block signals in threads).
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL); // libc's own reserved ones fail: fine
            }
        }
        if !dup_onto(plan.stdin, 0) || !dup_onto(plan.stdout, 1) || !dup_onto(plan.stderr, 2) {
            fail(plan, step::STDIO);
        }
        // Nothing of Hearth's (sockets, database, key files) survives execve.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            for fd in 3..65536 {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
        let prog = libc::sock_fprog {
            len: plan.filter.len() as u16,
            filter: plan.filter.as_ptr() as *mut libc::sock_filter,
        };
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            fail(plan, step::SECCOMP);
        }
        let mut err = libc::ENOENT;
        for path in &plan.exec_paths {
            libc::execve(path.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr());
            err = errno();
            if err != libc::ENOENT && err != libc::ENOTDIR {
                break;
            }
        }
        report(plan.report, true, step::EXEC, err);
        libc::_exit(127)
    }
}
