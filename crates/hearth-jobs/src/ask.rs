//! One model call of a step, through the gateway in-process: a chat request with
//! one user message (text, or text and the image), its streamed text gathered, its
//! usage kept. Cancel drops the stream, which aborts the call upstream.

use futures::StreamExt;
use hearth_api::{ApiError, ChatCompletionRequest, ChatMessage, MessageContent, StreamOptions};
use hearth_gateway::{Gateway, Principal};
use hearth_router::{Event, Request};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A model's whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// The model that answered (a fallback may have).
    pub model: String,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

/// A user message of `text` with an image as an OpenAI `image_url` content part.
pub fn with_image(text: &str, mime: &str, bytes: &[u8]) -> MessageContent {
    use base64::Engine;
    let url = format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    MessageContent::Parts(vec![
        json!({"type": "text", "text": text}),
        json!({"type": "image_url", "image_url": {"url": url}}),
    ])
}

/// Asks `model`; `Ok(None)` when cancelled first.
pub async fn ask(
    gateway: &Gateway,
    who: &Principal,
    model: &str,
    content: MessageContent,
    max_tokens: u32,
    id: &str,
    cancel: &CancellationToken,
) -> Result<Option<Reply>, ApiError> {
    let request = ChatCompletionRequest {
        model: Some(model.to_owned()),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: Some(content),
            extra: serde_json::Map::new(),
        }],
        stream: true,
        stream_options: Some(StreamOptions {
            include_usage: true,
            extra: serde_json::Map::new(),
        }),
        max_tokens: Some(max_tokens),
        temperature: Some(0.2),
        ..ChatCompletionRequest::default()
    };
    let call = async {
        let mut completion = gateway
            .complete_admitted(who, Request::Chat(request), id)
            .await?;
        let answered_by = completion.model().to_owned();
        let mut text = String::new();
        while let Some(event) = completion.events.next().await {
            let event = event.map_err(|e| e.to_api_error())?;
            match event {
                Event::Text { index: 0, text: t } => text.push_str(&t),
                Event::Wire(w) => {
                    for e in w.events()? {
                        if let Event::Text { index: 0, text: t } = e {
                            text.push_str(&t);
                        }
                    }
                }
                _ => {}
            }
        }
        let usage = completion.events.usage();
        Ok::<_, ApiError>(Reply {
            text,
            model: answered_by,
            prompt_tokens: usage.and_then(|u| i64::try_from(u.prompt_tokens).ok()),
            completion_tokens: usage.and_then(|u| i64::try_from(u.completion_tokens).ok()),
        })
    };
    tokio::select! {
        r = call => r.map(Some),
        () = cancel.cancelled() => Ok(None),
    }
}

/// The input recorded for a step: its text, and the image by digest (never its bytes).
pub fn recorded_input(text: &str, image: Option<(&str, &str)>) -> String {
    match image {
        None => text.to_owned(),
        Some((kind, sha)) => format!("{text}\n\n[image: {kind}, sha256 {sha}]"),
    }
}
