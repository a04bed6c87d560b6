//! Replays the seed corpus and every crash found so far through its target:
//! `fuzz/corpus/<target>/*` and `fuzz/regressions/<target>/*`. A crash input is
//! kept in `fuzz/regressions/` once found (`make fuzz` copies it there), so a
//! fixed bug stays fixed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir` (none when it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(name: &str) {
    let target = hearth_fuzz::target(name).unwrap();
    let corpus = files(&root().join("corpus").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ has no seeds");
    for path in corpus
        .iter()
        .chain(&files(&root().join("regressions").join(name)))
    {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{name}: {} fails", path.display());
    }
}

#[test]
fn every_target_has_a_replay_test() {
    let mut names: Vec<&str> = hearth_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    let tested = [
        "config", "gguf", "h1", "manifest", "relay", "request", "sse", "upload", "usage",
    ];
    assert_eq!(names, tested);
    // Each fuzz binary calls its target by this name.
    for n in names {
        let bin = root().join("fuzz_targets").join(format!("{n}.rs"));
        let src = std::fs::read_to_string(&bin).unwrap_or_default();
        assert!(
            src.contains(&format!("hearth_fuzz::{n}::run")),
            "{} must call hearth_fuzz::{n}::run",
            bin.display()
        );
    }
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn gguf() {
    replay("gguf");
}

#[test]
fn h1() {
    replay("h1");
}

#[test]
fn manifest() {
    replay("manifest");
}

#[test]
fn relay() {
    replay("relay");
}

#[test]
fn request() {
    replay("request");
}

#[test]
fn sse() {
    replay("sse");
}

#[test]
fn upload() {
    replay("upload");
}

#[test]
fn usage() {
    replay("usage");
}
