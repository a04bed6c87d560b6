// Which messages fit in the model's context. The server applies the same rule
// (crates/hearth-http/src/conversations.rs, `plan_context`) to what it sends; the UI
// uses it to show the indicator before the server has answered.

/** Share of the context the prompt may fill; the rest is left for the reply. */
export const PROMPT_SHARE = 0.75;

/** Per-message overhead of the chat template, in tokens. */
const MESSAGE_OVERHEAD = 4;

const encoder = new TextEncoder();

/** About four bytes a token: cheap, and close for English text. */
export function estimateTokens(text: string): number {
  return Math.ceil(encoder.encode(text).length / 4) + MESSAGE_OVERHEAD;
}

export interface Sized {
  role: string;
  content: string;
  completion_tokens?: number | null;
}

function size(m: Sized): number {
  if (m.role === 'assistant' && m.completion_tokens != null && m.completion_tokens > 0) {
    return m.completion_tokens + MESSAGE_OVERHEAD;
  }
  return estimateTokens(m.content);
}

export interface Plan {
  /** Index of the first message sent. */
  start: number;
  /** Estimated tokens sent (system prompt included). */
  used: number;
  limit: number | null;
}

/**
 * Keeps the newest messages whose estimate, with the system prompt, stays within
 * 75% of `limit`; the newest message is always kept, and what is sent starts with
 * a user message when one is left.
 */
export function planContext(messages: Sized[], systemPrompt: string | null, limit: number | null): Plan {
  const system = systemPrompt ? estimateTokens(systemPrompt) : 0;
  const sizes = messages.map(size);
  const total = system + sizes.reduce((a, b) => a + b, 0);
  if (!limit || messages.length === 0) return { start: 0, used: total, limit };
  const budget = Math.floor(limit * PROMPT_SHARE);
  if (total <= budget) return { start: 0, used: total, limit };
  let used = system;
  let start = messages.length;
  while (start > 0 && (start === messages.length || used + sizes[start - 1] <= budget)) {
    start -= 1;
    used += sizes[start];
  }
  while (start < messages.length - 1 && messages[start].role !== 'user') {
    used -= sizes[start];
    start += 1;
  }
  return { start, used, limit };
}
