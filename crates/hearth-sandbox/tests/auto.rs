//! `Isolation::Auto` decides between namespaces and the Landlock fallback once, from the
//! namespace probe, and retries a `clone` that fails for a passing reason instead of
//! falling back. Failures are injected with `Sandbox::fail_next_clones` (a real `EAGAIN`
//! for one call cannot be caused without starving the whole test process). Needs a host
//! with user namespaces, as the rest of the suite; runs `/bin/sh`, not the venv.

mod common;

use common::*;
use hearth_sandbox::{Error, Isolation, Options, Outcome, Sandbox, Spec};

fn auto() -> Sandbox {
    Sandbox::new(Options {
        isolation: Isolation::Auto,
        ..Options::default()
    })
}

fn sh(script: &str) -> Spec {
    Spec {
        argv: ["/bin/sh", "-c", script].map(String::from).to_vec(),
        ..Spec::default()
    }
}

/// Ran in namespaces, with no word of the fallback.
fn assert_namespaces(o: &Outcome) {
    assert!(o.success(), "{o:#?}");
    assert_eq!(o.isolation, "namespaces", "{o:#?}");
    assert!(
        !o.warnings.iter().any(|w| w.contains("Landlock fallback")),
        "{o:#?}"
    );
}

#[test]
fn passing_clone_failures_are_retried_and_keep_namespaces() {
    let sb = auto();
    // Undecided: two EAGAINs hit the first run's clone, which is retried.
    sb.fail_next_clones(libc::EAGAIN, 2);
    let o = run(&sb, &sh("echo PID $$"));
    assert_namespaces(&o);
    assert_eq!(
        o.stdout, "PID 1\n",
        "the program is PID 1 of its own namespace"
    );

    // Decided: a run whose own clone hits EAGAIN retries it, still with namespaces.
    sb.fail_next_clones(libc::ENOMEM, 1);
    assert_namespaces(&run(&sb, &sh("true")));
    sb.fail_next_clones(libc::EAGAIN, 3);
    assert_namespaces(&run(&sb, &sh("true")));
    // And nothing switched behind the scenes.
    assert_namespaces(&run(&sb, &sh("true")));
}

#[test]
fn exhausted_retries_fail_the_run_without_falling_back() {
    let sb = auto();
    assert_namespaces(&run(&sb, &sh("true")));

    // More failures than retries: this run fails with the transient error, in bounded
    // time (the 100 are not all tried)...
    sb.fail_next_clones(libc::EAGAIN, 100);
    match sb.run(&sh("echo RAN")) {
        Err(e @ Error::Transient { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("clone failed"), "{msg}");
            assert!(msg.contains("transient"), "{msg}");
            assert!(msg.contains("os error 11"), "{msg}");
            assert!(msg.contains("process limit"), "{msg}");
        }
        other => panic!("expected a transient clone error, got {other:?}"),
    }
    sb.fail_next_clones(libc::EAGAIN, 0);
    // ...and the next one uses namespaces again.
    assert_namespaces(&run(&sb, &sh("true")));
}

#[test]
fn a_probe_that_only_hit_eagain_decides_nothing() {
    let sb = auto();
    sb.fail_next_clones(libc::EAGAIN, 100);
    assert!(
        matches!(sb.run(&sh("true")), Err(Error::Transient { .. })),
        "the transient failure fails this run"
    );
    sb.fail_next_clones(libc::EAGAIN, 0);
    // Not concluded "no namespaces": the next run probes again and gets them.
    assert_namespaces(&run(&sb, &sh("true")));
}

#[test]
fn a_refused_probe_chooses_the_fallback_for_every_run() {
    let sb = auto();
    // As a pod's seccomp profile answers clone(CLONE_NEWUSER), every time: the first
    // run's clone and the probe's are refused; not retried, decisive.
    sb.fail_next_clones(libc::EPERM, 2);
    for _ in 0..2 {
        let o = run(&sb, &sh("echo RAN"));
        assert!(o.success(), "{o:#?}");
        assert_eq!(o.isolation, "landlock", "{o:#?}");
        assert_eq!(o.stdout, "RAN\n");
        assert!(
            o.warnings[0].starts_with("namespaces unavailable (clone: ")
                && o.warnings[0].ends_with("; ran with the Landlock fallback"),
            "{o:#?}"
        );
    }
}

#[test]
fn one_runs_own_namespace_failure_is_its_error_when_the_probe_starts() {
    let sb = auto();
    // Only the first run's clone is refused: the probe starts, so namespaces work and
    // the refusal was this run's own. Its error, and no fallback for the next runs.
    sb.fail_next_clones(libc::EPERM, 1);
    assert!(
        matches!(sb.run(&sh("true")), Err(Error::Namespaces { .. })),
        "the run's own failure is its error"
    );
    assert_namespaces(&run(&sb, &sh("true")));
}

#[test]
fn check_does_not_read_a_passing_failure_as_no_namespaces() {
    let sb = auto();
    sb.fail_next_clones(libc::EAGAIN, 2);
    let report = sb.check();
    assert_eq!(report.isolation, "namespaces", "{report:#?}");
    assert_eq!(report.namespaces, "ok", "{report:#?}");
}

#[test]
fn concurrent_first_runs_share_one_decision() {
    let sb = auto();
    // One EAGAIN for whichever clone comes first: retried, so no thread falls back.
    sb.fail_next_clones(libc::EAGAIN, 1);
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4).map(|_| s.spawn(|| run(&sb, &sh("true")))).collect();
        for r in runs {
            assert_namespaces(&r.join().unwrap());
        }
    });
}
