//! `POST .../messages` and `POST .../regenerate`: store the user's turn, ask the
//! gateway for a reply (as the caller), stream it to the browser as SSE and store
//! it as it grows.
//!
//! The reply is pumped by its own task, not by the response body: when the browser
//! stops (Esc) or goes away, the task notices at once, drops the backend stream
//! (which cancels generation) and stores what was generated, marked `stopped`. The
//! partial text is also written every [`SAVE_EVERY`], so a crash loses at most that.
//!
//! Events, each `data: {json}`:
//! - `{"type":"start","user_message":{..}|null,"message":{..},"model":"..","context":{used,limit,omitted}}`
//! - `{"type":"delta","content":".."}` for each piece of text
//! - `{"type":"reasoning","content":".."}` for each piece of a reasoning model's
//!   thinking (`reasoning_content`), stored apart from the text
//! - `{"type":"done","message":{..}}` with the stored reply (tokens, timings, finish reason)
//! - `{"type":"error","error":{message,type,param,code},"message":{..}|null}` when the
//!   backend fails mid-reply (what came before it is stored), or when the reply
//!   could not be stored at its end (`storage_full` on a full disk; it is stored
//!   later, once it can be).

use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use hearth_api::{ApiError, ChatCompletionRequest, ChatMessage, ErrorKind, StreamOptions};
use hearth_gateway::Metered;
use hearth_router::{Event, Request};
use hearth_store::{Conversation, FinishReason, Message, NewMessage, ReplyUpdate, Scope};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    Api, ApiResult, HttpError, check_id, context, not_found, nullable_string, only, store_error,
};
use hearth_gateway::Principal;
use hearth_http::RequestLog;
use hearth_http::sse;

/// How often a streaming reply's partial text is written to the store.
pub const SAVE_EVERY: Duration = Duration::from_millis(750);

pub(super) async fn send(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let mut conv = api.conversation(&super::scope(&principal), &id).await?;
    let map = api.object(&headers, body).await?;
    only(&map, &["content", "model", "replace", "max_tokens"])?;
    let content = match map.get("content") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => {
            return Err(HttpError(ApiError::invalid_param(
                "content",
                "`content` must not be empty",
            )));
        }
        Some(_) => {
            return Err(HttpError(ApiError::invalid_param(
                "content",
                "`content` must be a string",
            )));
        }
        None => {
            return Err(HttpError(ApiError::invalid_param(
                "content",
                "`content` is required",
            )));
        }
    };
    api.check_text(&content, "content")?;
    let max_tokens = max_tokens(&map)?;
    switch_model(&api, &mut conv, nullable_string(&map, "model")?).await?;

    // The message alone must fit the model's context, else nothing is stored.
    if let Some(limit) = api.context_length(conv.model.as_deref()) {
        let system = conv
            .system_prompt
            .as_deref()
            .map_or(0, context::estimate_tokens);
        let need = context::estimate_tokens(&content) + system;
        if need > u64::from(limit) {
            return Err(HttpError(
                ApiError::invalid_param(
                    "content",
                    format!(
                        "this message is about {need} tokens (with the system prompt); the model's context is {limit} tokens. Shorten it or pick a model with a longer context."
                    ),
                )
                .with_code("context_length_exceeded"),
            ));
        }
    }

    // Edit and resend: the edited message and everything after it are replaced.
    if let Some(replace) = nullable_string(&map, "replace")?.flatten() {
        check_id(&replace, "replace")?;
        let old = api.store.message(&replace).await.map_err(store_error)?;
        let Some(old) = old.filter(|m| m.conversation_id == conv.id && m.role == "user") else {
            return Err(HttpError(
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("no user message `{replace}` in this conversation"),
                )
                .with_param("replace")
                .with_code("message_not_found"),
            ));
        };
        api.store
            .truncate_from(&conv.id, old.seq)
            .await
            .map_err(store_error)?;
    }

    let user = api
        .store
        .append_message(&conv.id, NewMessage::user(content))
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(&conv.id))?;
    generate(api, &principal, &log, conv, Some(user), max_tokens).await
}

pub(super) async fn regenerate(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let mut conv = api.conversation(&super::scope(&principal), &id).await?;
    let map = api.object_or_empty(&headers, body).await?;
    only(&map, &["model", "max_tokens"])?;
    let max_tokens = max_tokens(&map)?;
    switch_model(&api, &mut conv, nullable_string(&map, "model")?).await?;
    let messages = api.store.messages(&conv.id).await.map_err(store_error)?;
    let Some(last_user) = messages.iter().rposition(|m| m.role == "user") else {
        return Err(HttpError(
            ApiError::invalid_param("id", "this conversation has no user message to answer")
                .with_code("nothing_to_regenerate"),
        ));
    };
    if let Some(first_reply) = messages.get(last_user + 1) {
        api.store
            .truncate_from(&conv.id, first_reply.seq)
            .await
            .map_err(store_error)?;
    }
    generate(api, &principal, &log, conv, None, max_tokens).await
}

fn max_tokens(map: &serde_json::Map<String, Value>) -> Result<Option<u32>, HttpError> {
    match map.get("max_tokens") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1_000_000).contains(&n) => Ok(u32::try_from(n).ok()),
            _ => Err(HttpError(ApiError::invalid_param(
                "max_tokens",
                "`max_tokens` must be a positive integer",
            ))),
        },
    }
}

/// A `model` in the body switches the conversation's model (null: the default).
async fn switch_model(
    api: &Api,
    conv: &mut Conversation,
    model: Option<Option<String>>,
) -> ApiResult<()> {
    let Some(model) = model else { return Ok(()) };
    if let Some(m) = &model {
        api.check_model(m)?;
    }
    if model != conv.model {
        let patch = hearth_store::ConversationPatch {
            model: Some(model),
            ..Default::default()
        };
        // The conversation was found in the caller's scope just before.
        if let Some(c) = api
            .store
            .update_conversation(&Scope::All, &conv.id, patch)
            .await
            .map_err(store_error)?
        {
            *conv = c;
        }
    }
    Ok(())
}

/// Sends the stored history (trimmed to the context) through the gateway, as the
/// caller, and streams the reply.
async fn generate(
    api: Api,
    principal: &Principal,
    log: &RequestLog,
    conv: Conversation,
    user: Option<Message>,
    max_tokens: Option<u32>,
) -> ApiResult {
    let history = api.store.messages(&conv.id).await.map_err(store_error)?;
    let plan = context::plan(
        &history,
        conv.system_prompt.as_deref(),
        api.context_length(conv.model.as_deref()),
    );
    let mut messages = Vec::with_capacity(history.len() + 1);
    if let Some(s) = conv.system_prompt.as_deref().filter(|s| !s.is_empty()) {
        messages.push(ChatMessage::new("system", s));
    }
    messages.extend(
        history[plan.start..]
            .iter()
            .filter(|m| !(m.role == "assistant" && m.content.is_empty()))
            .map(|m| ChatMessage::new(&m.role, &m.content)),
    );
    let request = ChatCompletionRequest {
        model: conv.model.clone(),
        messages,
        stream: true,
        stream_options: Some(StreamOptions {
            include_usage: true,
            ..StreamOptions::default()
        }),
        max_tokens,
        ..ChatCompletionRequest::default()
    };
    let started = Instant::now();
    // Refusals before any reply (rate limit, queue full, backend down) are plain HTTP
    // errors; the user's message stays stored, and the UI offers to try again.
    let completion = api
        .gateway
        .complete(principal, Request::Chat(request), log.id())
        .await?;
    log.set_dispatched(
        &completion.model,
        completion.backend,
        completion.attempts,
        true,
    );
    let placeholder = api
        .store
        .append_message(
            &conv.id,
            NewMessage {
                role: "assistant".into(),
                model: Some(completion.model().to_owned()),
                ..NewMessage::default()
            },
        )
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(&conv.id))?;

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let start = json!({
        "type": "start",
        "user_message": user,
        "message": placeholder,
        "model": completion.model(),
        "context": plan,
    });
    // The channel is empty: this cannot fail for lack of room.
    let _ = tx.try_send(event(&start));
    let pump = Pump {
        api: api.clone(),
        log: log.clone(),
        tx,
        message: placeholder,
        model: completion.model().to_owned(),
        started,
        thinking_since: None,
        update: ReplyUpdate::default(),
    };
    // The pump's log lines carry the request's id.
    let span = completion.span().clone();
    tokio::spawn(pump.run(completion.events).instrument(span));

    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    sse::headers(&mut resp);
    Ok(resp)
}

fn event(v: &Value) -> Bytes {
    sse::event(&serde_json::to_vec(v).unwrap_or_default())
}

/// Reads the backend's reply, forwards it, and stores it.
struct Pump {
    api: Api,
    /// The request's access log: the reply's usage and failure end up in its line.
    log: RequestLog,
    tx: mpsc::Sender<Bytes>,
    message: Message,
    model: String,
    started: Instant,
    /// When the model's thinking began, if it thinks.
    thinking_since: Option<Instant>,
    update: ReplyUpdate,
}

impl Pump {
    async fn run(mut self, answer: Metered) {
        self.update.model = Some(self.model.clone());
        let (finish, error) = match self.stream(hearth_router::typed(answer)).await {
            Ok(f) => (f, None),
            Err(e) => (FinishReason::Error, Some(e)),
        };
        self.update.finish_reason = Some(finish);
        self.update.duration_ms = Some(elapsed_ms(self.started));
        let mut error = error;
        if let Err(e) = self
            .api
            .store
            .update_reply(&self.message.id, &self.update)
            .await
        {
            tracing::error!(error = %e, message_id = %self.message.id, "could not store the reply");
            // The browser saw the whole reply, but the history did not keep it (a
            // full disk, most likely): say so rather than "done", and keep trying.
            // Until then the reply stays leased to this process (shown streaming);
            // should the process stop first, it is marked interrupted with what was
            // saved before.
            tokio::spawn(
                save_later(
                    self.api.store.clone(),
                    self.message.id.clone(),
                    self.update.clone(),
                )
                .in_current_span(),
            );
            if error.is_none() {
                error = Some(if e.is_storage_full() {
                    super::storage_full()
                } else {
                    ApiError::internal()
                });
            }
        } else {
            tracing::debug!(message_id = %self.message.id, finish = finish.as_str(), "reply stored");
        }
        let stored = self
            .api
            .store
            .message(&self.message.id)
            .await
            .ok()
            .flatten();
        let last = match error {
            Some(e) => json!({"type": "error", "error": e.to_value()["error"], "message": stored}),
            None => json!({"type": "done", "message": stored}),
        };
        let _ = self.tx.send(event(&last)).await;
    }

    /// Keeps a piece of the reply and sends it to the browser (a closed channel
    /// is noticed by the caller).
    async fn piece(&mut self, kind: Piece, text: String) {
        if self.update.ttft_ms.is_none() {
            self.update.ttft_ms = Some(elapsed_ms(self.started));
        }
        let (kept, event_type) = match kind {
            Piece::Text => (&mut self.update.content, "delta"),
            Piece::Reasoning => {
                // How long it thought: from the first piece of thinking to this one.
                let since = *self.thinking_since.get_or_insert_with(Instant::now);
                self.update.reasoning_ms =
                    Some(i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX));
                (&mut self.update.reasoning, "reasoning")
            }
        };
        kept.push_str(&text);
        let _ = self
            .tx
            .send(event(&json!({"type": event_type, "content": text})))
            .await;
    }

    /// Forwards the text until the end, a failure, or the client leaving.
    async fn stream(
        &mut self,
        mut events: hearth_router::Typed<Metered>,
    ) -> Result<FinishReason, ApiError> {
        let mut last_save = Instant::now();
        let mut finish = FinishReason::Stop;
        loop {
            let next = tokio::select! {
                // The browser stopped or went away: dropping `events` cancels generation.
                () = self.tx.closed() => return Ok(FinishReason::Stopped),
                next = events.next() => next,
            };
            match next {
                None => return Ok(finish),
                Some(Err(e)) => {
                    // Logged once, in the request's access line.
                    self.log
                        .set_error(&format!("the reply failed after it began: {e}"));
                    return Err(e.to_api_error());
                }
                Some(Ok(Event::Text { index: 0, text })) if !text.is_empty() => {
                    self.piece(Piece::Text, text).await;
                }
                Some(Ok(Event::Reasoning { index: 0, text })) if !text.is_empty() => {
                    self.piece(Piece::Reasoning, text).await;
                }
                Some(Ok(Event::Finish { index: 0, reason })) => {
                    finish = FinishReason::from_backend(reason.as_str());
                }
                Some(Ok(Event::Usage(u))) => {
                    self.log.set_usage(u);
                    self.update.prompt_tokens = i64::try_from(u.prompt_tokens).ok();
                    self.update.completion_tokens = i64::try_from(u.completion_tokens).ok();
                }
                // Other choices and tool calls are not shown by the chat UI.
                Some(Ok(_)) => {}
            }
            if self.tx.is_closed() {
                return Ok(FinishReason::Stopped);
            }
            if last_save.elapsed() >= SAVE_EVERY {
                last_save = Instant::now();
                self.update.duration_ms = Some(elapsed_ms(self.started));
                if let Err(e) = self
                    .api
                    .store
                    .update_reply(&self.message.id, &self.update)
                    .await
                {
                    tracing::warn!(error = %e, "could not save a partial reply");
                }
            }
        }
    }
}

/// What a piece of a streamed reply is.
enum Piece {
    /// The answer (`content`).
    Text,
    /// A reasoning model's thinking (`reasoning_content`).
    Reasoning,
}

/// How long a reply that could not be stored at its end is retried: long enough for
/// someone to free space on a full disk.
const SAVE_RETRY_FOR: Duration = Duration::from_secs(60 * 60);

/// Stores a finished reply whose store failed, retrying with a growing pause (1 s
/// up to 10 s: soon after space is freed) for [`SAVE_RETRY_FOR`].
async fn save_later(
    store: std::sync::Arc<dyn hearth_store::ConversationStore>,
    id: String,
    update: ReplyUpdate,
) {
    let started = Instant::now();
    let mut pause = Duration::from_secs(1);
    while started.elapsed() < SAVE_RETRY_FOR {
        tokio::time::sleep(pause).await;
        match store.update_reply(&id, &update).await {
            Ok(()) => {
                tracing::info!(message_id = %id, "a reply that could not be stored is stored now");
                return;
            }
            Err(e) => tracing::debug!(message_id = %id, error = %e, "still cannot store the reply"),
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
    tracing::error!(
        message_id = %id,
        "gave up storing a reply; it is marked interrupted at the next start"
    );
}

fn elapsed_ms(t: Instant) -> i64 {
    i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX)
}
