//! Deploys: putting Hearth on a host and keeping it there.
//!
//! One core and several front ends (see `../shared/DESIGN.md`, "Deploy"). The
//! core: a release folder per version under the install root, a `current` link,
//! a lock per host, a health wait, rollback to the previous release, and an
//! append-only history. The front ends: renderers (pure functions from a
//! [`manifest`] to text: cloud-init, StackScript, the POSIX installer, the systemd
//! unit, compose), the one-host apply (local, or over SSH), and the GitOps
//! commands for a repository of services ([`gitops`]). It knows nothing of
//! HTTP serving or the router.
//!
//! # Layout
//! - [`manifest`]: `deploy.toml`, parsed and validated.
//! - [`render`]: the manifest to each artifact.
//! - [`release`]: the core: layout, lock, history, switch, health wait, rollback.
//! - [`gitops`]: `init`, `check`, `plan`, `apply --env`, `status`, `history` for a
//!   repository of services, each service's releases kept by the core.

pub mod gitops;
pub mod manifest;
pub mod release;
pub mod render;
