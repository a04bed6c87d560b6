//! The harness: a real gateway and upstream backends pointing at the `fake-upstream`
//! process playing the models from a script, a real SQLite store, the real sandbox.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_config::{Config, HealthConfig, ModelConfig};
use hearth_gateway::{Gateway, KeyRing, LocalLimiter};
use hearth_jobs::{JobEvent, JobView, Jobs, Settings};
use hearth_router::{Backend, Router};
use hearth_sandbox::{Options, Sandbox};
use hearth_store::{JobStore, Scope, SqliteStore};
use hearth_testkit::{Behaviour, FakeUpstream};
use hearth_upstream::UpstreamBackend;
use serde_json::Value;

pub const VISION: &str = "vision-m";
pub const PLANNER: &str = "planner";
pub const CODER: &str = "coder";

/// A 1×1 PNG.
pub fn png() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
        .unwrap()
}

/// A reply holding `code` as a fenced Python block.
pub fn script(code: &str) -> String {
    format!("Here is the script:\n\n```python\n{code}\n```\n")
}

/// Writes a chart to /output after checking the image is in /input.
pub const GOOD: &str = "import os\n\nimport matplotlib.pyplot as plt\n\nassert os.path.exists(\"/input/input.png\")\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.savefig(\"/output/chart.png\")\nprint(\"chart written\")";

/// The fake upstream, playing each model from its script (in-process: the
/// `fake-upstream` binary's `--script` is the same script, tested in hearth-testkit;
/// building that binary from inside a test costs ~20 s here).
pub struct Fake {
    up: FakeUpstream,
    pub base_url: String,
}

impl Fake {
    /// Starts the fake with `script` (model name → replies), as `--script` reads it.
    pub async fn start(script: Value) -> Fake {
        let up = FakeUpstream::start().await.unwrap();
        for (model, replies) in script.as_object().unwrap() {
            let replies: Vec<Behaviour> = replies
                .as_array()
                .unwrap()
                .iter()
                .map(|r| hearth_testkit::scripted(r).unwrap())
                .collect();
            up.script_model(model, replies);
        }
        Fake {
            base_url: up.base_url(),
            up,
        }
    }

    /// The request bodies it received, in order.
    pub fn received(&self) -> Vec<Value> {
        self.up.received().into_iter().map(|r| r.body).collect()
    }

    /// The bodies of the requests that named `model`.
    pub fn received_by(&self, model: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|b| b["model"] == model)
            .collect()
    }
}

/// The config of the three models on `base_url`; the vision one sees images when
/// `vision`.
pub fn config(base_url: &str, vision: bool) -> Config {
    let mut config = Config::default();
    for name in [VISION, PLANNER, CODER] {
        config.models.push(ModelConfig {
            vision: vision && name == VISION,
            ..ModelConfig::upstream(name, base_url)
        });
    }
    config.jobs.vision_model = Some(VISION.into());
    config.jobs.reasoning_model = Some(PLANNER.into());
    config.jobs.code_model = Some(CODER.into());
    config
}

/// Settings for tests: short limits.
pub fn settings(config: &Config) -> Settings {
    let mut s = Settings::from_config(config);
    s.limits.wall_time = Duration::from_secs(30);
    s.limits.memory_bytes = 512 << 20;
    s.job_lease = Duration::from_millis(1500);
    s
}

pub fn gateway(config: &Config) -> Arc<Gateway> {
    let models = config
        .models
        .iter()
        .map(|m| {
            let b: Arc<dyn Backend> = Arc::new(UpstreamBackend::new(m, None).unwrap());
            (m.clone(), b)
        })
        .collect();
    let router = Router::new(models, None, HealthConfig::default());
    Arc::new(Gateway::new(
        Arc::new(router),
        Arc::new(LocalLimiter::new()),
        KeyRing::new(&[], 0, 0),
    ))
}

/// The venv `make sandbox-venv` builds (with ruff and bandit).
pub fn venv() -> PathBuf {
    let path = std::env::var_os("HEARTH_SANDBOX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-sandbox"));
    assert!(
        path.join("bin/ruff").exists() && path.join("bin/bandit").exists(),
        "sandbox venv with ruff and bandit missing at {} — run `make sandbox-venv`",
        path.display()
    );
    path
}

pub fn sandbox() -> Arc<Sandbox> {
    Arc::new(Sandbox::new(Options {
        venv: Some(venv()),
        ..Options::default()
    }))
}

/// A started service over a store in `data`.
pub async fn service(data: &Path, config: &Config, settings: Settings) -> (Jobs, SqliteStore) {
    let (jobs, store) = unstarted(data, config, settings).await;
    jobs.start().await.unwrap();
    (jobs, store)
}

/// A service with no workers (another process's API, sharing the database).
pub async fn unstarted(data: &Path, config: &Config, settings: Settings) -> (Jobs, SqliteStore) {
    let store = SqliteStore::open(data).await.unwrap();
    let jobs = Jobs::new(
        gateway(config),
        Arc::new(store.clone()) as Arc<dyn JobStore>,
        sandbox(),
        hearth_jobs::Blobs::local(data).unwrap(),
        settings,
    );
    (jobs, store)
}

/// Waits until the job has ended, and returns it with its steps and files.
pub async fn finished(jobs: &Jobs, id: &str) -> JobView {
    let start = Instant::now();
    loop {
        let view = jobs.job(&Scope::All, id).await.unwrap().unwrap();
        if view.job.status().is_final() {
            return view;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "job still {} at step {:?}",
            view.job.status,
            view.job.step
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for an event of `id` that `f` accepts.
pub async fn event(
    rx: &mut tokio::sync::broadcast::Receiver<JobEvent>,
    id: &str,
    f: impl Fn(&JobEvent) -> bool,
) -> JobEvent {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(e) if e.job_id() == id && f(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("no such event within 60 s")
}

/// The steps as `kind:attempt:status`.
/// The job ended `status`; else the test fails with the job's error.
pub fn assert_status(view: &JobView, status: hearth_store::JobStatus) {
    assert_eq!(view.job.status(), status, "{:?}", view.job.error);
}

pub fn steps(view: &JobView) -> Vec<String> {
    view.steps
        .iter()
        .map(|s| format!("{}:{}:{}", s.kind, s.attempt, s.status))
        .collect()
}
