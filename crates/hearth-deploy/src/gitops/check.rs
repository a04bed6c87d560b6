//! `hearth deploy check`: every rule a service must pass before merge, each
//! finding with its file and line.
//!
//! The validators are the real ones: `shellcheck` for shell scripts (PATH, or
//! `HEARTH_SHELLCHECK`), the Compose v2 binary for compose files
//! (`HEARTH_COMPOSE_BIN`, else `docker compose`, else a v2 `docker-compose`).
//! A validator that is missing is a finding, never a silent pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::GitopsError;
use super::model::{INFRA_FILE, Kind, Probe, Service, Target};
use super::plan::{changed_services, with_dependents};
use super::repo::{Changes, Repo, changed_files, list_files};
use super::secrets::secret_in_line;

/// One problem: where, which rule, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub rule: String,
    pub message: String,
}

impl Finding {
    fn new(file: impl Into<String>, line: usize, rule: &str, message: impl Into<String>) -> Self {
        Finding {
            file: file.into(),
            line: line.max(1),
            rule: rule.to_string(),
            message: message.into(),
        }
    }
}

/// What check looked at and found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// The services whose own rules ran.
    pub services: Vec<String>,
    pub notices: Vec<String>,
}

/// `::error file=F,line=L,title=T::MESSAGE`, escaped as GitHub's toolkit does.
pub fn github_annotation(f: &Finding) -> String {
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    format!(
        "::error file={},line={},title={}::{}",
        prop(&f.file),
        f.line,
        prop(&format!("hearth deploy check: {}", f.rule)),
        data(&f.message)
    )
}

/// The findings as JSON: `{"ok": bool, "services": [...], "findings": [...]}`.
pub fn findings_json(report: &CheckReport) -> serde_json::Value {
    serde_json::json!({
        "ok": report.findings.is_empty(),
        "services": report.services,
        "findings": report.findings,
        "notices": report.notices,
    })
}

/// Checks the repository: every service, or with `since` those a change from
/// it touches (and their dependents). The infra file and the dependency graph
/// are always checked whole.
pub fn check(repo: &Repo, since: Option<&str>) -> Result<CheckReport, GitopsError> {
    let mut report = CheckReport::default();
    let mut out = Vec::new();
    // The infra file.
    match &repo.infra {
        Err(problems) => {
            for p in problems {
                out.push(Finding::new(INFRA_FILE, p.line, p.rule, &p.message));
            }
        }
        Ok(infra) => {
            for env in infra.environments.values() {
                if let Target::Ssh {
                    address,
                    port,
                    known_hosts: Some(k),
                    ..
                } = &env.target
                    && !repo.root.join(k).is_file()
                {
                    out.push(Finding::new(
                        INFRA_FILE,
                        env.line,
                        "infra",
                        format!(
                            "environment {}: known_hosts names {k}, which is not in the repository: `ssh-keyscan -p {port} {address} > {k}`, check the fingerprint against the host's, and commit it",
                            env.name
                        ),
                    ));
                }
            }
        }
    }
    let envs: BTreeSet<String> = repo
        .infra
        .as_ref()
        .map(|i| i.environments.keys().cloned().collect())
        .unwrap_or_default();
    let parsed: BTreeMap<String, Service> = repo
        .services
        .iter()
        .filter_map(|(n, e)| e.service.clone().map(|s| (n.clone(), s)))
        .collect();

    // Which services and files are in scope.
    let all_files = list_files(&repo.root);
    let (scope, files): (BTreeSet<String>, Vec<String>) = match since {
        None => (repo.services.keys().cloned().collect(), all_files.clone()),
        Some(since) => {
            let changes = changed_files(&repo.root, since, None)?;
            let infra = repo.infra.clone().unwrap_or_default();
            let direct =
                changed_services(repo, &infra, &parsed, since, &changes, &mut report.notices);
            let mut scope: BTreeSet<String> =
                with_dependents(&parsed, direct).into_keys().collect();
            let files = match &changes {
                Changes::All(_) => {
                    scope = repo.services.keys().cloned().collect();
                    all_files.clone()
                }
                Changes::Files(changed) => {
                    // A new folder without a parsable service.toml is in scope too.
                    for f in changed {
                        if let Some((name, _)) =
                            f.strip_prefix("services/").and_then(|r| r.split_once('/'))
                            && repo.services.contains_key(name)
                        {
                            scope.insert(name.to_string());
                        }
                    }
                    changed
                        .iter()
                        .filter(|f| all_files.contains(f))
                        .cloned()
                        .collect()
                }
            };
            (scope, files)
        }
    };
    report.services = scope.iter().cloned().collect();

    let deploy_workflow = fs::read_to_string(repo.root.join(".github/workflows/deploy.yml")).ok();
    let mut scripts = Vec::new();
    for name in &scope {
        let Some(entry) = repo.services.get(name) else {
            continue;
        };
        let toml = format!("{}/service.toml", entry.dir);
        if !entry.has_toml {
            out.push(Finding::new(
                &toml,
                1,
                "required-files",
                "missing: every folder under services/ needs a service.toml (environment, kind, [health])",
            ));
            continue;
        }
        for p in &entry.problems {
            out.push(Finding::new(&toml, p.line, p.rule, &p.message));
        }
        if !super::model::valid_name(name) {
            out.push(Finding::new(
                &toml,
                1,
                "name",
                format!("the folder name {name:?} is the service's name: use lower-case letters, digits and '-'"),
            ));
        }
        let Some(s) = &entry.service else { continue };
        if !envs.contains(&s.environment) {
            out.push(Finding::new(
                &toml,
                s.lines.environment,
                "environment",
                format!(
                    "environment {:?} is not in {INFRA_FILE} (it has: {})",
                    s.environment,
                    envs.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let dir = repo.root.join(&entry.dir);
        for f in s.kind.required_files() {
            if !dir.join(f).is_file() {
                out.push(Finding::new(
                    format!("{}/{f}", entry.dir),
                    1,
                    "required-files",
                    format!("missing: a {} service needs {f}", s.kind.as_str()),
                ));
            }
        }
        match &s.health {
            None => out.push(Finding::new(
                &toml,
                s.lines.health,
                "health",
                "no health check: declare [health] with url = \"http://...\" (must answer 200) or command = \"./health-check.sh\" (must exit 0)",
            )),
            Some(h) => {
                if let Probe::Command(cmd) = &h.probe {
                    let first = cmd.split_whitespace().next().unwrap_or("");
                    if let Some(rel) = first.strip_prefix("./")
                        && !dir.join(rel).is_file()
                    {
                        out.push(Finding::new(
                            &toml,
                            s.lines.health,
                            "health",
                            format!("the health command runs {first}, which is not in {}", entry.dir),
                        ));
                    }
                }
            }
        }
        for (i, d) in s.depends_on.iter().enumerate() {
            if !parsed.contains_key(d) {
                out.push(Finding::new(
                    &toml,
                    s.lines.depends_on.get(i).copied().unwrap_or(1),
                    "depends-on",
                    format!("depends_on names {d:?}, which is not a folder under services/"),
                ));
            }
        }
        if let Some(wf) = &deploy_workflow {
            for secret in &s.secrets {
                if !wf.contains(&format!("secrets.{secret}")) {
                    out.push(Finding::new(
                        &toml,
                        s.lines.secrets,
                        "secrets",
                        format!(
                            "secret {secret} is not passed to the deploy job: add `{secret}: ${{{{ secrets.{secret} }}}}` to the env of the apply step in .github/workflows/deploy.yml"
                        ),
                    ));
                }
            }
        }
        let prefix = format!("{}/", entry.dir);
        for f in all_files.iter().filter(|f| f.starts_with(&prefix)) {
            if f.ends_with(".sh") {
                scripts.push(f.clone());
                let executable = fs::metadata(repo.root.join(f))
                    .map(|m| m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false);
                if !executable {
                    out.push(Finding::new(
                        f,
                        1,
                        "executable",
                        format!("not executable: `chmod +x {f}` (and `git add` it: git records the mode)"),
                    ));
                }
            }
        }
        if s.kind == Kind::Compose && dir.join("compose.yaml").is_file() {
            out.extend(validate_compose(&dir, &entry.dir, name));
        }
    }
    // Shell scripts outside services/ that the change touched.
    for f in &files {
        if f.ends_with(".sh") && !f.starts_with("services/") {
            scripts.push(f.clone());
        }
    }
    scripts.sort();
    scripts.dedup();
    out.extend(shellcheck(&repo.root, &scripts));
    out.extend(scan_secrets(&repo.root, &files));
    out.extend(cycles(repo, &parsed));
    out.sort_by(|a, b| (&a.file, a.line, &a.rule).cmp(&(&b.file, b.line, &b.rule)));
    out.dedup();
    report.findings = out;
    Ok(report)
}

/// A committed `.env`, a private key, a token-shaped string.
fn scan_secrets(root: &Path, files: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    for f in files {
        let base = f.rsplit('/').next().unwrap_or(f);
        if base == ".env" || (base.starts_with(".env.") && !is_env_template(base)) {
            out.push(Finding::new(
                f,
                1,
                "secrets",
                "a committed .env file: secrets come from the CI's secret store; remove it (`git rm --cached`), list it in .gitignore, and commit a .env.example with names only",
            ));
            continue;
        }
        let Ok(bytes) = fs::read(root.join(f)) else {
            continue;
        };
        // Big or binary files are not where people paste tokens.
        if bytes.len() > 1 << 20 || bytes.contains(&0) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if let Some(what) = secret_in_line(line) {
                out.push(Finding::new(
                    f,
                    i + 1,
                    "secrets",
                    format!(
                        "this line holds what looks like {what}: keep secret values in the CI's secret store and name them in service.toml's secrets; rotate it, since it is in the git history now"
                    ),
                ));
            }
        }
    }
    out
}

fn is_env_template(base: &str) -> bool {
    matches!(
        base,
        ".env.example" | ".env.sample" | ".env.template" | ".env.dist"
    )
}

/// `depends_on` cycles, each reported once at its first service's entry.
fn cycles(repo: &Repo, services: &BTreeMap<String, Service>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in services.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            let Some(s) = services.get(&node) else {
                continue;
            };
            for d in &s.depends_on {
                if d == start {
                    let members: BTreeSet<String> = path.iter().cloned().collect();
                    if reported.insert(members) {
                        let mut chain = path.clone();
                        chain.push(start.clone());
                        let first = &services[start];
                        let idx = first
                            .depends_on
                            .iter()
                            .position(|x| path.get(1).map_or(x == start, |n| x == n))
                            .unwrap_or(0);
                        let dir = repo
                            .services
                            .get(start)
                            .map_or_else(|| format!("services/{start}"), |e| e.dir.clone());
                        out.push(Finding::new(
                            format!("{dir}/service.toml"),
                            first.lines.depends_on.get(idx).copied().unwrap_or(1),
                            "depends-on",
                            format!(
                                "depends_on has a cycle: {}; nothing in it could deploy first",
                                chain.join(" -> ")
                            ),
                        ));
                    }
                } else if seen.insert(d.clone()) {
                    let mut p = path.clone();
                    p.push(d.clone());
                    stack.push((d.clone(), p));
                }
            }
        }
    }
    out
}

/// `shellcheck -f gcc` on the scripts, its findings with their lines.
fn shellcheck(root: &Path, scripts: &[String]) -> Vec<Finding> {
    if scripts.is_empty() {
        return Vec::new();
    }
    let bin = std::env::var("HEARTH_SHELLCHECK").unwrap_or_else(|_| "shellcheck".to_string());
    let out = match Command::new(&bin)
        .current_dir(root)
        .args(["-f", "gcc", "-x"])
        .args(scripts)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            return vec![Finding::new(
                &scripts[0],
                1,
                "shellcheck",
                format!(
                    "cannot run {bin} ({e}): install shellcheck (apt install shellcheck) so that the scripts are checked"
                ),
            )];
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut findings = Vec::new();
    for line in text.lines() {
        // path:line:col: level: message [SCnnnn]
        let mut parts = line.splitn(4, ':');
        let (Some(file), Some(l), Some(_col), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(l) = l.parse::<usize>() else { continue };
        findings.push(Finding::new(file, l, "shellcheck", rest.trim()));
    }
    // Exit 1 is "findings"; anything else without findings is shellcheck failing.
    if !out.status.success() && findings.is_empty() {
        findings.push(Finding::new(
            &scripts[0],
            1,
            "shellcheck",
            format!(
                "shellcheck exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    findings
}

/// How to run Compose v2: `HEARTH_COMPOSE_BIN`, `docker compose`, or `docker-compose` v2.
pub(crate) fn compose_command() -> Option<Vec<String>> {
    if let Ok(bin) = std::env::var("HEARTH_COMPOSE_BIN")
        && !bin.is_empty()
    {
        return Some(vec![bin]);
    }
    let works = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .is_ok_and(|o| {
                o.status.success() && {
                    let v = String::from_utf8_lossy(&o.stdout);
                    v.contains("v2.") || v.contains(" 2.")
                }
            })
    };
    if works(&["docker", "compose", "version"]) {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    if works(&["docker-compose", "version"]) {
        return Some(vec!["docker-compose".into()]);
    }
    None
}

/// `compose config -q` in the service's folder, with `.env.example` for the
/// variables when there is one.
fn validate_compose(dir: &Path, rel: &str, name: &str) -> Vec<Finding> {
    let file = format!("{rel}/compose.yaml");
    let Some(argv) = compose_command() else {
        return vec![Finding::new(
            &file,
            1,
            "compose",
            "no Compose v2 to validate it: install the docker compose plugin, or set HEARTH_COMPOSE_BIN to a Compose v2 binary",
        )];
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(dir).args([
        "-p",
        &format!("hearth-{name}"),
        "-f",
        "compose.yaml",
    ]);
    if dir.join(".env.example").is_file() {
        cmd.args(["--env-file", ".env.example"]);
    }
    cmd.args(["config", "-q"]);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            return vec![Finding::new(
                &file,
                1,
                "compose",
                format!("cannot run {}: {e}", argv.join(" ")),
            )];
        }
    };
    if out.status.success() {
        return Vec::new();
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let msg = if msg.is_empty() {
        format!("compose config failed with {}", out.status)
    } else {
        msg
    };
    // YAML errors say `line N`; validation errors name the key instead.
    let line = msg
        .split("line ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    vec![Finding::new(&file, line, "compose", msg)]
}
