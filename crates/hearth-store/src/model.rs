//! The stored rows and the inputs that create or change them.

use serde::{Deserialize, Serialize};

/// A conversation as the sidebar and the conversation view show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    /// The model its replies use; `None` means the server's default model.
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Who it belongs to: the name of the API key that made it (`anonymous` without
    /// keys).
    pub owner: String,
}

/// Whose conversations an operation may see and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Only this owner's.
    Owner(&'a str),
    /// Everyone's (an admin key).
    All,
}

impl Scope<'_> {
    /// `(all, owner)` as the queries bind them: `WHERE ($all OR owner = $owner)`.
    pub(crate) fn binds(&self) -> (bool, &str) {
        match self {
            Scope::Owner(o) => (false, o),
            Scope::All => (true, ""),
        }
    }
}

/// One message. Assistant messages carry the model, token counts, timings and
/// why the reply ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub ttft_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    /// `None` while the reply is still streaming.
    pub finish_reason: Option<String>,
    pub created_at: i64,
    /// A reasoning model's thinking before its answer (`reasoning_content`), kept
    /// apart from the answer and never sent back to a model. Left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// How long it thought, in milliseconds: from its thinking's first piece to
    /// its last. Left out when it gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_ms: Option<i64>,
}

/// Why an assistant reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished.
    Stop,
    /// The token limit was reached.
    Length,
    /// The user stopped it, or the client went away.
    Stopped,
    /// The backend failed mid-reply.
    Error,
    /// The process writing the reply stopped while it was streaming (set when it
    /// shuts down, or once its lease on the reply ran out).
    Interrupted,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Stopped => "stopped",
            FinishReason::Error => "error",
            FinishReason::Interrupted => "interrupted",
        }
    }

    /// Maps a backend's `finish_reason` (`stop`, `length`, `content_filter`...).
    pub fn from_backend(s: &str) -> FinishReason {
        match s {
            "length" => FinishReason::Length,
            _ => FinishReason::Stop,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NewConversation {
    pub title: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
}

/// A partial update: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationPatch {
    pub title: Option<String>,
    pub model: Option<Option<String>>,
    pub system_prompt: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    pub role: String,
    pub content: String,
    pub model: Option<String>,
    /// `None` for a reply that starts streaming now.
    pub finish_reason: Option<FinishReason>,
}

impl NewMessage {
    /// The user's message.
    pub fn user(content: impl Into<String>) -> Self {
        NewMessage {
            role: "user".into(),
            content: content.into(),
            ..NewMessage::default()
        }
    }

    /// An assistant's reply that starts streaming now (empty, not finished).
    pub fn reply() -> Self {
        NewMessage {
            role: "assistant".into(),
            ..NewMessage::default()
        }
    }
}

/// The state of a streaming reply, written as it grows and when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyUpdate {
    pub content: String,
    /// The model's thinking so far (empty: none).
    pub reasoning: String,
    /// How long it has thought so far, in milliseconds.
    pub reasoning_ms: Option<i64>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub ttft_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    /// `None` while it is still streaming.
    pub finish_reason: Option<FinishReason>,
}

/// Which conversations to list: newest first, `limit` at a time, after `cursor`
/// (the `next_cursor` of the previous page), matching `search` in the title or
/// in any message when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub search: Option<String>,
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    pub data: Vec<Conversation>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
