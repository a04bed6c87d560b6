//! Shared helpers for the sandbox integration tests.
#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::panic)] // test helpers: a failed run fails the test, loudly

use std::path::PathBuf;
use std::time::Duration;

use hearth_sandbox::{Isolation, Options, Outcome, Sandbox, Spec};

/// The venv `make test` builds (mk/sandbox.mk exports HEARTH_SANDBOX_VENV). Missing is a
/// failure, not a skip: the suite is meaningless without it.
pub fn venv() -> PathBuf {
    let path = std::env::var_os("HEARTH_SANDBOX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-sandbox"));
    assert!(
        path.join("bin/python3").exists(),
        "sandbox venv missing at {} — run `make sandbox-venv` (or `make test`)",
        path.display()
    );
    path
}

pub fn sandbox() -> Sandbox {
    sandbox_with(Isolation::Namespaces)
}

pub fn sandbox_with(isolation: Isolation) -> Sandbox {
    Sandbox::new(Options {
        venv: Some(venv()),
        isolation,
        ..Options::default()
    })
}

/// A Python script with short limits suited to tests.
pub fn py(script: &str) -> Spec {
    let mut spec = Spec::python(script);
    spec.limits.wall_time = Duration::from_secs(20);
    spec.limits.memory_bytes = 512 << 20;
    spec
}

pub fn run(sb: &Sandbox, spec: &Spec) -> Outcome {
    match sb.run(spec) {
        Ok(o) => o,
        Err(e) => panic!("sandbox run failed: {e}"),
    }
}

/// Runs and asserts the script printed `marker` (so a test cannot pass because the
/// script never got that far).
pub fn run_py(sb: &Sandbox, script: &str) -> Outcome {
    run(sb, &py(script))
}
