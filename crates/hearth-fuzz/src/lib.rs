//! Fuzz targets for Hearth's hand-written parsers.
//!
//! Each target is a function `fn(&[u8])` that runs one parser on the bytes and
//! checks what must hold for every input, panicking when it does not: never a
//! panic inside the parser, and where there is one, agreement with an independent
//! oracle (serde_json, the toml crate, a reference parser, a writer whose output
//! the reader must read back) and round trips. A panic is a finding.
//!
//! The functions are driven two ways:
//! - `fuzz/` (its own cargo project, outside the workspace) links them into
//!   libFuzzer binaries; `make fuzz` runs each for a bounded time and copies any
//!   crash into `fuzz/regressions/<target>/`.
//! - `tests/replay.rs` runs every file of `fuzz/corpus/<target>/` and
//!   `fuzz/regressions/<target>/` through its target, so `make test` keeps the seed
//!   corpus and every crash found so far as regression tests.
//!
//! This crate must not know anything the parsers' own crates do not export; the
//! few byte-level entry points it needs are `#[doc(hidden)] pub` seams in them.
//! `gguf.rs` (hearth-engine) and `upload.rs` (hearth-jobs) are compiled in as
//! modules of this crate instead (they use only std and thiserror), so the
//! instrumented build needs neither llama.cpp nor SQLite.
//!
//! # Layout
//! - [`TARGETS`]: every target by name, as `fuzz/fuzz_targets/<name>.rs` and the
//!   corpus folders name them.
//! - one module per target; [`json`] holds the helpers the JSON oracles share.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a fuzz target reports a violated property by panicking"
)]

pub mod config;
pub mod gguf;
pub mod h1;
pub mod json;
pub mod manifest;
pub mod relay;
pub mod request;
pub mod sse;
pub mod upload;
pub mod usage;

/// The included parsers, compiled here as they are in their own crates.
#[path = "../../hearth-engine/src/gguf.rs"]
#[allow(dead_code, reason = "only the reader is fuzzed, not every accessor")]
mod engine_gguf;
#[path = "../../hearth-jobs/src/upload.rs"]
#[allow(dead_code, reason = "only the checks are fuzzed, not every accessor")]
mod jobs_upload;

/// A fuzz target: runs a parser on `data` and panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by the name its fuzz binary and corpus folder have.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config::run),
    ("gguf", gguf::run),
    ("h1", h1::run),
    ("manifest", manifest::run),
    ("relay", relay::run),
    ("request", request::run),
    ("sse", sse::run),
    ("upload", upload::run),
    ("usage", usage::run),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// `bytes` cut into reads of the given sizes (fuzz-chosen, each at least 1), in
/// turn; one read of everything when `sizes` is empty.
pub fn cut<'a>(bytes: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut reads = Vec::new();
    let mut left = bytes;
    let mut i = 0;
    while !left.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .map_or(left.len(), |&s| usize::from(s).max(1))
            .min(left.len());
        let (read, rest) = left.split_at(n);
        reads.push(read);
        left = rest;
        i += 1;
    }
    reads
}
