//! `Sandbox::check` reports every feature, and `require` refuses runs it cannot honour.

mod common;

use common::*;
use hearth_sandbox::{Error, Feature, Isolation, Options, Sandbox};

#[test]
fn check_lists_every_feature_with_its_mechanism() {
    let report = sandbox().check();
    assert_eq!(report.isolation, "namespaces", "{report:#?}");
    assert_eq!(report.namespaces, "ok");
    assert!(report.refused.is_empty(), "{report:#?}");
    assert_eq!(report.features.len(), Feature::ALL.len());
    for f in &report.features {
        assert!(!f.how.is_empty(), "{f:?}");
    }
    let get = |feature| {
        report
            .features
            .iter()
            .find(|f| f.feature == feature)
            .unwrap()
    };
    assert!(get(Feature::Network).enforced && get(Feature::Network).required);
    assert!(get(Feature::Network).how.contains("network namespace"));
    assert!(get(Feature::Filesystem).enforced && get(Feature::Filesystem).required);
    // Each limit says which mechanism enforces it: a cgroup version or an rlimit.
    for f in [Feature::Memory, Feature::Pids] {
        let how = &get(f).how;
        assert!(how.contains("cgroup v") || how.contains("rlimit"), "{how}");
    }
}

#[test]
fn landlock_fallback_reports_what_it_cannot_enforce() {
    let sb = Sandbox::new(Options {
        isolation: Isolation::Landlock,
        venv: Some(venv()),
        ..Options::default()
    });
    let report = sb.check();
    assert_eq!(report.isolation, "landlock", "{report:#?}");
    let get = |feature| {
        report
            .features
            .iter()
            .find(|f| f.feature == feature)
            .unwrap()
    };
    assert!(get(Feature::Filesystem).enforced && get(Feature::Filesystem).how.contains("Landlock"));
    assert!(get(Feature::Network).how.contains("socket() denied"));
    assert!(!get(Feature::Pid).enforced);
    assert!(!get(Feature::OutputSize).enforced);
    assert!(
        report.refused.is_empty(),
        "only network and filesystem are required by default"
    );
}

#[test]
fn a_required_feature_that_is_not_enforced_refuses_the_run() {
    let sb = Sandbox::new(Options {
        isolation: Isolation::Landlock,
        require: vec![Feature::Network, Feature::Filesystem, Feature::Pid],
        venv: Some(venv()),
        ..Options::default()
    });
    match sb.run(&py("print('ran')")) {
        Err(Error::Refused(missing)) => assert!(missing[0].starts_with("pid:"), "{missing:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!sb.check().refused.is_empty());
}

#[test]
fn unenforced_features_run_with_a_warning() {
    let sb = sandbox_with(Isolation::Landlock);
    let o = run(&sb, &py("print('ran')"));
    assert_eq!(o.stdout, "ran\n");
    assert!(
        o.warnings.iter().any(|w| w.starts_with("pid not enforced")),
        "{o:#?}"
    );
}
