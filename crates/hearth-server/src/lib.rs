//! The server assembly: one [`Server::build`] from a config to a running Hearth, and
//! one [`Server::run`] on a bound listener, used by `hearth serve`, by embedders and
//! by every test that needs a real server.
//!
//! It owns the wiring and nothing else: each configured model's backend (the
//! embedded engine, an upstream, or a double a test puts in its place), the router
//! over them (with the model servers Hearth runs itself, `hearth-launch`), the gateway with its keys and limiter, the store (conversations and jobs),
//! the agent jobs' service and workers (`hearth-jobs`, on the sandbox), and the
//! HTTP app made of the front ends (`/v1` from `hearth-openai`, the chat UI's and
//! the jobs' APIs from `hearth-webui`); then the event loops (one per core, each
//! accepting from the same socket and keeping its own upstream connections), the
//! health probes, and the drain at shutdown. The parts know nothing of each other
//! beyond their traits.
//!
//! # Layout
//! - [`Server`], [`Builder`]: build and accessors.
//! - `backends`: a model's config to its backend.
//! - `sandbox`: `[sandbox]` to the sandbox's options ([`sandbox_options`]).
//! - `run`: the event loops, probes and drain.
//! - [`status`]: the status file a login banner shows (`server.status_file`).
//! - [`handover`]: zero-downtime upgrades (the listening socket handed to a new
//!   process, which takes over once ready).
//! - `worker`: [`Worker`], the jobs without the HTTP API (`hearth worker`).

mod backends;
pub mod handover;
mod run;
mod sandbox;
pub mod status;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hearth_config::{Config, Env, LimitsBackend, ProcessEnv};
use hearth_gateway::{Gateway, KeyRing, Limiter, LocalLimiter, RedisLimiter, RedisLimiterOptions};
use hearth_http::{App, HttpState};
use hearth_jobs::Jobs;
use hearth_launch::Engines;
use hearth_router::{Backend, Router};
use hearth_store::{
    ConversationStore, JobStore, PgChannel, PgOptions, PgStore, SqliteStore, UsageStore,
};
use tokio_util::sync::CancellationToken;

pub use backends::backend;
pub use run::{RunError, base_url, event_loop};
pub use sandbox::sandbox_options;
pub use worker::Worker;

/// Why a server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A model's backend could not start (a missing GGUF file, a bad upstream URL).
    #[error("model `{model}`: {source:#}")]
    Backend {
        model: String,
        source: anyhow::Error,
    },
    #[error(transparent)]
    Tls(#[from] hearth_http::TlsError),
    // Without `{source}`: callers print the chain (`{e:#}`), which names it once.
    #[error("cannot open the conversation store in {dir} (storage.data_dir)")]
    Store {
        dir: String,
        source: hearth_store::StoreError,
    },
    /// `storage.database_url` is set and Postgres could not be used (the error
    /// names the server, without its password).
    #[error("cannot open the conversation store in Postgres (storage.database_url)")]
    Database { source: hearth_store::StoreError },
    /// `[sandbox]` names a feature or an isolation the sandbox does not know.
    #[error("{0}")]
    Sandbox(String),
    /// The job workers could not start (the store failed as they resumed the jobs
    /// a stopped server left running).
    #[error("cannot start the job workers: {0}")]
    Jobs(#[from] hearth_jobs::JobsError),
    /// `hearth worker` cannot run with this config.
    #[error("{0}")]
    Worker(String),
    /// The shared database's notifications (jobs' live events between replicas)
    /// could not be listened to.
    #[error("cannot relay job events through the database: {0}")]
    Relay(String),
    /// `[limits] backend = "redis"` with a URL the Redis client refuses.
    #[error("limits.redis_url: {0}")]
    Limits(String),
}

/// Where the per-key limits are counted: in this process, or in Redis for every
/// replica (connected on first use, so a Redis that is down at start follows
/// `on_redis_error` instead of stopping the start).
fn limiter(l: &hearth_config::LimitsConfig) -> Result<Arc<dyn Limiter>, BuildError> {
    match (l.backend, &l.redis_url) {
        (LimitsBackend::Redis, Some(url)) => {
            let r = RedisLimiter::new(RedisLimiterOptions {
                url: url.clone(),
                prefix: l.redis_prefix.clone(),
                timeout: std::time::Duration::from_millis(l.redis_timeout_ms),
                policy: l.on_redis_error,
            })
            .map_err(BuildError::Limits)?;
            tracing::info!(redis = %hearth_config::redact_url(url), "rate limits are counted in Redis");
            Ok(Arc::new(r))
        }
        _ => Ok(Arc::new(LocalLimiter::new())),
    }
}

/// The store of conversations and jobs: Postgres when `database_url` is set (shared
/// by replicas), else SQLite in `data_dir`.
async fn open_store(s: &hearth_config::StorageConfig) -> Result<Stores, BuildError> {
    if let Some(url) = &s.database_url {
        let options = PgOptions {
            max_connections: s.database_pool_size,
            statement_timeout: std::time::Duration::from_secs(s.database_statement_timeout_secs),
            ..PgOptions::default()
        };
        let store = Arc::new(
            PgStore::connect(url, options)
                .await
                .map_err(|source| BuildError::Database { source })?,
        );
        tracing::info!(
            database = %store.server(),
            pool = s.database_pool_size,
            "conversations and jobs are stored in Postgres"
        );
        return Ok(Stores {
            conversations: store.clone(),
            relay: Some(Arc::new(PgChannel::new(&store, JOB_EVENTS_CHANNEL))),
            usage: store.clone(),
            jobs: store,
        });
    }
    let store = SqliteStore::open(&s.data_dir)
        .await
        .map_err(|source| BuildError::Store {
            dir: s.data_dir.display().to_string(),
            source,
        })?;
    let store = Arc::new(store);
    Ok(Stores {
        conversations: store.clone(),
        usage: store.clone(),
        jobs: store,
        relay: None,
    })
}

/// The Postgres channel jobs' live events travel on between replicas.
const JOB_EVENTS_CHANNEL: &str = "hearth_job_events";

/// What [`open_store`] opened.
struct Stores {
    conversations: Arc<dyn ConversationStore>,
    jobs: Arc<dyn JobStore>,
    /// How jobs' events reach the other replicas (the shared database's
    /// notifications); none with SQLite (one machine).
    relay: Option<Arc<dyn hearth_jobs::EventRelay>>,
    /// The keys' token counts per budget period.
    usage: Arc<dyn UsageStore>,
}

/// The gateway's [`hearth_gateway::UsageLedger`]: the keys' token counts in the
/// store (so a budget holds across restarts, and replicas share one count).
struct StoreLedger(Arc<dyn UsageStore>);

#[async_trait::async_trait]
impl hearth_gateway::UsageLedger for StoreLedger {
    async fn used(&self, key: &str, period_start: i64) -> Result<u64, String> {
        self.0
            .key_usage(key, period_start)
            .await
            .map_err(|e| e.to_string())
    }

    async fn add(&self, key: &str, period_start: i64, tokens: u64) -> Result<u64, String> {
        self.0
            .add_key_usage(key, period_start, tokens)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What a server and a worker both run: the models (behind the gateway), the
/// store, and the jobs service with its workers started.
struct Parts {
    gateway: Arc<Gateway>,
    store: Arc<dyn ConversationStore>,
    jobs: Jobs,
    engines: Engines,
}

/// The store of job files: `data_dir/files`, or the `[storage.s3]` bucket.
fn objects(s: &hearth_config::StorageConfig) -> Result<hearth_jobs::Blobs, BuildError> {
    let blobs = hearth_jobs::Blobs::from_config(s)
        .map_err(|e| BuildError::Jobs(hearth_jobs::JobsError::Objects(e)))?;
    tracing::info!(
        objects = %blobs.describe(),
        "job files are kept in {}",
        blobs.backend().as_str()
    );
    Ok(blobs)
}

/// A Hearth built from its config, ready to [`run`](Server::run).
pub struct Server {
    config: Arc<Config>,
    gateway: Arc<Gateway>,
    store: Arc<dyn ConversationStore>,
    /// Agent jobs: their API's service and their workers (started by the build,
    /// stopped after the drain).
    jobs: Jobs,
    /// Cancelled when the shutdown begins: the jobs' event streams end then, rather
    /// than hold the drain for its whole grace period.
    closing: CancellationToken,
    app: App<hearth_openai::Fast>,
    /// The model servers Hearth runs; stopped after the drain.
    engines: Engines,
    /// HTTPS (`[server.tls]`), or plain HTTP.
    tls: Option<Arc<hearth_http::Tls>>,
    /// Set when this process stops because a new one took over its socket: the
    /// status file is then the new one's to write.
    handed_over: Arc<AtomicBool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Server`], with parts replaced where a test or an embedder needs it.
pub struct Builder {
    config: Config,
    backends: HashMap<String, Arc<dyn Backend>>,
    env: Box<dyn Env + Send + Sync>,
    hold_engines: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Server {
    /// Builds everything `config` asks for: each model's backend (an embedded model
    /// starts loading; it serves once loaded), the router, the gateway, the store
    /// (opened and migrated), the jobs service, whose workers start here (resuming
    /// the jobs a stopped server left running), and the HTTP app.
    pub async fn build(config: Config) -> Result<Server, BuildError> {
        Server::builder(config).build().await
    }

    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            backends: HashMap::new(),
            env: Box::new(ProcessEnv),
            hold_engines: None,
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The gateway: how any in-process caller (a job worker, a test) reaches the
    /// models, with the same admission and accounting as the HTTP front ends.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// HTTPS, when `[server.tls]` asks for it: its certificate, and a reload.
    pub fn tls(&self) -> Option<&Arc<hearth_http::Tls>> {
        self.tls.as_ref()
    }

    pub fn router(&self) -> &Arc<Router> {
        self.gateway.router()
    }

    /// The conversation store (SQLite in `storage.data_dir`).
    pub fn store(&self) -> &Arc<dyn ConversationStore> {
        &self.store
    }

    /// Agent jobs: submit, read, cancel... as `/api/jobs` does, and their events.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Set it before the shutdown future resolves when a new process has taken
    /// over the listening socket ([`handover`]): the stop is then not reported
    /// as one in the status file.
    pub fn handed_over(&self) -> &Arc<AtomicBool> {
        &self.handed_over
    }
}

impl Builder {
    /// Serves model `name` with `backend` instead of the one its config describes
    /// (a test double, or an embedder's own backend).
    pub fn backend(mut self, name: &str, backend: Arc<dyn Backend>) -> Self {
        self.backends.insert(name.to_owned(), backend);
        self
    }

    /// Where upstream keys (`api_key_env`) are read; the process environment by
    /// default (tests pass their own rather than change the process's).
    pub fn env(mut self, env: impl Env + Send + Sync + 'static) -> Self {
        self.env = Box::new(env);
        self
    }

    /// Starts no managed model server until `until` resolves (a process taking
    /// over from a running Hearth waits for it to stop its own).
    pub fn hold_engines(
        mut self,
        until: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.hold_engines = Some(Box::pin(until));
        self
    }

    /// The models, the gateway, the store and the jobs service (its events relayed
    /// between replicas when the store is shared, its workers started).
    async fn parts(&mut self, config: &Arc<Config>) -> Result<Parts, BuildError> {
        // The store first, before any model downloads or loads: in the emulated
        // first-boot VM of `make test-vm`, a store opened beside the model's download
        // was ready only once the download ended, past systemd's start timeout.
        let stores = open_store(&config.storage).await?;
        let mut models = Vec::with_capacity(config.models.len());
        let mut engines = Engines::new(&config.log_dir().join("engines"));
        if let Some(until) = self.hold_engines.take() {
            engines.hold(until);
        }
        for m in &config.models {
            let b = match self.backends.remove(&m.name) {
                Some(b) => b,
                None => {
                    backends::backend(m, self.env.as_ref(), &mut engines).map_err(|source| {
                        BuildError::Backend {
                            model: m.name.clone(),
                            source,
                        }
                    })?
                }
            };
            models.push((m.clone(), b));
        }
        let router = Arc::new(Router::new(
            models,
            config.default_model.as_deref(),
            config.health.clone(),
        ));
        let keys = KeyRing::new(
            &config.resolved_keys,
            config.limits.default_rpm,
            config.limits.default_tpm,
        );
        let mut gateway = Gateway::new(router, limiter(&config.limits)?, keys);
        if config.resolved_keys.iter().any(|k| k.budget.is_some()) {
            gateway = gateway.with_budgets(hearth_gateway::Budgets::new(Arc::new(StoreLedger(
                stores.usage.clone(),
            ))));
        }
        let gateway = Arc::new(gateway);
        let sandbox = sandbox::sandbox_options(&config.sandbox, self.env.as_ref())
            .map_err(BuildError::Sandbox)?;
        let jobs = Jobs::new(
            gateway.clone(),
            stores.jobs,
            Arc::new(hearth_sandbox::Sandbox::new(sandbox)),
            objects(&config.storage)?,
            hearth_jobs::Settings::from_config(config),
        );
        if let Some(relay) = stores.relay {
            jobs.relay(relay).await.map_err(BuildError::Relay)?;
        }
        jobs.start().await?;
        Ok(Parts {
            gateway,
            store: stores.conversations,
            jobs,
            engines,
        })
    }

    pub async fn build(mut self) -> Result<Server, BuildError> {
        // The metrics recorder first: handles registered before it exists (each
        // model's, each key's) would count into nothing.
        let _ = hearth_http::metrics::handle();
        let config = Arc::new(self.config.clone());
        let tls = hearth_http::Tls::from_config(
            &config.server.tls,
            &config.storage.data_dir,
            &config.server.listen,
        )?;
        let Parts {
            gateway,
            store,
            jobs,
            engines,
        } = self.parts(&config).await?;
        let closing = CancellationToken::new();
        let state = HttpState::new(config.clone(), gateway.clone());
        let app = App::builder(state.clone())
            .protected(hearth_openai::routes(&state))
            .protected(hearth_ollama::routes(&state))
            .protected(hearth_webui::routes(
                gateway.clone(),
                store.clone(),
                hearth_webui::ApiLimits::from(&config.limits),
            ))
            .protected(hearth_webui::jobs::routes(
                jobs.clone(),
                hearth_webui::jobs::JobsApiLimits::from(&*config),
                closing.clone(),
            ))
            .public(hearth_openai::public_routes())
            .public(hearth_webui::assets::routes())
            .fast(hearth_openai::Fast)
            .build();
        Ok(Server {
            config,
            gateway,
            store,
            jobs,
            closing,
            app,
            engines,
            tls,
            handed_over: Arc::default(),
        })
    }
}
