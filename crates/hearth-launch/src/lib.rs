//! Managed model servers: Hearth starts, watches, restarts and stops the
//! OpenAI-compatible servers it routes to (vLLM, llama.cpp's `llama-server`, any
//! command), configured by a model's `[models.launch]`.
//!
//! A managed model stays an upstream to the router: this crate owns the process
//! (port, readiness, restarts, logs, stop) and hands the router a
//! [`ManagedBackend`], whose traffic goes through an ordinary upstream backend and
//! whose status is the supervisor's. It knows nothing of HTTP clients or config
//! files.
//!
//! Every server is spawned from one thread, `hearth-engines`, that lives until the
//! servers are stopped: the parent-death signal each server gets (SIGKILL when its
//! spawning thread dies) then fires only when Hearth itself dies, killed or not.
//!
//! # Layout
//! - [`Engines`]: the set of servers and their thread; [`ManagedBackend`] (`backend`).
//! - `supervise`: one server's life: spawn, readiness, restart with backoff, stop.
//! - `engine`: what a supervisor and its backend share; `state`: the published state.
//! - `output`: each server's stdout/stderr to its log file and the stderr tail.

mod backend;
mod engine;
mod output;
mod state;
mod supervise;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hearth_config::ModelConfig;
use tokio::sync::watch;

pub use backend::ManagedBackend;
pub use engine::LaunchError;

/// The managed model servers of one Hearth, run from their own thread (started
/// with the first server).
pub struct Engines {
    log_dir: PathBuf,
    thread: Option<EngineThread>,
    /// Opened (true) when servers may start; closed by [`Engines::hold`].
    gate: watch::Sender<bool>,
}

struct EngineThread {
    runtime: tokio::runtime::Handle,
    shutdown: watch::Sender<bool>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("log_dir", &self.log_dir)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Engines {
    /// No servers yet. Each server's output goes to `log_dir/NAME.YYYY-MM-DD.log`.
    pub fn new(log_dir: &Path) -> Engines {
        Engines {
            log_dir: log_dir.to_path_buf(),
            thread: None,
            gate: watch::channel(true).0,
        }
    }

    /// No server starts (an eager one waits, shown `starting`) until `until`
    /// resolves. A Hearth taking over from a running one holds its servers until
    /// the old one has stopped its own: their ports and GPU memory are the old
    /// one's until then. Call it from a tokio runtime, before [`Engines::add`].
    pub fn hold(&mut self, until: impl std::future::Future<Output = ()> + Send + 'static) {
        self.gate.send_replace(false);
        let gate = self.gate.clone();
        tokio::spawn(async move {
            until.await;
            gate.send_replace(true);
        });
    }

    /// Starts supervising `model` (an upstream with `[models.launch]`): an eager
    /// one starts now, an on-demand one on its first request. `api_key` is the
    /// upstream key Hearth sends it, if any.
    pub fn add(
        &mut self,
        model: &ModelConfig,
        api_key: Option<String>,
    ) -> Result<Arc<ManagedBackend>, LaunchError> {
        let (engine, commands) = engine::Engine::new(model, api_key, &self.log_dir)?;
        let thread = match &mut self.thread {
            Some(t) => t,
            None => self
                .thread
                .insert(EngineThread::start().map_err(|e| LaunchError {
                    model: model.name.clone(),
                    message: format!("cannot start the engine thread: {e}"),
                })?),
        };
        let task = thread.runtime.spawn(supervise::supervise(
            engine.clone(),
            commands,
            self.gate.subscribe(),
            thread.shutdown.subscribe(),
        ));
        thread
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        Ok(Arc::new(ManagedBackend::new(engine)))
    }

    /// Stops every server (SIGTERM, then SIGKILL after its `stop_timeout`) and
    /// waits for them.
    pub async fn stop(mut self) {
        if let Some(mut t) = self.thread.take() {
            let _ = t.shutdown.send(true);
            if let Some(join) = t.join.take() {
                let _ = tokio::task::spawn_blocking(move || join.join()).await;
            }
        }
    }
}

impl EngineThread {
    fn start() -> std::io::Result<EngineThread> {
        let (shutdown, mut stop) = watch::channel(false);
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let joined = tasks.clone();
        let join = std::thread::Builder::new()
            .name("hearth-engines".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let _ = stop.wait_for(|s| *s).await;
                    // Each supervisor stops its server on the same signal.
                    let tasks =
                        std::mem::take(&mut *joined.lock().unwrap_or_else(|p| p.into_inner()));
                    futures::future::join_all(tasks).await;
                });
            })?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the engine thread did not start"))??;
        Ok(EngineThread {
            runtime,
            shutdown,
            tasks,
            join: Some(join),
        })
    }
}

impl Drop for EngineThread {
    /// Not stopped by [`Engines::stop`]: the servers are asked to stop, unwaited
    /// (and die with the process if it ends first).
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
