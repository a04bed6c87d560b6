//! The seccomp filter: a deny list of what a script never needs, as classic BPF.
//!
//! Written out by hand rather than with a filter compiler so that it also rejects the
//! x32 ABI (syscall numbers with bit 30 set share the x86-64 arch tag) and foreign
//! architectures (`int 0x80`), and inspects `clone` flags. `clone3` passes its flags in
//! memory, which BPF cannot read, so it answers `ENOSYS` and libc falls back to `clone`.

use libc::sock_filter;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const fn ret_errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// Namespace flags that `clone` may not carry (`CLONE_NEWTIME` shares its bit with the
/// exit signal in `clone`, and is refused through `unshare` instead).
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// Syscalls answered with `EPERM`.
fn denied() -> Vec<libc::c_long> {
    let mut v = vec![
        // Debugging and reading other processes.
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        // Mounts and roots.
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        // Namespaces (clone is checked by flags below).
        libc::SYS_unshare,
        libc::SYS_setns,
        // Kernel attack surface a script never needs.
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_fanotify_init,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        // The machine itself.
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_ustat,
        libc::SYS_sysfs,
        libc::SYS__sysctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_nfsservctl,
    ]);
    v
}

/// Extra rules for the Landlock fallback, which has no network or PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Inside fresh namespaces: sockets are harmless (no interfaces, no host paths).
    Namespaces,
    /// On the host's network and PID space: no sockets at all (socketpair stays), and no
    /// new sessions or process groups, so one `kill(-pgid)` reaches every descendant.
    Landlock,
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// `if nr == K { return ret }`, leaving the accumulator holding `nr`.
fn deny_nr(p: &mut Vec<sock_filter>, nr: libc::c_long, ret: u32) {
    p.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
    p.push(stmt(BPF_RET_K, ret));
}

/// The BPF program for `profile`.
pub fn filter(profile: Profile) -> Vec<sock_filter> {
    let eperm = ret_errno(libc::EPERM);
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, RET_KILL),
        stmt(BPF_LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        // x32 syscalls: same arch tag, bit 30 set in the number.
        p.push(jump(BPF_JGE_K, 0x4000_0000, 0, 1));
        p.push(stmt(BPF_RET_K, RET_KILL));
    }
    for nr in denied() {
        deny_nr(&mut p, nr, eperm);
    }
    deny_nr(&mut p, libc::SYS_clone3, ret_errno(libc::ENOSYS));
    if profile == Profile::Landlock {
        deny_nr(&mut p, libc::SYS_socket, ret_errno(libc::EACCES));
        deny_nr(&mut p, libc::SYS_setsid, eperm);
        deny_nr(&mut p, libc::SYS_setpgid, eperm);
    }
    // clone: refuse namespace flags (the nested-user-namespace RLIMIT_NPROC escape).
    p.push(jump(BPF_JEQ_K, libc::SYS_clone as u32, 0, 3));
    p.push(stmt(BPF_LD_W_ABS, off_arg_lo(0)));
    p.push(jump(BPF_JSET_K, CLONE_NS_FLAGS, 0, 1));
    p.push(stmt(BPF_RET_K, eperm));
    // ioctl: no typing into a terminal (TIOCSTI) or console tricks (TIOCLINUX).
    p.push(stmt(BPF_LD_W_ABS, OFF_NR));
    p.push(jump(BPF_JEQ_K, libc::SYS_ioctl as u32, 0, 5));
    p.push(stmt(BPF_LD_W_ABS, off_arg_lo(1)));
    p.push(jump(BPF_JEQ_K, libc::TIOCSTI as u32, 0, 1));
    p.push(stmt(BPF_RET_K, eperm));
    p.push(jump(BPF_JEQ_K, libc::TIOCLINUX as u32, 0, 1));
    p.push(stmt(BPF_RET_K, eperm));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p
}

/// Names of the denied syscalls, for `hearth sandbox check`.
pub const DENIED_SUMMARY: &str = "ptrace, process_vm_*, mount family, pivot_root, chroot, \
     unshare, setns, clone with namespace flags, clone3, bpf, perf_event_open, userfaultfd, \
     io_uring, keyctl, add_key, request_key, kexec, module loading, reboot, swap, acct, \
     quotactl, syslog, clock setting, open_by_handle_at, TIOCSTI; x32 and foreign ABIs killed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_stay_in_bounds_and_program_ends_with_allow() {
        for profile in [Profile::Namespaces, Profile::Landlock] {
            let p = filter(profile);
            assert!(p.len() < 4096);
            for (i, ins) in p.iter().enumerate() {
                if ins.code & 0x07 == libc::BPF_JMP as u16 {
                    assert!(
                        i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(),
                        "jump at {i}"
                    );
                }
            }
            let last = p.last().unwrap();
            assert_eq!((last.code, last.k), (BPF_RET_K, RET_ALLOW));
        }
    }
}
