//! A model's answers to what a request leaves unsaid: sampling defaults
//! (`[models.defaults]`) and what to do with `tools` (`tools = ...`).
//!
//! Chat front ends send requests with no `max_tokens` (a tiny model then talks
//! until its context is full) and tools on every turn (Open WebUI sends about
//! 26 KB of them): a model's config says what those requests get.

use serde::{Deserialize, Serialize};

/// `[models.defaults]`: values used when a request names none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    /// For a request with neither `max_tokens` nor `max_completion_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
}

impl SamplingDefaults {
    pub fn is_empty(&self) -> bool {
        *self == SamplingDefaults::default()
    }

    /// What is wrong with these values, as (key, message) pairs.
    pub fn problems(&self, max_tokens_limit: u32) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(n) = self.max_tokens
            && (n == 0 || n > max_tokens_limit)
        {
            out.push((
                "max_tokens",
                format!("must be between 1 and limits.max_tokens ({max_tokens_limit})"),
            ));
        }
        let ranges: [(&'static str, Option<f32>, f32, f32); 5] = [
            ("temperature", self.temperature, 0.0, 2.0),
            ("top_p", self.top_p, 0.0, 1.0),
            ("min_p", self.min_p, 0.0, 1.0),
            ("presence_penalty", self.presence_penalty, -2.0, 2.0),
            ("frequency_penalty", self.frequency_penalty, -2.0, 2.0),
        ];
        for (key, value, lo, hi) in ranges {
            if let Some(v) = value
                && !(lo..=hi).contains(&v)
            {
                out.push((key, format!("must be between {lo} and {hi}")));
            }
        }
        if self.top_k.is_some_and(|k| k < 0) {
            out.push(("top_k", "must be 0 (off) or more".to_owned()));
        }
        out
    }
}

/// `tools = ...`: what a model does with a request's `tools` (and `tool_choice`,
/// `parallel_tool_calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolsPolicy {
    /// Given to the model: sent on as they are to an upstream (its default), and
    /// called by the embedded engine in llama.cpp's generic JSON format, its
    /// answer held to a grammar.
    Pass,
    /// Served without them, saying so in an `X-Hearth-Warning` header: the default
    /// for the embedded engine, whose small models and context are better spent
    /// on the chat when a front end sends its tools on every turn.
    Ignore,
    /// Refused with a 400 naming the model (`code: tools_not_supported`).
    Reject,
}

impl ToolsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolsPolicy::Pass => "pass",
            ToolsPolicy::Ignore => "ignore",
            ToolsPolicy::Reject => "reject",
        }
    }
}
