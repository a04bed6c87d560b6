import { describe, expect, it } from 'vitest';
import { estimateTokens, planContext } from './context';

const msg = (role: string, content: string, completion_tokens: number | null = null) => ({ role, content, completion_tokens });

describe('planContext', () => {
  it('sends everything below 75% of the context', () => {
    const p = planContext([msg('user', 'hi'), msg('assistant', 'hello')], 'be brief', 1000);
    expect(p.start).toBe(0);
    expect(p.used).toBe(estimateTokens('be brief') + estimateTokens('hi') + estimateTokens('hello'));
  });

  it('leaves out the oldest turns past 75%, keeps the system prompt, starts with a user turn', () => {
    const long = 'x'.repeat(384); // 100 tokens each
    const ms = Array.from({ length: 6 }, (_, i) => msg(i % 2 ? 'assistant' : 'user', long));
    const p = planContext(ms, 'sys', 400);
    expect(p.used).toBeLessThanOrEqual(300);
    expect(p.start).toBeGreaterThanOrEqual(3);
    expect(ms[p.start].role).toBe('user');
    expect(p.used).toBeGreaterThan(estimateTokens('sys'));
  });

  it('always keeps the newest message', () => {
    expect(planContext([msg('user', 'y'.repeat(4000))], null, 100).start).toBe(0);
  });

  it('uses counted tokens for replies', () => {
    expect(planContext([msg('assistant', 'z'.repeat(4000), 10)], null, null).used).toBe(14);
  });

  it('matches the server on multi-byte text (bytes, not characters)', () => {
    expect(estimateTokens('日本語')).toBe(Math.ceil(9 / 4) + 4);
  });
});
