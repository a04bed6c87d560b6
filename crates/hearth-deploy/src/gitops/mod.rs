//! GitOps for a repository of services: `hearth deploy init / check / plan /
//! apply --env / status --env / history`.
//!
//! A repository holds `hearth-infra.toml` (the environments: where each runs and
//! which CI runner deploys it) and `services/<name>/service.toml` (a service's
//! environment, kind, health check, secret names and dependencies) beside the
//! files of its kind. `check` validates it on every pull request, `plan` says
//! which services a change touches, and `apply` deploys those of one
//! environment on its runner with the release core (`crate::release`): one
//! release folder per deploy under the state folder, a `current` link, a lock,
//! the health check, rollback to the previous release, an append-only history.
//!
//! # Layout
//! - `model`: `hearth-infra.toml` and `service.toml`, parsed with the lines of
//!   their keys (check's messages name file and line).
//! - `repo`: the repository on disk and what git says of it.
//! - `check`: the rules and their findings (human, JSON, GitHub annotations).
//! - `plan`: changed services, their dependents, dependency order, per environment.
//! - `secrets`: secret values from the environment, and their masking.
//! - `service_host`: one service's release layout as a [`crate::release::Host`]:
//!   staging a folder, running the kind's deploy step, its health check, its
//!   stop step; here, or on a host over SSH.
//! - `remote`: those steps as `sh` scripts on an SSH host, variables on stdin.
//! - `site`: [`Site`], where an environment's services live: a state folder
//!   here, or on an SSH host ([`SshSettings`] to log in).
//! - `apply`: an environment's deploy run (removals first), and `status` /
//!   `history`, at a [`Site`].
//! - `scaffold`: what `init` writes.

mod apply;
mod check;
mod model;
mod plan;
mod remote;
mod repo;
mod scaffold;
mod secrets;
mod service_host;
mod site;

pub use apply::{ApplyOptions, Selection, ServiceState, apply, history, status};
pub use check::{Finding, check, findings_json, github_annotation};
pub use model::{
    DEFAULT_STATE_DIR, Environment, HealthSpec, INFRA_FILE, Infra, Kind, Service, Target,
    parse_duration,
};
pub use plan::{EnvPlan, Plan, PlannedService, plan};
pub use repo::{Repo, git_head};
pub use scaffold::{ScaffoldFile, init, scaffold_files};
pub use secrets::Masker;
pub use site::{Site, SshSettings, default_state_dir};

/// What can go wrong outside the findings of `check`. Each message says what to
/// do, because the CLI prints it as is.
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error(
        "no {file} in {dir} or any folder above it: run `hearth deploy init` to create a GitOps repository, or give --repo"
    )]
    NotARepo { dir: String, file: &'static str },

    /// A file that does not parse or says something impossible, with its line.
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },

    #[error("git {args} in {dir} failed: {detail}")]
    Git {
        args: String,
        dir: String,
        detail: String,
    },

    #[error("environment {name:?} is not in {file}; it has: {known}")]
    UnknownEnvironment {
        name: String,
        file: &'static str,
        known: String,
    },

    #[error("{0}")]
    Refused(String),

    /// The release core failed for one service.
    #[error("{service}: {source}")]
    Deploy {
        service: String,
        #[source]
        source: Box<crate::release::DeployError>,
    },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl GitopsError {
    pub(crate) fn io(
        action: &'static str,
        path: impl AsRef<std::path::Path>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        move |source| GitopsError::Io {
            action,
            path,
            source,
        }
    }
}
