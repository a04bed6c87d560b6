//! `/v1/chat/completions`: the request, with field-precise parsing, and the helpers
//! backends use to build responses and chunks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields::take;

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

crate::fields::serialize_request!(
    ChatCompletionRequest,
    required: [messages],
    flags: [stream],
    optional: [
        model,
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
    /// Parses a JSON value, naming the offending field in the error.
    pub fn from_value(value: Value) -> Result<Self, ApiError> {
        let Value::Object(mut map) = value else {
            return Err(ApiError::invalid_param(
                "",
                "the request body must be a JSON object",
            ));
        };
        let messages: Vec<Value> = take(&mut map, "messages")?
            .ok_or_else(|| ApiError::invalid_param("messages", "`messages` is required"))?;
        if messages.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` must not be empty",
            ));
        }
        let messages = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| parse_message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let stop: Option<StopSequences> = take(&mut map, "stop")?;
        if let Some(stop) = &stop {
            check_stop(stop)?;
        }
        let req = ChatCompletionRequest {
            model: take(&mut map, "model")?,
            messages,
            stream: take(&mut map, "stream")?.unwrap_or(false),
            stream_options: take(&mut map, "stream_options")?,
            max_tokens: take(&mut map, "max_tokens")?,
            max_completion_tokens: take(&mut map, "max_completion_tokens")?,
            temperature: take(&mut map, "temperature")?,
            top_p: take(&mut map, "top_p")?,
            top_k: take(&mut map, "top_k")?,
            min_p: take(&mut map, "min_p")?,
            seed: take(&mut map, "seed")?,
            stop,
            presence_penalty: take(&mut map, "presence_penalty")?,
            frequency_penalty: take(&mut map, "frequency_penalty")?,
            n: take(&mut map, "n")?,
            response_format: take(&mut map, "response_format")?,
            extra: map,
        };
        crate::fields::check_sampling(
            req.temperature,
            req.top_p,
            req.presence_penalty,
            req.frequency_penalty,
        )?;
        Ok(req)
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

fn parse_message(i: usize, m: Value) -> Result<ChatMessage, ApiError> {
    let param = format!("messages[{i}]");
    let Value::Object(mut map) = m else {
        return Err(ApiError::invalid_param(
            param,
            format!("messages[{i}] must be an object"),
        ));
    };
    let role: String = take(&mut map, "role")
        .map_err(|e| e.with_param(format!("{param}.role")))?
        .ok_or_else(|| {
            ApiError::invalid_param(
                format!("{param}.role"),
                format!("messages[{i}].role is required"),
            )
        })?;
    if !ROLES.contains(&role.as_str()) {
        return Err(ApiError::invalid_param(
            format!("{param}.role"),
            format!(
                "messages[{i}].role `{role}` is not one of {}",
                ROLES.join(", ")
            ),
        ));
    }
    let content = match map.remove("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(MessageContent::Text(s)),
        Some(Value::Array(parts)) => Some(MessageContent::Parts(parts)),
        Some(_) => {
            return Err(ApiError::invalid_param(
                format!("{param}.content"),
                format!("messages[{i}].content must be a string or an array of content parts"),
            ));
        }
    };
    Ok(ChatMessage {
        role,
        content,
        extra: map,
    })
}

pub(crate) fn check_stop(stop: &StopSequences) -> Result<(), ApiError> {
    let v = stop.to_vec();
    if v.len() > 4 {
        return Err(ApiError::invalid_param(
            "stop",
            "`stop` takes at most 4 sequences",
        ));
    }
    if v.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param(
            "stop",
            "`stop` sequences must not be empty",
        ));
    }
    Ok(())
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
    fn content_parts_text() {
        let c = MessageContent::Parts(vec![
            json!({"type":"text","text":"a"}),
            json!({"type":"image_url"}),
        ]);
        assert_eq!(c.text(), "a");
    }
}
