//! `hearth doctor`: the checks a user runs before and after installing, and the deploy
//! scripts run, each ending ok, warn or fail with a one-line reason and a remedy.
//!
//! # Layout
//! - [`report`]: a check, the report, its human and JSON forms.
//! - `gpu`: the NVIDIA driver and GPUs, through `nvidia-smi`; whether this build
//!   (CPU, or CUDA for which architectures) can use them.
//! - `models`: managed models: launcher installed, memory estimate, download disk.
//! - `host`: config, bind and keys, ports, an ACME domain's DNS, data_dir, the sandbox.
//! - `probe`: running host tools with a deadline, `PATH` lookup, free disk.
//! - `database`: the Postgres of `storage.database_url`: reachable, logged in,
//!   version, migrations applied or pending.
//! - `redis`: the Redis that shared rate limits are counted in.
//! - `objects`: where job files go (`data_dir/files`, or the S3 bucket) can take them.
//! - [`kube`]: `--kube`, the cluster the Helm chart installs into (API server, GPU
//!   nodes, storage, ingress, cert-manager, room for a values file's models).

mod database;
mod gpu;
mod host;
pub mod kube;
mod models;
mod objects;
mod probe;
mod redis;
pub mod report;

use std::path::{Path, PathBuf};

use hearth_config::{Config, ConfigError, SandboxConfig};

use report::{Check, Report};

/// What loading the config gave.
#[derive(Debug)]
pub enum Loaded {
    /// The config, and where it came from (a file, or `defaults`).
    Valid(Box<Config>, String),
    Invalid(ConfigError),
    Unreadable(PathBuf, std::io::Error),
}

/// Runs every check. `dev` is where device nodes live (`/dev` but in tests).
/// A config that does not load still gets the checks that need none of it.
pub fn run(loaded: &Loaded, dev: &Path) -> Report {
    let mut checks = Vec::new();
    match loaded {
        Loaded::Valid(config, source) => {
            host::config_ok(config, source, &mut checks);
            let gpus = gpu::check(dev, models::needs_gpu(config).as_deref(), &mut checks);
            gpu::build(&gpus, &mut checks);
            models::check(config, &gpus, &mut checks);
            host::bind(config, &mut checks);
            host::ports(config, &mut checks);
            host::acme_dns(config, &mut checks);
            host::data_dir(&config.storage.data_dir, &mut checks);
            host::sandbox(&config.sandbox, &mut checks);
            database::check(&config.storage, &mut checks);
            redis::check(&config.limits, &mut checks);
            objects::check(&config.storage, &mut checks);
        }
        Loaded::Invalid(error) => {
            host::config_invalid(error, &mut checks);
            let gpus = gpu::check(dev, None, &mut checks);
            gpu::build(&gpus, &mut checks);
            host::sandbox(&SandboxConfig::default(), &mut checks);
        }
        Loaded::Unreadable(path, e) => {
            checks.push(Check::fail(
                "config",
                "config",
                format!("cannot read {}: {e}", path.display()),
                "check the path given by --config or HEARTH_CONFIG, and that this user may read it",
            ));
            let gpus = gpu::check(dev, None, &mut checks);
            gpu::build(&gpus, &mut checks);
            host::sandbox(&SandboxConfig::default(), &mut checks);
        }
    }
    Report::new(checks)
}
