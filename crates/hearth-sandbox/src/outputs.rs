//! Reading the program's `/output` back, without trusting anything in it.
//!
//! Every open is `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`
//! relative to a descriptor of the output folder itself, with `O_NOFOLLOW` and
//! `O_NONBLOCK`: a symlink (to `/etc/shadow`, to Hearth's data) is skipped, a FIFO cannot
//! block Hearth, and only regular files are read. Count and bytes are capped.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::spec::OutputFile;
use crate::sys;

const MAX_DEPTH: usize = 16;

/// Files read back, whether anything was left out, and notes.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub files: Vec<OutputFile>,
    pub truncated: bool,
    pub notes: Vec<String>,
}

/// Read regular files under `root` (a directory descriptor), at most `max_files` files
/// and `max_bytes` bytes in all; a file at `file_size_limit` bytes is marked truncated.
/// With `save_to`, each file is copied into that host folder at its relative path
/// (a buffer at a time) instead of into its `data`.
pub fn read_back(
    root: BorrowedFd<'_>,
    max_files: usize,
    max_bytes: u64,
    file_size_limit: u64,
    save_to: Option<&Path>,
) -> ReadBack {
    let mut rb = ReadBack::default();
    let mut budget = max_bytes;
    let limits = Caps {
        max_files,
        file_size_limit,
        save_to,
    };
    walk(root, root, "", 0, &limits, &mut budget, &mut rb);
    rb.files.sort_by(|a, b| a.path.cmp(&b.path));
    rb
}

/// What a read-back may take, and where it goes.
struct Caps<'a> {
    max_files: usize,
    file_size_limit: u64,
    save_to: Option<&'a Path>,
}

fn walk(
    root: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    prefix: &str,
    depth: usize,
    caps: &Caps<'_>,
    budget: &mut u64,
    rb: &mut ReadBack,
) {
    // List names through the descriptor (never through a path the program controls).
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
        rb.notes.push(format!("could not list /output/{prefix}"));
        rb.truncated = true;
        return;
    };
    let mut names: Vec<(String, std::fs::FileType)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.file_type().ok()?)))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in names {
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let Ok(cname) = CString::new(rel.as_bytes()) else {
            continue;
        };
        if kind.is_dir() {
            if depth >= MAX_DEPTH {
                rb.truncated = true;
                rb.notes
                    .push(format!("skipped /output/{rel}: deeper than {MAX_DEPTH}"));
                continue;
            }
            match sys::open_beneath(root, &cname, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(sub) => walk(root, sub.as_fd(), &rel, depth + 1, caps, budget, rb),
                Err(e) => rb.notes.push(format!("skipped /output/{rel}: {e}")),
            }
            continue;
        }
        if !kind.is_file() {
            rb.truncated = true;
            rb.notes
                .push(format!("skipped /output/{rel}: not a regular file"));
            continue;
        }
        if rb.files.len() >= caps.max_files {
            rb.truncated = true;
            continue;
        }
        let save = caps.save_to.map(|dir| dir.join(&rel));
        match read_file(root, &cname, *budget, save.as_deref()) {
            Ok((data, size, full_size)) => {
                *budget -= size;
                let cut = size < full_size;
                rb.truncated |= cut;
                rb.files.push(OutputFile {
                    path: rel,
                    size,
                    truncated: cut
                        || (caps.file_size_limit > 0 && full_size >= caps.file_size_limit),
                    data,
                });
            }
            Err(e) => {
                rb.truncated = true;
                rb.notes.push(format!("skipped /output/{rel}: {e}"));
            }
        }
    }
}

/// Read at most `budget` bytes of a regular file, into memory or (with `save`)
/// into a new file there: (data, bytes read, its full size).
fn read_file(
    root: BorrowedFd<'_>,
    name: &CString,
    budget: u64,
    save: Option<&Path>,
) -> std::io::Result<(Vec<u8>, u64, u64)> {
    let fd: OwnedFd = sys::open_beneath(root, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let Some(target) = save else {
        let mut data = Vec::with_capacity(meta.len().min(budget) as usize);
        (&mut file).take(budget).read_to_end(&mut data)?;
        let n = data.len() as u64;
        return Ok((data, n, meta.len()));
    };
    // The relative path is made of names listed through the descriptor (no `..`,
    // no `/`), under a folder of the caller's: nothing the program wrote is
    // followed, and `create_new` overwrites nothing.
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)?;
    let n = std::io::copy(&mut (&mut file).take(budget), &mut out)?;
    Ok((Vec::new(), n, meta.len()))
}
