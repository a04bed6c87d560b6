//! Reading the program's `/output` back, without trusting anything in it.
//!
//! Every open is `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`
//! relative to a descriptor of the output folder itself, with `O_NOFOLLOW` and
//! `O_NONBLOCK`: a symlink (to `/etc/shadow`, to Hearth's data) is skipped, a FIFO cannot
//! block Hearth, and only regular files are read. Count and bytes are capped.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

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
pub fn read_back(
    root: BorrowedFd<'_>,
    max_files: usize,
    max_bytes: u64,
    file_size_limit: u64,
) -> ReadBack {
    let mut rb = ReadBack::default();
    let mut budget = max_bytes;
    walk(
        root,
        root,
        "",
        0,
        max_files,
        &mut budget,
        file_size_limit,
        &mut rb,
    );
    rb.files.sort_by(|a, b| a.path.cmp(&b.path));
    rb
}

#[allow(clippy::too_many_arguments)]
fn walk(
    root: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    prefix: &str,
    depth: usize,
    max_files: usize,
    budget: &mut u64,
    file_size_limit: u64,
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
                Ok(sub) => walk(
                    root,
                    sub.as_fd(),
                    &rel,
                    depth + 1,
                    max_files,
                    budget,
                    file_size_limit,
                    rb,
                ),
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
        if rb.files.len() >= max_files {
            rb.truncated = true;
            continue;
        }
        match read_file(root, &cname, *budget) {
            Ok((data, full_size)) => {
                *budget -= data.len() as u64;
                let cut = (data.len() as u64) < full_size;
                rb.truncated |= cut;
                rb.files.push(OutputFile {
                    path: rel,
                    size: data.len() as u64,
                    truncated: cut || (file_size_limit > 0 && full_size >= file_size_limit),
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

/// Read at most `budget` bytes of a regular file: (data, its full size).
fn read_file(root: BorrowedFd<'_>, name: &CString, budget: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let fd: OwnedFd = sys::open_beneath(root, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut data = Vec::with_capacity(meta.len().min(budget) as usize);
    (&mut file).take(budget).read_to_end(&mut data)?;
    Ok((data, meta.len()))
}
