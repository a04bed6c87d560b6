//! Landlock, for hosts without user namespaces (many containers and pods): the parent
//! builds the ruleset (paths it may read, the folders it may write, no TCP, scoped
//! signals and abstract sockets) and the child only calls `landlock_restrict_self`.
#![allow(unsafe_code)] // reason: three raw syscalls with plain C structs; no libc wrapper exists.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const SYS_CREATE_RULESET: libc::c_long = 444;
const SYS_ADD_RULE: libc::c_long = 445;
const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: u32 = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;

const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version this kernel offers (0: none).
pub fn abi_version() -> u32 {
    // SAFETY: the version query takes no pointer (NULL, 0).
    let r = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r < 0 { 0 } else { r as u32 }
}

fn fs_rights(abi: u32) -> u64 {
    let mut all = EXECUTE
        | WRITE_FILE
        | READ_FILE
        | READ_DIR
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM;
    if abi >= 2 {
        all |= REFER;
    }
    if abi >= 3 {
        all |= TRUNCATE;
    }
    if abi >= 5 {
        all |= IOCTL_DEV;
    }
    all
}

/// What one ruleset enforces, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub abi: u32,
    pub tcp: bool,
    pub signals: bool,
}

/// A ruleset ready for `landlock_restrict_self` in the child.
#[derive(Debug)]
pub struct Ruleset {
    pub fd: OwnedFd,
    pub coverage: Coverage,
}

/// Build a ruleset: `read` paths readable and executable, `write` folders fully usable.
/// Everything else on the filesystem (`/proc` included) is denied.
pub fn ruleset(read: &[&Path], write: &[&Path]) -> io::Result<Ruleset> {
    let abi = abi_version();
    if abi == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Landlock is not available",
        ));
    }
    let handled = fs_rights(abi);
    let attr = RulesetAttr {
        handled_access_fs: handled,
        handled_access_net: if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL
        } else {
            0
        },
    };
    let size = match abi {
        1..=3 => 8,
        4 | 5 => 16,
        _ => size_of::<RulesetAttr>(),
    };
    // SAFETY: attr outlives the call and `size` never exceeds its size.
    let fd = unsafe { libc::syscall(SYS_CREATE_RULESET, &attr as *const RulesetAttr, size, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let file_rights = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;
    for (paths, rights) in [(read, EXECUTE | READ_FILE | READ_DIR), (write, handled)] {
        for path in paths {
            let Ok(target) = std::fs::File::open(path).or_else(|_| open_path(path)) else {
                continue; // a system path this host lacks
            };
            let is_dir = target.metadata().map(|m| m.is_dir()).unwrap_or(false);
            let allowed = if is_dir { rights } else { rights & file_rights };
            let rule = PathBeneathAttr {
                allowed_access: allowed & handled,
                parent_fd: target.as_raw_fd(),
            };
            // SAFETY: rule is a valid packed struct that outlives the call.
            let r = unsafe {
                libc::syscall(
                    SYS_ADD_RULE,
                    fd.as_raw_fd(),
                    RULE_PATH_BENEATH,
                    &rule as *const PathBeneathAttr,
                    0u32,
                )
            };
            if r < 0 {
                return Err(io::Error::other(format!(
                    "landlock rule for {}: {}",
                    path.display(),
                    io::Error::last_os_error()
                )));
            }
        }
    }
    Ok(Ruleset {
        fd,
        coverage: Coverage {
            abi,
            tcp: abi >= 4,
            signals: abi >= 6,
        },
    })
}

fn open_path(path: &Path) -> io::Result<std::fs::File> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid C string; O_PATH opens without reading.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from open.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}
