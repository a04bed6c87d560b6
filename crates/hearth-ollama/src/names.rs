//! Ollama's model names (`name:tag`) and the listings that show models:
//! `/api/tags`, `/api/show`, `/api/ps`.
//!
//! A configured model `smollm2-135m` is `smollm2-135m:latest` to an Ollama client,
//! and either name finds it (a configured name may itself hold a `:`). The
//! details Ollama clients show (family, size, quantization) come from the GGUF
//! header of an embedded model; an upstream model has none to give.

use std::hash::{Hash, Hasher};
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use hearth_api::ApiError;
use hearth_config::{ModelBackend, ModelKind};
use hearth_http::HttpState;
use hearth_router::{Model, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{self, Answer, OllamaError};

/// The configured model an Ollama name means: the name itself, or without its
/// `:latest` tag. A 404 in Ollama's words otherwise.
pub fn resolve<'r>(router: &'r Router, name: &str) -> Result<&'r Model, OllamaError> {
    if name.is_empty() {
        return Err(wire::model_required());
    }
    router
        .resolve(Some(name))
        .or_else(|_| router.resolve(Some(name.strip_suffix(":latest").unwrap_or(name))))
        .map_err(|_| {
            let mut e = ApiError::model_not_found(name);
            e.message = format!(
                "model '{name}' not found; Hearth serves the models in its config (GET /api/tags lists them)"
            );
            OllamaError(e)
        })
}

/// The configured name of the model `name` means (see [`resolve`]).
pub fn served(state: &HttpState, name: &str) -> Result<String, OllamaError> {
    Ok(resolve(state.gateway.router(), name)?.config.name.clone())
}

/// The name an Ollama client lists: the configured one, tagged `:latest` unless
/// it has a tag.
pub fn tagged(name: &str) -> String {
    if name.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// What the GGUF of an embedded model says, for the listings.
struct FileFacts {
    size: u64,
    modified: u64,
    details: Value,
    info: Value,
}

/// What a GGUF's header says, kept per file while its size and modification
/// time stay the same: Open WebUI lists `/api/tags` every few seconds, and a
/// header with a 150,000-token vocabulary takes tens of milliseconds to read.
type HeaderFacts = (Value, Value);

fn header_facts(path: &std::path::Path, size: u64, modified: u64) -> HeaderFacts {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<(std::path::PathBuf, u64, u64), HeaderFacts>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (path.to_path_buf(), size, modified);
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return hit;
    }
    let facts = read_header(path);
    if let Ok(mut c) = cache.lock() {
        c.retain(|(p, _, _), _| p != path);
        c.insert(key, facts.clone());
    }
    facts
}

/// `details` and `model_info` from the GGUF's header.
fn read_header(path: &std::path::Path) -> HeaderFacts {
    let gguf = hearth_engine::inspect(path).ok();
    let arch = gguf
        .as_ref()
        .and_then(|g| g.architecture().map(str::to_owned))
        .unwrap_or_default();
    let size_label = gguf
        .as_ref()
        .and_then(|g| g.get("general.size_label"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let quantization = gguf
        .as_ref()
        .and_then(hearth_engine::GgufInfo::quantization)
        .unwrap_or_default();
    let mut info = json!({ "general.architecture": arch });
    if let Some(g) = &gguf {
        if let Some(name) = g.name() {
            info["general.name"] = json!(name);
        }
        if let Some(c) = g.context_length() {
            info[format!("{arch}.context_length")] = json!(c);
        }
        if let Some(n) = g
            .get(&format!("{arch}.embedding_length"))
            .and_then(|v| v.as_u64())
        {
            info[format!("{arch}.embedding_length")] = json!(n);
        }
    }
    let details = json!({"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
        "parameter_size": size_label, "quantization_level": quantization});
    (details, info)
}

fn facts(m: &Model) -> FileFacts {
    let ModelBackend::Embedded(e) = &m.config.backend else {
        return FileFacts {
            size: 0,
            modified: hearth_api::unix_now(),
            details: json!({"parent_model": "", "format": "", "family": "", "families": null,
                "parameter_size": "", "quantization_level": ""}),
            info: json!({}),
        };
    };
    let meta = std::fs::metadata(&e.path).ok();
    let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
    let modified = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let (details, info) = header_facts(&e.path, size, modified);
    FileFacts {
        size,
        modified,
        details,
        info,
    }
}

/// A stand-in for Ollama's content digest: 64 hex digits from the model's name,
/// file size and modification time (hashing a model file on every listing would
/// read gigabytes). It changes when the file does.
fn digest(name: &str, f: &FileFacts) -> String {
    (0..4u8)
        .map(|salt| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (salt, name, f.size, f.modified).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn capabilities(m: &Model) -> Vec<&'static str> {
    let mut c = Vec::new();
    match m.config.purpose {
        ModelKind::Embedding => c.push("embedding"),
        ModelKind::Chat => {
            c.push("completion");
            if m.config.tools_policy() == hearth_config::ToolsPolicy::Pass {
                c.push("tools");
            }
            if m.config.vision {
                c.push("vision");
            }
        }
    }
    c
}

/// `GET /api/tags`: every configured model.
pub async fn tags(State(state): State<HttpState>) -> Json<Value> {
    let models: Vec<Value> = state
        .gateway
        .router()
        .iter()
        .map(|m| {
            let f = facts(m);
            let name = tagged(&m.config.name);
            json!({
                "name": name, "model": name, "modified_at": hearth_api::rfc3339(f.modified),
                "size": f.size, "digest": digest(&m.config.name, &f), "details": f.details,
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

#[derive(Deserialize)]
struct ShowRequest {
    #[serde(default)]
    model: String,
    /// The older clients' field.
    #[serde(default)]
    name: String,
}

/// `POST /api/show`: one model's details and what it can do.
pub async fn show(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Answer {
    let req: ShowRequest = wire::read(&state, &headers, body).await?;
    let name = if req.model.is_empty() {
        &req.name
    } else {
        &req.model
    };
    let router = state.gateway.router();
    let m = resolve(router, name)?;
    let f = facts(m);
    Ok(wire::object(&json!({
        "modelfile": "", "parameters": "", "template": "", "license": "",
        "details": f.details, "model_info": f.info,
        "capabilities": capabilities(m),
        "modified_at": hearth_api::rfc3339(f.modified),
    })))
}

/// `GET /api/ps`: the models loaded in this process (embedded, ready). Hearth
/// keeps them loaded for as long as it runs, so `expires_at` is far away.
pub async fn ps(State(state): State<HttpState>) -> Response {
    let forever = hearth_api::rfc3339(hearth_api::unix_now() + 10 * 365 * 86_400);
    let models: Vec<Value> = state
        .gateway
        .router()
        .iter()
        .filter(|m| m.backend.kind() == "embedded" && m.status() == hearth_api::ModelStatus::Ready)
        .map(|m| {
            let f = facts(m);
            let name = tagged(&m.config.name);
            json!({
                "name": name, "model": name, "size": f.size, "digest": digest(&m.config.name, &f),
                "details": f.details, "expires_at": forever, "size_vram": 0,
                "context_length": m.backend.context_length(),
            })
        })
        .collect();
    wire::object(&json!({ "models": models }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_a_tag_unless_they_have_one() {
        assert_eq!(tagged("smollm2-135m"), "smollm2-135m:latest");
        assert_eq!(tagged("qwen:7b"), "qwen:7b");
    }
}
