//! `POST /v1/responses`: the basics of OpenAI's Responses API, which newer SDKs
//! and agent frameworks call. A model whose upstream serves this API itself
//! (`responses_api = true`: vLLM, llama-server, OpenAI) gets the request as the
//! client wrote it and its answer goes back as it came; every other model (the
//! embedded engine, chat-only upstreams) answers it through a translation to a
//! chat completion:
//!
//! - `input`: a string, or a list of items: messages (`role` with `content` as a
//!   string or `input_text`/`output_text`/`input_image` parts), `function_call`
//!   and `function_call_output` items; `instructions` come first as a system
//!   message. Function `tools` (flat, as this API writes them), `tool_choice`,
//!   `parallel_tool_calls`, `max_output_tokens`, `temperature`, `top_p`, and
//!   `text.format` (`json_object`, `json_schema`) map to their chat fields.
//! - Nothing is stored (`store` is answered `false`): a `previous_response_id` is
//!   a 400 saying to send the whole conversation as `input`.
//! - The answer is a `response` object with `message` and `function_call` output
//!   items and `usage`; streamed, its typed events (`response.created`, …,
//!   `response.output_text.delta`, `response.function_call_arguments.delta`, …,
//!   `response.completed`) as Server-Sent Events, numbered by `sequence_number`.
//!   A failure after the stream began ends it with a `response.failed` event.
//!
//! Passed through, a request without `store` is sent with `store: false`: Hearth
//! keeps no state, and asks its upstreams to keep none unless the client does.

use std::convert::Infallible;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use hearth_api::{ApiError, ChatCompletionRequest, Usage};
use hearth_gateway::Principal;
use hearth_http::{HttpError, HttpState, RequestLog};
use hearth_router::{Event, FinishReason, Request, ResponsesRequest, ToolCallDelta};
use serde_json::{Map, Value, json};

pub const RESPONSES_PATH: &str = "/v1/responses";

/// The axum route.
pub async fn handler(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    http: HttpRequest,
) -> Response {
    match serve(&state, &principal, &log, http).await {
        Ok(r) => r,
        Err(e) => HttpError(e).into_response(),
    }
}

async fn serve(
    state: &HttpState,
    principal: &Principal,
    log: &RequestLog,
    http: HttpRequest,
) -> Result<Response, ApiError> {
    let mut req = crate::endpoint::json_object(state, http).await?;
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    log.set_stream(stream);
    let chat = to_chat(&req);
    // The named model answers in this API when its upstream serves it; otherwise
    // (and for its fallbacks) the request must translate, and its errors show now.
    let model = state
        .gateway
        .router()
        .resolve(req.get("model").and_then(Value::as_str))?;
    if model.backend.serves_responses() {
        let max = req.get("max_output_tokens").and_then(Value::as_u64);
        let max = max.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        crate::limits::max_tokens(state, max, "max_output_tokens")?;
    } else {
        let chat = chat.as_ref().map_err(Clone::clone)?;
        crate::limits::max_tokens(state, chat.max_output_tokens(), "max_output_tokens")?;
    }
    let echo = Echo::from(&req);
    req.entry("store").or_insert(Value::Bool(false));
    let request = Request::Responses(Box::new(ResponsesRequest { body: req, chat }));
    let c = state.gateway.complete(principal, request, log.id()).await?;
    log.set_dispatched(&c.model, c.backend, c.attempts, stream);
    if c.native_api {
        let resp = passed_through(c.events, stream, log).await?;
        return Ok(crate::endpoint::answered(resp, c.warning));
    }
    let mut reply = Reply::new(c.model().to_owned(), echo);
    let events = hearth_router::typed(c.events);
    let resp = if stream {
        let log = log.clone();
        let opening = reply.opening();
        let body = futures::stream::iter(opening.into_iter().map(Ok::<_, Infallible>)).chain(
            futures::stream::unfold(
                (events, reply, log, false),
                |(mut events, mut reply, log, done)| async move {
                    if done {
                        return None;
                    }
                    loop {
                        match events.next().await {
                            Some(Ok(e)) => {
                                let out = reply.take(e, &log);
                                if !out.is_empty() {
                                    return Some((Ok(out), (events, reply, log, false)));
                                }
                            }
                            Some(Err(e)) => {
                                let e = e.to_api_error();
                                log.set_error(&e.message);
                                let out = reply.failed(&e);
                                return Some((Ok(out), (events, reply, log, true)));
                            }
                            None => {
                                let out = reply.closing();
                                return Some((Ok(out), (events, reply, log, true)));
                            }
                        }
                    }
                },
            ),
        );
        let mut r = Response::new(Body::from_stream(body));
        hearth_http::sse::headers(&mut r);
        r
    } else {
        let mut events = events;
        while let Some(e) = events.next().await {
            reply.take(e.map_err(|e| e.to_api_error())?, log);
        }
        let mut r = Response::new(Body::from(reply.response("completed").to_string()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    Ok(crate::endpoint::answered(resp, c.warning))
}

/// The answer of an upstream that serves this API, as it came: its JSON body, or
/// its stream's events one by one. A failure after the stream began ends it with
/// an `error` event, as the API's own streams do.
async fn passed_through(
    mut events: hearth_gateway::Metered,
    stream: bool,
    log: &RequestLog,
) -> Result<Response, ApiError> {
    let first = match events.next().await {
        Some(e) => e.map_err(|e| e.to_api_error())?,
        None => {
            return Err(ApiError::new(
                hearth_api::ErrorKind::BadGateway,
                "the upstream's answer was empty",
            ));
        }
    };
    let whole = match first {
        Event::Wire(w) if w.whole || !stream => w.data,
        first if stream => {
            let head = futures::stream::once(std::future::ready(first));
            return Ok(wire_sse(head.map(Ok).chain(events), log));
        }
        _ => {
            return Err(ApiError::new(
                hearth_api::ErrorKind::BadGateway,
                "the upstream's answer was not the Responses API's",
            ));
        }
    };
    // Read on to the end, so the usage is counted.
    while let Some(e) = events.next().await {
        e.map_err(|e| e.to_api_error())?;
    }
    log.first_token();
    if let Some(u) = events.usage() {
        log.set_usage(u);
    }
    let mut r = Response::new(Body::from(whole));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// An upstream's Responses API stream as it came: each event's bytes, the usage
/// and first token noted on the way; if it breaks, an `error` event ends it.
pub(crate) fn wire_sse(
    events: impl futures::Stream<Item = Result<Event, hearth_router::BackendError>> + Send + 'static,
    log: &RequestLog,
) -> Response {
    let log = log.clone();
    let body = events.scan((false, false), move |(texted, failed), e| {
        if *failed {
            return std::future::ready(None);
        }
        let out = match e {
            Ok(Event::Wire(w)) => {
                if let Some(u) = w.usage {
                    log.set_usage(u);
                }
                if !*texted && memchr::memmem::find(&w.data, b"output_text.delta").is_some() {
                    *texted = true;
                    log.first_token();
                }
                let mut out = Vec::with_capacity(w.data.len() + 2);
                out.extend_from_slice(&w.data);
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            }
            Ok(_) => Bytes::new(),
            Err(e) => {
                let e = e.to_api_error();
                log.set_error(&e.message);
                *failed = true;
                let data = json!({"type": "error",
                "code": e.code.clone().unwrap_or_else(|| "server_error".into()),
                "message": e.message, "param": e.param});
                Bytes::from(format!("event: error\ndata: {data}\n\n"))
            }
        };
        std::future::ready(Some(Ok::<_, Infallible>(out)))
    });
    let mut r = Response::new(Body::from_stream(body));
    hearth_http::sse::headers(&mut r);
    r
}

/// The request as a chat completion (streamed from the backend either way, with
/// its usage).
fn to_chat(req: &Map<String, Value>) -> Result<ChatCompletionRequest, ApiError> {
    if req
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::invalid_param(
            "previous_response_id",
            "this model keeps no responses (store: false): send the whole conversation as `input`, or use a model whose upstream serves the Responses API (responses_api = true)",
        ));
    }
    let mut messages = Vec::new();
    if let Some(i) = req.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": i}));
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                messages.push(input_item(i, item)?);
            }
        }
        _ => {
            return Err(ApiError::invalid_param(
                "input",
                "`input` is required: a string or a list of input items",
            ));
        }
    }
    let mut v =
        json!({"messages": messages, "stream": true, "stream_options": {"include_usage": true}});
    for (from, to) in [
        ("model", "model"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_completion_tokens"),
        ("tool_choice", "tool_choice"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("user", "user"),
        ("metadata", "metadata"),
    ] {
        if let Some(x) = req.get(from).filter(|x| !x.is_null()) {
            v[to] = tool_choice(from, x);
        }
    }
    if let Some(Value::Array(tools)) = req.get("tools") {
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::invalid_param(
                    format!("tools[{i}].type"),
                    "this model takes only function tools (web search, file search and other built-in tools are served by upstreams with the Responses API: responses_api = true)",
                ));
            }
            let mut function = t.clone();
            if let Some(f) = function.as_object_mut() {
                f.remove("type");
            }
            out.push(json!({"type": "function", "function": function}));
        }
        if !out.is_empty() {
            v["tools"] = Value::Array(out);
        }
    }
    if let Some(format) = req.get("text").and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") | None => {}
            Some("json_object") => v["response_format"] = json!({"type": "json_object"}),
            Some("json_schema") => {
                let mut schema = format.clone();
                if let Some(s) = schema.as_object_mut() {
                    s.remove("type");
                }
                v["response_format"] = json!({"type": "json_schema", "json_schema": schema});
            }
            Some(other) => {
                return Err(ApiError::invalid_param(
                    "text.format",
                    format!(
                        "`text.format.type` `{other}` is not one of text, json_object, json_schema"
                    ),
                ));
            }
        }
    }
    ChatCompletionRequest::from_value(v).map_err(|e| {
        // The chat field's name, in this API's words.
        match e.param.as_deref() {
            Some("max_completion_tokens") => e.with_param("max_output_tokens"),
            _ => e,
        }
    })
}

/// A function `tool_choice` of this API (`{"type": "function", "name": …}`) as
/// chat's (`{"type": "function", "function": {"name": …}}`); other fields as they are.
fn tool_choice(key: &str, v: &Value) -> Value {
    match (key, v.get("name")) {
        ("tool_choice", Some(name)) => json!({"type": "function", "function": {"name": name}}),
        _ => v.clone(),
    }
}

/// One input item as a chat message.
fn input_item(i: usize, item: &Value) -> Result<Value, ApiError> {
    let bad = |why: &str| ApiError::invalid_param(format!("input[{i}]"), why.to_owned());
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = item
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a message needs a `role`"))?;
            let content = match item.get("content") {
                Some(Value::String(s)) => json!(s),
                Some(Value::Array(parts)) => Value::Array(
                    parts
                        .iter()
                        .map(|p| match p.get("type").and_then(Value::as_str) {
                            Some("input_text" | "output_text") => {
                                Ok(json!({"type": "text", "text": p.get("text").cloned().unwrap_or_default()}))
                            }
                            Some("input_image") => Ok(json!({"type": "image_url",
                                "image_url": {"url": p.get("image_url").cloned().unwrap_or_default()}})),
                            _ => Err(bad("content parts are input_text, output_text or input_image")),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                _ => return Err(bad("a message needs `content`: a string or a list of parts")),
            };
            Ok(json!({"role": role, "content": content}))
        }
        "function_call" => Ok(
            json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": item.get("call_id").cloned().unwrap_or_default(), "type": "function",
            "function": {"name": item.get("name").cloned().unwrap_or_default(),
                         "arguments": item.get("arguments").cloned().unwrap_or(json!("{}"))}}]}),
        ),
        "function_call_output" => Ok(json!({"role": "tool",
            "tool_call_id": item.get("call_id").cloned().unwrap_or_default(),
            "content": item.get("output").cloned().unwrap_or_default()})),
        other => Err(bad(&format!(
            "input items of type `{other}` are not served (message, function_call, function_call_output are)"
        ))),
    }
}

/// The request's settings the response object repeats.
struct Echo {
    instructions: Value,
    max_output_tokens: Value,
    temperature: Value,
    top_p: Value,
    tools: Value,
    tool_choice: Value,
    parallel_tool_calls: Value,
    text: Value,
    metadata: Value,
}

impl From<&Map<String, Value>> for Echo {
    fn from(r: &Map<String, Value>) -> Self {
        let get = |k: &str, d: Value| r.get(k).cloned().unwrap_or(d);
        Echo {
            instructions: get("instructions", Value::Null),
            max_output_tokens: get("max_output_tokens", Value::Null),
            temperature: get("temperature", Value::Null),
            top_p: get("top_p", Value::Null),
            tools: get("tools", json!([])),
            tool_choice: get("tool_choice", json!("auto")),
            parallel_tool_calls: get("parallel_tool_calls", json!(true)),
            text: get("text", json!({"format": {"type": "text"}})),
            metadata: get("metadata", json!({})),
        }
    }
}

/// The answer as it comes: the output items, and the events a stream sends.
struct Reply {
    id: String,
    message_id: String,
    model: String,
    created: u64,
    echo: Echo,
    seq: u64,
    text: String,
    /// The message item was opened (a stream sends its `added` events first).
    message_open: bool,
    calls: Vec<ToolCallDelta>,
    finish: Option<FinishReason>,
    usage: Usage,
}

impl Reply {
    fn new(model: String, echo: Echo) -> Self {
        let id = crate::encode::answer_id();
        Reply {
            message_id: format!("msg_{id}"),
            id: format!("resp_{id}"),
            model,
            created: hearth_api::unix_now(),
            echo,
            seq: 0,
            text: String::new(),
            message_open: false,
            calls: Vec::new(),
            finish: None,
            usage: Usage::default(),
        }
    }

    /// One SSE event of `kind` with `fields`, numbered.
    fn event(&mut self, out: &mut Vec<u8>, kind: &str, mut fields: Value) {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(fields.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn opening(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        let r = self.response("in_progress");
        self.event(&mut out, "response.created", json!({"response": r}));
        let r = self.response("in_progress");
        self.event(&mut out, "response.in_progress", json!({"response": r}));
        Some(Bytes::from(out))
    }

    /// Takes one event; returns the SSE events it makes (a whole answer ignores them).
    fn take(&mut self, e: Event, log: &RequestLog) -> Bytes {
        let mut out = Vec::new();
        match e {
            Event::Text { text, .. } if !text.is_empty() => {
                if self.text.is_empty() {
                    log.first_token();
                }
                if !self.message_open {
                    self.message_open = true;
                    let item = json!({"type": "message", "id": self.message_id, "status": "in_progress",
                        "role": "assistant", "content": []});
                    self.event(
                        &mut out,
                        "response.output_item.added",
                        json!({"output_index": 0, "item": item}),
                    );
                    let id = self.message_id.clone();
                    self.event(
                        &mut out,
                        "response.content_part.added",
                        json!({"item_id": id,
                        "output_index": 0, "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []}}),
                    );
                }
                self.text.push_str(&text);
                let id = self.message_id.clone();
                self.event(
                    &mut out,
                    "response.output_text.delta",
                    json!({"item_id": id,
                    "output_index": 0, "content_index": 0, "delta": text, "logprobs": []}),
                );
            }
            Event::ToolCall { call, .. } => {
                let index = self.message_offset()
                    + self
                        .calls
                        .iter()
                        .position(|c| c.index == call.index)
                        .unwrap_or(self.calls.len());
                let item_id = format!("fc_{}_{}", self.id, call.index);
                match self.calls.iter_mut().find(|c| c.index == call.index) {
                    Some(c) => {
                        c.name = c.name.take().or(call.name);
                        c.arguments.push_str(&call.arguments);
                    }
                    None => {
                        let item = json!({"type": "function_call", "id": item_id,
                            "call_id": call.id.clone().unwrap_or_default(),
                            "name": call.name.clone().unwrap_or_default(), "arguments": "",
                            "status": "in_progress"});
                        self.event(
                            &mut out,
                            "response.output_item.added",
                            json!({"output_index": index, "item": item}),
                        );
                        self.calls.push(call.clone());
                    }
                }
                if !call.arguments.is_empty() {
                    self.event(
                        &mut out,
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": index, "delta": call.arguments}),
                    );
                }
            }
            Event::Finish { reason, .. } => self.finish = Some(reason),
            Event::Usage(u) => {
                self.usage = u;
                log.set_usage(u);
            }
            _ => {}
        }
        Bytes::from(out)
    }

    fn message_offset(&self) -> usize {
        usize::from(self.message_open)
    }

    fn status(&self) -> &'static str {
        match self.finish {
            Some(FinishReason::Length) => "incomplete",
            _ => "completed",
        }
    }

    /// The output items so far, finished.
    fn output(&self) -> Vec<Value> {
        let status = self.status();
        let mut out = Vec::new();
        if self.message_open || (self.calls.is_empty() && !self.text.is_empty()) {
            out.push(
                json!({"type": "message", "id": self.message_id, "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": self.text, "annotations": []}]}),
            );
        }
        for c in &self.calls {
            out.push(json!({"type": "function_call", "id": format!("fc_{}_{}", self.id, c.index),
                "call_id": c.id.clone().unwrap_or_default(), "name": c.name.clone().unwrap_or_default(),
                "arguments": c.arguments, "status": status}));
        }
        out
    }

    /// The response object: `in_progress` (empty), `completed`/`incomplete`, or `failed`.
    fn response(&self, status: &str) -> Value {
        let done = status != "in_progress";
        let status = if status == "completed" {
            self.status()
        } else {
            status
        };
        let e = &self.echo;
        json!({
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model,
            "output": if done { self.output() } else { Vec::new() },
            "usage": if done { json!({
                "input_tokens": self.usage.prompt_tokens, "output_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
                "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0},
            }) } else { Value::Null },
            "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "error": null, "instructions": e.instructions, "max_output_tokens": e.max_output_tokens,
            "temperature": e.temperature, "top_p": e.top_p, "tools": e.tools, "tool_choice": e.tool_choice,
            "parallel_tool_calls": e.parallel_tool_calls, "text": e.text, "metadata": e.metadata,
            "store": false, "previous_response_id": null,
        })
    }

    /// The stream's last events: each item done, then `response.completed` (or
    /// `response.incomplete` when cut at `max_output_tokens`).
    fn closing(&mut self) -> Bytes {
        let mut out = Vec::new();
        let status = self.status();
        if self.message_open {
            let (id, text) = (self.message_id.clone(), self.text.clone());
            self.event(
                &mut out,
                "response.output_text.done",
                json!({"item_id": id,
                "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
            );
            self.event(
                &mut out,
                "response.content_part.done",
                json!({"item_id": id,
                "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []}}),
            );
        }
        for (i, item) in self.output().into_iter().enumerate() {
            if item["type"] == "function_call" {
                self.event(
                    &mut out,
                    "response.function_call_arguments.done",
                    json!({
                    "item_id": item["id"], "output_index": i, "arguments": item["arguments"]}),
                );
            }
            self.event(
                &mut out,
                "response.output_item.done",
                json!({"output_index": i, "item": item}),
            );
        }
        let r = self.response("completed");
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(&mut out, kind, json!({"response": r}));
        Bytes::from(out)
    }

    /// A failure after the stream began: `response.failed` with the error.
    fn failed(&mut self, e: &ApiError) -> Bytes {
        let mut out = Vec::new();
        let mut r = self.response("failed");
        r["error"] = json!({"code": e.code.clone().unwrap_or_else(|| "server_error".into()), "message": e.message});
        self.event(&mut out, "response.failed", json!({"response": r}));
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(v: Value) -> Result<Value, ApiError> {
        let Value::Object(m) = v else {
            panic!("not an object")
        };
        to_chat(&m).map(|c| serde_json::to_value(&c).unwrap())
    }

    #[test]
    fn input_items_tools_and_format_become_a_chat_request() {
        let c = chat(json!({
            "model": "m", "instructions": "Be brief.", "max_output_tokens": 20,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "7 C"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "7 C."}]}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}}
        }))
        .unwrap();
        assert_eq!(
            c["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            c["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(
            c["messages"][2]["tool_calls"][0]["function"]["name"],
            "weather"
        );
        assert_eq!(
            c["messages"][3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "7 C"})
        );
        assert_eq!(
            c["messages"][4]["content"][0],
            json!({"type": "text", "text": "7 C."})
        );
        assert_eq!(c["max_completion_tokens"], 20);
        assert_eq!(
            c["tools"],
            json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}])
        );
        assert_eq!(
            c["tool_choice"],
            json!({"type": "function", "function": {"name": "weather"}})
        );
        assert_eq!(
            c["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}})
        );
        assert_eq!(c["stream"], true);
    }

    #[test]
    fn what_is_not_served_says_so() {
        for (v, param) in [
            (json!({"model": "m"}), "input"),
            (
                json!({"input": "hi", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (json!({"input": [{"type": "reasoning"}]}), "input[0]"),
            (
                json!({"input": "hi", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"input": "hi", "text": {"format": {"type": "xml"}}}),
                "text.format",
            ),
            (json!({"input": "hi", "temperature": 5}), "temperature"),
        ] {
            let e = chat(v.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{v}: {e:?}");
        }
    }
}
