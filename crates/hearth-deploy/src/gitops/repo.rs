//! The repository on disk, and what git says of it (changed files, the
//! commit, the infra file at another commit). Git is the system `git`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::GitopsError;
use super::model::{INFRA_FILE, Infra, Problem, Service};

/// One folder under `services/`.
#[derive(Debug, Clone)]
pub struct ServiceEntry {
    /// `services/<name>`, relative to the root.
    pub dir: String,
    /// None when service.toml is missing or does not parse.
    pub service: Option<Service>,
    pub problems: Vec<Problem>,
    pub has_toml: bool,
}

/// A GitOps repository: its infra file and services, as they are on disk.
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
    pub infra: Result<Infra, Vec<Problem>>,
    pub services: BTreeMap<String, ServiceEntry>,
}

impl Repo {
    /// The repository holding `start`: the nearest folder at or above it with
    /// a `hearth-infra.toml`.
    pub fn find(start: &Path) -> Result<Repo, GitopsError> {
        let start = fs::canonicalize(start).map_err(GitopsError::io("open", start))?;
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            if d.join(INFRA_FILE).is_file() {
                return Repo::load(d);
            }
            dir = d.parent();
        }
        Err(GitopsError::NotARepo {
            dir: start.display().to_string(),
            file: INFRA_FILE,
        })
    }

    /// Reads the repository at `root`.
    pub fn load(root: &Path) -> Result<Repo, GitopsError> {
        let infra_path = root.join(INFRA_FILE);
        let text = fs::read_to_string(&infra_path).map_err(GitopsError::io("read", &infra_path))?;
        let infra = Infra::parse(&text);
        let mut services = BTreeMap::new();
        let dir = root.join("services");
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if !entry.path().is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let toml = entry.path().join("service.toml");
                let (service, problems, has_toml) = match fs::read_to_string(&toml) {
                    Ok(text) => {
                        let (s, p) = Service::parse(&name, &text);
                        (s, p, true)
                    }
                    Err(_) => (None, Vec::new(), false),
                };
                services.insert(
                    name.clone(),
                    ServiceEntry {
                        dir: format!("services/{name}"),
                        service,
                        problems,
                        has_toml,
                    },
                );
            }
        }
        Ok(Repo {
            root: root.to_path_buf(),
            infra,
            services,
        })
    }

    /// The infra file, or its first problem as an error.
    pub fn infra(&self) -> Result<&Infra, GitopsError> {
        self.infra.as_ref().map_err(|problems| {
            let p = problems.first();
            GitopsError::Invalid {
                file: INFRA_FILE.to_string(),
                line: p.map_or(1, |p| p.line),
                message: p.map_or_else(String::new, |p| {
                    format!("{} (`hearth deploy check` lists every problem)", p.message)
                }),
            }
        })
    }

    /// Every service that parses, by name; an error naming the first that does not.
    pub fn parsed_services(&self) -> Result<BTreeMap<String, Service>, GitopsError> {
        let mut out = BTreeMap::new();
        for (name, entry) in &self.services {
            match &entry.service {
                Some(s) if entry.problems.is_empty() => {
                    out.insert(name.clone(), s.clone());
                }
                _ => {
                    let p = entry.problems.first();
                    return Err(GitopsError::Invalid {
                        file: format!("{}/service.toml", entry.dir),
                        line: p.map_or(1, |p| p.line),
                        message: p.map_or_else(
                            || "missing: every folder under services/ needs one".to_string(),
                            |p| p.message.clone(),
                        ),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Runs git in `dir`; its stdout, or an error with its stderr.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String, GitopsError> {
    let fail = |detail: String| GitopsError::Git {
        args: args.join(" "),
        dir: dir.display().to_string(),
        detail,
    };
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| fail(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit checked out in `dir`, if it is a git work tree with one.
pub fn git_head(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "--verify", "--quiet", "HEAD"])
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// What changed between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Paths relative to the root, both sides of a rename.
    Files(Vec<String>),
    /// Everything counts as changed, and why (a first push, an unknown base).
    All(String),
}

/// The files changed from `since` to `head` (a commit), or to the working
/// tree when `head` is None.
/// An all-zero `since` (GitHub's `before` on a branch's first push) or one git
/// does not know (a force push) counts everything as changed.
pub(crate) fn changed_files(
    root: &Path,
    since: &str,
    head: Option<&str>,
) -> Result<Changes, GitopsError> {
    if since.is_empty() || since.chars().all(|c| c == '0') {
        return Ok(Changes::All(format!(
            "no base commit ({since:?}): every service counts as changed"
        )));
    }
    let base = format!("{since}^{{commit}}");
    if git(root, &["rev-parse", "--verify", "--quiet", &base]).is_err() {
        return Ok(Changes::All(format!(
            "git does not know {since} (a force push, or a shallow clone: fetch with fetch-depth: 0): every service counts as changed"
        )));
    }
    // Without a head: the working tree (the checkout in CI; with your edits,
    // committed or not, on your machine), untracked files included.
    let mut args = vec!["diff", "--name-only", "--no-renames", "-z", since];
    if let Some(head) = head {
        args.push(head);
    }
    args.push("--");
    let mut files: Vec<String> = git(root, &args)?
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if head.is_none() {
        let untracked = git(root, &["ls-files", "-z", "--others", "--exclude-standard"])?;
        files.extend(
            untracked
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    files.sort();
    files.dedup();
    Ok(Changes::Files(files))
}

/// A file's text at a commit, None when it is not there.
pub(crate) fn file_at(root: &Path, rev: &str, path: &str) -> Option<String> {
    git(root, &["show", &format!("{rev}:{path}")]).ok()
}

/// The files of the repository a commit would carry: tracked ones and
/// untracked ones git does not ignore. Outside git, every file but `.git`.
pub(crate) fn list_files(root: &Path) -> Vec<String> {
    if let Ok(out) = git(
        root,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    ) {
        let mut files: Vec<String> = out
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        files.sort();
        files.dedup();
        return files;
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort();
    files
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == ".git" {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &path, out);
        } else if meta.is_file()
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}
