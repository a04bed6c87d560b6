//! Test harness: a real Hearth (`hearth_server::Server`, as `hearth serve` builds it,
//! with two event loops as in production) on a loopback port, in front of fake
//! upstreams or real engines.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_config::{MapEnv, ModelConfig};
use hearth_router::{Backend, Router};
use hearth_server::Server;

#[path = "../log_root/mod.rs"]
mod log_root;

pub struct Gateway {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub router: Arc<Router>,
    pub server_gateway: Arc<hearth_gateway::Gateway>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), hearth_server::RunError>>>,
    _data: tempfile::TempDir,
}

impl Gateway {
    /// Starts Hearth with `toml` (each model's backend as its config says; the
    /// store in a temporary directory).
    pub async fn start(toml: &str) -> Gateway {
        Self::start_with_env(toml, MapEnv::default()).await
    }

    pub async fn start_with_env(toml: &str, env: MapEnv) -> Gateway {
        Self::start_with(toml, env, |_| None).await
    }

    /// Starts Hearth with each configured model's backend made by `backend` (a
    /// double, or an engine started before the server), all before the first request.
    pub async fn start_with_backends(
        toml: &str,
        env: MapEnv,
        backend: impl Fn(&ModelConfig) -> Arc<dyn Backend>,
    ) -> Gateway {
        Self::start_with(toml, env, |m| Some(backend(m))).await
    }

    /// Starts Hearth listening on `bind` (e.g. `0.0.0.0:0`, which needs keys).
    pub async fn start_bound(toml: &str, bind: &str) -> Gateway {
        Self::start_at(toml, MapEnv::default(), |_| None, bind).await
    }

    async fn start_with(
        toml: &str,
        env: MapEnv,
        backend: impl Fn(&ModelConfig) -> Option<Arc<dyn Backend>>,
    ) -> Gateway {
        Self::start_at(toml, env, backend, "127.0.0.1:0").await
    }

    async fn start_at(
        toml: &str,
        mut env: MapEnv,
        backend: impl Fn(&ModelConfig) -> Option<Arc<dyn Backend>>,
        bind: &str,
    ) -> Gateway {
        log_root::install("harness");
        // A data folder of the test's own (`HEARTH_STORAGE_DATA_DIR` in `env`: a
        // restart on the same store), else a temporary one.
        let data = tempfile::tempdir().unwrap();
        env.0
            .entry("HEARTH_STORAGE_DATA_DIR".into())
            .or_insert_with(|| data.path().display().to_string());
        env.0
            .entry("HEARTH_SERVER_WORKERS".into())
            .or_insert_with(|| "2".into());
        let config =
            hearth_config::load_str(toml, "test.toml", &env).unwrap_or_else(|e| panic!("{e}"));
        let mut builder = Server::builder(config.clone()).env(env);
        for m in &config.models {
            if let Some(b) = backend(m) {
                builder = builder.backend(&m.name, b);
            }
        }
        let server = builder.build().await.unwrap_or_else(|e| panic!("{e}"));
        let router = server.router().clone();
        let server_gateway = server.gateway().clone();
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stop_rx.await;
        }));
        Gateway {
            addr,
            client: reqwest::Client::new(),
            router,
            server_gateway,
            stop: Some(stop_tx),
            task: Some(task),
            _data: data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        self.metrics_as(None).await
    }

    /// `GET /metrics` with `key` (a server that needs one).
    pub async fn metrics_as(&self, key: Option<&str>) -> String {
        let r = self.get("/metrics");
        let r = match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        };
        r.send().await.unwrap().text().await.unwrap()
    }

    /// `GET path`, its body parsed as JSON (whatever the status).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// `POST /v1/chat/completions` with [`chat_body`].
    pub async fn chat(&self, model: &str, stream: bool) -> reqwest::Response {
        self.post("/v1/chat/completions")
            .json(&chat_body(model, stream))
            .send()
            .await
            .unwrap()
    }

    /// Polls `/v1/models` until the first model reports `status` (at most 6 s).
    pub async fn wait_first_model_status(&self, status: &str) -> bool {
        for _ in 0..40 {
            let v = self.get_json("/v1/models").await;
            if v["data"][0]["status"] == status {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        false
    }

    /// Stops it and waits until it has (its store closed).
    pub async fn stop(mut self) {
        self.shutdown();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `[[models]]` for an upstream at `base_url`.
pub fn upstream_model(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[[models]]\nname = \"{name}\"\nbackend = \"upstream\"\nbase_url = \"{base_url}\"\n{extra}\n"
    )
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    })
}

/// Reads an SSE response into its `data:` payloads.
pub async fn sse_payloads(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

pub async fn error_of(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "OpenAI error shape: {v}");
    assert!(v["error"]["type"].is_string(), "OpenAI error shape: {v}");
    assert!(
        v["error"].as_object().unwrap().contains_key("param"),
        "OpenAI error shape: {v}"
    );
    assert!(
        v["error"].as_object().unwrap().contains_key("code"),
        "OpenAI error shape: {v}"
    );
    (status, v["error"].clone())
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Reads until the peer closes (or `within` passes): what it sent, and whether it
/// closed.
pub async fn read_to_close(s: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + within;
    loop {
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, tokio::io::AsyncReadExt::read(s, &mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}
