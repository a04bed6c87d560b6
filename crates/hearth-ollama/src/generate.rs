//! `POST /api/chat` and `POST /api/generate`: Ollama's requests as the gateway's
//! chat or text completions, and their answers in Ollama's shape, streamed (the
//! default) as one JSON object per line, or whole.
//!
//! - `options` become sampling fields: `temperature`, `top_p`, `top_k`, `min_p`,
//!   `seed`, `stop`, `presence_penalty`, `frequency_penalty`, and `num_predict`
//!   as `max_tokens` (-1 and -2, "no limit", leave it to the model's defaults).
//!   The rest (`num_ctx`, `repeat_penalty`, `mirostat`…) are Ollama's own knobs
//!   of its runner; they are ignored, as Ollama ignores options it does not know.
//! - `format: "json"` is `response_format: {"type": "json_object"}`; a JSON schema
//!   is `{"type": "json_schema"}` with it.
//! - `think: true|false` is `chat_template_kwargs: {"enable_thinking": …}` (Qwen3's
//!   switch, which the embedded engine, vLLM and llama-server pass to the chat
//!   template); `"low"|"medium"|"high"` (gpt-oss) is `reasoning_effort`, also
//!   passed to the template. The thinking comes back as `thinking`.
//! - `keep_alive` is accepted and has no effect: Hearth keeps its models loaded.
//! - `/api/generate` applies the model's chat template (with `system`) unless
//!   `raw` is true or a `suffix` asks for fill-in-the-middle: those are text
//!   completions of the prompt as it is. An empty prompt only loads the model
//!   (`done_reason: "load"`), as in Ollama.

use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use futures::StreamExt;
use hearth_api::{ChatCompletionRequest, CompletionRequest, Usage};
use hearth_gateway::Principal;
use hearth_http::{HttpState, RequestLog};
use hearth_router::{Event, FinishReason, Request, ToolCallDelta};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::names;
use crate::wire::{self, Answer, OllamaError};

#[derive(Deserialize)]
pub struct ChatBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: String,
    /// Base64 images, as Ollama's clients send them.
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    tool_calls: Vec<OllamaToolCall>,
    /// A `tool` message's function.
    #[serde(default)]
    tool_name: Option<String>,
}

#[derive(Deserialize)]
struct OllamaToolCall {
    function: OllamaFunction,
}

#[derive(Deserialize)]
struct OllamaFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
pub struct GenerateBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
}

/// Which endpoint answers: where its text goes in each line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Generate,
}

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let req: ChatBody = wire::read(&state, &headers, body).await?;
    let stream = req.stream.unwrap_or(true);
    log.set_stream(stream);
    let model = names::served(&state, &req.model)?;
    if req.messages.is_empty() {
        return Ok(loaded(&req.model, Shape::Chat));
    }
    let mut v = json!({
        "model": model,
        "messages": req.messages.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Vec<_>>(),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(tools) = req.tools.filter(|t| !t.is_null()) {
        v["tools"] = tools;
    }
    sampling(&mut v, req.options.as_ref(), req.format.as_ref());
    think(&mut v, req.think.as_ref())?;
    let request = ChatCompletionRequest::from_value(v)?;
    answer(
        &state,
        &principal,
        &log,
        Request::Chat(request),
        req.model,
        Shape::Chat,
        stream,
    )
    .await
}

/// `POST /api/generate`.
pub async fn generate(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let req: GenerateBody = wire::read(&state, &headers, body).await?;
    let stream = req.stream.unwrap_or(true);
    log.set_stream(stream);
    let model = names::served(&state, &req.model)?;
    if req.prompt.is_empty() && req.images.is_empty() && req.suffix.is_none() {
        return Ok(loaded(&req.model, Shape::Generate));
    }
    let request = if req.raw || req.suffix.is_some() {
        let mut v = json!({
            "model": model, "prompt": req.prompt, "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(s) = &req.suffix {
            v["suffix"] = json!(s);
        }
        sampling(&mut v, req.options.as_ref(), req.format.as_ref());
        Request::Completion(CompletionRequest::from_value(v)?)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = req.system.filter(|s| !s.is_empty()) {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(user_content(&req.prompt, &req.images));
        let mut v = json!({
            "model": model, "messages": messages, "stream": true,
            "stream_options": {"include_usage": true},
        });
        sampling(&mut v, req.options.as_ref(), req.format.as_ref());
        think(&mut v, req.think.as_ref())?;
        Request::Chat(ChatCompletionRequest::from_value(v)?)
    };
    answer(
        &state,
        &principal,
        &log,
        request,
        req.model,
        Shape::Generate,
        stream,
    )
    .await
}

/// What Ollama answers to a request with nothing to say: the model is loaded.
fn loaded(model: &str, shape: Shape) -> axum::response::Response {
    let mut v =
        json!({"model": model, "created_at": wire::now(), "done": true, "done_reason": "load"});
    match shape {
        Shape::Chat => v["message"] = json!({"role": "assistant", "content": ""}),
        Shape::Generate => v["response"] = json!(""),
    }
    wire::object(&v)
}

/// An Ollama message as OpenAI's: images become `image_url` parts (data URLs),
/// tool calls get ids and their arguments as a JSON string.
fn message(i: usize, m: &Message) -> Value {
    if m.role == "user" && !m.images.is_empty() {
        return user_content(&m.content, &m.images);
    }
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .enumerate()
            .map(|(j, c)| {
                json!({"id": format!("call_{i}_{j}"), "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments.to_string()}})
            })
            .collect();
    }
    if let Some(name) = &m.tool_name {
        v["name"] = json!(name);
    }
    v
}

fn user_content(text: &str, images: &[String]) -> Value {
    if images.is_empty() {
        return json!({"role": "user", "content": text});
    }
    let mut parts = vec![json!({"type": "text", "text": text})];
    for b64 in images {
        parts.push(json!({"type": "image_url",
            "image_url": {"url": format!("data:{};base64,{b64}", image_type(b64))}}));
    }
    json!({"role": "user", "content": parts})
}

/// The image's MIME type from its first bytes (Ollama sends bare base64).
fn image_type(b64: &str) -> &'static str {
    use base64::Engine as _;
    let head: String = b64.chars().take(16).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(head.as_bytes())
        .unwrap_or_default();
    match bytes.as_slice() {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'G', b'I', b'F', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', ..] => "image/webp",
        _ => "image/jpeg",
    }
}

/// Ollama's `think` into a chat request: a switch as the chat template's
/// `enable_thinking`, a level as `reasoning_effort` (top level, for upstreams
/// that read it there, and for the template). Anything else is a 400.
fn think(v: &mut Value, think: Option<&Value>) -> Result<(), OllamaError> {
    match think {
        None | Some(Value::Null) => {}
        Some(Value::Bool(on)) => v["chat_template_kwargs"] = json!({"enable_thinking": on}),
        Some(Value::String(level)) if ["low", "medium", "high"].contains(&level.as_str()) => {
            v["reasoning_effort"] = json!(level);
            v["chat_template_kwargs"] = json!({"reasoning_effort": level});
        }
        Some(other) => {
            return Err(OllamaError(hearth_api::ApiError::invalid_param(
                "think",
                format!("think must be true, false, \"low\", \"medium\" or \"high\", not {other}"),
            )));
        }
    }
    Ok(())
}

/// `options` and `format` into the request's OpenAI fields.
fn sampling(v: &mut Value, options: Option<&Map<String, Value>>, format: Option<&Value>) {
    if let Some(o) = options {
        for key in [
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "seed",
            "stop",
            "presence_penalty",
            "frequency_penalty",
        ] {
            if let Some(x) = o.get(key).filter(|x| !x.is_null()) {
                v[key] = x.clone();
            }
        }
        if let Some(n) = o
            .get("num_predict")
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
        {
            v["max_tokens"] = json!(n);
        }
    }
    match format {
        Some(Value::String(s)) if s == "json" => {
            v["response_format"] = json!({"type": "json_object"});
        }
        Some(schema @ Value::Object(_)) => {
            v["response_format"] = json!({"type": "json_schema",
                "json_schema": {"name": "format", "schema": schema, "strict": true}});
        }
        _ => {}
    }
}

/// Runs the request through the gateway and writes its answer.
async fn answer(
    state: &HttpState,
    principal: &Principal,
    log: &RequestLog,
    request: Request,
    asked: String,
    shape: Shape,
    stream: bool,
) -> Answer {
    let started = Instant::now();
    let c = state.gateway.complete(principal, request, log.id()).await?;
    log.set_dispatched(&c.model, c.backend, c.attempts, stream);
    let warning = c.warning.clone();
    let events = hearth_router::typed(c.events);
    let mut acc = Reply::new(asked, shape, started);
    let mut resp = if stream {
        let log = log.clone();
        let lines = futures::stream::unfold(
            (events, acc, log, false),
            |(mut events, mut acc, log, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match events.next().await {
                        Some(Ok(e)) => {
                            if let Some(line) = acc.take(e, &log) {
                                return Some((line, (events, acc, log, false)));
                            }
                        }
                        Some(Err(e)) => {
                            let e = e.to_api_error();
                            log.set_error(&e.message);
                            let line = wire::line(&json!({"error": e.message}));
                            return Some((line, (events, acc, log, true)));
                        }
                        None => {
                            let line = wire::line(&acc.last());
                            return Some((line, (events, acc, log, true)));
                        }
                    }
                }
            },
        );
        wire::ndjson(lines)
    } else {
        let mut events = events;
        while let Some(e) = events.next().await {
            let e = e.map_err(|e| OllamaError(e.to_api_error()))?;
            acc.take(e, log);
        }
        let mut last = acc.last();
        match shape {
            Shape::Chat => last["message"]["content"] = json!(acc.text),
            Shape::Generate => last["response"] = json!(acc.text),
        }
        if !acc.thinking.is_empty() {
            let at = if shape == Shape::Chat {
                &mut last["message"]["thinking"]
            } else {
                &mut last["thinking"]
            };
            *at = json!(acc.thinking);
        }
        wire::object(&last)
    };
    if let Some(w) = warning.and_then(|w| HeaderValue::try_from(w).ok()) {
        resp.headers_mut().insert("x-hearth-warning", w);
    }
    Ok(resp)
}

/// The answer as it comes: the lines to send, and what the last one reports.
struct Reply {
    model: String,
    shape: Shape,
    started: Instant,
    first: Option<Instant>,
    text: String,
    thinking: String,
    calls: Vec<ToolCallDelta>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl Reply {
    fn new(model: String, shape: Shape, started: Instant) -> Self {
        Reply {
            model,
            shape,
            started,
            first: None,
            text: String::new(),
            thinking: String::new(),
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// Takes one event; returns the line it makes (text and reasoning do, the
    /// rest is kept for the last line).
    fn take(&mut self, e: Event, log: &RequestLog) -> Option<Bytes> {
        let (text, thinking) = match e {
            Event::Text { text, .. } if !text.is_empty() => (text, String::new()),
            Event::Reasoning { text, .. } if !text.is_empty() => (String::new(), text),
            Event::ToolCall { call, .. } => {
                match self.calls.iter_mut().find(|c| c.index == call.index) {
                    Some(c) => {
                        c.name = c.name.take().or(call.name);
                        c.arguments.push_str(&call.arguments);
                    }
                    None => self.calls.push(call),
                }
                return None;
            }
            Event::Finish { reason, .. } => {
                self.finish = Some(reason);
                return None;
            }
            Event::Usage(u) => {
                self.usage = Some(u);
                log.set_usage(u);
                return None;
            }
            _ => return None,
        };
        if self.first.is_none() {
            self.first = Some(Instant::now());
            log.first_token();
        }
        self.text.push_str(&text);
        self.thinking.push_str(&thinking);
        let mut v = json!({"model": self.model, "created_at": wire::now(), "done": false});
        match self.shape {
            Shape::Chat => {
                v["message"] = json!({"role": "assistant", "content": text});
                if !thinking.is_empty() {
                    v["message"]["thinking"] = json!(thinking);
                }
            }
            Shape::Generate => {
                v["response"] = json!(text);
                if !thinking.is_empty() {
                    v["thinking"] = json!(thinking);
                }
            }
        }
        Some(wire::line(&v))
    }

    /// The last line: done, why, the tool calls, the counts and durations (in
    /// nanoseconds, as Ollama reports them).
    fn last(&self) -> Value {
        let usage = self.usage.unwrap_or_default();
        let total = self.started.elapsed().as_nanos() as u64;
        let eval = self.first.map_or(0, |f| f.elapsed().as_nanos() as u64);
        let reason = match &self.finish {
            Some(FinishReason::Length) => "length",
            _ => "stop",
        };
        let mut v = json!({
            "model": self.model, "created_at": wire::now(), "done": true, "done_reason": reason,
            "total_duration": total, "load_duration": 0,
            "prompt_eval_count": usage.prompt_tokens, "prompt_eval_duration": total - eval,
            "eval_count": usage.completion_tokens, "eval_duration": eval,
        });
        match self.shape {
            Shape::Chat => {
                v["message"] = json!({"role": "assistant", "content": ""});
                if !self.calls.is_empty() {
                    v["message"]["tool_calls"] = self
                        .calls
                        .iter()
                        .map(|c| {
                            let args: Value =
                                serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                            json!({"function": {"name": c.name, "arguments": args}})
                        })
                        .collect();
                }
            }
            Shape::Generate => v["response"] = json!(""),
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_format_become_openai_fields() {
        let mut v = json!({});
        let options: Map<String, Value> = serde_json::from_value(json!({
            "temperature": 0.2, "top_k": 20, "seed": 3, "stop": ["\n"], "num_predict": 16,
            "num_ctx": 4096, "repeat_penalty": 1.1
        }))
        .unwrap();
        sampling(&mut v, Some(&options), Some(&json!("json")));
        assert_eq!(
            v,
            json!({"temperature": 0.2, "top_k": 20, "seed": 3, "stop": ["\n"], "max_tokens": 16,
                "response_format": {"type": "json_object"}})
        );
        // No limit (-1) leaves max_tokens to the model's defaults; a schema is a json_schema.
        let mut v = json!({});
        let options: Map<String, Value> =
            serde_json::from_value(json!({"num_predict": -1})).unwrap();
        let schema = json!({"type": "object"});
        sampling(&mut v, Some(&options), Some(&schema));
        assert_eq!(
            v,
            json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "format", "schema": {"type": "object"}, "strict": true}}})
        );
    }

    #[test]
    fn images_become_data_url_parts_of_their_type() {
        // "iVBORw0KGgo" is the base64 of PNG's signature; "/9j/" of JPEG's.
        let m = user_content(
            "what is it?",
            &["iVBORw0KGgoAAAANSUhEUg".into(), "/9j/4AAQSkZJRg".into()],
        );
        assert_eq!(
            m["content"][0],
            json!({"type": "text", "text": "what is it?"})
        );
        let url = |i: usize| {
            m["content"][i]["image_url"]["url"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(
            url(1).starts_with("data:image/png;base64,iVBOR"),
            "{}",
            url(1)
        );
        assert!(
            url(2).starts_with("data:image/jpeg;base64,/9j/"),
            "{}",
            url(2)
        );
    }

    #[test]
    fn tool_calls_get_ids_and_string_arguments() {
        let m: Message = serde_json::from_value(json!({"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]}))
        .unwrap();
        let v = message(3, &m);
        assert_eq!(v["tool_calls"][0]["id"], "call_3_0");
        assert_eq!(
            v["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
    }
}
