//! [`ManagedBackend`]: the router's view of a managed model server. Traffic goes
//! through an ordinary upstream backend pointed at the running process; this adds
//! the state (a request for a server on its way up waits for it, one for a stopped
//! server starts it) and tells a crash from an ordinary upstream failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use hearth_api::{EngineInfo, ModelStatus};
use hearth_router::{Backend, BackendError, EventStream, RawAnswer, Request, StoredCall};

use crate::engine::Engine;
use crate::state::Command;

/// How long after a failed request the process may take to be seen gone, for the
/// failure to count as the server's crash.
const CRASH_GRACE: Duration = Duration::from_secs(1);

pub struct ManagedBackend {
    engine: Arc<Engine>,
    /// The longest a request waits for the server to come up: the model's
    /// first-byte timeout.
    wait: Duration,
}

impl ManagedBackend {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        let wait = engine
            .model
            .upstream_config()
            .map_or(Duration::from_secs(60), |u| {
                Duration::from_secs(u.first_byte_timeout_secs.max(1))
            });
        ManagedBackend { engine, wait }
    }

    /// `e`, or the crash of the process it was sent to when that process is gone
    /// (or goes within a moment): a dropped connection then means the server died.
    async fn explain(engine: &Engine, attempt: u32, e: BackendError) -> BackendError {
        if !matches!(
            e,
            BackendError::Connect(_) | BackendError::Unanswered(_) | BackendError::Protocol(_)
        ) {
            return e;
        }
        let mut rx = engine.state.subscribe();
        let gone = tokio::time::timeout(
            CRASH_GRACE,
            rx.wait_for(|s| s.attempt != attempt || s.state != ModelStatus::Ready),
        )
        .await;
        match gone {
            Ok(Ok(s)) => BackendError::Crashed(format!(
                "the server of model `{}` {}",
                engine.name,
                s.reason.as_deref().unwrap_or("exited while answering")
            )),
            _ => e,
        }
    }
}

#[async_trait]
impl Backend for ManagedBackend {
    fn kind(&self) -> &'static str {
        "upstream"
    }

    fn status(&self) -> ModelStatus {
        self.engine.state.borrow().state
    }

    fn serves_responses(&self) -> bool {
        self.engine
            .model
            .upstream_config()
            .is_some_and(|u| u.responses_api)
    }

    async fn call(&self, request: &Request) -> Result<EventStream, BackendError> {
        let (state, attempt) = {
            let s = self.engine.state.borrow();
            (s.state, s.attempt)
        };
        let upstream = match (state, self.engine.upstream()) {
            (ModelStatus::Ready, Some(u)) => u,
            _ => {
                return Err(BackendError::Unavailable(format!(
                    "the server of model `{}` is {}",
                    self.engine.name,
                    state.as_str()
                )));
            }
        };
        let engine = self.engine.clone();
        engine.activity.begin();
        let guard = InFlight(engine.clone());
        let stream = match upstream.call(request).await {
            Ok(s) => s,
            Err(e) => {
                drop(guard);
                return Err(Self::explain(&engine, attempt, e).await);
            }
        };
        // Errors mid-stream are explained too; the guard lives as long as the stream.
        Ok(stream
            .then(move |item| {
                let engine = engine.clone();
                let _ = &guard;
                async move {
                    match item {
                        Err(e) => Err(ManagedBackend::explain(&engine, attempt, e).await),
                        ok => ok,
                    }
                }
            })
            .boxed())
    }

    fn responses_store(&self) -> Option<u64> {
        self.engine.upstream().and_then(|u| u.responses_store())
    }

    /// On the running server's own Responses API. A server that is not running
    /// holds no responses (its store lived in the process), so it is not woken.
    async fn responses_call(
        &self,
        call: StoredCall,
        path_and_query: &str,
    ) -> Result<Option<RawAnswer>, BackendError> {
        match (self.status(), self.engine.upstream()) {
            (ModelStatus::Ready, Some(u)) => u.responses_call(call, path_and_query).await,
            _ => Ok(None),
        }
    }

    async fn wake(&self) -> Result<(), BackendError> {
        let deadline = Instant::now() + self.wait;
        let mut rx = self.engine.state.subscribe();
        loop {
            let (state, reason) = {
                let s = rx.borrow_and_update();
                (s.state, s.reason.clone())
            };
            match state {
                ModelStatus::Ready => return Ok(()),
                ModelStatus::Failed => {
                    return Err(BackendError::Unavailable(
                        reason.unwrap_or_else(|| "its server failed".into()),
                    ));
                }
                ModelStatus::Stopped => {
                    tracing::info!(model = %self.engine.name, "starting the model server for a request");
                    let _ = self.engine.commands.send(Command::Start);
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(BackendError::Unavailable("Hearth is stopping".into())),
                Err(_) => {
                    return Err(BackendError::Unavailable(format!(
                        "not ready after {} s",
                        self.wait.as_secs()
                    )));
                }
            }
        }
    }

    async fn probe(&self) -> Result<(), BackendError> {
        // The supervisor watches a server that is not up; a ready one is probed as
        // any upstream is (a hung server fails it).
        match (self.status(), self.engine.upstream()) {
            (ModelStatus::Ready, Some(u)) => u.probe().await,
            _ => Ok(()),
        }
    }

    fn engine(&self) -> Option<EngineInfo> {
        Some(self.engine.state.borrow().info(
            &self.engine.output.path().display().to_string(),
            self.engine.start_mode(),
        ))
    }
}

/// A request in flight (for `idle_stop`), until dropped.
struct InFlight(Arc<Engine>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity.end();
    }
}
