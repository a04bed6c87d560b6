//! `/v1/embeddings`: one vector per input, as RAG tools and vector stores ask.

use std::fmt;

use base64::Engine as _;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields::{Fault, Key, field};

/// Inputs one request may carry, as OpenAI allows.
pub const MAX_INPUTS: usize = 2048;

/// An embeddings request. Fields Hearth does not read stay in `extra` for an upstream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: Option<String>,
    pub input: EmbeddingInput,
    /// `float` (the default) or `base64`: little-endian `f32`s, base64-encoded.
    pub encoding_format: Option<EncodingFormat>,
    /// A shorter vector, where the model was trained for it.
    pub dimensions: Option<u32>,
    /// Hearth's own, never read from or written to JSON: an input longer than the
    /// embedded model reads at once is cut short instead of refused (Ollama's
    /// `/api/embed` sets it, as Ollama does by default).
    pub truncate: bool,
    pub extra: Map<String, Value>,
}

crate::fields::request_fields!(
    EmbeddingsRequest,
    required: [input],
    flags: [],
    optional: [encoding_format, dimensions]
);

/// `input`: a string, a list of strings, a list of token ids, or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl Default for EmbeddingInput {
    fn default() -> Self {
        EmbeddingInput::Text(String::new())
    }
}

/// One input: text, or token ids of the model's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputItem<'a> {
    Text(&'a str),
    Tokens(&'a [u32]),
}

impl EmbeddingInput {
    /// The inputs, in order: each gets one vector, at its index.
    pub fn items(&self) -> Vec<InputItem<'_>> {
        match self {
            EmbeddingInput::Text(s) => vec![InputItem::Text(s)],
            EmbeddingInput::Texts(v) => v.iter().map(|s| InputItem::Text(s)).collect(),
            EmbeddingInput::Tokens(t) => vec![InputItem::Tokens(t)],
            EmbeddingInput::TokenLists(v) => v.iter().map(|t| InputItem::Tokens(t)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) | EmbeddingInput::Tokens(_) => 1,
            EmbeddingInput::Texts(v) => v.len(),
            EmbeddingInput::TokenLists(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn byte_len(&self) -> usize {
        match self {
            EmbeddingInput::Text(s) => s.len(),
            EmbeddingInput::Texts(v) => v.iter().map(String::len).sum(),
            EmbeddingInput::Tokens(t) => t.len() * 4,
            EmbeddingInput::TokenLists(t) => t.iter().map(|x| x.len() * 4).sum(),
        }
    }

    /// OpenAI's rules: at least one input, at most [`MAX_INPUTS`], none empty.
    fn check(&self) -> Result<(), ApiError> {
        let n = self.len();
        if n == 0 {
            return Err(ApiError::invalid_param(
                "input",
                "`input` is an empty list: give at least one string (or list of token ids) to embed",
            ));
        }
        if n > MAX_INPUTS {
            return Err(ApiError::invalid_param(
                "input",
                format!(
                    "`input` has {n} items, more than the {MAX_INPUTS} one request may carry: split it"
                ),
            ));
        }
        let empty = self.items().iter().position(|i| match i {
            InputItem::Text(s) => s.is_empty(),
            InputItem::Tokens(t) => t.is_empty(),
        });
        if let Some(i) = empty {
            return Err(ApiError::invalid_param(
                "input",
                if n == 1 {
                    "`input` is empty: there is nothing to embed".to_owned()
                } else {
                    format!("`input[{i}]` is empty: there is nothing to embed")
                },
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

impl EmbeddingsRequest {
    /// Parses a request body, naming the offending field in the error (400
    /// `invalid_json` when the body is not JSON at all).
    pub fn from_json(json: &[u8]) -> Result<Self, ApiError> {
        let fault = Fault::default();
        crate::fields::from_slice(json, &fault, EmbeddingsVisitor(&fault))
    }

    /// As [`EmbeddingsRequest::from_json`], from a parsed value.
    pub fn from_value(value: Value) -> Result<Self, ApiError> {
        let fault = Fault::default();
        crate::fields::from_value(value, &fault, EmbeddingsVisitor(&fault))
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn base64(&self) -> bool {
        self.encoding_format == Some(EncodingFormat::Base64)
    }
}

/// One vector of an answer, written as the request asked: a list of numbers, or
/// the base64 of its little-endian `f32`s (what the OpenAI SDKs ask for by default,
/// and decode themselves).
pub fn embedding_value(vector: &[f32], base64: bool) -> Value {
    if base64 {
        let mut bytes = Vec::with_capacity(vector.len() * 4);
        for x in vector {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        // Through f64 by their shortest decimal form, so 0.1f32 is written 0.1,
        // not 0.10000000149011612.
        Value::Array(
            vector
                .iter()
                .map(|x| {
                    let v = x.to_string().parse::<f64>().unwrap_or(f64::from(*x));
                    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
                })
                .collect(),
        )
    }
}

/// The whole answer: `{"object": "list", "data": [...], "model", "usage"}`.
pub fn embeddings_body(
    model: &str,
    vectors: &[Vec<f32>],
    base64: bool,
    prompt_tokens: u64,
) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::json!({
                "object": "embedding",
                "index": i,
                "embedding": embedding_value(v, base64),
            })
        })
        .collect();
    serde_json::json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })
}

struct EmbeddingsVisitor<'f>(&'f Fault);

impl<'de> Visitor<'de> for EmbeddingsVisitor<'_> {
    type Value = EmbeddingsRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fault = self.0;
        let mut r = EmbeddingsRequest::default();
        let mut input: Option<EmbeddingInput> = None;
        while let Some(Key(k)) = map.next_key()? {
            if r.read_typed(k.as_ref(), &mut map, fault)? {
                continue;
            }
            match k.as_ref() {
                "input" => input = field(&mut map, "input", fault)?,
                _ => {
                    let v: Value = map.next_value()?;
                    r.extra.insert(k.into_owned(), v);
                }
            }
        }
        let Some(input) = input else {
            return Err(fault.fail(ApiError::invalid_param("input", "`input` is required")));
        };
        input.check().map_err(|e| fault.fail(e))?;
        r.input = input;
        if r.dimensions == Some(0) {
            return Err(fault.fail(ApiError::invalid_param(
                "dimensions",
                "`dimensions` must be at least 1",
            )));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_input_shape_reads_and_round_trips() {
        for (v, n) in [
            (json!({"model": "m", "input": "hello"}), 1),
            (
                json!({"input": ["a", "b", "c"], "encoding_format": "base64"}),
                3,
            ),
            (json!({"input": [1, 2, 3], "dimensions": 8}), 1),
            (json!({"input": [[1, 2], [3]], "user": "u"}), 2),
        ] {
            let r = EmbeddingsRequest::from_value(v.clone()).unwrap();
            assert_eq!(r.input.len(), n, "{v}");
            assert_eq!(r.input.items().len(), n);
            assert_eq!(r.to_value(), v);
            let from_bytes = EmbeddingsRequest::from_json(v.to_string().as_bytes()).unwrap();
            assert_eq!(from_bytes, r);
        }
    }

    #[test]
    fn bad_inputs_name_the_param() {
        let err = |b: &str| EmbeddingsRequest::from_json(b.as_bytes()).unwrap_err();
        for (body, param, words) in [
            (r#"{"model":"m"}"#, "input", "required"),
            (r#"{"input":[]}"#, "input", "empty list"),
            (r#"{"input":""}"#, "input", "empty"),
            (r#"{"input":["a",""]}"#, "input", "input[1]"),
            (r#"{"input":[[1],[]]}"#, "input", "input[1]"),
            (r#"{"input":{"a":1}}"#, "input", ""),
            (r#"{"input":[1,"a"]}"#, "input", ""),
            (
                r#"{"input":"a","encoding_format":"hex"}"#,
                "encoding_format",
                "",
            ),
            (
                r#"{"input":"a","dimensions":0}"#,
                "dimensions",
                "at least 1",
            ),
            (r#"{"input":"a","dimensions":-3}"#, "dimensions", ""),
        ] {
            let e = err(body);
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
            assert!(e.message.contains(words), "{body}: {}", e.message);
        }
        let many = serde_json::to_string(&json!({"input": vec!["x"; MAX_INPUTS + 1]})).unwrap();
        assert!(err(&many).message.contains("2049 items"));
        assert_eq!(err(r#"{"input":"a""#).code.as_deref(), Some("invalid_json"));
    }

    #[test]
    fn vectors_are_written_as_floats_or_base64() {
        let v = [0.1f32, -2.5, 1e-7];
        assert_eq!(embedding_value(&v, false), json!([0.1, -2.5, 1e-7]));
        let Value::String(b) = embedding_value(&v, true) else {
            panic!("not a string")
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
        let back: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, v);
        let body = embeddings_body("m", &[v.to_vec(), vec![1.0]], false, 7);
        assert_eq!(body["data"][1]["index"], 1);
        assert_eq!(body["data"][1]["object"], "embedding");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 7, "total_tokens": 7})
        );
    }
}
