//! Test harness: a real gateway on a loopback port in front of fake upstreams.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_config::{MapEnv, ModelConfig};
use hearth_router::{Backend, Router};
use hearth_upstream::UpstreamBackend;

pub struct Gateway {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub router: Arc<Router>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    /// Starts the gateway with `toml` (loopback listen is forced to port 0).
    pub async fn start(toml: &str) -> Gateway {
        Self::start_with_env(toml, MapEnv::default()).await
    }

    pub async fn start_with_env(toml: &str, env: MapEnv) -> Gateway {
        let key_env = env.clone();
        Self::start_with_backends(toml, env, move |m| {
            let u = m
                .upstream_config()
                .expect("`start` builds upstreams only; use `start_with_backends`");
            let key = u
                .api_key_env
                .as_ref()
                .and_then(|v| hearth_config::Env::get(&key_env, v));
            Arc::new(UpstreamBackend::new(m, key).unwrap())
        })
        .await
    }

    /// Starts the gateway with each configured model's backend made by `backend`
    /// (an embedded engine, for instance), all before the first request.
    pub async fn start_with_backends(
        toml: &str,
        env: MapEnv,
        backend: impl Fn(&ModelConfig) -> Arc<dyn Backend>,
    ) -> Gateway {
        let config =
            hearth_config::load_str(toml, "test.toml", &env).unwrap_or_else(|e| panic!("{e}"));
        let config = Arc::new(config);
        let backends = config
            .models
            .iter()
            .map(|m| (m.clone(), backend(m)))
            .collect();
        let router = Arc::new(Router::new(
            backends,
            config.default_model.as_deref(),
            config.health.clone(),
        ));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (probe_tx, probe_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(router.clone().run_health_probes(async move {
            let _ = probe_rx.await;
        }));
        let state = hearth_http::AppState::new(config.clone(), router.clone());
        let app = hearth_http::app(state, axum::Router::new(), axum::Router::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let grace = Duration::from_secs(config.server.shutdown_grace_secs);
        let task = tokio::spawn(hearth_http::serve(
            listener,
            app,
            async move {
                let _ = stop_rx.await;
                let _ = probe_tx.send(());
            },
            grace,
        ));
        Gateway {
            addr,
            client: reqwest::Client::new(),
            router,
            stop: Some(stop_tx),
            task: Some(task),
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
