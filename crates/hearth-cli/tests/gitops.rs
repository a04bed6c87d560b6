//! `hearth deploy` GitOps commands through the real binary (issue 14):
//! init → check → plan, annotations under GITHUB_ACTIONS, apply --env with a
//! secret from the environment (masked), status and history, a failed health
//! check's exit code, and the one-host apply's flags kept apart. The deep
//! cases (every check rule, plan ordering, rollback, serialization) are in
//! crates/hearth-deploy/tests/gitops.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{commit, git, hearth, run};

fn required() -> bool {
    std::env::var("HEARTH_TEST_VALIDATORS_REQUIRED").is_ok_and(|v| v == "1")
}

/// `hearth`, with the validators the caller's environment names (`hearth()`
/// drops every `HEARTH_*` variable).
fn hearth_with_validators() -> Command {
    let mut c = hearth();
    if let Ok(bin) = std::env::var("HEARTH_COMPOSE_BIN") {
        c.env("HEARTH_COMPOSE_BIN", bin);
    }
    c.env_remove("GITHUB_ACTIONS").env_remove("GITHUB_OUTPUT");
    c
}

fn validators_or_skip() -> bool {
    let shellcheck = Command::new("shellcheck").arg("--version").output().is_ok();
    let compose = std::env::var("HEARTH_COMPOSE_BIN").is_ok_and(|b| Path::new(&b).is_file())
        || Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
    if shellcheck && compose {
        return true;
    }
    assert!(
        !required(),
        "shellcheck and Compose v2 are required (make unit installs them)"
    );
    eprintln!("SKIPPED: shellcheck or a Compose v2 binary is missing");
    false
}

#[test]
fn init_then_check_and_plan_through_the_cli() {
    if !validators_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("infra");
    let (code, out, err) = run(hearth().args(["deploy", "init", root.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".github/workflows/pr-validation.yml"), "{out}");
    git(&root, &["init", "-q", "-b", "main"]);
    commit(&root, "scaffold");

    let (code, out, err) = run(hearth_with_validators()
        .current_dir(&root)
        .args(["deploy", "check"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok: checked hearth, librechat, static-site"),
        "{out}"
    );

    // A broken script, annotated for GitHub with its file and line; exit 1.
    let script = root.join("services/static-site/deploy.sh");
    let text = fs::read_to_string(&script).unwrap();
    fs::write(&script, format!("{text}cd $DEPLOY_DATA_DIR\n")).unwrap();
    let line = text.lines().count() + 1;
    let (code, out, _) = run(hearth_with_validators()
        .current_dir(&root)
        .env("GITHUB_ACTIONS", "true")
        .args(["deploy", "check", "--since", "HEAD"]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "::error file=services/static-site/deploy.sh,line={line},title=hearth deploy check%3A shellcheck::"
        )),
        "{out}"
    );
    let (code, out, _) = run(hearth_with_validators()
        .current_dir(&root)
        .args(["deploy", "check", "--json"]));
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["findings"][0]["line"], line);
    git(&root, &["checkout", "-q", "--", "."]);

    // The plan of everything, and the workflow's outputs.
    let outputs = tmp.path().join("github_output");
    let (code, out, err) = run(hearth()
        .current_dir(&root)
        .env("GITHUB_OUTPUT", &outputs)
        .args(["deploy", "plan", "--json", "--github-output"]));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Environments in the infra file's order: homelab, then cloud.
    assert_eq!(plan["matrix"]["include"][0]["environment"], "homelab");
    assert_eq!(plan["matrix"]["include"][1]["environment"], "cloud");
    let written = fs::read_to_string(&outputs).unwrap();
    assert!(written.starts_with("matrix={\"include\":[{"), "{written}");
    assert!(written.ends_with("any=true\n"), "{written}");
    // A README change plans nothing.
    fs::write(root.join("docs/adding-services.md"), "# moved\n").unwrap();
    commit(&root, "docs");
    let (code, out, _) = run(hearth()
        .current_dir(&root)
        .args(["deploy", "plan", "--since", "HEAD~1"]));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "nothing to deploy");
}

#[test]
fn apply_env_masks_the_secret_and_a_failed_health_check_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("infra");
    let state = tmp.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fs::create_dir_all(root.join("services/site/www")).unwrap();
    fs::write(
        root.join("hearth-infra.toml"),
        "[environments.homelab]\n[environments.cloud]\n",
    )
    .unwrap();
    // `retries`: a healthy release gets room for python3 to start on a loaded
    // machine (CI runs the engine's tests beside it); a broken one fails sooner.
    let write_site = |health: &str, retries: u32| {
        fs::write(
            root.join("services/site/service.toml"),
            format!(
                "environment = \"homelab\"\nkind = \"script\"\nsecrets = [\"SITE_TOKEN\"]\n[health]\nurl = \"http://127.0.0.1:{port}/{health}\"\nretries = {retries}\ninterval = \"250ms\"\n"
            ),
        )
        .unwrap();
    };
    write_site("", 60);
    let deploy = root.join("services/site/deploy.sh");
    fs::write(
        &deploy,
        format!(
            "#!/bin/sh\nset -eu\nif [ -f \"$DEPLOY_DATA_DIR/pid\" ]; then kill \"$(cat \"$DEPLOY_DATA_DIR/pid\")\" || true; sleep 0.3; fi\necho \"token is $SITE_TOKEN\"\nnohup python3 -m http.server {port} --bind 127.0.0.1 --directory www >/dev/null 2>&1 &\necho \"$!\" >\"$DEPLOY_DATA_DIR/pid\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&deploy, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("services/site/health-check.sh"), "#!/bin/sh\n").unwrap();
    fs::write(root.join("services/site/README.md"), "# site\n").unwrap();
    fs::write(root.join("services/site/www/index.html"), "release 1").unwrap();
    git(&root, &["init", "-q", "-b", "main"]);
    commit(&root, "site");

    // Whatever happens, the server the service started ends with the test.
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(pid) = fs::read_to_string(&self.0) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let _stop = Stop(state.join("services/site/data/pid"));
    let token = "tok-5f1e-VERY-secret";
    let apply = |env_token: Option<&str>| {
        let mut c = hearth();
        c.current_dir(&root).args([
            "deploy",
            "apply",
            "--env",
            "homelab",
            "--all",
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        match env_token {
            Some(t) => c.env("SITE_TOKEN", t),
            None => c.env_remove("SITE_TOKEN"),
        };
        run(&mut c)
    };
    let (code, _, err) = apply(None);
    assert_eq!(code, 1);
    assert!(
        err.contains("missing secrets: SITE_TOKEN (for site)"),
        "{err}"
    );

    let (code, out, err) = apply(Some(token));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[site] token is ***"), "{out}");
    assert!(!out.contains(token) && !err.contains(token), "{out}{err}");

    let (code, out, _) = run(hearth().current_dir(&root).args([
        "deploy",
        "status",
        "--env",
        "homelab",
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    assert!(out.contains("site") && out.contains(" healthy"), "{out}");

    // A release whose health check fails: rolled back, exit 1, saying so.
    write_site("missing.html", 8);
    fs::write(root.join("services/site/www/index.html"), "release 2").unwrap();
    commit(&root, "broken");
    let (code, out, err) = apply(Some(token));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("not ready") && err.contains("rolled back to 1-"),
        "{err}"
    );
    assert!(!out.contains(token) && !err.contains(token), "{out}{err}");

    let (code, out, _) = run(hearth().current_dir(&root).args([
        "deploy",
        "history",
        "site",
        "--json",
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    let actions: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].to_string())
        .collect();
    // The failed upgrade is recorded as the rollback that undid it.
    assert_eq!(actions, ["\"install\"", "\"auto-rollback\""]);
    assert!(!out.contains(token));
}

#[test]
fn apply_says_which_of_one_host_or_gitops() {
    let (code, _, err) = run(hearth().args([
        "deploy",
        "apply",
        "--env",
        "homelab",
        "--tarball",
        "x.tar.gz",
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, _, err) = run(hearth().args(["deploy", "apply"]));
    assert_eq!(code, 2);
    assert!(err.contains("--tarball FILE (one host"), "{err}");
    assert!(err.contains("--env NAME (GitOps"), "{err}");
    let (code, _, err) = run(hearth().args(["deploy", "apply", "--since", "HEAD"]));
    assert_eq!(code, 2, "{err}");
}

/// A `hearth` service: apply starts `hearth serve` from the release's
/// hearth.toml (models on the fake upstream), waits for its /ready, and a
/// changed hearth.toml replaces the instance with a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hearth_service_is_an_instance_run_from_its_hearth_toml() {
    let up = hearth_testkit::FakeUpstream::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("infra");
    let state = tmp.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let svc = root.join("services/ai");
    fs::create_dir_all(&svc).unwrap();
    fs::write(root.join("hearth-infra.toml"), "[environments.homelab]\n").unwrap();
    fs::write(
        svc.join("service.toml"),
        format!(
            "environment = \"homelab\"\nkind = \"hearth\"\n[health]\nurl = \"http://127.0.0.1:{port}/ready\"\nretries = 80\ninterval = \"250ms\"\n"
        ),
    )
    .unwrap();
    let config = |models: &[&str]| {
        let mut text = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
        for m in models {
            text.push_str(&format!(
                "[[models]]\nname = \"{m}\"\nbackend = \"upstream\"\nbase_url = \"{}\"\n",
                up.base_url()
            ));
        }
        fs::write(svc.join("hearth.toml"), text).unwrap();
    };
    config(&["m1"]);
    git(&root, &["init", "-q", "-b", "main"]);
    commit(&root, "ai");

    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(pid) = fs::read_to_string(&self.0) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let pid_file = state.join("services/ai/data/hearth.pid");
    let _stop = Stop(pid_file.clone());
    let apply = {
        let (root, state) = (root.clone(), state.clone());
        move || {
            let (root, state) = (root.clone(), state.clone());
            tokio::task::spawn_blocking(move || {
                run(hearth().current_dir(&root).args([
                    "deploy",
                    "apply",
                    "--env",
                    "homelab",
                    "--all",
                    "--state-dir",
                    state.to_str().unwrap(),
                ]))
            })
        }
    };
    let models = || async {
        reqwest::get(format!("http://127.0.0.1:{port}/v1/models"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    let (code, out, err) = apply().await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(models().await.contains("\"m1\""));
    let pid1 = fs::read_to_string(&pid_file).unwrap();

    config(&["m1", "m2"]);
    commit(&root, "a second model");
    let (code, out, err) = apply().await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(models().await.contains("\"m2\""));
    let pid2 = fs::read_to_string(&pid_file).unwrap();
    assert_ne!(pid1, pid2);
    assert!(
        !Path::new(&format!("/proc/{}", pid1.trim())).exists()
            || fs::read_to_string(format!("/proc/{}/stat", pid1.trim())).is_ok_and(|s| s
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))),
        "the first instance still runs"
    );
    // Its data stays in the service's data folder, across releases.
    assert!(state.join("services/ai/data/hearth").is_dir());
}
