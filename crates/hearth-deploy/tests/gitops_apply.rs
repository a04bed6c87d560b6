//! `hearth deploy apply --env` (issue 14): first deploy, upgrade (the old
//! process gone), a failed health check rolled back, a secret that reaches
//! the service and never the output or the history, the other environment
//! untouched, a failure that stops the run, two applies that serialize, and
//! compose services where a container engine runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

mod gitops_fixture;

use std::fs;
use std::process::Command;
use std::time::Duration;

use hearth_deploy::gitops::{self, Selection, Site};
use hearth_deploy::release::{Action, EventOutcome};

use gitops_fixture::*;

#[test]
fn apply_deploys_upgrades_rolls_back_and_keeps_secrets_out_of_output_and_history() {
    let fx = Fixture::new();
    let port = free_port();
    let other_port = free_port();
    let token = "s3cr3t-VALUE-9d2f";
    let secret_line = "secrets = [\"SITE_TOKEN\"]";
    fx.site("site", "homelab", port, "release 1", true, secret_line);
    fx.site("chat", "cloud", other_port, "chat 1", true, "");
    let c1 = commit(&fx.root, "release 1");
    let base = git(&fx.root, &["rev-parse", "HEAD~1"]);

    // A missing secret fails before anything changes.
    let (r, _) = fx.apply("homelab", Selection::All, &[]);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("missing secrets: SITE_TOKEN (for site)"), "{e}");
    assert!(
        !fx.state.join("services/site").exists(),
        "nothing was staged"
    );

    // First deploy: release 1 serves.
    let secrets = [("SITE_TOKEN", token)];
    let (r, out) = fx.apply(
        "homelab",
        Selection::Since {
            since: base.clone(),
            head: None,
        },
        &secrets,
    );
    r.unwrap();
    assert_eq!(page(port).as_deref(), Some("release 1"), "{out:#?}");
    let pid1 = fx.pid("site").unwrap();
    let v1 = format!("1-{}", &c1[..7]);
    assert!(
        out.iter()
            .any(|l| l.contains(&format!("site: {v1} is current and healthy"))),
        "{out:#?}"
    );
    // The secret reached the service, and only as ***.
    assert_eq!(
        fs::read_to_string(fx.state.join("services/site/data/token-seen")).unwrap(),
        token
    );
    assert!(out.iter().any(|l| l.contains("with token ***")), "{out:#?}");
    // The service of the other environment is untouched.
    assert!(!fx.state.join("services/chat").exists());
    assert!(page(other_port).is_none());

    // Release 2: served, the old process gone.
    fx.site("site", "homelab", port, "release 2", true, secret_line);
    let c2 = commit(&fx.root, "release 2");
    let (r, out) = fx.apply(
        "homelab",
        Selection::Since {
            since: c1.clone(),
            head: None,
        },
        &secrets,
    );
    r.unwrap();
    assert_eq!(page(port).as_deref(), Some("release 2"), "{out:#?}");
    let pid2 = fx.pid("site").unwrap();
    assert_ne!(pid1, pid2);
    assert!(!alive(pid1), "release 1's server {pid1} still runs");
    let v2 = format!("2-{}", &c2[..7]);

    // Re-running the same commit changes nothing.
    let (r, out) = fx.apply(
        "homelab",
        Selection::Services(vec!["site".into()]),
        &secrets,
    );
    r.unwrap();
    assert!(
        out.iter()
            .any(|l| l.contains(&format!("site: unchanged, {v2} is current"))),
        "{out:#?}"
    );
    assert_eq!(fx.pid("site"), Some(pid2));

    // Release 3 fails its health check: rolled back, release 2 serves again.
    fx.site("site", "homelab", port, "release 3", false, secret_line);
    let c3 = commit(&fx.root, "release 3, broken");
    let (r, out) = fx.apply(
        "homelab",
        Selection::Since {
            since: c2.clone(),
            head: None,
        },
        &secrets,
    );
    let e = r.unwrap_err().to_string();
    let v3 = format!("3-{}", &c3[..7]);
    assert!(e.contains(&format!("release {v3} was not ready")), "{e}");
    assert!(e.contains(&format!("rolled back to {v2}")), "{e}");
    assert_eq!(page(port).as_deref(), Some("release 2"), "{out:#?}");
    let current = fs::read_link(fx.state.join("services/site/current")).unwrap();
    assert!(current.ends_with(&v2), "{current:?}");

    // History: install, upgrade, auto-rollback; no secret anywhere on disk
    // that Hearth wrote.
    let h = gitops::history(&Site::local(&fx.state), "site").unwrap();
    let steps: Vec<(Action, EventOutcome, &str)> = h
        .iter()
        .map(|e| (e.action, e.outcome, e.to.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (Action::Install, EventOutcome::Ok, v1.as_str()),
            (Action::Upgrade, EventOutcome::Ok, v2.as_str()),
            (Action::AutoRollback, EventOutcome::Ok, v2.as_str()),
        ]
    );
    for f in ["history.jsonl", "deploy.log"] {
        let text = fs::read_to_string(fx.state.join("services/site").join(f)).unwrap();
        assert!(!text.contains(token), "{f} holds the secret: {text}");
    }
    assert!(!out.iter().any(|l| l.contains(token)), "{out:#?}");
    assert!(!e.contains(token), "{e}");

    // Status: current release, its commit, health.
    let st = gitops::status(&Site::local(&fx.state), Some("homelab"), &no_secrets).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].current.as_deref(), Some(v2.as_str()));
    assert_eq!(st[0].commit, c2);
    assert!(st[0].health.as_ref().unwrap().ready);
    assert!(
        gitops::status(&Site::local(&fx.state), Some("cloud"), &no_secrets)
            .unwrap()
            .is_empty()
    );

    // A service of the other environment cannot be asked for here.
    let (r, _) = fx.apply(
        "homelab",
        Selection::Services(vec!["chat".into()]),
        &secrets,
    );
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("belongs to environment cloud")
    );
    fx.stop("site");
}

#[test]
fn a_failed_service_stops_the_run_before_its_dependents() {
    let fx = Fixture::new();
    let (p1, p2) = (free_port(), free_port());
    fx.site("db", "homelab", p1, "db 1", false, "");
    fx.site("web", "homelab", p2, "web 1", true, "depends_on = [\"db\"]");
    commit(&fx.root, "broken db");
    let (r, out) = fx.apply("homelab", Selection::All, &[]);
    let e = r.unwrap_err().to_string();
    assert!(e.starts_with("db: release 1-"), "{e}");
    assert!(e.contains("no earlier release to roll back to"), "{e}");
    assert!(
        out.iter()
            .any(|l| l == "not deployed, after db failed: web"),
        "{out:#?}"
    );
    assert!(!fx.state.join("services/web").exists());
    fx.stop("db");
}

#[test]
fn two_applies_at_once_serialize() {
    let fx = Fixture::new();
    let port = free_port();
    fx.site("site", "homelab", port, "one", true, "");
    // The deploy step marks its start and end in a shared file, slowly.
    let marks = fx.root.parent().unwrap().join("marks");
    let deploy = fx.root.join("services/site/deploy.sh");
    let text = fs::read_to_string(&deploy).unwrap().replace(
        "set -eu\n",
        &format!(
            "set -eu\necho start >>{m}\nsleep 1\necho end >>{m}\n",
            m = marks.display()
        ),
    );
    write_exec(&deploy, &text);
    commit(&fx.root, "slow");
    let fx2 = Fixture {
        _tmp: tempfile::tempdir().unwrap(),
        root: fx.root.clone(),
        state: fx.state.clone(),
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| fx.apply("homelab", Selection::All, &[]));
        // The second one changes the page so that it has something to deploy.
        std::thread::sleep(Duration::from_millis(300));
        let b = s.spawn(|| {
            let (r, out) = fx2.apply("homelab", Selection::All, &[]);
            (r, out)
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    a.0.unwrap();
    b.0.unwrap();
    assert!(
        b.1.iter()
            .any(|l| l.starts_with("waiting for another apply")),
        "{:#?}",
        b.1
    );
    // Never interleaved: start, end (the second found it current, or redeployed after).
    let marks = fs::read_to_string(&marks).unwrap();
    assert!(marks.starts_with("start\nend\n"), "{marks}");
    assert!(!marks.contains("start\nstart"), "{marks}");
    assert_eq!(page(port).as_deref(), Some("one"));
    fx.stop("site");
}

#[test]
fn compose_services_deploy_where_a_container_engine_runs() {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let fx = Fixture::new();
    write(
        &fx.root.join("services/web/service.toml"),
        "environment = \"homelab\"\nkind = \"compose\"\n[health]\nurl = \"http://127.0.0.1:18089/\"\nretries = 30\n",
    );
    write(
        &fx.root.join("services/web/compose.yaml"),
        "services:\n  web:\n    image: busybox:1.36\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    ports: [\"127.0.0.1:18089:8080\"]\n",
    );
    commit(&fx.root, "compose");
    let (r, out) = fx.apply("homelab", Selection::All, &[]);
    if !engine {
        // The visible notice: this machine has no container engine.
        eprintln!("SKIPPED: compose apply needs a container engine (docker info fails here)");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("no container engine"), "{e}");
        assert!(
            !fx.state.join("services/web").exists(),
            "nothing was staged"
        );
        return;
    }
    r.unwrap();
    assert!(out.iter().any(|l| l.contains("web: 1-")), "{out:#?}");
    let _ = Command::new("docker")
        .args(["compose", "-p", "hearth-web", "down"])
        .status();
}

#[test]
fn a_removed_service_is_stopped_unless_kept_and_status_probes_with_its_secrets() {
    let fx = Fixture::new();
    let (p1, p2) = (free_port(), free_port());
    fx.site("old", "homelab", p1, "old", true, "");
    fx.site(
        "keep",
        "homelab",
        p2,
        "keep",
        true,
        "secrets = [\"SITE_TOKEN\"]",
    );
    // keep's health check needs its secret.
    let check = fx.root.join("services/keep/health-check.sh");
    let text = fs::read_to_string(&check).unwrap().replace(
        "set -eu\n",
        "set -eu\n[ \"${SITE_TOKEN:-}\" = tok-123 ] || { echo \"no token\"; exit 1; }\n",
    );
    write_exec(&check, &text);
    let c1 = commit(&fx.root, "two services");
    let secrets = [("SITE_TOKEN", "tok-123")];
    let (r, out) = fx.apply("homelab", Selection::All, &secrets);
    r.unwrap();
    assert_eq!(page(p1).as_deref(), Some("old"), "{out:#?}");
    let site = Site::local(&fx.state);

    // status probes with the secrets the service declares, when given them.
    let st = gitops::status(&site, Some("homelab"), &|n| {
        (n == "SITE_TOKEN").then(|| "tok-123".to_string())
    })
    .unwrap();
    let keep = st.iter().find(|s| s.name == "keep").unwrap();
    assert!(keep.health.as_ref().unwrap().ready, "{st:?}");
    let st = gitops::status(&site, Some("homelab"), &no_secrets).unwrap();
    let keep = st.iter().find(|s| s.name == "keep").unwrap();
    assert!(!keep.health.as_ref().unwrap().ready, "{st:?}");

    // Removed, with --keep-removed: named, left running.
    let pid = fx.pid("old").unwrap();
    fs::remove_dir_all(fx.root.join("services/old")).unwrap();
    commit(&fx.root, "retire old");
    let mut opts = fx.options(
        "homelab",
        Selection::Since {
            since: c1.clone(),
            head: None,
        },
    );
    opts.keep_removed = true;
    let (r, out) = fx.run(&opts, &secrets);
    r.unwrap();
    assert!(
        out.iter()
            .any(|l| l == "removed from the repository, left running (--keep-removed): old"),
        "{out:#?}"
    );
    assert!(alive(pid));

    // Without it: stopped with its release's stop.sh, recorded, not current.
    opts.keep_removed = false;
    let (r, out) = fx.run(&opts, &secrets);
    r.unwrap();
    assert!(
        out.iter().any(|l| l == "old: removed (stop.sh ran)"),
        "{out:#?}"
    );
    assert!(
        out.iter().any(|l| l.contains("[old] stopped old")),
        "{out:#?}"
    );
    let start = std::time::Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < Duration::from_secs(10), "{pid} runs on");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!fx.state.join("services/old/current").exists());
    let last = gitops::history(&site, "old").unwrap().pop().unwrap();
    assert_eq!(
        (last.action, last.outcome, last.to.as_str()),
        (Action::Remove, EventOutcome::Ok, "none")
    );
    // The other service is untouched; a second run has nothing to do.
    assert_eq!(page(p2).as_deref(), Some("keep"));
    let (r, out) = fx.run(&opts, &secrets);
    r.unwrap();
    assert!(!out.iter().any(|l| l.contains("old")), "{out:#?}");
    fx.stop("keep");
}
