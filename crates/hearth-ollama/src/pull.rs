//! `POST /api/pull`: what `ollama pull` does, in Hearth's terms.
//!
//! - A configured model: nothing to fetch; the answer says so in Ollama's
//!   progress lines and ends with `success` (clients pull before they chat).
//! - An `http(s)://` URL of a GGUF file: `hearth models pull` over the API, into
//!   `data_dir/models`, with progress lines (`total`, `completed`) as it goes; the
//!   file is resumable, its size checked against the free disk, its GGUF header
//!   checked. It downloads onto the server, so it takes an admin key (or a server
//!   with no keys, on loopback). The last line names the file; serving it takes a
//!   `[[models]]` entry (Hearth's models come from its config, not from pulls).
//! - Any other name: 404, as Ollama says of a model its registry lacks.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use hearth_api::{ApiError, ErrorKind};
use hearth_engine::download::{self, PullEvent};
use hearth_gateway::Principal;
use hearth_http::HttpState;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::names;
use crate::wire::{self, Answer, OllamaError};

#[derive(Deserialize)]
pub struct PullBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    stream: Option<bool>,
}

/// `POST /api/pull`.
pub async fn pull(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let req: PullBody = wire::read(&state, &headers, body).await?;
    let name = if req.model.is_empty() {
        req.name
    } else {
        req.model
    };
    let stream = req.stream.unwrap_or(true);
    if !(name.starts_with("http://") || name.starts_with("https://")) {
        names::resolve(state.gateway.router(), &name)?;
        let lines = vec![
            json!({"status": "pulling manifest"}),
            json!({"status": format!("{name} is configured in Hearth; nothing to download")}),
            json!({"status": "success"}),
        ];
        return Ok(answer(lines, stream));
    }
    if !(principal.admin || state.config.resolved_keys.is_empty()) {
        return Err(OllamaError(ApiError::new(
            ErrorKind::Permission,
            "pulling a URL downloads onto the server: it takes an admin key ([[keys]] admin = true)",
        )));
    }
    let dir = state.config.models_dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        OllamaError(ApiError::new(
            ErrorKind::Internal,
            format!("cannot create {}: {e}", dir.display()),
        ))
    })?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let url = name.clone();
    // The download goes on if the client leaves (a pull again resumes or finds
    // it done); its lines go to the client while it listens.
    tokio::spawn(async move {
        let mut total = None;
        let progress = tx.clone();
        let on_event = move |e: PullEvent| {
            let line = match e {
                PullEvent::Started { total: t, .. } => {
                    total = t;
                    json!({"status": format!("pulling {url}"), "total": t})
                }
                PullEvent::Progress { downloaded } => {
                    json!({"status": format!("pulling {url}"), "total": total, "completed": downloaded})
                }
                PullEvent::Verifying => json!({"status": "verifying sha256 digest"}),
            };
            let _ = progress.send(line);
        };
        let last = match download::pull(&name, &dir, None, on_event).await {
            Ok(p) => {
                tracing::info!(url = %name, path = %p.path.display(), sha256 = %p.sha256, "pulled through /api/pull");
                let _ = tx.send(json!({"status": format!("saved {}; serve it with a [[models]] entry (path = \"{}\")", p.path.display(), p.path.display()), "digest": format!("sha256:{}", p.sha256)}));
                json!({"status": "success"})
            }
            Err(e) => json!({"error": format!("the pull failed: {e}")}),
        };
        let _ = tx.send(last);
    });
    if stream {
        let lines = futures::stream::unfold(rx, |mut rx| async move {
            let v = rx.recv().await?;
            Some((wire::line(&v), rx))
        });
        return Ok(wire::ndjson(lines));
    }
    // Whole: the last line says how it ended.
    let mut last = json!({"status": "success"});
    while let Some(v) = rx.recv().await {
        last = v;
    }
    if let Some(e) = last.get("error").and_then(Value::as_str) {
        return Err(OllamaError(ApiError::new(ErrorKind::BadGateway, e)));
    }
    Ok(wire::object(&last))
}

/// Fixed progress lines, streamed or (only the last) whole.
fn answer(lines: Vec<Value>, stream: bool) -> axum::response::Response {
    if stream {
        let bytes: Vec<Bytes> = lines.iter().map(wire::line).collect();
        wire::ndjson(futures::stream::iter(bytes))
    } else {
        wire::object(lines.last().unwrap_or(&json!({"status": "success"})))
    }
}
