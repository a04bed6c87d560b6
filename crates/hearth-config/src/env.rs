//! Where environment variables come from, and the names Hearth reads.
//!
//! Loading takes an [`Env`] so tests pass a [`MapEnv`] instead of mutating the
//! process environment.

use std::collections::BTreeMap;

/// Prefix of every override: `HEARTH_<SECTION>_<KEY>`.
pub const PREFIX: &str = "HEARTH_";
/// Comma-separated client API keys.
pub const API_KEYS: &str = "HEARTH_API_KEYS";
/// Log level filter; wins over `log.level`.
pub const LOG: &str = "HEARTH_LOG";
/// `log.format` (`auto`, `text`, `json`); the generic `HEARTH_<SECTION>_<KEY>`
/// mapping sets it, named here so the CLI and tests share the spelling.
pub const LOG_FORMAT: &str = "HEARTH_LOG_FORMAT";
/// Path of the config file; `--config` wins over it.
pub const CONFIG: &str = "HEARTH_CONFIG";
/// Where `hearth doctor` looks for NVIDIA device nodes (default `/dev`; tests point it
/// at a folder of their own).
pub const DOCTOR_DEV: &str = "HEARTH_DOCTOR_DEV";
/// Where `hearth doctor --kube` in a pod reads its service account's token and CA
/// (default `/var/run/secrets/kubernetes.io/serviceaccount`; tests point it at a
/// folder of their own).
pub const DOCTOR_SERVICE_ACCOUNT: &str = "HEARTH_DOCTOR_SERVICE_ACCOUNT";
/// Top-level `default_model`.
pub const DEFAULT_MODEL: &str = "HEARTH_DEFAULT_MODEL";
/// `limits.redis_url` (the generic `HEARTH_LIMITS_REDIS_URL` works too).
pub const REDIS_URL: &str = "HEARTH_REDIS_URL";
/// `storage.database_url` (the generic `HEARTH_STORAGE_DATABASE_URL` works too).
pub const DATABASE_URL: &str = "HEARTH_DATABASE_URL";

/// Short names for the keys that hold a server's URL, the names such settings go
/// by elsewhere: (variable, section, key). Where both a short and the generic
/// name are set, the short one wins.
const ALIASES: &[(&str, &str, &str)] = &[
    (REDIS_URL, "limits", "redis_url"),
    (DATABASE_URL, "storage", "database_url"),
];

/// The `(section, key)` a short variable name sets.
pub fn alias(name: &str) -> Option<(&'static str, &'static str)> {
    ALIASES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, s, k)| (*s, *k))
}

/// The short variable name of `section.key`, if it has one.
pub fn alias_of(section: &str, key: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(_, s, k)| *s == section && *k == key)
        .map(|(n, _, _)| *n)
}
/// `1` in a process started to take over a running Hearth's socket (an upgrade).
pub const HANDOVER: &str = "HEARTH_HANDOVER";
/// The key the CLI's client commands (`hearth jobs submit`) send to a server.
pub const API_KEY: &str = "HEARTH_API_KEY";
/// The server the CLI's client commands talk to (default `http://127.0.0.1:8080`).
pub const SERVER_URL: &str = "HEARTH_URL";
/// `HEARTH_*` names that Hearth's own build and test tooling reads, not the
/// server: they are not overrides, and not typos to warn about.
pub const READ_ELSEWHERE: &[&str] = &[
    API_KEYS,
    API_KEY,
    SERVER_URL,
    HANDOVER,
    LOG,
    CONFIG,
    DOCTOR_DEV,
    DOCTOR_SERVICE_ACCOUNT,
    "HEARTH_BIN",
    "HEARTH_UI_DIST",
    "HEARTH_TEST_MODEL",
    "HEARTH_E2E_MODEL",
    "HEARTH_E2E_ARTIFACTS",
    "HEARTH_TEST_UI_BUILT",
    "HEARTH_TEST_LLAMA_SERVER",
    "HEARTH_TEST_LLAMA_SERVER_REQUIRED",
    "HEARTH_TEST_VALIDATORS_REQUIRED",
    "HEARTH_TEST_PEBBLE_REQUIRED",
    "HEARTH_TEST_SSHD_REQUIRED",
    "HEARTH_TEST_POSTGRES_REQUIRED",
    "HEARTH_TEST_REDIS_REQUIRED",
    "HEARTH_TEST_NGINX_REQUIRED",
    "HEARTH_TEST_S3_REQUIRED",
    "HEARTH_MOTO_SERVER",
    "HEARTH_VM_ACCEL",
    "HEARTH_VM_CACHE",
    "HEARTH_VM_MODEL",
    "HEARTH_COMPOSE_BIN",
    "HEARTH_STATUS_FILE",
];
/// Sections whose keys may be overridden as `HEARTH_<SECTION>_<KEY>`.
pub const SECTIONS: &[&str] = &[
    "server", "storage", "limits", "log", "health", "sandbox", "jobs",
];

/// A source of environment variables.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
    /// Every variable whose name starts with `HEARTH_`.
    fn hearth_vars(&self) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn hearth_vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::env::vars()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        v.sort();
        v
    }
}

/// A fixed set of variables, for tests and embedders.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub BTreeMap<String, String>);

impl MapEnv {
    pub fn new<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        MapEnv(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn hearth_vars(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The env-name form of a model name: upper case, other characters as `_`.
pub fn model_env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
