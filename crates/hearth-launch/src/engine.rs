//! [`Engine`]: one managed model server's config and live state, shared by its
//! supervisor (which runs the process) and its backend (which carries the traffic).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use hearth_api::ModelStatus;
use hearth_config::{LaunchConfig, ModelBackend, ModelConfig, StartMode};
use hearth_upstream::UpstreamBackend;
use tokio::sync::{mpsc, watch};

use crate::output::Output;
use crate::state::{Activity, Command, Snapshot};

/// A model's `[models.launch]` that cannot be run as written.
#[derive(Debug, thiserror::Error)]
#[error("model `{model}`: {message}")]
pub struct LaunchError {
    pub model: String,
    pub message: String,
}

pub struct Engine {
    pub name: String,
    /// The model's config; its `base_url` still holds `{port}`.
    pub model: ModelConfig,
    pub launch: LaunchConfig,
    /// The command, with `{port}` still in it.
    pub argv: Vec<String>,
    api_key: Option<String>,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    pub idle_stop: Option<Duration>,
    pub max_failures: u32,
    pub state: watch::Sender<Snapshot>,
    pub commands: mpsc::UnboundedSender<Command>,
    /// The client of the running process (its port changes with each start).
    upstream: RwLock<Option<Arc<UpstreamBackend>>>,
    pub activity: Activity,
    pub output: Arc<Output>,
}

impl Engine {
    /// Reads `model`'s launch settings (validated at config load; checked again
    /// here, for embedders that build configs by hand).
    pub fn new(
        model: &ModelConfig,
        api_key: Option<String>,
        log_dir: &std::path::Path,
    ) -> Result<(Arc<Engine>, mpsc::UnboundedReceiver<Command>), LaunchError> {
        let err = |message: String| LaunchError {
            model: model.name.clone(),
            message,
        };
        let ModelBackend::Upstream(up) = &model.backend else {
            return Err(err(
                "only `backend = \"upstream\"` models have `[models.launch]`".into(),
            ));
        };
        let Some(launch) = up.launch.as_deref() else {
            return Err(err("no `[models.launch]`".into()));
        };
        let argv = launch
            .argv(&model.name, model.concurrency(), model.context_length)
            .map_err(&err)?;
        let ready_timeout = launch.ready_timeout().map_err(&err)?;
        let stop_timeout = launch.stop_timeout().map_err(&err)?;
        let idle_stop = launch.idle_stop().map_err(&err)?;
        let mut model = model.clone();
        if let ModelBackend::Upstream(u) = &mut model.backend {
            u.base_url = u.base_url_template();
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let initial = match launch.start {
            StartMode::Eager => ModelStatus::Starting,
            StartMode::OnDemand => ModelStatus::Stopped,
        };
        let engine = Arc::new(Engine {
            name: model.name.clone(),
            argv,
            api_key,
            ready_timeout,
            stop_timeout,
            idle_stop,
            max_failures: launch.max_failures(),
            launch: launch.clone(),
            state: watch::Sender::new(Snapshot::new(initial)),
            commands,
            upstream: RwLock::new(None),
            activity: Activity::default(),
            output: Output::open(log_dir, &model.name),
            model,
        });
        engine.publish(|_| {});
        Ok((engine, rx))
    }

    /// Changes the published state; a new state is stamped and counted in metrics.
    pub fn publish(&self, change: impl FnOnce(&mut Snapshot)) {
        self.state.send_modify(|s| {
            let before = s.state;
            change(s);
            if s.state != before {
                s.since = SystemTime::now();
            }
            for state in STATES {
                metrics::gauge!("hearth_engine_state", "model" => self.name.clone(), "state" => state.as_str())
                    .set(if state == s.state { 1.0 } else { 0.0 });
            }
        });
    }

    /// Points the traffic at the process on `port`.
    pub fn connect(&self, port: u16) -> Result<(), String> {
        let mut cfg = self.model.clone();
        if let ModelBackend::Upstream(u) = &mut cfg.backend {
            u.base_url = u
                .base_url
                .replace(hearth_config::launch::PORT_PLACEHOLDER, &port.to_string());
        }
        let backend =
            UpstreamBackend::new(&cfg, self.api_key.clone()).map_err(|e| e.to_string())?;
        *self.upstream.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(backend));
        Ok(())
    }

    pub fn disconnect(&self) {
        *self.upstream.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn upstream(&self) -> Option<Arc<UpstreamBackend>> {
        self.upstream
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn start_mode(&self) -> &'static str {
        match self.launch.start {
            StartMode::Eager => "eager",
            StartMode::OnDemand => "on_demand",
        }
    }
}

/// The states a managed engine can be in (the gauge has one series each).
const STATES: [ModelStatus; 6] = [
    ModelStatus::Starting,
    ModelStatus::Loading,
    ModelStatus::Ready,
    ModelStatus::Restarting,
    ModelStatus::Failed,
    ModelStatus::Stopped,
];
