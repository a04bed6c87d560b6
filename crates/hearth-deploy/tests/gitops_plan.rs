//! `hearth deploy plan` (issue 14): one changed service plans only it; a
//! changed dependency plans its dependents after it; a README at the root
//! plans nothing; services are grouped by environment (in the infra file's
//! order), with the matrix; a removed service is a removal in its old
//! environment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

mod gitops_fixture;

use hearth_deploy::gitops::plan;

use gitops_fixture::*;

fn plan_fixture() -> Fixture {
    let fx = Fixture::new();
    fx.site("db", "homelab", 1, "db", true, "");
    fx.site("web", "homelab", 2, "web", true, "depends_on = [\"db\"]");
    fx.site(
        "proxy",
        "homelab",
        3,
        "proxy",
        true,
        "depends_on = [\"web\"]",
    );
    fx.site("docs", "homelab", 4, "docs", true, "");
    fx.site("chat", "cloud", 5, "chat", true, "");
    commit(&fx.root, "services");
    fx
}

fn planned(fx: &Fixture, since: &str) -> Vec<(String, Vec<String>)> {
    plan(&fx.repo(), Some(since), None)
        .unwrap()
        .environments
        .into_iter()
        .map(|e| {
            (
                e.environment,
                e.services.into_iter().map(|s| s.name).collect(),
            )
        })
        .collect()
}

fn envs(v: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    v.iter()
        .map(|(e, s)| (e.to_string(), s.iter().map(|x| x.to_string()).collect()))
        .collect()
}

#[test]
fn plan_has_only_what_changed_and_its_dependents_in_order_per_environment() {
    let fx = plan_fixture();
    let base = git(&fx.root, &["rev-parse", "HEAD"]);

    // One service changed: only it.
    write(&fx.root.join("services/docs/www/index.html"), "docs 2");
    commit(&fx.root, "docs");
    assert_eq!(planned(&fx, &base), envs(&[("homelab", &["docs"])]));

    // A dependency changed: its dependents after it, transitively.
    let base = git(&fx.root, &["rev-parse", "HEAD"]);
    write(&fx.root.join("services/db/www/index.html"), "db 2");
    commit(&fx.root, "db");
    assert_eq!(
        planned(&fx, &base),
        envs(&[("homelab", &["db", "web", "proxy"])])
    );
    let p = plan(&fx.repo(), Some(&base), None).unwrap();
    assert_eq!(p.environments[0].services[1].reason, "depends on db");

    // The README at the root: nothing.
    let base = git(&fx.root, &["rev-parse", "HEAD"]);
    write(&fx.root.join("README.md"), "# our infra, documented\n");
    commit(&fx.root, "readme");
    let p = plan(&fx.repo(), Some(&base), None).unwrap();
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(p.matrix(), serde_json::json!({"include": []}));
    assert_eq!(p.to_json()["any"], false);

    // Two environments: grouped, each with its own runner in the matrix.
    let base = git(&fx.root, &["rev-parse", "HEAD"]);
    write(&fx.root.join("services/chat/www/index.html"), "chat 2");
    write(&fx.root.join("services/web/www/index.html"), "web 2");
    commit(&fx.root, "chat and web");
    // Environments in the order hearth-infra.toml declares them.
    assert_eq!(
        planned(&fx, &base),
        envs(&[("homelab", &["web", "proxy"]), ("cloud", &["chat"])])
    );
    let p = plan(&fx.repo(), Some(&base), None).unwrap();
    assert_eq!(
        p.matrix(),
        serde_json::json!({"include": [
            {"environment": "homelab", "runner": "homelab"},
            {"environment": "cloud", "runner": "cloud"}
        ]})
    );
    // A range given by both ends: the same.
    let head = git(&fx.root, &["rev-parse", "HEAD"]);
    assert_eq!(
        plan(&fx.repo(), Some(&base), Some(&head))
            .unwrap()
            .environments,
        p.environments
    );

    // A changed environment entry plans that environment's services only.
    let base = git(&fx.root, &["rev-parse", "HEAD"]);
    write(
        &fx.root.join("hearth-infra.toml"),
        &format!("{INFRA}description = \"the VM\"\n"),
    );
    commit(&fx.root, "describe cloud");
    assert_eq!(planned(&fx, &base), envs(&[("cloud", &["chat"])]));

    // No base (a branch's first push): everything.
    let all = planned(&fx, "0000000000000000000000000000000000000000");
    assert_eq!(
        all,
        envs(&[
            ("homelab", &["db", "docs", "web", "proxy"]),
            ("cloud", &["chat"])
        ])
    );

    // A service removed from the repository: a removal where it ran, which
    // puts that environment in the matrix (its runner stops it).
    let base = git(&fx.root, &["rev-parse", "HEAD"]);
    std::fs::remove_dir_all(fx.root.join("services/docs")).unwrap();
    commit(&fx.root, "retire docs");
    let p = plan(&fx.repo(), Some(&base), None).unwrap();
    assert_eq!(p.environments.len(), 1, "{p:?}");
    assert_eq!(p.environments[0].environment, "homelab");
    assert!(p.environments[0].services.is_empty());
    assert_eq!(p.environments[0].removals, ["docs"]);
    assert!(!p.is_empty());
    assert_eq!(
        p.matrix(),
        serde_json::json!({"include": [{"environment": "homelab", "runner": "homelab"}]})
    );
    assert_eq!(p.to_json()["environments"][0]["removals"][0], "docs");
}
