//! `hearth deploy init [DIR]`: a GitOps repository to start from, with an
//! example service of each kind, the two workflows and the docs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::GitopsError;

/// One file `init` writes.
#[derive(Debug, Clone, Copy)]
pub struct ScaffoldFile {
    pub path: &'static str,
    pub text: &'static str,
    pub executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> ScaffoldFile {
    ScaffoldFile {
        path,
        text,
        executable: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> ScaffoldFile {
    ScaffoldFile {
        path,
        text,
        executable: true,
    }
}

/// Every file of the scaffold, relative to the repository's root.
pub fn scaffold_files() -> &'static [ScaffoldFile] {
    const FILES: &[ScaffoldFile] = &[
        file(
            "hearth-infra.toml",
            include_str!("scaffold/hearth-infra.toml"),
        ),
        file(".gitignore", include_str!("scaffold/gitignore")),
        file(
            "docs/adding-services.md",
            include_str!("scaffold/adding-services.md"),
        ),
        file(
            ".github/workflows/pr-validation.yml",
            include_str!("scaffold/workflows/pr-validation.yml"),
        ),
        file(
            ".github/workflows/deploy.yml",
            include_str!("scaffold/workflows/deploy.yml"),
        ),
        file(
            "services/static-site/service.toml",
            include_str!("scaffold/static-site/service.toml"),
        ),
        script(
            "services/static-site/deploy.sh",
            include_str!("scaffold/static-site/deploy.sh"),
        ),
        script(
            "services/static-site/health-check.sh",
            include_str!("scaffold/static-site/health-check.sh"),
        ),
        script(
            "services/static-site/stop.sh",
            include_str!("scaffold/static-site/stop.sh"),
        ),
        file(
            "services/static-site/README.md",
            include_str!("scaffold/static-site/README.md"),
        ),
        file(
            "services/static-site/www/index.html",
            include_str!("scaffold/static-site/www/index.html"),
        ),
        file(
            "services/librechat/service.toml",
            include_str!("scaffold/librechat/service.toml"),
        ),
        file(
            "services/librechat/compose.yaml",
            include_str!("scaffold/librechat/compose.yaml"),
        ),
        file(
            "services/librechat/.env.example",
            include_str!("scaffold/librechat/.env.example"),
        ),
        file(
            "services/hearth/service.toml",
            include_str!("scaffold/hearth/service.toml"),
        ),
        file(
            "services/hearth/hearth.toml",
            include_str!("scaffold/hearth/hearth.toml"),
        ),
    ];
    FILES
}

/// Writes the scaffold into `dir` (created if need be). Refuses, writing
/// nothing, when any of its files exists already. Returns the paths written.
pub fn init(dir: &Path) -> Result<Vec<&'static str>, GitopsError> {
    let existing: Vec<&str> = scaffold_files()
        .iter()
        .filter(|f| dir.join(f.path).exists())
        .map(|f| f.path)
        .collect();
    if !existing.is_empty() {
        return Err(GitopsError::Refused(format!(
            "{} already has {}: init writes a new repository and overwrites nothing",
            dir.display(),
            existing.join(", ")
        )));
    }
    let mut written = Vec::new();
    for f in scaffold_files() {
        let path = dir.join(f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(GitopsError::io("create", parent))?;
        }
        fs::write(&path, f.text).map_err(GitopsError::io("write", &path))?;
        if f.executable {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(GitopsError::io("chmod", &path))?;
        }
        written.push(f.path);
    }
    Ok(written)
}
