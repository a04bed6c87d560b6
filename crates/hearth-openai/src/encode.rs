//! Typed events in OpenAI's wire format: the chunks of `/v1/chat/completions` and
//! `/v1/completions` streams, and their whole bodies.
//!
//! An upstream's own JSON ([`Event::Wire`]) goes out as it came: an OpenAI-compatible
//! server already wrote it in this format, and forwarding it untouched keeps the
//! gateway as cheap as a proxy. Every other event (the embedded engine's, any
//! backend that produces typed events) is written here, once, at the edge.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use hearth_api::Usage;
use hearth_http::sse::put_data;
use hearth_router::{Event, FinishReason, ModelMetrics, TokenLogprob, ToolCallDelta};
use serde_json::{Value, json};

/// Which endpoint's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Chat,
    Completion,
    /// `/v1/embeddings` (never streamed), its vectors as numbers or base64.
    Embeddings {
        base64: bool,
    },
}

/// Writes one answer's events: the identity (`id`, `created`, `model`) is the same
/// in every chunk and in the whole body. It is made on the first typed event only:
/// an upstream's answer, passed on as it came, never needs one.
pub struct Encoder {
    format: Format,
    model: Arc<ModelMetrics>,
    include_usage: bool,
    /// A chat stream opens with the assistant's role, once.
    role_sent: bool,
    identity: Option<Identity>,
    /// Tokens' log probabilities waiting for the text they brought (text is held
    /// back while it might be a stop string or half a character).
    logprobs: Vec<(u32, TokenLogprob)>,
    /// Each choice's text so far, in characters (completions' `text_offset`).
    offsets: std::collections::BTreeMap<u32, usize>,
}

struct Identity {
    /// `{"id":..,"object":..,"created":..,"model":..,"choices":[`: every chunk's start.
    prefix: Bytes,
    id: String,
    created: u64,
}

impl Identity {
    fn new(format: Format, model: &str) -> Self {
        let (id_prefix, object) = match format {
            Format::Chat => ("chatcmpl-", "chat.completion.chunk"),
            Format::Completion => ("cmpl-", "text_completion"),
            Format::Embeddings { .. } => ("embd-", "list"),
        };
        let mut id = String::with_capacity(id_prefix.len() + 32);
        id.push_str(id_prefix);
        id.push_str(&answer_id());
        let created = hearth_api::unix_now();
        let mut prefix = BytesMut::with_capacity(128 + model.len());
        prefix.extend_from_slice(b"{\"id\":\"");
        prefix.extend_from_slice(id.as_bytes());
        prefix.extend_from_slice(b"\",\"object\":\"");
        prefix.extend_from_slice(object.as_bytes());
        prefix.extend_from_slice(b"\",\"created\":");
        prefix.extend_from_slice(created.to_string().as_bytes());
        prefix.extend_from_slice(b",\"model\":");
        put_json_str(&mut prefix, model);
        prefix.extend_from_slice(b",\"choices\":[");
        Identity {
            prefix: prefix.freeze(),
            id,
            created,
        }
    }
}

/// 32 hex digits, unique in and across runs: a random prefix drawn once per process
/// and a counter (no random draw per answer).
pub(crate) fn answer_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Encoder {
    /// For an answer of `model` (the served name) in `format`; `include_usage`:
    /// the client asked for the usage chunk.
    pub fn new(format: Format, model: Arc<ModelMetrics>, include_usage: bool) -> Self {
        Encoder {
            format,
            model,
            include_usage,
            role_sent: false,
            identity: None,
            logprobs: Vec::new(),
            offsets: Default::default(),
        }
    }

    /// The held log probabilities of choice `index`, in this format's shape.
    fn take_logprobs(&mut self, index: u32) -> Option<Value> {
        if !self.logprobs.iter().any(|(i, _)| *i == index) {
            return None;
        }
        let (mine, rest) = std::mem::take(&mut self.logprobs)
            .into_iter()
            .partition::<Vec<_>, _>(|(i, _)| *i == index);
        self.logprobs = rest;
        let tokens: Vec<TokenLogprob> = mine.into_iter().map(|(_, t)| t).collect();
        let offset = self.offsets.entry(index).or_default();
        Some(logprobs_json(self.format, &tokens, offset))
    }

    /// The answer's identity, made on first use.
    fn identity(&mut self) -> &Identity {
        let (format, model) = (self.format, &self.model);
        self.identity
            .get_or_insert_with(|| Identity::new(format, model.model()))
    }

    /// Appends the SSE events (`data: ...\n\n`) of one answer event to `out`.
    pub fn stream_event(&mut self, event: &Event, out: &mut BytesMut) {
        if let Event::Wire(w) = event {
            // The usage chunk the gateway asked the upstream for, not the client.
            if !self.include_usage && w.usage.is_some() && usage_only(&w.data) {
                return;
            }
            put_data(out, &w.data);
            return;
        }
        if self.format == Format::Chat && !self.role_sent {
            self.role_sent = true;
            self.chunk(
                out,
                0,
                |c| c.extend_from_slice(b"\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"),
                None,
                None,
            );
        }
        if let Event::Logprob { index, token } = event {
            self.logprobs.push((*index, token.clone()));
            return;
        }
        let held = match event {
            Event::Text { index, .. } => self.take_logprobs(*index),
            Event::Finish { index, .. } => {
                // Tokens whose text never came (a stop string): sent before the end.
                if let Some(lp) = self.take_logprobs(*index) {
                    let empty: &[u8] = match self.format {
                        Format::Chat => b"\"delta\":{}",
                        Format::Completion | Format::Embeddings { .. } => b"\"text\":\"\"",
                    };
                    self.chunk(out, *index, |c| c.extend_from_slice(empty), None, Some(&lp));
                }
                None
            }
            _ => None,
        };
        let held = held.as_ref();
        match event {
            Event::Text { index, text } => match self.format {
                Format::Chat => self.chunk(
                    out,
                    *index,
                    |c| {
                        c.extend_from_slice(b"\"delta\":{\"content\":");
                        put_json_str(c, text);
                        c.put_u8(b'}');
                    },
                    None,
                    held,
                ),
                Format::Completion | Format::Embeddings { .. } => self.chunk(
                    out,
                    *index,
                    |c| {
                        c.extend_from_slice(b"\"text\":");
                        put_json_str(c, text);
                    },
                    None,
                    held,
                ),
            },
            Event::Reasoning { index, text } if self.format == Format::Chat => self.chunk(
                out,
                *index,
                |c| {
                    c.extend_from_slice(b"\"delta\":{\"reasoning_content\":");
                    put_json_str(c, text);
                    c.put_u8(b'}');
                },
                None,
                None,
            ),
            Event::ToolCall { index, call } if self.format == Format::Chat => {
                let delta = json!({"tool_calls": [tool_call_delta(call)]});
                self.chunk(
                    out,
                    *index,
                    |c| {
                        c.extend_from_slice(b"\"delta\":");
                        put_json(c, &delta);
                    },
                    None,
                    None,
                );
            }
            Event::Finish { index, reason } => {
                let empty: &[u8] = match self.format {
                    Format::Chat => b"\"delta\":{}",
                    Format::Completion | Format::Embeddings { .. } => b"\"text\":\"\"",
                };
                self.chunk(
                    out,
                    *index,
                    |c| c.extend_from_slice(empty),
                    Some(reason),
                    None,
                );
            }
            Event::Usage(u) if self.include_usage => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&self.identity().prefix);
                out.extend_from_slice(b"],\"usage\":");
                put_json(out, u);
                out.extend_from_slice(b"}\n\n");
            }
            // Reasoning and tool calls have no place in a text completion; usage is
            // sent only when asked for (the gateway counts it either way).
            Event::Reasoning { .. }
            | Event::ToolCall { .. }
            | Event::Usage(_)
            | Event::Wire(_)
            | Event::Embedding { .. }
            | Event::Logprob { .. } => {}
        }
    }

    /// One chunk of choice `index`: `body` writes its `delta` (or `text`).
    fn chunk(
        &mut self,
        out: &mut BytesMut,
        index: u32,
        body: impl FnOnce(&mut BytesMut),
        finish: Option<&FinishReason>,
        logprobs: Option<&Value>,
    ) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.identity().prefix);
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(index.to_string().as_bytes());
        out.put_u8(b',');
        body(out);
        out.extend_from_slice(b",\"finish_reason\":");
        match finish {
            Some(r) => put_json_str(out, r.as_str()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"logprobs\":");
        match logprobs {
            Some(v) => put_json(out, v),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    /// The whole body of an answer from all its events. An upstream's whole body
    /// (`Event::Wire`) is the answer as it came.
    pub fn whole(&mut self, events: Vec<Event>) -> Bytes {
        /// One choice as its events make it.
        #[derive(Default)]
        struct Choice {
            text: String,
            reasoning: String,
            calls: Vec<ToolCallDelta>,
            finish: Option<FinishReason>,
            logprobs: Vec<TokenLogprob>,
        }
        // By index: `n` choices come interleaved.
        let mut choices: std::collections::BTreeMap<u32, Choice> = Default::default();
        choices.insert(0, Choice::default());
        let mut usage: Option<Usage> = None;
        let mut vectors: Vec<(u32, Vec<f32>)> = Vec::new();
        for e in events {
            match e {
                Event::Wire(w) => return w.data,
                Event::Text { index, text: t } => {
                    choices.entry(index).or_default().text.push_str(&t)
                }
                Event::Reasoning { index, text: t } => {
                    choices.entry(index).or_default().reasoning.push_str(&t)
                }
                Event::ToolCall { index, call } => {
                    merge_call(&mut choices.entry(index).or_default().calls, call)
                }
                Event::Finish { index, reason } => {
                    choices.entry(index).or_default().finish = Some(reason)
                }
                Event::Usage(u) => usage = Some(u),
                Event::Embedding { index, vector } => vectors.push((index, vector)),
                Event::Logprob { index, token } => {
                    choices.entry(index).or_default().logprobs.push(token)
                }
            }
        }
        if let Format::Embeddings { base64 } = self.format {
            vectors.sort_by_key(|(i, _)| *i);
            let vectors: Vec<Vec<f32>> = vectors.into_iter().map(|(_, v)| v).collect();
            let v = hearth_api::embeddings::embeddings_body(
                self.model.model(),
                &vectors,
                base64,
                usage.map_or(0, |u| u.prompt_tokens),
            );
            return Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        }
        let usage = usage.unwrap_or_default();
        let model = self.model.model().to_owned();
        let format = self.format;
        let ident = self.identity();
        let list: Vec<Value> = choices
            .into_iter()
            .map(|(index, c)| {
                let finish = c.finish.as_ref().map(FinishReason::as_str);
                let logprobs = if c.logprobs.is_empty() {
                    Value::Null
                } else {
                    logprobs_json(format, &c.logprobs, &mut 0)
                };
                match format {
                    Format::Chat => {
                        let mut message = json!({"role": "assistant", "content": c.text});
                        if !c.calls.is_empty() {
                            message["tool_calls"] = c.calls.iter().map(tool_call).collect();
                            if c.text.is_empty() {
                                message["content"] = Value::Null;
                            }
                        }
                        if !c.reasoning.is_empty() {
                            message["reasoning_content"] = json!(c.reasoning);
                        }
                        json!({"index": index, "message": message, "finish_reason": finish, "logprobs": logprobs})
                    }
                    Format::Completion | Format::Embeddings { .. } => {
                        json!({"index": index, "text": c.text, "finish_reason": finish, "logprobs": logprobs})
                    }
                }
            })
            .collect();
        let object = match format {
            Format::Chat => "chat.completion",
            Format::Completion | Format::Embeddings { .. } => "text_completion",
        };
        let v = json!({
            "id": ident.id, "object": object, "created": ident.created,
            "model": model,
            "choices": list,
            "usage": usage,
        });
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }
}

/// Tokens' log probabilities as the format writes them: chat's `{"content":
/// [{"token", "logprob", "bytes", "top_logprobs"}]}`, or legacy completions'
/// parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as maps,
/// `text_offset` from `offset`, the choice's characters so far, moved on).
fn logprobs_json(format: Format, tokens: &[TokenLogprob], offset: &mut usize) -> Value {
    match format {
        Format::Chat => {
            let content: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    let top: Vec<Value> = t
                        .top
                        .iter()
                        .map(|(tok, bytes, lp)| json!({"token": tok, "logprob": lp, "bytes": bytes}))
                        .collect();
                    json!({"token": t.token, "logprob": t.logprob, "bytes": t.bytes, "top_logprobs": top})
                })
                .collect();
            json!({"content": content, "refusal": null})
        }
        Format::Completion | Format::Embeddings { .. } => {
            let mut offsets = Vec::with_capacity(tokens.len());
            for t in tokens {
                offsets.push(*offset);
                *offset += t.token.chars().count();
            }
            json!({
                "tokens": tokens.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(),
                "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                "top_logprobs": tokens.iter().map(|t| {
                    t.top.iter().map(|(tok, _, lp)| (tok.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
                }).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
    }
}

/// Adds a piece of a tool call to the calls so far (pieces of one call share its
/// `index`; its id and name come with the first).
fn merge_call(calls: &mut Vec<ToolCallDelta>, piece: ToolCallDelta) {
    match calls.iter_mut().find(|c| c.index == piece.index) {
        Some(c) => {
            c.id = c.id.take().or(piece.id);
            c.name = c.name.take().or(piece.name);
            c.arguments.push_str(&piece.arguments);
        }
        None => calls.push(piece),
    }
}

fn tool_call(c: &ToolCallDelta) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}

fn tool_call_delta(c: &ToolCallDelta) -> Value {
    let mut v = json!({"index": c.index, "function": {"arguments": c.arguments}});
    if let Some(id) = &c.id {
        v["id"] = json!(id);
        v["type"] = json!("function");
    }
    if let Some(name) = &c.name {
        v["function"]["name"] = json!(name);
    }
    v
}

fn put_json_str(out: &mut BytesMut, s: &str) {
    put_json(out, s);
}

fn put_json<T: serde::Serialize + ?Sized>(out: &mut BytesMut, v: &T) {
    // Writing into memory cannot fail; a value that cannot be JSON is never made here.
    let _ = serde_json::to_writer(out.writer(), v);
}

/// Whether an upstream's chunk is only its usage (`"choices": []`, as OpenAI, vLLM
/// and llama-server send it last), not a part of the answer that carries usage too.
fn usage_only(chunk: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Option<Vec<serde::de::IgnoredAny>>,
    }
    serde_json::from_slice::<Chunk>(chunk).is_ok_and(|c| c.choices.is_none_or(|c| c.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Arc<ModelMetrics> {
        Arc::new(ModelMetrics::new(name, "test"))
    }

    fn events_of(out: &BytesMut) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn a_chat_stream_is_role_text_finish_and_usage_when_asked() {
        let mut enc = Encoder::new(Format::Chat, model("m\"odel"), true);
        let mut out = BytesMut::new();
        for e in [
            Event::Text {
                index: 0,
                text: "Hé \"there\"\n".into(),
            },
            Event::Finish {
                index: 0,
                reason: FinishReason::Length,
            },
            Event::Usage(Usage::new(3, 2)),
        ] {
            enc.stream_event(&e, &mut out);
        }
        let got = events_of(&out);
        assert_eq!(got.len(), 4);
        let id = got[0]["id"].as_str().unwrap();
        assert!(id.starts_with("chatcmpl-"));
        for c in &got {
            assert_eq!(c["id"], id);
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "m\"odel");
        }
        assert_eq!(
            got[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(got[1]["choices"][0]["delta"]["content"], "Hé \"there\"\n");
        assert!(got[1]["choices"][0]["finish_reason"].is_null());
        assert_eq!(got[2]["choices"][0]["delta"], json!({}));
        assert_eq!(got[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(got[3]["choices"], json!([]));
        assert_eq!(
            got[3]["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        );

        // Without include_usage, no usage chunk.
        let mut enc = Encoder::new(Format::Completion, model("m"), false);
        let mut out = BytesMut::new();
        for e in [
            Event::Text {
                index: 0,
                text: "abc".into(),
            },
            Event::Finish {
                index: 0,
                reason: FinishReason::Stop,
            },
            Event::Usage(Usage::new(3, 2)),
        ] {
            enc.stream_event(&e, &mut out);
        }
        let got = events_of(&out);
        assert_eq!(got.len(), 2, "no role chunk in a text completion");
        assert!(got.iter().all(|c| c["object"] == "text_completion"));
        assert_eq!(got[0]["choices"][0]["text"], "abc");
        assert_eq!(got[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn tool_calls_and_reasoning_stream_and_merge_into_the_whole_body() {
        let call = |id: Option<&str>, name: Option<&str>, args: &str| Event::ToolCall {
            index: 0,
            call: ToolCallDelta {
                index: 0,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: args.into(),
            },
        };
        let events = vec![
            Event::Reasoning {
                index: 0,
                text: "hmm".into(),
            },
            call(Some("call_1"), Some("get"), "{\"a\""),
            call(None, None, ":1}"),
            Event::Finish {
                index: 0,
                reason: FinishReason::ToolCalls,
            },
            Event::Usage(Usage::new(1, 1)),
        ];
        let mut enc = Encoder::new(Format::Chat, model("m"), false);
        let mut out = BytesMut::new();
        for e in &events {
            enc.stream_event(e, &mut out);
        }
        let got = events_of(&out);
        assert_eq!(got[1]["choices"][0]["delta"]["reasoning_content"], "hmm");
        assert_eq!(
            got[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_1"
        );
        assert_eq!(
            got[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "get"
        );
        assert!(
            got[3]["choices"][0]["delta"]["tool_calls"][0]
                .get("id")
                .is_none()
        );

        let whole: Value = serde_json::from_slice(&enc.whole(events)).unwrap();
        let m = &whole["choices"][0]["message"];
        assert_eq!(whole["object"], "chat.completion");
        assert!(m["content"].is_null());
        assert_eq!(m["reasoning_content"], "hmm");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(whole["usage"]["total_tokens"], 2);
    }

    #[test]
    fn an_upstreams_own_json_goes_out_as_it_came() {
        let w = hearth_router::Wire::chunk(Bytes::from_static(b"{\"x\":1}"));
        let mut enc = Encoder::new(Format::Chat, model("m"), true);
        let mut out = BytesMut::new();
        enc.stream_event(&Event::Wire(w.clone()), &mut out);
        assert_eq!(&out[..], b"data: {\"x\":1}\n\n");
        assert_eq!(&enc.whole(vec![Event::Wire(w)])[..], b"{\"x\":1}");
    }

    #[test]
    fn an_upstreams_usage_chunk_goes_out_only_when_the_client_asked_for_it() {
        let usage = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}"#;
        let last = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}"#;
        for (asked, chunk, sent) in [
            (true, &usage[..], true),
            (false, &usage[..], false),
            // Usage riding on a chunk of the answer: the answer goes out.
            (false, &last[..], true),
        ] {
            let w = hearth_router::Wire::chunk(Bytes::copy_from_slice(chunk));
            assert!(w.usage.is_some());
            let mut enc = Encoder::new(Format::Chat, model("m"), asked);
            let mut out = BytesMut::new();
            enc.stream_event(&Event::Wire(w), &mut out);
            assert_eq!(
                !out.is_empty(),
                sent,
                "asked {asked}: {}",
                String::from_utf8_lossy(chunk)
            );
        }
    }
}
