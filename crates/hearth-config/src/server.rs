//! The non-model sections: `[server]`, `[storage]`, `[limits]`, `[log]`, `[health]`,
//! `[sandbox]`, and `[[keys]]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::objects::{ObjectsBackend, S3Config};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Any non-loopback address requires at least one API key.
    pub listen: String,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Origins allowed by CORS. Empty: any `http://localhost`, `127.0.0.1` or `[::1]` origin.
    /// `["*"]` allows every origin.
    pub cors_origins: Vec<String>,
    /// Without API keys, the host names (beside loopback ones and the TLS names)
    /// requests may name in `Host`, e.g. a name for this machine in `/etc/hosts`:
    /// others get 403, so no web page can reach a keyless Hearth by DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Seconds a client has to send a request's head (line and headers), counted
    /// from the connection's start or from the end of the previous answer: a
    /// client sending a header byte now and then (slow-loris) or an idle
    /// keep-alive connection is closed past it. HTTP/1.
    pub header_timeout_secs: u64,
    /// Seconds a request's body has to arrive once the handler starts waiting for
    /// it: a client trickling a body is answered 408 and its connection closed.
    pub body_timeout_secs: u64,
    /// Most client connections open at once (all event loops together); past it a
    /// new connection is answered 503 with `Retry-After` and closed. 0: no cap.
    pub max_connections: usize,
    /// Most connections open at once from one client address, as `max_connections`.
    /// Loopback peers are not counted (local tools, or a reverse proxy on this host
    /// through which every client would share one address). 0: no cap.
    pub max_connections_per_address: usize,
    /// Threads serving HTTP, each an event loop of its own that accepts from the same
    /// socket and keeps its own upstream connections. 0: one per CPU core.
    pub workers: usize,
    /// HTTPS served by Hearth itself.
    pub tls: TlsConfig,
    /// Serve plain HTTP on a non-loopback address (behind a TLS proxy or ingress
    /// that terminates HTTPS). Off: such a bind needs `[server.tls]`.
    pub allow_plain_http: bool,
    /// A file kept current with what a person logging in should see (URLs, where
    /// the key is, each model's state, and what to do when one failed): the login
    /// banner shows it, `hearth status` prints it. `/run/hearth/status` on a
    /// deployed host; none by default.
    pub status_file: Option<PathBuf>,
    /// Seconds a new Hearth started by an upgrade (SIGUSR2, `systemctl reload
    /// hearth`) has to load its models and take over the listening socket; past
    /// them it is stopped and this one goes on serving.
    pub upgrade_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            shutdown_grace_secs: 30,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            header_timeout_secs: 30,
            body_timeout_secs: 60,
            max_connections: 4096,
            max_connections_per_address: 256,
            workers: 0,
            tls: TlsConfig::default(),
            allow_plain_http: false,
            status_file: None,
            upgrade_timeout_secs: 300,
        }
    }
}

/// `[server.tls]`: HTTPS with rustls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// `files`: the certificate chain (PEM), read again on SIGHUP.
    pub cert: Option<PathBuf>,
    /// `files`: the private key (PEM), read again on SIGHUP.
    pub key: Option<PathBuf>,
    /// `self-signed`: more names (DNS names or IP addresses) for the certificate,
    /// beside `localhost`, the host's name, loopback and the listen address.
    pub names: Vec<String>,
    /// `acme`: the DNS names the certificate is for (the first is its subject).
    /// Each must resolve to this machine, and port 443 must reach Hearth: the CA
    /// checks with TLS-ALPN-01 on Hearth's own listener.
    pub domains: Vec<String>,
    /// `acme`: the contact address given to the CA (optional for Let's Encrypt).
    pub email: Option<String>,
    /// `acme`: the CA's directory; Let's Encrypt production by default
    /// ([`LETS_ENCRYPT_STAGING`] to try a set-up without touching its rate limits).
    pub directory_url: Option<String>,
    /// `acme`: more CA certificates (PEM) to trust for the directory's own HTTPS,
    /// for a private or test CA; the public roots are trusted anyway.
    pub directory_ca: Option<PathBuf>,
}

/// Let's Encrypt's production directory: `[server.tls] mode = "acme"` by default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: certificates no browser trusts, far higher
/// rate limits; for trying a set-up.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

impl TlsConfig {
    /// The ACME directory in use: `directory_url`, or Let's Encrypt production.
    pub fn directory_url(&self) -> &str {
        self.directory_url.as_deref().unwrap_or(LETS_ENCRYPT)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain HTTP.
    #[default]
    Off,
    /// A certificate Hearth makes at its first start (kept in `data_dir/tls`) for
    /// the host's names and addresses: clients pin it, or accept it once.
    SelfSigned,
    /// A certificate and key from files (e.g. certbot's), reloaded on SIGHUP.
    Files,
    /// A certificate from an ACME CA (Let's Encrypt by default) for `domains`,
    /// kept in `data_dir/tls/acme` and renewed before it expires.
    Acme,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// SQLite file (without `database_url`), job files, downloaded models, logs.
    pub data_dir: PathBuf,
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`: conversations and jobs in
    /// Postgres, shared by replicas, instead of SQLite in `data_dir`;
    /// `HEARTH_DATABASE_URL` sets it from the environment. Never logged with its
    /// password.
    pub database_url: Option<String>,
    /// The most connections one Hearth opens to `database_url`.
    pub database_pool_size: u32,
    /// How long one statement may run on `database_url` before Postgres cancels
    /// it (`statement_timeout`), in seconds; 0: no limit.
    pub database_statement_timeout_secs: u64,
    /// Where job files (uploads, artifacts) are kept: `local` (`data_dir/files`)
    /// or `s3` (the bucket in `[storage.s3]`, shared by replicas).
    pub objects: ObjectsBackend,
    /// The bucket for `objects = "s3"`.
    pub s3: S3Config,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::redact_url),
            )
            .field("database_pool_size", &self.database_pool_size)
            .field(
                "database_statement_timeout_secs",
                &self.database_statement_timeout_secs,
            )
            .field("objects", &self.objects)
            .field("s3", &self.s3)
            .finish()
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_pool_size: 10,
            database_statement_timeout_secs: 30,
            objects: ObjectsBackend::Local,
            s3: S3Config::default(),
        }
    }
}

/// Bounds on what one request may ask for (each answered with a 4xx naming it),
/// and the per-key rate limits' defaults and where they are counted.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body in bytes (413 past it).
    pub max_body_bytes: usize,
    /// Most messages in one chat request.
    pub max_messages: usize,
    /// Largest single message content in bytes.
    pub max_message_bytes: usize,
    /// Largest `max_tokens` / `max_completion_tokens` a request may ask for.
    pub max_tokens: u32,
    /// Requests per minute per key when the key sets none (0 = unlimited).
    pub default_rpm: u32,
    /// Tokens per minute per key when the key sets none (0 = unlimited).
    pub default_tpm: u64,
    /// Where the per-key counts live: `local` (this process) or `redis` (shared by
    /// every replica, so a limit means the same whatever the replica count).
    pub backend: LimitsBackend,
    /// `redis://[:password@]host:port[/db]` for `backend = "redis"`;
    /// `HEARTH_REDIS_URL` sets it from the environment. Never logged with its password.
    pub redis_url: Option<String>,
    /// How long one admission waits for Redis before the `on_redis_error` policy
    /// applies, in milliseconds.
    pub redis_timeout_ms: u64,
    /// What a request meets while Redis cannot be reached: `open` (admitted, with a
    /// logged warning and `hearth_ratelimit_redis_errors_total`) or `closed` (503).
    pub on_redis_error: RedisFailurePolicy,
    /// Prefix of Hearth's keys in Redis (deployments sharing one Redis set their own).
    pub redis_prefix: String,
}

impl std::fmt::Debug for LimitsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_messages", &self.max_messages)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_tokens", &self.max_tokens)
            .field("default_rpm", &self.default_rpm)
            .field("default_tpm", &self.default_tpm)
            .field("backend", &self.backend)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::redact_url),
            )
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("on_redis_error", &self.on_redis_error)
            .field("redis_prefix", &self.redis_prefix)
            .finish()
    }
}

/// Where rate-limit counts live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsBackend {
    #[default]
    Local,
    Redis,
}

/// What admission does while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisFailurePolicy {
    /// Admit (the limits are not enforced until Redis is back).
    #[default]
    Open,
    /// Refuse with 503 `rate_limit_unavailable`.
    Closed,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 16 * 1024 * 1024,
            max_messages: 2048,
            max_message_bytes: 4 * 1024 * 1024,
            max_tokens: 131_072,
            default_rpm: 0,
            default_tpm: 0,
            backend: LimitsBackend::Local,
            redis_url: None,
            redis_timeout_ms: 250,
            on_redis_error: RedisFailurePolicy::Open,
            redis_prefix: "hearth".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level filter (`info`, `debug`, `hearth=debug,info`...); `HEARTH_LOG` overrides it.
    pub level: String,
    /// Directory for the rotated JSON logs; default `data_dir/logs`.
    pub dir: Option<PathBuf>,
    /// Also write the log lines to stdout.
    pub stdout: bool,
    /// How stdout's lines look: `auto` (text on a terminal, JSON otherwise), `text`
    /// or `json`. The log file is JSON whatever this says.
    pub format: LogFormat,
    /// Days of logs to keep.
    pub retention_days: u64,
    /// Total bytes of logs to keep; the oldest files go first.
    pub max_total_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            dir: None,
            stdout: true,
            format: LogFormat::Auto,
            retention_days: 7,
            max_total_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

/// `log.format`: how the lines written to stdout look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text when stdout is a terminal (a person is reading), JSON otherwise (a
    /// collector is).
    #[default]
    Auto,
    /// One readable line per event: `HH:MM:SS LEVEL message key=value`.
    Text,
    /// One JSON object per line, the shape of the log file.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Seconds between background probes of each upstream.
    pub probe_interval_secs: u64,
    /// Seconds a probe may take.
    pub probe_timeout_secs: u64,
    /// Consecutive failures (probes or requests) that mark a backend unavailable.
    pub failure_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            probe_interval_secs: 10,
            probe_timeout_secs: 3,
            failure_threshold: 3,
        }
    }
}

/// `[sandbox]`: isolation for agent jobs (owned by `hearth-sandbox`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Isolation features that must be enforced, else the sandbox refuses to run
    /// (`network`, `filesystem`, `user`, `pid`, `ipc`, `uts`, `seccomp`, `memory`, `cpu`,
    /// `pids`, `output_size`, ...; `hearth sandbox check` lists them). Others that
    /// cannot be enforced run with a warning.
    pub require: Vec<String>,
    /// `auto` (namespaces, else the Landlock fallback), `namespaces`, or `landlock`.
    pub isolation: String,
    /// Python venv shown to programs at `/opt/venv`; default `$HEARTH_SANDBOX_VENV`,
    /// else `./.venv-sandbox` when it exists.
    pub venv: Option<PathBuf>,
    /// Host uid and gid programs run as when Hearth runs as root.
    pub uid: u32,
    pub gid: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            require: vec!["network".to_owned(), "filesystem".to_owned()],
            isolation: "auto".to_owned(),
            venv: None,
            uid: 65534,
            gid: 65534,
        }
    }
}

/// `[[keys]]`: a client API key. The secret comes from exactly one of `key_env`,
/// `key_file` or `key` (a literal, for tests; prefer the other two).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    /// Name logged instead of the key.
    pub name: String,
    pub key: Option<String>,
    pub key_env: Option<String>,
    pub key_file: Option<PathBuf>,
    /// Requests per minute (default `limits.default_rpm`; 0 = unlimited).
    pub rpm: Option<u32>,
    /// Tokens per minute (default `limits.default_tpm`; 0 = unlimited).
    pub tpm: Option<u64>,
    /// An admin key sees and manages every owner's conversations (and, later, jobs);
    /// other keys only their own.
    pub admin: bool,
    /// Tokens (prompt and completion) the key may use per `budget_period`; unset or
    /// 0 = no budget. Counted in the store, so it holds across restarts and replicas.
    pub budget_tokens: Option<u64>,
    /// The calendar period a budget is for, in UTC (default `month`).
    pub budget_period: Option<BudgetPeriod>,
}

/// The calendar period of a key's token budget, in UTC: a day from midnight, a
/// week from Monday's midnight, a month from its first day's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Week,
    #[default]
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
        }
    }
}

/// A key's token budget: `tokens` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub tokens: u64,
    pub period: BudgetPeriod,
}

/// A key ready for comparison. `Debug` hides the secret.
#[derive(Clone, PartialEq)]
pub struct ResolvedKey {
    pub id: String,
    pub secret: String,
    pub rpm: u32,
    pub tpm: u64,
    pub admin: bool,
    /// Its token budget, when it has one.
    pub budget: Option<Budget>,
}

impl std::fmt::Debug for ResolvedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("admin", &self.admin)
            .field("budget", &self.budget)
            .finish()
    }
}
