//! A model's config applied to a request on its way to that model: sampling
//! defaults for what the request leaves unsaid, and its tools policy. Both are
//! undone when the request moves on to a fallback, which has its own.

use hearth_api::{ApiError, ChatCompletionRequest, CompletionRequest};
use hearth_config::{ModelConfig, SamplingDefaults, ToolsPolicy};
use serde_json::{Map, Value};

use crate::backend::Request;

/// The request fields a tools policy takes out (and puts back).
const TOOL_FIELDS: [&str; 3] = ["tools", "tool_choice", "parallel_tool_calls"];

/// What [`apply`] changed in a request, so that [`undo`] can put it back.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    set: Set,
    /// Tool fields taken out (policy `ignore`).
    tools: Option<Map<String, Value>>,
    /// Said to the client (the `X-Hearth-Warning` header).
    pub(crate) warning: Option<String>,
}

/// Calls `$m!(ARGS max_tokens, temperature, …)`: the sampling fields a model's
/// defaults fill, named alike in [`SamplingDefaults`], [`ChatCompletionRequest`]
/// and [`CompletionRequest`].
macro_rules! sampling_fields {
    ($m:ident!($($a:tt)*)) => {
        $m! { $($a)* max_tokens, temperature, top_p, top_k, min_p, presence_penalty, frequency_penalty }
    };
}

macro_rules! set_struct {
    ($($f:ident),*) => {
        /// Which sampling fields were filled from the defaults.
        #[derive(Debug, Default, Clone, Copy)]
        struct Set {
            $($f: bool,)*
        }
    };
}
sampling_fields!(set_struct!());

/// Fills each field `$r` leaves unsaid from `$d`, noting it in `$set`.
macro_rules! fill {
    ($r:expr, $d:expr, $set:expr; $($f:ident),*) => {{
        $(
            if $r.$f.is_none() && $d.$f.is_some() {
                $r.$f = $d.$f;
                $set.$f = true;
            }
        )*
    }};
}

/// Clears each field of `$r` that `$set` says was filled.
macro_rules! clear {
    ($r:expr, $set:expr; $($f:ident),*) => {{
        $( if $set.$f { $r.$f = None; } )*
    }};
}

/// Applies `model`'s defaults and tools policy to `request`; a request with tools
/// for a model whose policy is `reject` is a 400.
pub(crate) fn apply(model: &ModelConfig, request: &mut Request) -> Result<Applied, ApiError> {
    let mut applied = Applied::default();
    if let Request::Chat(chat) = request
        && has_tools(chat)
    {
        match model.tools_policy() {
            ToolsPolicy::Pass => {}
            ToolsPolicy::Reject => {
                return Err(ApiError::invalid_param(
                    "tools",
                    format!(
                        "model `{}` does not take tools (its config says tools = \"reject\"); send the request without `tools`, or to a model that calls tools",
                        model.name
                    ),
                )
                .with_code("tools_not_supported"));
            }
            ToolsPolicy::Ignore => {
                let taken: Map<String, Value> = TOOL_FIELDS
                    .iter()
                    .filter_map(|k| chat.extra.remove(*k).map(|v| ((*k).to_owned(), v)))
                    .collect();
                tracing::debug!(model = %model.name, "the request's tools are ignored (tools = \"ignore\")");
                applied.warning = Some(format!(
                    "tools ignored: model `{}` does not call tools (tools = \"ignore\"); it answered in text",
                    model.name
                ));
                applied.tools = Some(taken);
            }
        }
    }
    if !model.defaults.is_empty() {
        applied.set = match request {
            Request::Chat(r) => fill_chat(r, &model.defaults),
            Request::Completion(r) => fill_completion(r, &model.defaults),
            // No sampling: nothing is generated. A Responses request reaches a
            // model here only when its upstream serves that API, as the client wrote it.
            Request::Embeddings(_) | Request::Responses(_) => Default::default(),
        };
    }
    Ok(applied)
}

/// Undoes [`apply`]: the request as the client sent it, for the next model.
pub(crate) fn undo(request: &mut Request, applied: Applied) {
    let s = applied.set;
    match request {
        Request::Chat(r) => {
            sampling_fields!(clear!(r, s;));
            if let Some(tools) = applied.tools {
                r.extra.extend(tools);
            }
        }
        Request::Completion(r) => sampling_fields!(clear!(r, s;)),
        Request::Embeddings(_) | Request::Responses(_) => {}
    }
}

/// Whether a chat request asks for tools: a non-empty `tools` list, or a
/// `tool_choice` other than `none`.
fn has_tools(r: &ChatCompletionRequest) -> bool {
    let tools = r
        .extra
        .get("tools")
        .is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty()));
    let choice = r
        .extra
        .get("tool_choice")
        .is_some_and(|c| c.as_str() != Some("none") && !c.is_null());
    tools || choice
}

fn fill_chat(r: &mut ChatCompletionRequest, d: &SamplingDefaults) -> Set {
    let mut set = Set::default();
    // `max_completion_tokens` says what `max_tokens` does: no default beside it.
    let capped = r.max_completion_tokens.is_some();
    sampling_fields!(fill!(r, d, set;));
    if capped && set.max_tokens {
        r.max_tokens = None;
        set.max_tokens = false;
    }
    set
}

fn fill_completion(r: &mut CompletionRequest, d: &SamplingDefaults) -> Set {
    let mut set = Set::default();
    sampling_fields!(fill!(r, d, set;));
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(v: Value) -> Request {
        Request::Chat(ChatCompletionRequest::from_value(v).unwrap())
    }

    fn model(tools: Option<ToolsPolicy>, defaults: SamplingDefaults) -> ModelConfig {
        ModelConfig {
            tools,
            defaults,
            ..ModelConfig::embedded("small", "/m.gguf")
        }
    }

    #[test]
    fn defaults_fill_only_what_the_request_leaves_unsaid_and_are_undone() {
        let d = SamplingDefaults {
            max_tokens: Some(256),
            temperature: Some(0.2),
            top_p: Some(0.9),
            ..SamplingDefaults::default()
        };
        let m = model(None, d);
        let sent = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 1.0});
        let mut r = chat(sent.clone());
        let applied = apply(&m, &mut r).unwrap();
        let Request::Chat(c) = &r else { unreachable!() };
        assert_eq!(c.max_tokens, Some(256));
        assert_eq!(c.temperature, Some(1.0), "the request's own value stands");
        assert_eq!(c.top_p, Some(0.9));
        assert!(applied.warning.is_none());
        undo(&mut r, applied);
        let Request::Chat(c) = &r else { unreachable!() };
        assert_eq!(
            (c.max_tokens, c.temperature, c.top_p),
            (None, Some(1.0), None)
        );

        // `max_completion_tokens` counts as naming a limit.
        let mut r = chat(
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9}),
        );
        apply(&m, &mut r).unwrap();
        let Request::Chat(c) = &r else { unreachable!() };
        assert_eq!(c.max_tokens, None);
    }

    #[test]
    fn tools_are_passed_ignored_with_a_warning_or_refused_as_configured() {
        let sent = serde_json::json!({
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": "auto",
        });
        // The embedded engine's default: ignored, said, and put back for a fallback.
        let m = model(None, SamplingDefaults::default());
        let mut r = chat(sent.clone());
        let applied = apply(&m, &mut r).unwrap();
        let Request::Chat(c) = &r else { unreachable!() };
        assert!(!c.extra.contains_key("tools") && !c.extra.contains_key("tool_choice"));
        assert!(applied.warning.as_deref().unwrap().contains("`small`"));
        undo(&mut r, applied);
        let Request::Chat(c) = &r else { unreachable!() };
        assert_eq!(c.extra["tools"], sent["tools"]);
        assert_eq!(c.extra["tool_choice"], "auto");

        let m = model(Some(ToolsPolicy::Reject), SamplingDefaults::default());
        let e = apply(&m, &mut chat(sent.clone())).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.param.as_deref(), Some("tools"));
        assert!(e.message.contains("`small`"), "{}", e.message);

        let m = ModelConfig::upstream("up", "http://x/v1");
        let mut r = chat(sent.clone());
        assert!(apply(&m, &mut r).unwrap().warning.is_none());
        let Request::Chat(c) = &r else { unreachable!() };
        assert_eq!(c.extra["tools"], sent["tools"], "passed to upstreams");

        // An empty list, or tool_choice "none", asks for no tools.
        let m = model(Some(ToolsPolicy::Reject), SamplingDefaults::default());
        let none = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "tools": [], "tool_choice": "none"});
        assert!(apply(&m, &mut chat(none)).is_ok());
    }
}
