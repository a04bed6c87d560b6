//! Which stored messages are sent to the model. The UI shows the same rule
//! (`web/src/context.ts`), so what it says is left out is what is left out.

use hearth_store::Message;

/// Share of the context the prompt may fill; the rest is left for the reply.
pub const PROMPT_SHARE: f64 = 0.75;

/// Per-message overhead of the chat template, in tokens.
const MESSAGE_OVERHEAD: u64 = 4;

/// About four bytes a token: cheap, and close for English text.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4) + MESSAGE_OVERHEAD
}

fn size(m: &Message) -> u64 {
    match m.completion_tokens {
        Some(n) if m.role == "assistant" && n > 0 => n.unsigned_abs() + MESSAGE_OVERHEAD,
        _ => estimate_tokens(&m.content),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Index of the first message sent; the ones before it are left out.
    #[serde(rename = "omitted")]
    pub start: usize,
    /// Estimated tokens sent, system prompt included.
    pub used: u64,
    pub limit: Option<u32>,
}

/// Keeps the newest messages whose estimate, with the system prompt, stays within
/// 75% of `limit`. The newest message is always kept, the system prompt is always
/// sent, and what is sent starts with a user message when one is left.
pub fn plan(messages: &[Message], system_prompt: Option<&str>, limit: Option<u32>) -> Plan {
    let system = system_prompt
        .filter(|s| !s.is_empty())
        .map_or(0, estimate_tokens);
    let sizes: Vec<u64> = messages.iter().map(size).collect();
    let total = system + sizes.iter().sum::<u64>();
    let Some(lim) = limit.filter(|_| !messages.is_empty()) else {
        return Plan {
            start: 0,
            used: total,
            limit,
        };
    };
    let budget = (f64::from(lim) * PROMPT_SHARE) as u64;
    if total <= budget {
        return Plan {
            start: 0,
            used: total,
            limit,
        };
    }
    let mut used = system;
    let mut start = messages.len();
    while start > 0 && (start == messages.len() || used + sizes[start - 1] <= budget) {
        start -= 1;
        used += sizes[start];
    }
    while start + 1 < messages.len() && messages[start].role != "user" {
        used -= sizes[start];
        start += 1;
    }
    Plan { start, used, limit }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            id: String::new(),
            conversation_id: String::new(),
            seq: 0,
            role: role.into(),
            content: content.into(),
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            ttft_ms: None,
            duration_ms: None,
            finish_reason: None,
            created_at: 0,
            reasoning: None,
            reasoning_ms: None,
        }
    }

    #[test]
    fn everything_fits_below_three_quarters() {
        let m = vec![msg("user", "hi"), msg("assistant", "hello")];
        let p = plan(&m, Some("be brief"), Some(1000));
        assert_eq!(p.start, 0);
        assert_eq!(p.used, estimate_tokens("be brief") + 5 + 6);
    }

    #[test]
    fn oldest_turns_go_first_system_prompt_stays() {
        // Each message ~ 100 tokens; limit 400 -> budget 300.
        let long = "x".repeat(384);
        let m: Vec<Message> = (0..6)
            .map(|i| msg(if i % 2 == 0 { "user" } else { "assistant" }, &long))
            .collect();
        let p = plan(&m, Some("sys"), Some(400));
        assert!(p.used <= 300, "{p:?}");
        assert_eq!(
            m[p.start].role, "user",
            "what is sent starts with a user turn"
        );
        assert!(p.start >= 3);
        // The newest message is kept even when it alone is over budget.
        let huge = vec![msg("user", &"y".repeat(4000))];
        assert_eq!(plan(&huge, None, Some(100)).start, 0);
    }

    #[test]
    fn counted_tokens_beat_estimates() {
        let mut a = msg("assistant", &"z".repeat(4000));
        a.completion_tokens = Some(10);
        assert_eq!(plan(&[a], None, None).used, 14);
    }
}
