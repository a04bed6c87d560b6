//! `/v1/completions`: plain-text prompts, with `suffix` for fill-in-the-middle.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chat::{StopSequences, StreamOptions, check_stop};
use crate::error::ApiError;
use crate::fields::take;

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

crate::fields::serialize_request!(
    CompletionRequest,
    required: [prompt],
    flags: [stream],
    optional: [
        model,
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
    pub fn from_value(value: Value) -> Result<Self, ApiError> {
        let Value::Object(mut map) = value else {
            return Err(ApiError::invalid_param(
                "",
                "the request body must be a JSON object",
            ));
        };
        let prompt: Prompt = take(&mut map, "prompt")?
            .ok_or_else(|| ApiError::invalid_param("prompt", "`prompt` is required"))?;
        let stop: Option<StopSequences> = take(&mut map, "stop")?;
        if let Some(stop) = &stop {
            check_stop(stop)?;
        }
        let req = CompletionRequest {
            model: take(&mut map, "model")?,
            prompt,
            suffix: take(&mut map, "suffix")?,
            stream: take(&mut map, "stream")?.unwrap_or(false),
            stream_options: take(&mut map, "stream_options")?,
            max_tokens: take(&mut map, "max_tokens")?,
            temperature: take(&mut map, "temperature")?,
            top_p: take(&mut map, "top_p")?,
            top_k: take(&mut map, "top_k")?,
            min_p: take(&mut map, "min_p")?,
            seed: take(&mut map, "seed")?,
            stop,
            presence_penalty: take(&mut map, "presence_penalty")?,
            frequency_penalty: take(&mut map, "frequency_penalty")?,
            n: take(&mut map, "n")?,
            echo: take(&mut map, "echo")?,
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
}
