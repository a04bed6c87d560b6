//! Stamps the binary with what `hearth --version` prints: the commit it was built
//! from and its build features.
//!
//! The commit is `HEARTH_BUILD_COMMIT` when set (a build from a source tarball, or
//! `make dist`, which reads it on the host before building in its Debian 11 root),
//! else `git rev-parse` of the checkout, else `unknown`. The features are `cuda` and
//! its GPU architectures when this crate's `cuda` feature (which turns on the
//! engine's) is on, else `cpu` (src/build_info.rs, shared with `hearth doctor`).

use std::path::Path;
use std::process::Command;

#[allow(dead_code)] // the binary uses the rest of it
#[path = "src/build_info.rs"]
mod build_info;

fn main() {
    println!("cargo:rerun-if-env-changed=HEARTH_BUILD_COMMIT");
    // What llama-cpp-sys-2 passes to llama.cpp's CMake (mk/cuda.sh sets it).
    println!("cargo:rerun-if-env-changed=CMAKE_CUDA_ARCHITECTURES");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let commit = match std::env::var("HEARTH_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => git_commit(Path::new(&manifest)).unwrap_or_else(|| "unknown".to_owned()),
    };
    let archs = std::env::var_os("CARGO_FEATURE_CUDA").map(|_| {
        let archs = std::env::var("CMAKE_CUDA_ARCHITECTURES").unwrap_or_default();
        println!("cargo:rustc-env=HEARTH_CUDA_ARCHS={archs}");
        archs
    });
    let features = build_info::features(archs.as_deref());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!(
        "cargo:rustc-env=HEARTH_LONG_VERSION={version} (commit {commit}, features: {features})"
    );
}

/// The checkout's commit (12 hex digits), and the files that change with it
/// (HEAD, the branch's ref, packed-refs) registered so a new commit rebuilds.
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}
