//! `/api/hearth/conversations`: the chat UI's server-side history.
//!
//! Conversations and messages live in a [`hearth_store::ConversationStore`], each
//! owned by the key that made it and seen only by it (an admin key sees all);
//! replies come from the
//! gateway in-process (never through `/v1`), run as the caller's principal, so they
//! are limited and counted against its key like any API request. Every error has
//! the OpenAI shape, like `/v1`.
//!
//! | route (below `/api/hearth`) | what |
//! | --- | --- |
//! | `GET /conversations?search=&limit=&cursor=` | newest first, paged, searched in titles and messages |
//! | `POST /conversations` | create (`title`, `model`, `system_prompt`, all optional) |
//! | `GET /conversations/{id}` | one conversation, its messages and its context use |
//! | `PATCH /conversations/{id}` | rename, switch model, set the system prompt |
//! | `DELETE /conversations/{id}` | to the trash (restorable for ten minutes) |
//! | `POST /conversations/{id}/restore` | undo a delete |
//! | `POST /conversations/{id}/messages` | store a user message, stream the reply (SSE) |
//! | `POST /conversations/{id}/regenerate` | replace the last reply (SSE) |
//! | `GET /conversations/{id}/export?format=json\|markdown` | download |

mod context;
mod reply;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hearth_api::{ApiError, ErrorKind};
use hearth_config::LimitsConfig;
use hearth_store::{
    Conversation, ConversationPatch, ConversationStore, ListQuery, Message, NewConversation, Scope,
    StoreError,
};
use serde_json::{Map, Value, json};

use axum::Extension;
use hearth_gateway::{Gateway, Principal};
use hearth_http::HttpError;

pub use context::{Plan, estimate_tokens, plan};

/// Bounds on what the UI may store.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest message or system prompt, in bytes (`limits.max_message_bytes`).
    pub max_message_bytes: usize,
    /// Most characters in a title.
    pub max_title_chars: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits::from(&LimitsConfig::default())
    }
}

impl From<&LimitsConfig> for ApiLimits {
    fn from(l: &LimitsConfig) -> Self {
        ApiLimits {
            max_message_bytes: l.max_message_bytes,
            max_title_chars: 200,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    gateway: Arc<Gateway>,
    store: Arc<dyn ConversationStore>,
    limits: ApiLimits,
}

type ApiResult<T = Response> = Result<T, HttpError>;

/// The conversation routes; state applied, ready to merge behind the server's key
/// check (handlers read the caller's `Principal` from the request).
pub fn routes(
    gateway: Arc<Gateway>,
    store: Arc<dyn ConversationStore>,
    limits: ApiLimits,
) -> Router {
    let api = Api {
        gateway,
        store,
        limits,
    };
    let at = |path: &str| format!("{}{path}", crate::API_ROOT);
    Router::new()
        .route(&at("/conversations"), get(list).post(create))
        .route(
            &at("/conversations/{id}"),
            get(show).patch(update).delete(remove),
        )
        .route(&at("/conversations/{id}/restore"), post(restore))
        .route(&at("/conversations/{id}/messages"), post(reply::send))
        .route(
            &at("/conversations/{id}/regenerate"),
            post(reply::regenerate),
        )
        .route(&at("/conversations/{id}/export"), get(export))
        .with_state(api)
}

// ---- helpers shared by the handlers -----------------------------------------

/// Logs a store failure once and answers 500 without its detail (a cursor this
/// server did not hand out is a 400; a full disk is a 500 that says so). The
/// conversations' and the jobs' API.
pub(crate) fn store_error(e: StoreError) -> HttpError {
    match e {
        StoreError::StorageFull => {
            tracing::error!(error = %e, "the store failed: free space on the data folder's disk");
            HttpError(storage_full())
        }
        StoreError::InvalidCursor => HttpError(
            ApiError::invalid_param(
                "cursor",
                "`cursor` is not one this server handed out; start from the first page",
            )
            .with_code("invalid_cursor"),
        ),
        e => {
            tracing::error!(error = %e, "the store failed");
            HttpError(ApiError::internal())
        }
    }
}

/// The disk holding the history is full: 500 (the server's fault, which OpenAI
/// clients retry with backoff, as they do every 5xx) with a code a client can act on.
/// Not 507: that is WebDAV's, and a new status for one case buys a client nothing the
/// code does not say.
pub(crate) fn storage_full() -> ApiError {
    ApiError::new(
        ErrorKind::Internal,
        "the server's disk is full, so this was not saved (what was saved before is intact); try again once space is freed",
    )
    .with_code("storage_full")
}

/// Conversation and message ids are UUIDs; anything else is a 400, not a lookup.
pub(crate) fn check_id(id: &str, param: &str) -> Result<(), HttpError> {
    if uuid::Uuid::parse_str(id).is_ok() {
        Ok(())
    } else {
        let shown: String = id.chars().take(64).collect();
        Err(HttpError(
            ApiError::invalid_param(param, format!("`{shown}` is not a valid {param} (a UUID)"))
                .with_code("invalid_id"),
        ))
    }
}

pub(crate) fn not_found(id: &str) -> HttpError {
    HttpError(
        ApiError::new(ErrorKind::NotFound, format!("no conversation `{id}`"))
            .with_param("id")
            .with_code("conversation_not_found"),
    )
}

impl Api {
    /// A conversation the caller may see (another owner's is not found: its
    /// existence is not the caller's business).
    pub(crate) async fn conversation(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> ApiResult<Conversation> {
        check_id(id, "id")?;
        self.store
            .conversation(scope, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(id))
    }

    /// A model name the router serves (aliases included), else 404 `model_not_found`.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), HttpError> {
        self.gateway
            .router()
            .resolve(Some(model))
            .map(|_| ())
            .map_err(HttpError)
    }

    /// Context length of the model a conversation uses, when known.
    pub(crate) fn context_length(&self, model: Option<&str>) -> Option<u32> {
        self.gateway
            .router()
            .resolve(model)
            .ok()
            .and_then(|m| m.entry().context_length)
    }

    pub(crate) fn check_text(&self, text: &str, param: &str) -> Result<(), HttpError> {
        let max = self.limits.max_message_bytes;
        if text.len() > max {
            return Err(HttpError(
                ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "`{param}` is {} bytes; the limit is {max} (limits.max_message_bytes)",
                        text.len()
                    ),
                )
                .with_param(param)
                .with_code("message_too_large"),
            ));
        }
        Ok(())
    }

    fn body_limit(&self) -> usize {
        self.limits
            .max_message_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024)
    }

    /// The JSON object of a request body, with its size bounded.
    pub(crate) async fn object(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> ApiResult<Map<String, Value>> {
        match hearth_http::body::json(headers, body, self.body_limit()).await? {
            Value::Object(m) => Ok(m),
            _ => Err(HttpError(ApiError::invalid_param(
                "",
                "the request body must be a JSON object",
            ))),
        }
    }

    /// As [`Api::object`], where an empty body means `{}` (bodiless POSTs).
    pub(crate) async fn object_or_empty(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> ApiResult<Map<String, Value>> {
        let limit = self.body_limit();
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                HttpError(
                    ApiError::new(
                        ErrorKind::PayloadTooLarge,
                        format!("the request body is larger than {limit} bytes"),
                    )
                    .with_code("request_too_large"),
                )
            } else {
                HttpError(hearth_http::body::read_error(e.as_ref()))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        self.object(headers, Body::from(bytes)).await
    }
}

/// Whose conversations `principal` works on: its own, or every owner's for an
/// admin key.
pub(crate) fn scope(principal: &Principal) -> Scope<'_> {
    if principal.admin {
        Scope::All
    } else {
        Scope::Owner(&principal.id)
    }
}

/// Rejects fields the endpoint does not know, so a typo is not silently ignored.
pub(crate) fn only(map: &Map<String, Value>, known: &[&str]) -> Result<(), HttpError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(HttpError(ApiError::invalid_param(
            k.clone(),
            format!("unknown field `{k}`; expected one of {}", known.join(", ")),
        ))),
        None => Ok(()),
    }
}

/// A string field: absent -> `None`; `null` -> `Some(None)`; a string -> `Some(Some)`.
pub(crate) fn nullable_string(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<Option<String>>, HttpError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(HttpError(ApiError::invalid_param(
            key,
            format!("`{key}` must be a string or null"),
        ))),
    }
}

fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response {
    (status, axum::Json(v)).into_response()
}

fn detail(c: &Conversation, messages: &[Message], plan: Plan) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("object".into(), json!("conversation"));
        m.insert(
            "messages".into(),
            serde_json::to_value(messages).unwrap_or(Value::Null),
        );
        m.insert(
            "context".into(),
            serde_json::to_value(plan).unwrap_or(Value::Null),
        );
    }
    v
}

/// A listing's query string, and its `limit` (1 to `MAX_PAGE`, 50 when absent).
pub(crate) fn page_query(
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<(HashMap<String, String>, u32), HttpError> {
    let Query(q) = query.map_err(|e| {
        HttpError(ApiError::invalid_param(
            "",
            format!("bad query string: {e}"),
        ))
    })?;
    let limit = match q.get("limit") {
        None => 50,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=hearth_store::MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(HttpError(ApiError::invalid_param(
                    "limit",
                    format!(
                        "`limit` must be a whole number from 1 to {}",
                        hearth_store::MAX_PAGE
                    ),
                )));
            }
        },
    };
    Ok((q, limit))
}

// ---- handlers -----------------------------------------------------------------

async fn list(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let (q, limit) = page_query(query)?;
    let search = q.get("search").cloned().filter(|s| !s.trim().is_empty());
    if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(HttpError(ApiError::invalid_param(
            "search",
            "`search` is longer than 200 characters",
        )));
    }
    let page = api
        .store
        .list_conversations(
            &scope(&principal),
            &ListQuery {
                search,
                limit,
                cursor: q.get("cursor").cloned(),
            },
        )
        .await
        .map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": page.data, "next_cursor": page.next_cursor}),
    ))
}

async fn create(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    // An empty body creates an untitled conversation with the default model.
    let map = api.object_or_empty(&headers, body).await?;
    only(&map, &["title", "model", "system_prompt"])?;
    let title = nullable_string(&map, "title")?.flatten();
    let model = nullable_string(&map, "model")?.flatten();
    let system_prompt = nullable_string(&map, "system_prompt")?.flatten();
    if let Some(t) = &title {
        check_title(&api, t)?;
    }
    if let Some(m) = &model {
        api.check_model(m)?;
    }
    if let Some(s) = &system_prompt {
        api.check_text(s, "system_prompt")?;
    }
    let c = api
        .store
        .create_conversation(
            &principal.id,
            NewConversation {
                title: title.map(|t| t.trim().to_owned()),
                model,
                system_prompt: system_prompt.filter(|s| !s.trim().is_empty()),
            },
        )
        .await
        .map_err(store_error)?;
    Ok(json_response(StatusCode::CREATED, &c))
}

fn check_title(api: &Api, t: &str) -> Result<(), HttpError> {
    let max = api.limits.max_title_chars;
    if t.chars().count() > max {
        return Err(HttpError(ApiError::invalid_param(
            "title",
            format!("`title` is longer than {max} characters"),
        )));
    }
    Ok(())
}

async fn show(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let c = api.conversation(&scope(&principal), &id).await?;
    let messages = api.store.messages(&id).await.map_err(store_error)?;
    let p = plan(
        &messages,
        c.system_prompt.as_deref(),
        api.context_length(c.model.as_deref()),
    );
    Ok(json_response(StatusCode::OK, &detail(&c, &messages, p)))
}

async fn update(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    check_id(&id, "id")?;
    let map = api.object(&headers, body).await?;
    only(&map, &["title", "model", "system_prompt"])?;
    let title = match nullable_string(&map, "title")? {
        Some(Some(t)) => {
            check_title(&api, &t)?;
            Some(t.trim().to_owned())
        }
        Some(None) => Some(String::new()),
        None => None,
    };
    let model = nullable_string(&map, "model")?;
    if let Some(Some(m)) = &model {
        api.check_model(m)?;
    }
    let system_prompt =
        nullable_string(&map, "system_prompt")?.map(|s| s.filter(|s| !s.trim().is_empty()));
    if let Some(Some(s)) = &system_prompt {
        api.check_text(s, "system_prompt")?;
    }
    let c = api
        .store
        .update_conversation(
            &scope(&principal),
            &id,
            ConversationPatch {
                title,
                model,
                system_prompt,
            },
        )
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(&id))?;
    Ok(json_response(StatusCode::OK, &c))
}

async fn remove(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    check_id(&id, "id")?;
    if !api
        .store
        .delete_conversation(&scope(&principal), &id)
        .await
        .map_err(store_error)?
    {
        return Err(not_found(&id));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "object": "conversation.deleted", "deleted": true,
                "restorable_for_secs": hearth_store::UNDO_WINDOW.as_secs()}),
    ))
}

async fn restore(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    check_id(&id, "id")?;
    let c = api.store.restore_conversation(&scope(&principal), &id).await.map_err(store_error)?.ok_or_else(|| {
        HttpError(
            ApiError::new(ErrorKind::NotFound, format!("conversation `{id}` is not in the trash (never deleted, or deleted too long ago)"))
                .with_param("id")
                .with_code("conversation_not_found"),
        )
    })?;
    Ok(json_response(StatusCode::OK, &c))
}

async fn export(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let c = api.conversation(&scope(&principal), &id).await?;
    let messages = api.store.messages(&id).await.map_err(store_error)?;
    let format = q.get("format").map_or("json", String::as_str);
    let stem = file_stem(&c);
    let (body, ctype, ext) = match format {
        "json" => {
            let v = json!({"conversation": c, "messages": messages});
            (
                serde_json::to_string_pretty(&v).unwrap_or_default(),
                "application/json",
                "json",
            )
        }
        "markdown" | "md" => (
            markdown(&c, &messages),
            "text/markdown; charset=utf-8",
            "md",
        ),
        other => {
            return Err(HttpError(ApiError::invalid_param(
                "format",
                format!("`format` must be `json` or `markdown`, not `{other}`"),
            )));
        }
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{stem}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// A file name from the title: letters, digits and dashes only.
fn file_stem(c: &Conversation) -> String {
    let mut s: String = c
        .title
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let s: String = s.chars().take(60).collect();
    if s.is_empty() {
        format!("conversation-{}", &c.id[..8.min(c.id.len())])
    } else {
        s
    }
}

/// The conversation as a Markdown document.
pub fn markdown(c: &Conversation, messages: &[Message]) -> String {
    let mut out = format!(
        "# {}\n\n",
        if c.title.is_empty() {
            "Untitled conversation"
        } else {
            &c.title
        }
    );
    if let Some(m) = &c.model {
        out.push_str(&format!("Model: `{m}`\n\n"));
    }
    if let Some(s) = &c.system_prompt {
        out.push_str(&format!("## System\n\n{s}\n\n"));
    }
    for m in messages {
        let who = match m.role.as_str() {
            "user" => "User".to_owned(),
            "assistant" => match &m.model {
                Some(model) => format!("Assistant ({model})"),
                None => "Assistant".to_owned(),
            },
            r => r.to_owned(),
        };
        out.push_str(&format!("## {who}\n\n"));
        // The model's thinking, quoted before its answer.
        if let Some(r) = m
            .reasoning
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            out.push_str("> *Thinking:*\n");
            for line in r.lines() {
                out.push_str(&format!(
                    ">{}{line}\n",
                    if line.is_empty() { "" } else { " " }
                ));
            }
            out.push('\n');
        }
        out.push_str(&format!("{}\n\n", m.content.trim_end()));
        if let Some(r) = m
            .finish_reason
            .as_deref()
            .filter(|r| !matches!(*r, "stop" | "length"))
        {
            out.push_str(&format!("*(reply {r})*\n\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe() {
        let mut c = Conversation {
            id: "0b6a2f3e-1111".into(),
            title: "Hello, World! ../etc".into(),
            model: None,
            system_prompt: None,
            created_at: 0,
            updated_at: 0,
            owner: "anonymous".into(),
        };
        assert_eq!(file_stem(&c), "hello-world-etc");
        c.title = "日本".into();
        assert_eq!(file_stem(&c), "conversation-0b6a2f3e");
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(check_id("0b6a2f3e-1111-4222-8333-444455556666", "id").is_ok());
        let e = check_id("../../etc/passwd", "id").unwrap_err();
        assert_eq!(e.0.status(), 400);
        assert_eq!(e.0.code.as_deref(), Some("invalid_id"));
    }
}
