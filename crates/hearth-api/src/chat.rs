//! `/v1/chat/completions`: the request, with field-precise parsing, and the helpers
//! backends use to build responses and chunks.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields::{Fault, Key, Nullable, field};

/// Roles a chat message may have. `developer` is OpenAI's newer name for `system`.
pub const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// A chat completion request. Fields the gateway interprets are typed; everything
/// else is kept in `extra` and forwarded as it came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopSequences>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<u32>,
    pub response_format: Option<Value>,
    /// Everything else (tools, tool_choice, logprobs, user, vendor fields...).
    pub extra: Map<String, Value>,
}

crate::fields::request_fields!(
    ChatCompletionRequest,
    required: [messages],
    flags: [stream],
    optional: [
        stream_options,
        max_tokens,
        max_completion_tokens,
        temperature,
        top_p,
        top_k,
        min_p,
        seed,
        stop,
        presence_penalty,
        frequency_penalty,
        n,
        response_format
    ]
);

/// One message. `content` is a string or an array of parts (text, images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<Value>),
}

impl MessageContent {
    /// The text of the content: the string, or the `text` parts joined.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        }
    }

    /// Length in bytes of the text and of any inline data (images as data URLs).
    pub fn byte_len(&self) -> usize {
        match self {
            MessageContent::Text(s) => s.len(),
            MessageContent::Parts(parts) => parts.iter().map(|p| p.to_string().len()).sum(),
        }
    }
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.to_owned(),
            content: Some(MessageContent::Text(content.to_owned())),
            extra: Map::new(),
        }
    }

    pub fn text(&self) -> String {
        self.content
            .as_ref()
            .map(MessageContent::text)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one string or up to four.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

impl StopSequences {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s.clone()],
            StopSequences::Many(v) => v.clone(),
        }
    }
}

impl ChatCompletionRequest {
    /// Parses a request body, naming the offending field in the error (400
    /// `invalid_json` when the body is not JSON at all).
    pub fn from_json(json: &[u8]) -> Result<Self, ApiError> {
        let fault = Fault::default();
        crate::fields::from_slice(json, &fault, ChatVisitor(&fault))
    }

    /// As [`ChatCompletionRequest::from_json`], from a parsed value.
    pub fn from_value(value: Value) -> Result<Self, ApiError> {
        let fault = Fault::default();
        crate::fields::from_value(value, &fault, ChatVisitor(&fault))
    }

    /// The request as JSON again, with every field it came with.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `max_completion_tokens` wins over the older `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

struct ChatVisitor<'f>(&'f Fault);

impl<'de> Visitor<'de> for ChatVisitor<'_> {
    type Value = ChatCompletionRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fault = self.0;
        let mut r = ChatCompletionRequest::default();
        let mut messages = None;
        while let Some(Key(k)) = map.next_key()? {
            if r.read_typed(k.as_ref(), &mut map, fault)? {
                continue;
            }
            match k.as_ref() {
                "messages" => {
                    messages = map
                        .next_value_seed(Nullable(Messages(fault)))
                        .inspect_err(|e| {
                            fault.record(ApiError::invalid_param(
                                "messages",
                                format!("invalid value for `messages`: {e}"),
                            ));
                        })?;
                }
                "stream" => r.stream = field(&mut map, "stream", fault)?.unwrap_or(false),
                _ => {
                    let v: Value = map.next_value()?;
                    r.extra.insert(k.into_owned(), v);
                }
            }
        }
        r.messages = match messages {
            None => {
                return Err(fault.fail(ApiError::invalid_param(
                    "messages",
                    "`messages` is required",
                )));
            }
            Some(m) if m.is_empty() => {
                return Err(fault.fail(ApiError::invalid_param(
                    "messages",
                    "`messages` must not be empty",
                )));
            }
            Some(m) => m,
        };
        crate::fields::check_generation(
            r.stop.as_ref(),
            r.temperature,
            r.top_p,
            r.min_p,
            r.presence_penalty,
            r.frequency_penalty,
        )
        .map_err(|e| fault.fail(e))?;
        Ok(r)
    }
}

/// `messages`: an array of message objects, each checked where it stands.
struct Messages<'f>(&'f Fault);

impl<'de> DeserializeSeed<'de> for Messages<'_> {
    type Value = Vec<ChatMessage>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Messages<'_> {
    type Value = Vec<ChatMessage>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(m) = seq.next_element_seed(Message {
            i: out.len(),
            fault: self.0,
        })? {
            out.push(m);
        }
        Ok(out)
    }
}

/// `messages[i]`: `role` (one of [`ROLES`]), `content` (a string, an array of
/// parts, or null), and any other fields, kept as they came.
struct Message<'f> {
    i: usize,
    fault: &'f Fault,
}

impl<'de> DeserializeSeed<'de> for Message<'_> {
    type Value = ChatMessage;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let (i, fault) = (self.i, self.fault);
        d.deserialize_map(self).inspect_err(|_| {
            fault.record(ApiError::invalid_param(
                format!("messages[{i}]"),
                format!("messages[{i}] must be an object"),
            ));
        })
    }
}

impl<'de> Visitor<'de> for Message<'_> {
    type Value = ChatMessage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (i, fault) = (self.i, self.fault);
        let mut role: Option<String> = None;
        let mut content = None;
        let mut extra = Map::new();
        while let Some(Key(k)) = map.next_key()? {
            match k.as_ref() {
                "role" => {
                    role = map.next_value::<Option<String>>().inspect_err(|e| {
                        fault.record(ApiError::invalid_param(
                            format!("messages[{i}].role"),
                            format!("invalid value for `messages[{i}].role`: {e}"),
                        ));
                    })?;
                }
                "content" => {
                    content = map
                        .next_value_seed(Nullable(Content))
                        .inspect_err(|_| {
                            fault.record(ApiError::invalid_param(
                                format!("messages[{i}].content"),
                                format!("messages[{i}].content must be a string or an array of content parts"),
                            ));
                        })?;
                }
                _ => {
                    let v: Value = map.next_value()?;
                    extra.insert(k.into_owned(), v);
                }
            }
        }
        let Some(role) = role else {
            return Err(fault.fail(ApiError::invalid_param(
                format!("messages[{i}].role"),
                format!("messages[{i}].role is required"),
            )));
        };
        if !ROLES.contains(&role.as_str()) {
            return Err(fault.fail(ApiError::invalid_param(
                format!("messages[{i}].role"),
                format!(
                    "messages[{i}].role `{role}` is not one of {}",
                    ROLES.join(", ")
                ),
            )));
        }
        Ok(ChatMessage {
            role,
            content,
            extra,
        })
    }
}

/// A message's `content`: a string or an array of parts (kept as they came).
struct Content;

impl<'de> DeserializeSeed<'de> for Content {
    type Value = MessageContent;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Content {
    type Value = MessageContent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of content parts")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MessageContent::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(MessageContent::Text(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(p) = seq.next_element::<Value>()? {
            parts.push(p);
        }
        Ok(MessageContent::Parts(parts))
    }
}

/// Builds the JSON of a non-streaming chat completion.
pub fn completion_body(
    id: &str,
    model: &str,
    content: &str,
    finish_reason: &str,
    usage: &crate::Usage,
) -> Value {
    serde_json::json!({
        "id": id,
        "object": "chat.completion",
        "created": crate::unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish_reason,
            "logprobs": null
        }],
        "usage": usage,
    })
}

/// Builds one streaming chunk. `delta` is e.g. `{"content": "Hi"}`.
pub fn chunk_body(
    id: &str,
    model: &str,
    created: u64,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
    })
}

/// The final usage chunk of a stream: `choices` is empty, as OpenAI sends it.
pub fn usage_chunk_body(id: &str, model: &str, created: u64, usage: &crate::Usage) -> Value {
    serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_round_trips_unknown_fields() {
        let v = json!({
            "model": "m", "messages": [{"role": "user", "content": "hi", "name": "bob"}],
            "tools": [{"type": "function"}], "temperature": 0.5, "stream": true,
            "stream_options": {"include_usage": true}
        });
        let req = ChatCompletionRequest::from_value(v.clone()).unwrap();
        assert!(req.stream && req.include_usage());
        assert_eq!(req.extra["tools"], json!([{"type": "function"}]));
        assert_eq!(req.to_value(), v);
    }

    #[test]
    fn serializes_straight_to_bytes_extras_first_and_each_key_once() {
        let v = json!({
            "user": "u1", "model": "m", "tools": [], "temperature": 0.7,
            "messages": [{"role": "user", "content": "hi"}], "seed": 3
        });
        let mut req = ChatCompletionRequest::from_value(v.clone()).unwrap();
        let text = String::from_utf8(serde_json::to_vec(&req).unwrap()).unwrap();
        assert!(
            text.starts_with(r#"{"user":"u1","tools":[],"messages":"#),
            "{text}"
        );
        assert!(
            text.contains(r#""temperature":0.7"#),
            "f32 as written: {text}"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        // A typed field also present in `extra` is written once, with the typed value.
        req.extra.insert("model".into(), json!("stale"));
        req.extra
            .insert("stream".into(), json!("kept: stream is false"));
        req.model = Some("fresh".into());
        let text = String::from_utf8(serde_json::to_vec(&req).unwrap()).unwrap();
        assert_eq!(text.matches(r#""model""#).count(), 1, "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["model"], "fresh");
        assert_eq!(back["stream"], "kept: stream is false");
    }

    #[test]
    fn serializes_under_another_model_name_without_a_copy() {
        let mut req = ChatCompletionRequest::from_json(
            br#"{"model":"local-name","messages":[{"role":"user","content":"hi"}],"user":"u"}"#,
        )
        .unwrap();
        req.extra.insert("model".into(), json!("stale"));
        let as_upstream = crate::AsModel {
            request: &req,
            model: "Org/Upstream-7B",
        };
        let text = String::from_utf8(serde_json::to_vec(&as_upstream).unwrap()).unwrap();
        assert_eq!(text.matches(r#""model""#).count(), 1, "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["model"], "Org/Upstream-7B");
        assert_eq!(back["user"], "u");
        // The request itself still carries its own name.
        assert_eq!(req.to_value()["model"], "local-name");
        // A request with no model gets one.
        req.model = None;
        req.extra.clear();
        let back: Value = serde_json::from_slice(
            &serde_json::to_vec(&crate::AsModel {
                request: &req,
                model: "up",
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(back["model"], "up");
    }

    #[test]
    fn names_the_bad_param() {
        let e = ChatCompletionRequest::from_value(
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = ChatCompletionRequest::from_value(json!({"messages": [{"role": "wizard"}]}))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = ChatCompletionRequest::from_value(json!({"messages": []})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = ChatCompletionRequest::from_value(
            json!({"messages": [{"role": "user", "content": 5}]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = ChatCompletionRequest::from_value(
            json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stop"));
        let e = ChatCompletionRequest::from_value(
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 9}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }

    #[test]
    fn bytes_and_values_parse_alike() {
        let bodies = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"}],"tools":[{"type":"function"}],"temperature":0.5,"stream":true,"stream_options":{"include_usage":true},"user":"u"}"#,
            r#"{"messages":[{"role":"system","content":null},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:,x"}}]}],"stop":["x","y"],"seed":-3,"model":null,"stream":null}"#,
            r#"{"mod\u0065l":"escaped key","messages":[{"r\u006fle":"tool","content":"\"quoted\"","tool_call_id":"t1"}],"logprobs":true,"n":1}"#,
            r#"{"model":"first","model":"second","messages":[{"role":"user","content":"x"}],"extra":1,"extra":2}"#,
        ];
        for b in bodies {
            let from_bytes = ChatCompletionRequest::from_json(b.as_bytes()).unwrap();
            let from_value =
                ChatCompletionRequest::from_value(serde_json::from_str(b).unwrap()).unwrap();
            assert_eq!(from_bytes, from_value, "{b}");
        }
        let r = ChatCompletionRequest::from_json(bodies[2].as_bytes()).unwrap();
        assert_eq!(r.model.as_deref(), Some("escaped key"));
        assert_eq!(r.messages[0].role, "tool");
        assert_eq!(r.messages[0].extra["tool_call_id"], "t1");
        let r = ChatCompletionRequest::from_json(bodies[3].as_bytes()).unwrap();
        assert_eq!(
            r.model.as_deref(),
            Some("second"),
            "the last duplicate wins"
        );
        assert_eq!(r.extra["extra"], 2);
        let r = ChatCompletionRequest::from_json(bodies[1].as_bytes()).unwrap();
        assert!(!r.stream && r.model.is_none() && r.messages[0].content.is_none());
    }

    #[test]
    fn bytes_errors_name_the_param_or_the_syntax() {
        let param = |b: &str| {
            let e = ChatCompletionRequest::from_json(b.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{b}: {e:?}");
            (
                e.param.unwrap_or_default(),
                e.code.unwrap_or_default(),
                e.message,
            )
        };
        let ok = r#"[{"role":"user","content":"x"}]"#;
        assert_eq!(
            param(&format!(r#"{{"messages":{ok},"temperature":"hot"}}"#)).0,
            "temperature"
        );
        assert_eq!(
            param(&format!(r#"{{"messages":{ok},"max_tokens":-1}}"#)).0,
            "max_tokens"
        );
        assert_eq!(
            param(&format!(r#"{{"messages":{ok},"stream":"yes"}}"#)).0,
            "stream"
        );
        assert_eq!(param(r#"{"messages":"hi"}"#).0, "messages");
        assert_eq!(param(r#"{"messages":[]}"#).0, "messages");
        assert_eq!(param(r#"{"messages":null}"#).0, "messages");
        assert_eq!(param(r#"{"model":"m"}"#).2, "`messages` is required");
        assert_eq!(
            param(r#"{"messages":[{"role":"user"},5]}"#).0,
            "messages[1]"
        );
        assert_eq!(param(r#"{"messages":[{"role":7}]}"#).0, "messages[0].role");
        assert_eq!(
            param(r#"{"messages":[{"content":"x"}]}"#).0,
            "messages[0].role"
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":{"a":1}}]}"#).0,
            "messages[0].content"
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":true}]}"#).0,
            "messages[0].content"
        );
        assert_eq!(
            param(&format!(r#"{{"messages":{ok},"top_p":3}}"#)).0,
            "top_p"
        );
        assert_eq!(
            param(&format!(r#"{{"messages":{ok},"stop":[""]}}"#)).0,
            "stop"
        );
        // Not an object at all.
        let (p, _, m) = param("[1,2]");
        assert_eq!(
            (p.as_str(), m.as_str()),
            ("", "the request body must be a JSON object")
        );
        // Malformed JSON, wherever it breaks, is `invalid_json`.
        for b in [
            "{",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]",
            r#"{"messages":[{"role":"user","content":"x"}]} trailing"#,
            r#"{"messages":[{"role":"user","content":[1,]}]}"#,
            r#"{"messages":[{"role":"user","content":"x"}],"tools":[{]}"#,
            "not json",
        ] {
            assert_eq!(param(b).1, "invalid_json", "{b}");
        }
    }

    #[test]
    fn content_parts_text() {
        let c = MessageContent::Parts(vec![
            json!({"type":"text","text":"a"}),
            json!({"type":"image_url"}),
        ]);
        assert_eq!(c.text(), "a");
    }
}
