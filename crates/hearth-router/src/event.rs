//! What a backend answers: a stream of typed [`Event`]s, whatever the request asked
//! (a stream or one whole answer) and whatever the backend is.
//!
//! Every caller reads the same events: the `/v1` front end writes them as OpenAI's
//! chunks or body, the UI's as its own events, a job worker keeps the text. Wire
//! bytes are made at that edge only, never by a backend, with one exception that
//! keeps the gateway as cheap as a proxy: an OpenAI-compatible upstream's own chunk
//! (or whole body) travels as [`Event::Wire`], its bytes untouched, so the `/v1`
//! front end forwards it without parsing it, and other front ends read its typed
//! events with [`Wire::events`] (or the whole stream through [`typed`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use hearth_api::{ApiError, ErrorKind, Usage};
use serde_json::Value;

use crate::backend::BackendError;

/// The events of one answer, in order; dropping the stream cancels the work.
pub type EventStream = BoxStream<'static, Result<Event, BackendError>>;

/// One piece of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// More text of choice `index`.
    Text { index: u32, text: String },
    /// More of choice `index`'s reasoning (`reasoning_content`), apart from its text.
    Reasoning { index: u32, text: String },
    /// A piece of a tool call of choice `index`.
    ToolCall { index: u32, call: ToolCallDelta },
    /// Choice `index` ended.
    Finish { index: u32, reason: FinishReason },
    /// The answer's token counts (the last one seen is the answer's).
    Usage(Usage),
    /// The vector of input `index` of an embeddings request.
    Embedding { index: u32, vector: Vec<f32> },
    /// The log probability of the next token of choice `index` (asked for with
    /// `logprobs`); it comes before the text that token brings.
    Logprob { index: u32, token: TokenLogprob },
    /// An OpenAI-compatible upstream's own JSON, as it sent it.
    Wire(Wire),
}

impl Event {
    /// The usage this event carries, typed or inside an upstream's bytes.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Event::Usage(u) => Some(*u),
            Event::Wire(w) => w.usage,
            _ => None,
        }
    }
}

/// A piece of a tool call: its number within the choice (`index` in OpenAI's
/// delta), its `id` and function `name` with its first piece, and more of its
/// JSON `arguments`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// One generated token's log probability, and the most likely tokens at its
/// place (`top_logprobs`), each as `(text, bytes, logprob)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// Why a choice ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other(String),
}

impl FinishReason {
    pub fn parse(s: &str) -> FinishReason {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// OpenAI's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }
}

/// An upstream's JSON as it came: one streaming chunk (the payload of a `data:`
/// line), or a whole answer's body (`whole`). `usage` was read from it once, where
/// the gateway needs it for accounting.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    pub data: Bytes,
    pub usage: Option<Usage>,
    pub whole: bool,
}

impl Wire {
    /// A streaming chunk, its usage read from it.
    pub fn chunk(data: Bytes) -> Self {
        let usage = Usage::in_chunk(&data);
        Wire {
            data,
            usage,
            whole: false,
        }
    }

    /// The typed events of this chunk or body, in order: per choice its reasoning,
    /// text, tool calls and end; then the usage. A chunk that is an error object
    /// (upstreams send `{"error": ...}` when they fail mid-stream) is `Err`.
    pub fn events(&self) -> Result<Vec<Event>, ApiError> {
        let v: Value = serde_json::from_slice(&self.data).map_err(|e| {
            ApiError::new(
                ErrorKind::BadGateway,
                format!("the upstream sent a chunk that is not JSON: {e}"),
            )
        })?;
        if let Some(e) = v.get("error") {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| e.as_str())
                .unwrap_or("the upstream failed");
            return Err(ApiError::new(
                ErrorKind::BadGateway,
                format!("upstream: {message}"),
            ));
        }
        let mut out = Vec::new();
        // An embeddings body: a vector per input (written as numbers; a client that
        // asked the upstream for base64 reads the body itself).
        for (i, item) in v
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(numbers) = item.get("embedding").and_then(Value::as_array) {
                out.push(Event::Embedding {
                    index: item
                        .get("index")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(u32::try_from(i).unwrap_or(u32::MAX)),
                    vector: numbers
                        .iter()
                        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                        .collect(),
                });
            }
        }
        for (i, choice) in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(u32::try_from(i).unwrap_or(u32::MAX));
            // Chat: `delta` (stream) or `message` (whole); completions: `text`.
            let part = choice.get("delta").or_else(|| choice.get("message"));
            let text = part
                .and_then(|p| p.get("content"))
                .or_else(|| choice.get("text"))
                .and_then(Value::as_str);
            if let Some(r) = part
                .and_then(|p| p.get("reasoning_content").or_else(|| p.get("reasoning")))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                out.push(Event::Reasoning {
                    index,
                    text: r.to_owned(),
                });
            }
            if let Some(t) = text.filter(|t| !t.is_empty()) {
                out.push(Event::Text {
                    index,
                    text: t.to_owned(),
                });
            }
            for (j, call) in part
                .and_then(|p| p.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let function = call.get("function");
                out.push(Event::ToolCall {
                    index,
                    call: ToolCallDelta {
                        index: call
                            .get("index")
                            .and_then(Value::as_u64)
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(u32::try_from(j).unwrap_or(u32::MAX)),
                        id: call.get("id").and_then(Value::as_str).map(str::to_owned),
                        name: function
                            .and_then(|f| f.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        arguments: function
                            .and_then(|f| f.get("arguments"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    },
                });
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                out.push(Event::Finish {
                    index,
                    reason: FinishReason::parse(f),
                });
            }
        }
        if let Some(u) = self.usage.or_else(|| Usage::from_response(&v)) {
            out.push(Event::Usage(u));
        }
        Ok(out)
    }
}

/// `events` with every [`Event::Wire`] opened into its typed events, for callers
/// that do not forward an upstream's bytes (the UI, jobs, other APIs). An error
/// chunk ends the stream with an error.
pub fn typed<S>(events: S) -> Typed<S>
where
    S: Stream<Item = Result<Event, BackendError>> + Unpin,
{
    Typed {
        inner: Some(events),
        queued: std::collections::VecDeque::new(),
    }
}

/// See [`typed`].
pub struct Typed<S> {
    inner: Option<S>,
    queued: std::collections::VecDeque<Event>,
}

impl<S> Stream for Typed<S>
where
    S: Stream<Item = Result<Event, BackendError>> + Unpin,
{
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(e) = this.queued.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(inner).poll_next(cx) {
                Poll::Ready(Some(Ok(Event::Wire(w)))) => match w.events() {
                    Ok(events) => this.queued.extend(events),
                    Err(e) => {
                        this.inner = None;
                        return Poll::Ready(Some(Err(BackendError::Status {
                            status: 502,
                            retry_after: None,
                            error: e,
                        })));
                    }
                },
                Poll::Ready(Some(other)) => return Poll::Ready(Some(other)),
                Poll::Ready(None) => {
                    this.inner = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn wire(json: &str) -> Wire {
        Wire::chunk(Bytes::from(json.to_owned()))
    }

    #[test]
    fn chunks_open_into_text_reasoning_tool_calls_finish_and_usage() {
        let e = wire(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi","reasoning_content":"think"},"finish_reason":null}]}"#)
            .events()
            .unwrap();
        assert_eq!(
            e,
            [
                Event::Reasoning {
                    index: 0,
                    text: "think".into()
                },
                Event::Text {
                    index: 0,
                    text: "Hi".into()
                },
            ]
        );
        let e = wire(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]},"finish_reason":"tool_calls"}]}"#)
            .events()
            .unwrap();
        assert_eq!(
            e,
            [
                Event::ToolCall {
                    index: 0,
                    call: ToolCallDelta {
                        index: 1,
                        id: Some("call_1".into()),
                        name: Some("f".into()),
                        arguments: "{\"a\"".into()
                    }
                },
                Event::Finish {
                    index: 0,
                    reason: FinishReason::ToolCalls
                },
            ]
        );
        let e = wire(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        )
        .events()
        .unwrap();
        assert_eq!(e, [Event::Usage(Usage::new(3, 2))]);
        // A whole chat body, and a text completion's chunk.
        let whole = Wire {
            data: Bytes::from_static(br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#),
            usage: None,
            whole: true,
        };
        assert_eq!(
            whole.events().unwrap(),
            [
                Event::Text {
                    index: 0,
                    text: "whole".into()
                },
                Event::Finish {
                    index: 0,
                    reason: FinishReason::Length
                },
                Event::Usage(Usage::new(1, 1)),
            ]
        );
        let e = wire(r#"{"choices":[{"index":0,"text":"abc","finish_reason":null}]}"#)
            .events()
            .unwrap();
        assert_eq!(
            e,
            [Event::Text {
                index: 0,
                text: "abc".into()
            }]
        );
    }

    #[test]
    fn error_chunks_and_garbage_are_errors() {
        let e = wire(r#"{"error":{"message":"boom"}}"#)
            .events()
            .unwrap_err();
        assert_eq!(e.message, "upstream: boom");
        assert!(wire("{not json").events().is_err());
    }

    #[tokio::test]
    async fn typed_opens_wire_events_and_ends_at_an_error_chunk() {
        let items: Vec<Result<Event, BackendError>> = vec![
            Ok(Event::Text {
                index: 0,
                text: "a".into(),
            }),
            Ok(Event::Wire(wire(
                r#"{"choices":[{"delta":{"content":"b"}}]}"#,
            ))),
            Ok(Event::Wire(wire(r#"{"error":{"message":"x"}}"#))),
            Ok(Event::Text {
                index: 0,
                text: "never".into(),
            }),
        ];
        let got: Vec<_> = typed(futures::stream::iter(items).boxed()).collect().await;
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1].as_ref().unwrap(),
            &Event::Text {
                index: 0,
                text: "b".into()
            }
        );
        assert!(matches!(
            got[2],
            Err(BackendError::Status { status: 502, .. })
        ));
    }
}
