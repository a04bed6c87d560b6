import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, AUTH_REQUIRED_EVENT, api, describeError, setApiKey, sseEvents, streamReply } from './api';

function streamOf(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(enc.encode(p));
      c.close();
    },
  });
}

afterEach(() => vi.unstubAllGlobals());

describe('sseEvents', () => {
  it('reassembles events split across reads and skips [DONE]', async () => {
    const out = [];
    for await (const e of sseEvents(streamOf(['data: {"type":"del', 'ta","content":"a"}\n', '\ndata: {"type":"done"}\r\n\r\n', 'data: [DONE]\n\n']))) out.push(e);
    expect(out).toEqual([{ type: 'delta', content: 'a' }, { type: 'done' }]);
  });
});

describe('errors', () => {
  it('parses the OpenAI error shape with Retry-After', async () => {
    vi.stubGlobal('fetch', vi.fn().mockResolvedValue(new Response(JSON.stringify({ error: { message: 'queue full', type: 'rate_limit_error', code: 'queue_full', param: null } }), { status: 429, headers: { 'Retry-After': '7' } })));
    const e = await api.list({}).catch((x) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect([e.status, e.code, e.retryAfter]).toEqual([429, 'queue_full', 7]);
    expect(describeError(e)).toBe('Too many requests: queue full. Try again in 7 s.');
  });

  it('reads a network failure as the server being unreachable', async () => {
    vi.stubGlobal('fetch', vi.fn().mockRejectedValue(new TypeError('Failed to fetch')));
    const e = await api.models().catch((x) => x);
    expect(e.status).toBe(0);
    expect(describeError(e)).toMatch(/Cannot reach the Hearth server/);
  });

  it('names backend outages and context overflows', () => {
    expect(describeError(new ApiError(503, 'all backends failed', { retryAfter: 10 }))).toBe('Backend unavailable: all backends failed. Try again in 10 s.');
    expect(describeError(new ApiError(400, 'too long', { code: 'context_length_exceeded' }))).toBe('Context exceeded: too long');
    // A spent budget says when it renews, not a Retry-After of hours.
    const spent = new ApiError(429, 'key `kid` has used its budget of 15 tokens this day (18 used); it renews at 2026-12-03T00:00:00Z', { code: 'insufficient_quota', retryAfter: 30600 });
    expect(describeError(spent)).toBe('Token budget used up: key `kid` has used its budget of 15 tokens this day (18 used); it renews at 2026-12-03T00:00:00Z.');
  });

  it('a 401 asks for a key, and the key is sent once given', async () => {
    const seen = vi.fn();
    window.addEventListener(AUTH_REQUIRED_EVENT, seen);
    const fetch = vi.fn().mockResolvedValueOnce(new Response('{"error":{"message":"missing key","type":"authentication_error"}}', { status: 401 }));
    vi.stubGlobal('fetch', fetch);
    await api.list({}).catch(() => undefined);
    expect(seen).toHaveBeenCalled();
    setApiKey('sk-abc');
    fetch.mockResolvedValueOnce(new Response('{"data":[],"next_cursor":null}', { status: 200 }));
    await api.list({});
    expect(fetch.mock.calls[1][1].headers.Authorization).toBe('Bearer sk-abc');
    expect(sessionStorage.getItem('hearth.apiKey')).toBe('sk-abc');
  });

  it('streamReply yields the thinking and the answer as typed events', async () => {
    const body = streamOf(['data: {"type":"reasoning","content":"Hmm."}\n\n', 'data: {"type":"delta","content":"Yes."}\n\n']);
    vi.stubGlobal('fetch', vi.fn().mockResolvedValue(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } })));
    const out = [];
    for await (const e of streamReply('/x', {}, new AbortController().signal)) out.push(e);
    expect(out).toEqual([{ type: 'reasoning', content: 'Hmm.' }, { type: 'delta', content: 'Yes.' }]);
  });

  it('streamReply throws the server error before any event', async () => {
    vi.stubGlobal('fetch', vi.fn().mockResolvedValue(new Response('{"error":{"message":"no such model","type":"invalid_request_error","code":"model_not_found","param":"model"}}', { status: 404 })));
    const it = streamReply('/x', {}, new AbortController().signal);
    await expect(it.next()).rejects.toMatchObject({ status: 404, code: 'model_not_found' });
  });
});
