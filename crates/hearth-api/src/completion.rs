//! `/v1/completions`: plain-text prompts, with `suffix` for fill-in-the-middle.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chat::{StopSequences, StreamOptions};
use crate::error::ApiError;
use crate::fields::{Fault, Key, field};

/// A text completion request. As with chat, uninterpreted fields stay in `extra`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    pub suffix: Option<String>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopSequences>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<u32>,
    pub echo: Option<bool>,
    pub extra: Map<String, Value>,
}

crate::fields::request_fields!(
    CompletionRequest,
    required: [prompt],
    flags: [stream],
    optional: [
        suffix,
        stream_options,
        max_tokens,
        temperature,
        top_p,
        top_k,
        min_p,
        seed,
        stop,
        presence_penalty,
        frequency_penalty,
        n,
        echo
    ]
);

/// `prompt`: a string, a list of strings, or token ids (forwarded as they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

impl Prompt {
    /// The prompt as one text, when it is text; a single-element list counts too.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Prompt::Text(s) => Some(s),
            Prompt::Texts(v) if v.len() == 1 => v.first().map(String::as_str),
            _ => None,
        }
    }

    pub fn byte_len(&self) -> usize {
        match self {
            Prompt::Text(s) => s.len(),
            Prompt::Texts(v) => v.iter().map(String::len).sum(),
            Prompt::Tokens(t) => t.len() * 4,
            Prompt::TokenLists(t) => t.iter().map(|x| x.len() * 4).sum(),
        }
    }
}

impl CompletionRequest {
    /// Parses a request body, naming the offending field in the error (400
    /// `invalid_json` when the body is not JSON at all).
    pub fn from_json(json: &[u8]) -> Result<Self, ApiError> {
        let fault = Fault::default();
        crate::fields::from_slice(json, &fault, CompletionVisitor(&fault))
    }

    /// As [`CompletionRequest::from_json`], from a parsed value.
    pub fn from_value(value: Value) -> Result<Self, ApiError> {
        let fault = Fault::default();
        crate::fields::from_value(value, &fault, CompletionVisitor(&fault))
    }

    /// The request as JSON again, with every field it came with.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// Builds the JSON of a non-streaming text completion.
pub fn completion_body(
    id: &str,
    model: &str,
    text: &str,
    finish_reason: &str,
    usage: &crate::Usage,
) -> Value {
    serde_json::json!({
        "id": id,
        "object": "text_completion",
        "created": crate::unix_now(),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": null}],
        "usage": usage,
    })
}

/// One streaming chunk of a text completion.
pub fn chunk_body(
    id: &str,
    model: &str,
    created: u64,
    text: &str,
    finish_reason: Option<&str>,
) -> Value {
    serde_json::json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": null}],
    })
}

struct CompletionVisitor<'f>(&'f Fault);

impl<'de> Visitor<'de> for CompletionVisitor<'_> {
    type Value = CompletionRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fault = self.0;
        let mut r = CompletionRequest::default();
        let mut prompt = None;
        while let Some(Key(k)) = map.next_key()? {
            if r.read_typed(k.as_ref(), &mut map, fault)? {
                continue;
            }
            match k.as_ref() {
                "prompt" => prompt = field(&mut map, "prompt", fault)?,
                "stream" => r.stream = field(&mut map, "stream", fault)?.unwrap_or(false),
                _ => {
                    let v: Value = map.next_value()?;
                    r.extra.insert(k.into_owned(), v);
                }
            }
        }
        let Some(prompt) = prompt else {
            return Err(fault.fail(ApiError::invalid_param("prompt", "`prompt` is required")));
        };
        r.prompt = prompt;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_with_suffix() {
        let v =
            json!({"model": "m", "prompt": "def f(", "suffix": "\n    return x", "logprobs": 2});
        let req = CompletionRequest::from_value(v.clone()).unwrap();
        assert_eq!(req.suffix.as_deref(), Some("\n    return x"));
        assert_eq!(req.to_value(), v);
    }

    #[test]
    fn missing_prompt_is_named() {
        let e = CompletionRequest::from_value(json!({"model": "m"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    #[test]
    fn parses_from_bytes_as_from_a_value() {
        for b in [
            r#"{"model":"m","prompt":"def f(","suffix":"\n  return 1","max_tokens":8,"logit_bias":{"1":2}}"#,
            r#"{"prompt":["a"],"stream":true,"stream_options":{"include_usage":true},"echo":false}"#,
            r#"{"prompt":[1,2,3],"stop":"x"}"#,
        ] {
            let from_bytes = CompletionRequest::from_json(b.as_bytes()).unwrap();
            let from_value =
                CompletionRequest::from_value(serde_json::from_str(b).unwrap()).unwrap();
            assert_eq!(from_bytes, from_value, "{b}");
        }
        let r = CompletionRequest::from_json(br#"{"prompt":"p","suffix":"s","user":"u"}"#).unwrap();
        assert_eq!(
            (r.prompt.as_text(), r.suffix.as_deref()),
            (Some("p"), Some("s"))
        );
        assert_eq!(r.extra["user"], "u");
    }

    #[test]
    fn bytes_errors_name_the_param() {
        let param = |b: &[u8]| {
            CompletionRequest::from_json(b)
                .unwrap_err()
                .param
                .unwrap_or_default()
        };
        assert_eq!(param(br#"{"model":"m"}"#), "prompt");
        assert_eq!(param(br#"{"prompt":{"a":1}}"#), "prompt");
        assert_eq!(param(br#"{"prompt":"p","suffix":3}"#), "suffix");
        assert_eq!(param(br#"{"prompt":"p","temperature":7}"#), "temperature");
        // Past f32's range: infinity, which would be forwarded as `null`.
        assert_eq!(param(br#"{"prompt":"p","min_p":1e39}"#), "min_p");
        // Past f64's: the field's error too, not a malformed body.
        assert_eq!(
            param(br#"{"prompt":"p","temperature":1e400}"#),
            "temperature"
        );
        let e = CompletionRequest::from_json(br#"{"prompt":"p""#).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
    }
}
