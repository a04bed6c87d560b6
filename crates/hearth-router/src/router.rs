//! The registry of models and [`Router::dispatch`]: resolve the name, queue, call,
//! retry, fall back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hearth_api::{ApiError, ErrorKind, ModelEntry, ModelStatus};
use hearth_config::{HealthConfig, ModelConfig};

use crate::backend::{Backend, BackendError, Request};
use crate::event::{Event, EventStream};
use crate::health::Health;
use crate::metrics::ModelMetrics;
use crate::queue::{Permit, Queue, QueueFull};
use crate::retry;

/// One configured model: its config, its backend, its queue and health.
pub struct Model {
    pub config: ModelConfig,
    pub backend: Arc<dyn Backend>,
    /// Its metric handles (requests, latency, tokens, queue).
    pub metrics: Arc<ModelMetrics>,
    queue: Queue,
    health: Health,
    created: u64,
}

impl Model {
    /// Ready, loading or unavailable: the backend's own state, then probe health.
    pub fn status(&self) -> ModelStatus {
        match self.backend.status() {
            ModelStatus::Ready if !self.health.is_available() => ModelStatus::Unavailable,
            s => s,
        }
    }

    pub fn entry(&self) -> ModelEntry {
        ModelEntry {
            id: self.config.name.clone(),
            object: "model".to_owned(),
            created: self.created,
            owned_by: "hearth".to_owned(),
            status: self.status(),
            tags: self.config.tags.clone(),
            context_length: self
                .backend
                .context_length()
                .or(self.config.reported_context_length()),
            backend: self.backend.kind().to_owned(),
            aliases: self.config.aliases.clone(),
            vision: self.config.vision,
            kind: (self.config.purpose == hearth_config::ModelKind::Embedding)
                .then(|| "embedding".to_owned()),
            engine: self.backend.engine(),
            placement: self.backend.placement(),
            tool_format: (self.config.tools_policy() == hearth_config::ToolsPolicy::Pass)
                .then(|| self.backend.tool_format())
                .flatten()
                .map(str::to_owned),
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.queue.waiting()
    }

    pub fn in_flight(&self) -> usize {
        self.queue.in_flight()
    }
}

/// A request that reached a backend.
pub struct Dispatched {
    /// The model that answered (a fallback when one was used): its name and metric
    /// handles.
    pub metrics: Arc<ModelMetrics>,
    pub backend: &'static str,
    /// Its events; the first has arrived.
    pub events: Answer,
    /// Attempts made, across retries and fallbacks (1 = first try worked).
    pub attempts: u32,
    /// What the client should be told about how its request was served (the
    /// answering model ignored its tools), for an `X-Hearth-Warning` header.
    pub warning: Option<String>,
    /// A [`Request::Responses`] was answered in that API by an upstream serving it
    /// (its events are the upstream's own); `false` when it was answered as its
    /// chat translation.
    pub native_api: bool,
}

impl std::fmt::Debug for Dispatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatched")
            .field("model", &self.metrics.model())
            .field("backend", &self.backend)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Dispatched {
    /// The name of the model that answered.
    pub fn model(&self) -> &str {
        self.metrics.model()
    }
}

pub struct Router {
    models: Vec<Model>,
    by_name: HashMap<String, usize>,
    default: Option<usize>,
    health: HealthConfig,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("models", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Router {
    /// Builds the registry. `default_model` must name one of `models` (config validation
    /// checks this); when `None`, the first model is the default.
    pub fn new(
        models: Vec<(ModelConfig, Arc<dyn Backend>)>,
        default_model: Option<&str>,
        health: HealthConfig,
    ) -> Self {
        let created = hearth_api::unix_now();
        let mut by_name = HashMap::new();
        let models: Vec<Model> = models
            .into_iter()
            .enumerate()
            .map(|(i, (config, backend))| {
                by_name.insert(config.name.clone(), i);
                for a in &config.aliases {
                    by_name.insert(a.clone(), i);
                }
                let metrics = Arc::new(ModelMetrics::new(&config.name, backend.kind()));
                Model {
                    queue: Queue::new(metrics.clone(), config.concurrency(), config.max_queue),
                    metrics,
                    health: Health::new(health.failure_threshold),
                    backend,
                    config,
                    created,
                }
            })
            .collect();
        let default = match default_model {
            Some(name) => by_name.get(name).copied(),
            None => (!models.is_empty()).then_some(0),
        };
        Router {
            models,
            by_name,
            default,
            health,
        }
    }

    pub fn models(&self) -> Vec<ModelEntry> {
        self.models.iter().map(Model::entry).collect()
    }

    pub fn model_entry(&self, name: &str) -> Option<ModelEntry> {
        self.by_name.get(name).map(|&i| self.models[i].entry())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Model> {
        self.models.iter()
    }

    /// The model a request names (or the default when it names none).
    pub fn resolve(&self, name: Option<&str>) -> Result<&Model, ApiError> {
        let idx = match name {
            Some(n) => self
                .by_name
                .get(n)
                .copied()
                .ok_or_else(|| ApiError::model_not_found(n))?,
            None => self.default.ok_or_else(|| {
                ApiError::invalid_param(
                    "model",
                    "`model` is required: no default model is configured",
                )
            })?,
        };
        Ok(&self.models[idx])
    }

    /// Serves `request`: the named model first (with retries), then its fallbacks in
    /// order. A stream is returned only once its first chunk arrived, so failures
    /// before any byte reached the client are still retried; never after.
    pub async fn dispatch(&self, mut request: Request) -> Result<Dispatched, ApiError> {
        let primary = self.resolve(request.model())?;
        let mut chain: Vec<&Model> = vec![primary];
        for f in &primary.config.fallbacks {
            if let Some(&i) = self.by_name.get(f) {
                chain.push(&self.models[i]);
            }
        }
        let mut attempts = 0u32;
        let mut last: Option<BackendError> = None;
        // The first model of the chain that could not serve because it was not up.
        let mut not_up: Option<NotUp> = None;
        for model in chain {
            // A permit taken to wait for a model on its way up; its first attempt uses it.
            let mut held: Option<Permit> = None;
            match model.status() {
                ModelStatus::Ready => {}
                // The backend's own verdict (an engine whose model did not load or
                // download): its reason tells the client more than "unavailable".
                ModelStatus::Unavailable
                    if not_up.is_none() && model.backend.status() == ModelStatus::Unavailable =>
                {
                    if let Err(BackendError::Unavailable(why)) = model.backend.wake().await {
                        not_up = Some(NotUp {
                            model: model.config.name.clone(),
                            status: ModelStatus::Unavailable,
                            why,
                        });
                    }
                    continue;
                }
                ModelStatus::Unavailable => continue,
                // A managed model server still starting (or stopped while idle, or
                // between restarts) is waited for in the model's queue, holding a
                // slot: requests past the queue's bound get 429 as usual, and the
                // backend bounds the wait. The embedded engine still loading says so
                // at once and the fallbacks are tried.
                status => {
                    let permit = acquire(model).await?;
                    if let Err(e) = model.backend.wake().await {
                        tracing::debug!(model = %model.config.name, error = %e, "backend not ready");
                        if not_up.is_none() {
                            not_up = Some(NotUp {
                                model: model.config.name.clone(),
                                status: match model.status() {
                                    ModelStatus::Ready => status,
                                    now => now,
                                },
                                why: match e {
                                    BackendError::Unavailable(why) => why,
                                    other => other.to_string(),
                                },
                            });
                        }
                        continue;
                    }
                    held = Some(permit);
                }
            }
            // A Responses request goes to a backend that does not serve that API as
            // its chat translation; one that cannot be translated (it asks for a
            // stored conversation) fails on the first model, and skips a fallback.
            let native_api =
                matches!(request, Request::Responses(_)) && model.backend.serves_responses();
            let mut translated = match &request {
                Request::Responses(r) if !native_api => match &r.chat {
                    Ok(chat) => Some(Request::Chat(chat.clone())),
                    Err(e) if attempts == 0 && not_up.is_none() => return Err(e.clone()),
                    Err(_) => continue,
                },
                _ => None,
            };
            let request = translated.as_mut().unwrap_or(&mut request);
            if request.model() != Some(model.config.name.as_str()) {
                request.set_model(&model.config.name);
            }
            // This model's defaults and tools policy, undone below for the next one.
            let applied = crate::defaults::apply(&model.config, request)?;
            for attempt in 0..=model.config.retries {
                if attempt > 0 {
                    let delay = retry::backoff(
                        attempt - 1,
                        last.as_ref().and_then(BackendError::retry_after),
                    );
                    model.metrics.retry();
                    tokio::time::sleep(delay).await;
                }
                let permit = match held.take() {
                    Some(p) => p,
                    None => acquire(model).await?,
                };
                attempts += 1;
                match call(model, request, permit).await {
                    Ok(events) => {
                        if model.health.record_success() {
                            tracing::info!(model = %model.config.name, "backend is available again");
                        }
                        return Ok(Dispatched {
                            metrics: model.metrics.clone(),
                            backend: model.backend.kind(),
                            events,
                            attempts,
                            warning: applied.warning,
                            native_api,
                        });
                    }
                    Err(e) => {
                        metrics::counter!(
                            "hearth_backend_errors_total",
                            "model" => model.config.name.clone(),
                            "kind" => error_kind(&e)
                        )
                        .increment(1);
                        if e.is_health_failure() && model.health.record_failure() {
                            tracing::warn!(model = %model.config.name, error = %e, "backend marked unavailable");
                        }
                        tracing::debug!(model = %model.config.name, attempt, error = %e, "backend call failed");
                        if !(e.is_retryable()
                            || (e.may_have_run() && model.config.retry_unanswered))
                        {
                            return Err(e.to_api_error());
                        }
                        let give_up = !model.health.is_available();
                        last = Some(e);
                        if give_up {
                            break;
                        }
                    }
                }
            }
            crate::defaults::undo(request, applied);
        }
        Err(match last {
            Some(e) => {
                // A timeout or the upstream's own 429 tells the client more than "all failed".
                let err = e.to_api_error();
                if matches!(err.kind, ErrorKind::Timeout | ErrorKind::RateLimited) {
                    err
                } else {
                    ApiError::new(
                        ErrorKind::Unavailable,
                        format!("all backends for `{}` failed; try again shortly", primary.config.name),
                    )
                    .with_code("backend_unavailable")
                    .with_retry_after(e.retry_after().map_or(self.retry_hint(), |d| d.as_secs().max(1)))
                }
            }
            None if let Some(n) = not_up => n.into_error(),
            None => ApiError::new(
                ErrorKind::Unavailable,
                format!(
                    "model `{}` is unavailable (its health checks fail) and no fallback could serve; try again shortly",
                    primary.config.name
                ),
            )
            .with_code("backend_unavailable")
            .with_retry_after(self.retry_hint()),
        })
    }

    fn retry_hint(&self) -> u64 {
        self.health.probe_interval_secs.max(1)
    }

    /// Probes every backend every `probe_interval_secs` until `shutdown` resolves.
    /// Each probe has its own timeout, so one dead server never delays the others.
    pub async fn run_health_probes(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let interval = Duration::from_secs(self.health.probe_interval_secs.max(1));
        let timeout = Duration::from_secs(self.health.probe_timeout_secs.max(1));
        let probes = async {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let checks = self.models.iter().map(|m| async move {
                    let result = match tokio::time::timeout(timeout, m.backend.probe()).await {
                        Ok(r) => r,
                        Err(_) => Err(BackendError::Timeout("health probe".into())),
                    };
                    match result {
                        Ok(()) => {
                            if m.health.record_success() {
                                tracing::info!(model = %m.config.name, "health probe succeeded; backend available again");
                            }
                        }
                        Err(e) => {
                            if m.health.record_failure() {
                                tracing::warn!(model = %m.config.name, error = %e, "health probes failing; backend marked unavailable");
                            }
                        }
                    }
                });
                futures::future::join_all(checks).await;
            }
        };
        tokio::select! {
            () = probes => {}
            () = shutdown => {}
        }
    }
}

/// Why a model of the chain could not serve: it was not up.
struct NotUp {
    model: String,
    status: ModelStatus,
    why: String,
}

impl NotUp {
    fn into_error(self) -> ApiError {
        if self.status == ModelStatus::Failed {
            // It will not come back by itself: no point in a short Retry-After.
            return ApiError::new(
                ErrorKind::Unavailable,
                format!(
                    "model `{}` failed: {}; its process log and `/v1/models` say more",
                    self.model, self.why
                ),
            )
            .with_code("model_failed")
            .with_retry_after(60);
        }
        if self.status == ModelStatus::Stopped {
            return ApiError::new(
                ErrorKind::Unavailable,
                format!(
                    "model `{}` could not be started ({}); try again shortly",
                    self.model, self.why
                ),
            )
            .with_code("backend_unavailable")
            .with_retry_after(5);
        }
        if self.status == ModelStatus::Unavailable {
            // The backend's own sentence, which names the model.
            return ApiError::new(ErrorKind::Unavailable, self.why)
                .with_code("backend_unavailable")
                .with_retry_after(30);
        }
        let status = self.status.as_str();
        let detail = if self.why == status {
            String::new()
        } else {
            format!(" ({})", self.why)
        };
        ApiError::new(
            ErrorKind::Unavailable,
            format!(
                "model `{}` is still {status}{detail}; try again shortly",
                self.model
            ),
        )
        .with_code("model_loading")
        .with_retry_after(2)
    }
}

/// A slot in `model`'s queue, or 429 when the queue is full.
async fn acquire(model: &Model) -> Result<Permit, ApiError> {
    model.queue.acquire().await.map_err(|QueueFull| {
        ApiError::new(
            ErrorKind::RateLimited,
            format!(
                "the queue of model `{}` is full ({} waiting); try again shortly",
                model.config.name, model.config.max_queue
            ),
        )
        .with_code("queue_full")
        .with_retry_after(1)
    })
}

fn error_kind(e: &BackendError) -> &'static str {
    match e {
        BackendError::Connect(_) => "connect",
        BackendError::Unanswered(_) => "unanswered",
        BackendError::Timeout(_) => "timeout",
        BackendError::Status { .. } => "status",
        BackendError::Protocol(_) => "protocol",
        BackendError::TooLarge(_) => "too_large",
        BackendError::Invalid(_) => "invalid",
        BackendError::Unavailable(_) => "unavailable",
        BackendError::Crashed(_) => "crashed",
    }
}

/// One attempt. Waits for the first event, so that a failure before anything
/// reached the client can still be retried, and keeps the queue permit for as long
/// as the events are read.
async fn call(model: &Model, request: &Request, permit: Permit) -> Result<Answer, BackendError> {
    let mut rest = model.backend.call(request).await?;
    let first = match rest.next().await {
        Some(Ok(event)) => Some(event),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    Ok(Answer {
        first,
        rest,
        _permit: permit,
    })
}

/// The events of a dispatched request, its first already read; it holds the
/// model's queue slot until dropped.
pub struct Answer {
    first: Option<Event>,
    rest: EventStream,
    _permit: Permit,
}

impl futures::Stream for Answer {
    type Item = Result<Event, BackendError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(first)));
        }
        self.rest.poll_next_unpin(cx)
    }
}
