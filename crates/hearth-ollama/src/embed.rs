//! `POST /api/embed` (a vector per input) and the older `POST /api/embeddings`
//! (one `prompt`, one vector), as the gateway's embeddings request of the model.
//!
//! The vectors are unit length, as `/v1/embeddings` gives them (Ollama's
//! `/api/embed` normalises too). An input longer than the embedded model reads at
//! once is cut to fit, as Ollama does (`truncate`, true by default); with
//! `truncate: false` it is a 400 naming it. An upstream gets the inputs whole.

use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use futures::StreamExt;
use hearth_api::EmbeddingsRequest;
use hearth_gateway::Principal;
use hearth_http::{HttpState, RequestLog};
use hearth_router::{Event, Request};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::names;
use crate::wire::{self, Answer, OllamaError};

#[derive(Deserialize)]
pub struct EmbedBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    dimensions: Option<u32>,
    /// Cut inputs past the model's context (Ollama's default) rather than refuse them.
    #[serde(default = "yes")]
    truncate: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub struct EmbeddingsBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
}

/// `POST /api/embed`.
pub async fn embed(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let req: EmbedBody = wire::read(&state, &headers, body).await?;
    let started = Instant::now();
    let (vectors, tokens) = vectors(
        &state,
        &principal,
        &log,
        &req.model,
        req.input,
        req.dimensions,
        req.truncate,
    )
    .await?;
    Ok(wire::object(&json!({
        "model": req.model, "embeddings": vectors,
        "total_duration": started.elapsed().as_nanos() as u64, "load_duration": 0,
        "prompt_eval_count": tokens,
    })))
}

/// `POST /api/embeddings`: the older form, one prompt.
pub async fn embeddings(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let req: EmbeddingsBody = wire::read(&state, &headers, body).await?;
    let (mut vectors, _) = vectors(
        &state,
        &principal,
        &log,
        &req.model,
        json!(req.prompt),
        None,
        true,
    )
    .await?;
    Ok(wire::object(
        &json!({ "embedding": vectors.pop().unwrap_or_default() }),
    ))
}

/// The vectors of `input` from `model`, in order, and the tokens read.
async fn vectors(
    state: &HttpState,
    principal: &Principal,
    log: &RequestLog,
    model: &str,
    input: Value,
    dimensions: Option<u32>,
    truncate: bool,
) -> Result<(Vec<Vec<f32>>, u64), OllamaError> {
    let name = names::served(state, model)?;
    let mut v = json!({"model": name, "input": input, "encoding_format": "float"});
    if let Some(d) = dimensions {
        v["dimensions"] = json!(d);
    }
    let mut request = EmbeddingsRequest::from_value(v)?;
    request.truncate = truncate;
    let n = request.input.len();
    let c = state
        .gateway
        .complete(principal, Request::Embeddings(request), log.id())
        .await?;
    log.set_dispatched(&c.model, c.backend, c.attempts, false);
    let mut events = hearth_router::typed(c.events);
    let mut vectors: Vec<(u32, Vec<f32>)> = Vec::with_capacity(n);
    let mut tokens = 0;
    while let Some(e) = events.next().await {
        match e.map_err(|e| OllamaError(e.to_api_error()))? {
            Event::Embedding { index, vector } => vectors.push((index, vector)),
            Event::Usage(u) => {
                tokens = u.prompt_tokens;
                log.set_usage(u);
            }
            _ => {}
        }
    }
    log.first_token();
    vectors.sort_by_key(|(i, _)| *i);
    Ok((vectors.into_iter().map(|(_, v)| v).collect(), tokens))
}
