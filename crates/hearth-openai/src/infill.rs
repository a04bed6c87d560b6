//! `POST /infill`: llama.cpp server's fill-in-the-middle endpoint, as llama.vim
//! and llama.vscode call it. The request becomes a `/v1/completions` request with
//! `suffix` (the same path through the router and the engine): `input_prefix` +
//! `prompt` (llama.cpp puts `prompt` right after the hole's start) is the prompt,
//! `input_suffix` the suffix, `input_extra` (other files) goes with it for the
//! engine, and `n_predict`, sampling and `stop` map to their OpenAI names. The
//! answer is llama.cpp's: `{"content", "stop", "stop_type", "tokens_predicted",
//! "tokens_evaluated", "timings", …}` whole, or one such object per SSE event,
//! the last with `stop: true`.
//!
//! llama.cpp's scheduling hints (`id_slot`, `cache_prompt`, `samplers`,
//! `n_indent`, `t_max_prompt_ms`) are accepted and have no effect: the engine
//! reuses cached prompts on its own. `t_max_predict_ms` is kept: generation
//! stops that long after the first token (`stop_type: "limit"`), as editors use
//! it to bound a suggestion's latency.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use hearth_api::{ApiError, CompletionRequest};
use hearth_gateway::Principal;
use hearth_http::{HttpError, HttpState, RequestLog};
use hearth_router::{Event, FinishReason, Request};
use serde_json::{Map, Value, json};

pub const INFILL_PATH: &str = "/infill";

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
    let req = crate::endpoint::json_object(state, http).await?;
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    log.set_stream(stream);
    let completion = to_completion(&req)?;
    let len = completion.prompt.byte_len() + completion.suffix.as_ref().map_or(0, String::len);
    crate::limits::text_bytes(state, len, "input_prefix", "the prefix and suffix")?;
    crate::limits::max_tokens(state, completion.max_tokens, "n_predict")?;
    let fields = response_fields(&req)?;
    let budget = match req.get("t_max_predict_ms") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => {
                return Err(ApiError::invalid_param(
                    "t_max_predict_ms",
                    "`t_max_predict_ms` must be a whole number of milliseconds",
                ));
            }
        },
    };
    let started = Instant::now();
    let c = state
        .gateway
        .complete(principal, Request::Completion(completion), log.id())
        .await
        .map_err(|e| match e.param.as_deref() {
            Some("suffix") => e.with_param("input_suffix"),
            Some("prompt") => e.with_param("input_prefix"),
            _ => e,
        })?;
    log.set_dispatched(&c.model, c.backend, c.attempts, stream);
    let mut fill = Fill::new(c.model().to_owned(), started, budget, fields);
    let events = hearth_router::typed(c.events);
    let resp = if stream {
        let log = log.clone();
        let body = futures::stream::unfold(
            (events, fill, log, false),
            |(mut events, mut fill, log, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if fill.out_of_time() {
                        let out = fill.last();
                        return Some((Ok::<_, Infallible>(out), (events, fill, log, true)));
                    }
                    match events.next().await {
                        Some(Ok(e)) => {
                            if let Some(out) = fill.take(e, &log) {
                                return Some((Ok(out), (events, fill, log, false)));
                            }
                        }
                        Some(Err(e)) => {
                            let e = e.to_api_error();
                            log.set_error(&e.message);
                            // llama.cpp's error event: the error object, with its status as `code`.
                            let out =
                                sse(&json!({"error": {"code": e.status(), "message": e.message,
                                "type": e.kind.type_str()}}));
                            return Some((Ok(out), (events, fill, log, true)));
                        }
                        None => {
                            let out = fill.last();
                            return Some((Ok(out), (events, fill, log, true)));
                        }
                    }
                }
            },
        );
        let mut r = Response::new(Body::from_stream(body));
        hearth_http::sse::headers(&mut r);
        r
    } else {
        let mut events = events;
        while !fill.out_of_time() {
            match events.next().await {
                Some(e) => {
                    fill.take(e.map_err(|e| e.to_api_error())?, log);
                }
                None => break,
            }
        }
        let mut r = Response::new(Body::from(fill.whole().to_string()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    Ok(crate::endpoint::answered(resp, c.warning))
}

/// The request as a completion with `suffix`.
fn to_completion(req: &Map<String, Value>) -> Result<CompletionRequest, ApiError> {
    let text = |key: &str| -> Result<String, ApiError> {
        match req.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::invalid_param(
                key,
                format!("`{key}` must be a string"),
            )),
        }
    };
    let prefix = text("input_prefix")?;
    let suffix = text("input_suffix")?;
    let middle = text("prompt")?;
    if prefix.is_empty() && suffix.is_empty() && middle.is_empty() {
        return Err(ApiError::invalid_param(
            "input_prefix",
            "`/infill` needs the code around the cursor: `input_prefix` and `input_suffix`",
        ));
    }
    let mut v = json!({
        "prompt": format!("{prefix}{middle}"),
        "suffix": suffix,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    // n_predict: -1 (or absent) is "until done", which the server's own cap bounds.
    match req.get("n_predict") {
        None | Some(Value::Null) => {}
        Some(n) => match n.as_i64() {
            Some(n) if n < 0 => {}
            Some(n) if n > 0 => v["max_tokens"] = json!(n),
            _ => {
                return Err(ApiError::invalid_param(
                    "n_predict",
                    "`n_predict` must be -1 (until done) or a positive number of tokens",
                ));
            }
        },
    }
    for key in [
        "model",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "input_extra",
    ] {
        if let Some(x) = req.get(key).filter(|x| !x.is_null()) {
            v[key] = x.clone();
        }
    }
    if let Some(extra) = req.get("input_extra").filter(|x| !x.is_null()) {
        let chunk_ok = |c: &Value| {
            c.get("text").is_some_and(Value::is_string)
                && c.get("filename")
                    .is_none_or(|f| f.is_string() || f.is_null())
        };
        if !extra.as_array().is_some_and(|a| a.iter().all(chunk_ok)) {
            return Err(ApiError::invalid_param(
                "input_extra",
                "`input_extra` must be a list of {\"filename\": \"…\", \"text\": \"…\"}",
            ));
        }
    }
    // llama.cpp's repeat_penalty and friends have no OpenAI name: said, not dropped.
    for key in [
        "repeat_penalty",
        "mirostat",
        "grammar",
        "json_schema",
        "n_probs",
    ] {
        if req.contains_key(key) {
            return Err(ApiError::invalid_param(
                key,
                format!("`{key}` is not supported on /infill; leave it out"),
            ));
        }
    }
    CompletionRequest::from_json(v.to_string().as_bytes()).map_err(|e| {
        // The completion's field names back to /infill's.
        match e.param.as_deref() {
            Some("prompt") => e.with_param("input_prefix"),
            Some("suffix") => e.with_param("input_suffix"),
            Some("max_tokens") => e.with_param("n_predict"),
            _ => e,
        }
    })
}

/// `response_fields`: the answer's fields to keep (`a/b` reaches into objects).
fn response_fields(req: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    match req.get("response_fields") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|f| {
                f.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid_param("response_fields", "`response_fields` lists names")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid_param(
            "response_fields",
            "`response_fields` must be a list of field names",
        )),
    }
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The answer as it comes.
struct Fill {
    model: String,
    started: Instant,
    first: Option<Instant>,
    budget: Option<Duration>,
    fields: Option<Vec<String>>,
    content: String,
    finish: Option<FinishReason>,
    timed_out: bool,
    prompt_tokens: u64,
    completion_tokens: u64,
    pieces: u64,
}

impl Fill {
    fn new(
        model: String,
        started: Instant,
        budget: Option<Duration>,
        fields: Option<Vec<String>>,
    ) -> Self {
        Fill {
            model,
            started,
            first: None,
            budget,
            fields,
            content: String::new(),
            finish: None,
            timed_out: false,
            prompt_tokens: 0,
            completion_tokens: 0,
            pieces: 0,
        }
    }

    /// `t_max_predict_ms` has passed since the first token.
    fn out_of_time(&mut self) -> bool {
        let over = matches!((self.first, self.budget), (Some(f), Some(b)) if f.elapsed() >= b);
        if over && self.finish.is_none() {
            self.timed_out = true;
        }
        over
    }

    /// Takes one event; a stream sends the text it brings.
    fn take(&mut self, e: Event, log: &RequestLog) -> Option<Bytes> {
        match e {
            Event::Text { text, .. } if !text.is_empty() => {
                if self.first.is_none() {
                    self.first = Some(Instant::now());
                    log.first_token();
                }
                self.content.push_str(&text);
                self.pieces += 1;
                Some(sse(&self.filter(json!({"content": text, "stop": false}))))
            }
            Event::Finish { reason, .. } => {
                self.finish = Some(reason);
                None
            }
            Event::Usage(u) => {
                self.prompt_tokens = u.prompt_tokens;
                self.completion_tokens = u.completion_tokens;
                log.set_usage(u);
                None
            }
            _ => None,
        }
    }

    fn stop_type(&self) -> &'static str {
        match (&self.finish, self.timed_out) {
            (_, true) | (Some(FinishReason::Length), _) => "limit",
            _ => "eos",
        }
    }

    fn summary(&self, content: &str) -> Value {
        let prompt_ms = self
            .first
            .map_or(self.started.elapsed(), |f| f - self.started)
            .as_secs_f64()
            * 1000.0;
        let predicted_ms = self
            .first
            .map_or(0.0, |f| f.elapsed().as_secs_f64() * 1000.0);
        let predicted = if self.completion_tokens > 0 {
            self.completion_tokens
        } else {
            self.pieces
        };
        let per_second = |n: u64, ms: f64| {
            if ms > 0.0 {
                n as f64 * 1000.0 / ms
            } else {
                0.0
            }
        };
        json!({
            "content": content,
            "model": self.model,
            "stop": true,
            "stop_type": self.stop_type(),
            "tokens_predicted": predicted,
            "tokens_evaluated": self.prompt_tokens,
            "tokens_cached": 0,
            "truncated": false,
            "timings": {
                "prompt_n": self.prompt_tokens,
                "prompt_ms": prompt_ms,
                "prompt_per_second": per_second(self.prompt_tokens, prompt_ms),
                "predicted_n": predicted,
                "predicted_ms": predicted_ms,
                "predicted_per_second": per_second(predicted, predicted_ms),
            },
        })
    }

    /// The whole answer.
    fn whole(&self) -> Value {
        self.filter(self.summary(&self.content))
    }

    /// A stream's last event: no more text, and the counts.
    fn last(&self) -> Bytes {
        sse(&self.filter(self.summary("")))
    }

    /// Only the `response_fields` asked for, named as asked (`timings/prompt_n`).
    fn filter(&self, v: Value) -> Value {
        let Some(fields) = &self.fields else { return v };
        let mut out = Map::new();
        for f in fields {
            if let Some(x) = v.pointer(&format!("/{f}")) {
                out.insert(f.clone(), x.clone());
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(v: Value) -> Result<CompletionRequest, ApiError> {
        match v {
            Value::Object(m) => to_completion(&m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_llama_vim_request_becomes_a_completion_with_suffix() {
        let c = completion(json!({
            "id_slot": 0, "input_prefix": "def add(a, b):\n", "input_suffix": "\n\nprint(add(1, 2))\n",
            "input_extra": [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n"}],
            "prompt": "    ", "n_predict": 128, "stop": [], "n_indent": 4, "top_k": 40, "top_p": 0.9,
            "samplers": ["top_k", "top_p", "infill"], "stream": false, "cache_prompt": true,
            "t_max_prompt_ms": 500, "t_max_predict_ms": 1000,
            "response_fields": ["content", "timings/prompt_n"]}))
        .unwrap_or_else(|e| unreachable!("{}", e.message));
        assert_eq!(c.prompt.as_text(), Some("def add(a, b):\n    "));
        assert_eq!(c.suffix.as_deref(), Some("\n\nprint(add(1, 2))\n"));
        assert_eq!(c.max_tokens, Some(128));
        assert_eq!(c.top_k, Some(40));
        assert!(c.extra.get("input_extra").is_some_and(Value::is_array));
        assert!(c.extra.get("samplers").is_none());
    }

    #[test]
    fn bad_infill_requests_name_their_field() {
        let param = |v: Value| completion(v).err().and_then(|e| e.param);
        assert_eq!(param(json!({})).as_deref(), Some("input_prefix"));
        assert_eq!(
            param(json!({"input_prefix": 3})).as_deref(),
            Some("input_prefix")
        );
        assert_eq!(
            param(json!({"input_prefix": "a", "n_predict": 0})).as_deref(),
            Some("n_predict")
        );
        assert_eq!(
            param(json!({"input_prefix": "a", "repeat_penalty": 1.1})).as_deref(),
            Some("repeat_penalty")
        );
        assert!(completion(json!({"input_prefix": "a", "n_predict": -1})).is_ok());
    }

    #[test]
    fn response_fields_pick_and_reach_into_objects() {
        let f = Fill::new(
            "m".into(),
            Instant::now(),
            None,
            Some(vec!["content".into(), "timings/prompt_n".into()]),
        );
        let v = f.whole();
        assert_eq!(v.as_object().map(Map::len), Some(2), "{v}");
        assert_eq!(v["content"], "");
        assert_eq!(v["timings/prompt_n"], 0);
    }
}
