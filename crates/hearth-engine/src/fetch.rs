//! An embedded model whose file is not there yet: `url` in its config. The server
//! starts at once; the file is downloaded in the background (resumed if a partial
//! copy is there, checked against `sha256`, its GGUF header read) and the engine
//! then loads it. Until then the model is `loading`, a request for it gets a 503
//! that says how far the download is, and the log has a line every 10 %.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hearth_api::ModelStatus;
use hearth_config::ModelConfig;
use hearth_router::{Backend, BackendError, EventStream, Request};

use crate::backend::EmbeddedBackend;
use crate::download::{self, PullEvent};
use crate::human_bytes;

/// The model, downloading, then served by an [`EmbeddedBackend`].
pub struct FetchingBackend {
    name: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    engine: OnceLock<Arc<EmbeddedBackend>>,
    /// Where it is: "downloading: 45% of 135 MB", "checking the download"...
    progress: Mutex<String>,
    failed: Mutex<Option<String>>,
}

impl State {
    fn set_progress(&self, s: String) {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    fn progress(&self) -> String {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, why: String) {
        *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
    }
}

impl FetchingBackend {
    /// Starts the download of `cfg`'s `url` to its `path` (on the current Tokio
    /// runtime), then the engine. Dropping the backend stops the download.
    pub fn start(cfg: &ModelConfig) -> Arc<FetchingBackend> {
        let state = Arc::new(State::default());
        state.set_progress("starting the download".into());
        let task = tokio::spawn(fetch(cfg.clone(), state.clone()));
        Arc::new(FetchingBackend {
            name: cfg.name.clone(),
            state,
            task,
        })
    }

    fn unavailable(&self) -> BackendError {
        BackendError::Unavailable(match self.state.failure() {
            Some(why) => format!("model `{}` is not available: {why}", self.name),
            None => format!(
                "model `{}` is not ready yet ({}); try again shortly",
                self.name,
                self.state.progress()
            ),
        })
    }
}

impl Drop for FetchingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fetch(cfg: ModelConfig, state: Arc<State>) {
    let Some(e) = cfg.embedded_config() else {
        return;
    };
    let Some(url) = e.url.as_deref() else {
        state.fail("no `url` to download it from".into());
        return;
    };
    let name = cfg.name.as_str();
    tracing::info!(model = name, url, path = %e.path.display(), "downloading the model");
    let mut log = Steps::default();
    let on_event = |event: PullEvent| match event {
        PullEvent::Started {
            total,
            resumed_from,
        } => {
            log.total = total;
            if resumed_from > 0 {
                tracing::info!(
                    model = name,
                    "resuming the download at {}",
                    human_bytes(resumed_from)
                );
            }
            state.set_progress(log.describe(resumed_from));
        }
        PullEvent::Progress { downloaded } => {
            if let Some(line) = log.step(downloaded) {
                tracing::info!(model = name, "downloading: {line}");
            }
            state.set_progress(log.describe(downloaded));
        }
        PullEvent::Verifying => state.set_progress("checking the download".into()),
    };
    match download::pull_to(url, &e.path, e.sha256.as_deref(), on_event).await {
        Ok(p) => tracing::info!(
            model = name,
            path = %p.path.display(),
            sha256 = %p.sha256,
            "model downloaded; loading it"
        ),
        Err(err) => {
            let why = format!(
                "the download failed: {err}; Hearth tries again at its next start (a partial download resumes), or fetch it with `hearth models pull`"
            );
            tracing::error!(model = name, "{why}");
            state.fail(why);
            return;
        }
    }
    state.set_progress("loading".into());
    match EmbeddedBackend::start(&cfg) {
        Ok(engine) => {
            let _ = state.engine.set(engine);
        }
        Err(err) => {
            let why = format!("the downloaded file does not load: {err}");
            tracing::error!(model = name, "{why}");
            state.fail(why);
        }
    }
}

/// The download's progress in words, and a log line every 10 % (every 30 s when
/// the size is not known).
#[derive(Default)]
struct Steps {
    total: Option<u64>,
    logged_tenths: u64,
    logged_at: Option<Instant>,
}

impl Steps {
    fn describe(&self, done: u64) -> String {
        match self.total {
            Some(t) if t > 0 => format!(
                "downloading: {}% of {}",
                done.saturating_mul(100) / t,
                human_bytes(t)
            ),
            _ => format!("downloading: {} so far", human_bytes(done)),
        }
    }

    fn step(&mut self, done: u64) -> Option<String> {
        match self.total {
            Some(t) if t > 0 => {
                let tenths = done.saturating_mul(10) / t;
                (tenths > self.logged_tenths).then(|| {
                    self.logged_tenths = tenths;
                    self.describe(done)
                })
            }
            _ => {
                let now = Instant::now();
                let due = self
                    .logged_at
                    .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(30));
                due.then(|| {
                    self.logged_at = Some(now);
                    self.describe(done)
                })
            }
        }
    }
}

#[async_trait]
impl Backend for FetchingBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn status(&self) -> ModelStatus {
        match self.state.engine.get() {
            Some(engine) => engine.status(),
            None if self.state.failure().is_some() => ModelStatus::Unavailable,
            None => ModelStatus::Loading,
        }
    }

    fn context_length(&self) -> Option<u32> {
        self.state.engine.get()?.context_length()
    }

    fn placement(&self) -> Option<hearth_api::Placement> {
        self.state.engine.get()?.placement()
    }

    async fn call(&self, request: &Request) -> Result<EventStream, BackendError> {
        match self.state.engine.get() {
            Some(engine) => engine.call(request).await,
            None => Err(self.unavailable()),
        }
    }

    fn detail(&self) -> Option<String> {
        match self.state.engine.get() {
            Some(engine) => engine.detail(),
            None => Some(
                self.state
                    .failure()
                    .unwrap_or_else(|| self.state.progress()),
            ),
        }
    }

    /// Where the download is ("downloading: 45% of 135 MB"), or why it failed.
    async fn wake(&self) -> Result<(), BackendError> {
        match self.state.engine.get() {
            Some(engine) => engine.wake().await,
            None if self.state.failure().is_some() => Err(self.unavailable()),
            None => Err(BackendError::Unavailable(self.state.progress())),
        }
    }

    async fn probe(&self) -> Result<(), BackendError> {
        match self.state.engine.get() {
            Some(engine) => engine.probe().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_logged_every_tenth_and_described_in_words() {
        let mut s = Steps {
            total: Some(1_000_000),
            ..Steps::default()
        };
        assert_eq!(s.step(50_000), None);
        assert_eq!(
            s.step(100_000).as_deref(),
            Some("downloading: 10% of 1.0 MB")
        );
        assert_eq!(s.step(150_000), None);
        assert_eq!(
            s.step(990_000).as_deref(),
            Some("downloading: 99% of 1.0 MB")
        );
        let mut unknown = Steps::default();
        assert_eq!(
            unknown.step(2_000_000).as_deref(),
            Some("downloading: 2.0 MB so far")
        );
        assert_eq!(unknown.step(3_000_000), None);
    }
}
