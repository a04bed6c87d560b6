import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { App } from './App';
import type { Budget, Conversation, KeyInfo, Message, ModelEntry } from './api';

// A fake server behind fetch: conversations in memory, replies streamed by a
// controllable ReadableStream.
const models: ModelEntry[] = [
  { id: 'smol', status: 'ready', tags: ['general'], context_length: 8192, backend: 'embedded' },
  { id: 'offline', status: 'unavailable', tags: ['code'], context_length: 4096, backend: 'upstream' },
  // Not offered for chats.
  { id: 'minilm', status: 'ready', tags: ['embedding'], context_length: 512, backend: 'embedded', kind: 'embedding' },
];

interface Server {
  convs: Conversation[];
  messages: Record<string, Message[]>;
  requests: { method: string; url: string; body: unknown; headers: Record<string, string> }[];
  reply: (controller: ReadableStreamDefaultController<Uint8Array>, convId: string, signal: AbortSignal) => void;
  needKey: string | null;
  messagesStatus: number;
  /** The key's budget as `/api/hearth/me` says it (null: none). */
  budget: Budget | null;
  /** Whether the key is an admin's, and the keys `/api/hearth/keys` lists to it. */
  admin: boolean;
  keys: KeyInfo[];
}

let server: Server;
const enc = new TextEncoder();
const sse = (c: ReadableStreamDefaultController<Uint8Array>, v: unknown) => c.enqueue(enc.encode(`data: ${JSON.stringify(v)}\n\n`));
const json = (v: unknown, status = 200) => new Response(JSON.stringify(v), { status, headers: { 'Content-Type': 'application/json' } });
const conv = (id: string, title: string, at: number): Conversation => ({ id, title, model: null, system_prompt: null, created_at: at, updated_at: at });
const msg = (conversation_id: string, seq: number, role: string, content: string, extra: Partial<Message> = {}): Message => ({
  id: `${conversation_id}-m${seq}`, conversation_id, seq, role, content, model: role === 'assistant' ? 'smol' : null,
  prompt_tokens: null, completion_tokens: null, ttft_ms: null, duration_ms: null, finish_reason: role === 'assistant' ? 'stop' : null, created_at: 0, ...extra,
});
const ID1 = '11111111-1111-4111-8111-111111111111';
const ID2 = '22222222-2222-4222-8222-222222222222';

function fakeFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const url = new URL(String(input), 'http://localhost');
  const method = init.method ?? 'GET';
  const headers = (init.headers ?? {}) as Record<string, string>;
  const body = init.body ? JSON.parse(String(init.body)) : undefined;
  server.requests.push({ method, url: url.pathname + url.search, body, headers });
  if (server.needKey && headers.Authorization !== `Bearer ${server.needKey}`) {
    return Promise.resolve(json({ error: { message: 'API key required', type: 'authentication_error', param: null, code: 'missing_key' } }, 401));
  }
  const p = url.pathname;
  if (p === '/v1/models') return Promise.resolve(json({ object: 'list', data: models }));
  if (p === '/api/hearth/me') return Promise.resolve(json({ key: 'kid', admin: server.admin, rpm: 0, tpm: 0, budget: server.budget }));
  if (p === '/api/hearth/keys') {
    if (!server.admin) {
      return Promise.resolve(
        json({ error: { message: 'key `kid` is not an admin key: only an admin key (`admin = true`) lists the keys', type: 'permission_error', param: null, code: 'admin_key_required' } }, 403),
      );
    }
    return Promise.resolve(json({ object: 'list', data: server.keys }));
  }
  if (p === '/api/hearth/conversations' && method === 'GET') {
    const s = url.searchParams.get('search')?.toLowerCase();
    const data = server.convs.filter((c) => !s || c.title.toLowerCase().includes(s));
    return Promise.resolve(json({ object: 'list', data, next_cursor: null }));
  }
  if (p === '/api/hearth/conversations' && method === 'POST') {
    const c = { ...conv(ID2, '', 99), model: body.model ?? null, system_prompt: body.system_prompt ?? null };
    server.convs.unshift(c);
    server.messages[c.id] = [];
    return Promise.resolve(json(c, 201));
  }
  if (p.endsWith('/restore')) {
    const t = (server as unknown as { trash: Conversation }).trash;
    server.convs.push(t);
    return Promise.resolve(json(t));
  }
  const m = /^\/api\/hearth\/conversations\/([^/]+)(\/\w+)?$/.exec(p);
  if (m) {
    const [, id, sub] = m;
    const c = server.convs.find((x) => x.id === id);
    if (!c) return Promise.resolve(json({ error: { message: 'no conversation', type: 'invalid_request_error', param: 'id', code: 'conversation_not_found' } }, 404));
    if (!sub && method === 'GET') return Promise.resolve(json({ ...c, messages: server.messages[id], context: { used: 10, limit: 8192, omitted: 0 } }));
    if (!sub && method === 'PATCH') {
      Object.assign(c, body);
      return Promise.resolve(json(c));
    }
    if (!sub && method === 'DELETE') {
      server.convs = server.convs.filter((x) => x.id !== id);
      (server as unknown as { trash: Conversation }).trash = c;
      return Promise.resolve(json({ id, deleted: true }));
    }
    if (sub === '/messages') {
      if (server.messagesStatus !== 200) {
        return Promise.resolve(
          new Response(JSON.stringify({ error: { message: 'the queue is full', type: 'rate_limit_error', param: null, code: 'queue_full' } }), { status: server.messagesStatus, headers: { 'Retry-After': '12' } }),
        );
      }
      const list = server.messages[id];
      const user = msg(id, list.length, 'user', body.content);
      const reply = msg(id, list.length + 1, 'assistant', '', { finish_reason: null });
      list.push(user, reply);
      const signal = init.signal as AbortSignal;
      const stream = new ReadableStream<Uint8Array>({
        start(ctrl) {
          sse(ctrl, { type: 'start', user_message: user, message: reply, model: 'smol', context: { used: 20, limit: 8192, omitted: 0 } });
          server.reply(ctrl, id, signal);
        },
      });
      signal?.addEventListener('abort', () => undefined);
      return Promise.resolve(new Response(stream, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }));
    }
  }
  return Promise.resolve(json({ error: { message: 'no route', type: 'invalid_request_error', param: null, code: 'not_found' } }, 404));
}

beforeEach(() => {
  server = {
    convs: [conv(ID1, 'First chat', 10)],
    messages: { [ID1]: [msg(ID1, 0, 'user', 'hello'), msg(ID1, 1, 'assistant', 'Hi **there**')] },
    requests: [],
    reply: (c) => {
      sse(c, { type: 'delta', content: 'Hel' });
      sse(c, { type: 'delta', content: 'lo!' });
      sse(c, { type: 'done', message: msg(ID2, 1, 'assistant', 'Hello!', { completion_tokens: 2 }) });
      c.close();
    },
    needKey: null,
    messagesStatus: 200,
    budget: null,
    admin: false,
    keys: [],
  };
  vi.stubGlobal('fetch', vi.fn(fakeFetch));
  history.replaceState(null, '', '/');
  localStorage.clear();
});

afterEach(() => vi.unstubAllGlobals());

describe('App', () => {
  it('lists conversations, opens one and renders its markdown', async () => {
    render(<App />);
    fireEvent.click(await screen.findByText('First chat'));
    await waitFor(() => expect(location.pathname).toBe(`/c/${ID1}`));
    expect((await screen.findByText('there')).tagName).toBe('STRONG');
    expect(screen.getByTestId('status').textContent).toContain('smol ready');
  });

  it('sends with Enter, streams the reply, and adds the new chat to the sidebar', async () => {
    render(<App />);
    await screen.findByText('First chat');
    const box = screen.getByLabelText('Message');
    fireEvent.change(box, { target: { value: 'Say hello' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(await screen.findByText('Hello!')).toBeTruthy();
    expect(screen.getAllByText('Say hello').length).toBeGreaterThan(0);
    const post = server.requests.find((r) => r.url.endsWith('/messages'));
    expect(post?.body).toEqual({ content: 'Say hello' });
    expect(location.pathname).toBe(`/c/${ID2}`);
    expect(within(screen.getByRole('navigation')).getByText('Say hello')).toBeTruthy();
  });

  it('streams a reasoning model\'s thinking into an open block, then collapses it for the answer', async () => {
    let ctrl: ReadableStreamDefaultController<Uint8Array> | undefined;
    server.reply = (c) => {
      ctrl = c;
      sse(c, { type: 'reasoning', content: 'The user greets me.' });
      sse(c, { type: 'reasoning', content: '\nSay hello <b>back</b>.' });
    };
    render(<App />);
    await screen.findByText('First chat');
    const box = screen.getByLabelText('Message');
    fireEvent.change(box, { target: { value: 'Hi' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    const summary = await screen.findByText('Thinking…');
    const block = summary.closest('details') as HTMLDetailsElement;
    await waitFor(() => expect(block.querySelector('.reasoning-text')?.textContent).toBe('The user greets me.\nSay hello <b>back</b>.'));
    expect(block.open).toBe(true);
    expect(block.querySelector('b')).toBeNull();
    const thought = 'The user greets me.\nSay hello <b>back</b>.';
    await act(async () => {
      sse(ctrl!, { type: 'delta', content: 'Hello!' });
      sse(ctrl!, { type: 'done', message: msg(ID2, 1, 'assistant', 'Hello!', { reasoning: thought }) });
      ctrl!.close();
    });
    expect(await screen.findByText(/^Thought for \d+ s$/)).toBeTruthy();
    const done = document.querySelector('details.reasoning') as HTMLDetailsElement;
    expect(done.open).toBe(false);
    expect(done.querySelector('.reasoning-text')?.textContent).toBe(thought);
    expect(screen.getByText('Hello!')).toBeTruthy();
  });

  it('a stored reply keeps its thinking, collapsed, when the conversation is opened', async () => {
    server.messages[ID1][1] = msg(ID1, 1, 'assistant', 'Hi **there**', { reasoning: 'Greet them.' });
    history.replaceState(null, '', `/c/${ID1}`);
    render(<App />);
    await screen.findByText('there');
    const block = screen.getByText('Thoughts').closest('details') as HTMLDetailsElement;
    expect(block.open).toBe(false);
    expect(block.textContent).toContain('Greet them.');
  });

  it('Shift+Enter does not send', async () => {
    render(<App />);
    await screen.findByText('First chat');
    const box = screen.getByLabelText('Message');
    fireEvent.change(box, { target: { value: 'line one' } });
    fireEvent.keyDown(box, { key: 'Enter', shiftKey: true });
    expect(server.requests.some((r) => r.url.endsWith('/messages'))).toBe(false);
  });

  it('Esc stops a streaming reply and keeps what came', async () => {
    let signal: AbortSignal | undefined;
    server.reply = (c, _id, s) => {
      signal = s;
      sse(c, { type: 'delta', content: 'Once upon' });
      s.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
    };
    render(<App />);
    await screen.findByText('First chat');
    const box = screen.getByLabelText('Message');
    fireEvent.change(box, { target: { value: 'story' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(await screen.findByText('Once upon')).toBeTruthy();
    expect(screen.getByRole('button', { name: /Stop/ })).toBeTruthy();
    fireEvent.keyDown(window, { key: 'Escape' });
    expect(await screen.findByText('Stopped')).toBeTruthy();
    expect(signal?.aborted).toBe(true);
    expect(screen.getByText('Once upon')).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Send' })).toBeTruthy();
  });

  it('shows a 429 as a notice with the wait time', async () => {
    server.messagesStatus = 429;
    render(<App />);
    fireEvent.click(await screen.findByText('First chat'));
    await screen.findByText('there');
    const box = screen.getByLabelText('Message');
    fireEvent.change(box, { target: { value: 'again' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('Too many requests: the queue is full. Try again in 12 s.');
  });

  it('shows what is left of the key\'s token budget, and a spent one in words', async () => {
    const budget = (used: number): Budget => ({
      tokens: 20000,
      period: 'day',
      used,
      remaining: Math.max(0, 20000 - used),
      period_start: '2026-12-02T00:00:00Z',
      renews_at: '2026-12-03T00:00:00Z',
    });
    server.budget = budget(1500);
    render(<App />);
    const meter = await screen.findByRole('status', { name: 'Token budget' });
    expect(meter.textContent).toContain('18,500 of 20,000 tokens left today');
    expect(meter.textContent).toContain('renews 3 Dec, 00:00 UTC');
    // A reply spends the rest: the meter is read again when it ends.
    server.budget = budget(20400);
    const box = screen.getByLabelText('Message');
    fireEvent.change(box, { target: { value: 'Say hello' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(await screen.findByText('Hello!')).toBeTruthy();
    await waitFor(() => expect(meter.textContent).toContain('Token budget used up today'));
  });

  it('shows no budget for a key without one', async () => {
    render(<App />);
    await screen.findByText('First chat');
    await waitFor(() => expect(server.requests.some((r) => r.url === '/api/hearth/me')).toBe(true));
    expect(screen.queryByRole('status', { name: 'Token budget' })).toBeNull();
  });

  it('offers an admin key the Keys page: every key, its limits and its budget use', async () => {
    const spent: Budget = { tokens: 100, period: 'month', used: 130, remaining: 0, period_start: '2026-12-01T00:00:00Z', renews_at: '2027-01-01T00:00:00Z' };
    const some: Budget = { tokens: 2_000_000, period: 'day', used: 1500, remaining: 1_998_500, period_start: '2026-12-03T00:00:00Z', renews_at: '2026-12-04T00:00:00Z' };
    server.admin = true;
    server.keys = [
      { key: 'root', admin: true, rpm: 0, tpm: 0, budget: null },
      { key: 'alice', admin: false, rpm: 30, tpm: 20000, budget: some },
      { key: 'bob', admin: false, rpm: 0, tpm: 0, budget: spent },
    ];
    render(<App />);
    await screen.findByText('First chat');
    fireEvent.click(await screen.findByRole('link', { name: 'Keys' }));
    expect(location.pathname).toBe('/keys');
    const table = await screen.findByRole('table', { name: 'API keys' });
    const row = (k: string) => [...within(table).getByRole('rowheader', { name: k }).closest('tr')!.querySelectorAll('td')].map((c) => c.textContent);
    expect(row('root')).toEqual(['admin', '–', '–', '–', '–', '–', '–']);
    expect(row('alice')).toEqual(['user', '30', '20,000', '2,000,000 / day', '1,500', '1,998,500', '4 Dec, 00:00 UTC']);
    expect(row('bob')).toEqual(['user', '–', '–', '100 / month', '130', 'used up', '1 Jan, 00:00 UTC']);
    expect(screen.getByRole('meter', { name: 'bob budget used' }).getAttribute('aria-valuenow')).toBe('100');
    // Back to the chat, where it was.
    fireEvent.click(screen.getByRole('link', { name: 'Chat' }));
    await waitFor(() => expect(location.pathname).toBe('/'));
    expect(await screen.findByText('First chat')).toBeTruthy();
  });

  it('offers another key no Keys page, and says why when it is opened by its address', async () => {
    render(<App />);
    await screen.findByText('First chat');
    await waitFor(() => expect(server.requests.some((r) => r.url === '/api/hearth/me')).toBe(true));
    expect(screen.queryByRole('link', { name: 'Keys' })).toBeNull();
    cleanup();
    history.replaceState(null, '', '/keys');
    render(<App />);
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('Only an admin key can see the server\'s keys. key `kid` is not an admin key');
  });

  it('says so when the server has no keys', async () => {
    server.admin = true;
    history.replaceState(null, '', '/keys');
    render(<App />);
    expect((await screen.findByText(/This server has no API keys/)).textContent).toContain('only on loopback');
  });

  it('deletes with undo', async () => {
    render(<App />);
    await screen.findByText('First chat');
    fireEvent.click(screen.getByRole('button', { name: 'Delete First chat' }));
    await waitFor(() => expect(screen.queryByRole('link', { name: 'First chat' })).toBeNull());
    fireEvent.click(await screen.findByRole('button', { name: 'Undo' }));
    expect(await screen.findByRole('link', { name: 'First chat' })).toBeTruthy();
    expect(server.requests.some((r) => r.url.endsWith('/restore') && r.method === 'POST')).toBe(true);
  });

  it('renames inline', async () => {
    render(<App />);
    await screen.findByText('First chat');
    fireEvent.click(screen.getByRole('button', { name: 'Rename First chat' }));
    const input = screen.getByLabelText('Conversation title');
    fireEvent.change(input, { target: { value: 'Better name' } });
    fireEvent.keyDown(input, { key: 'Enter' });
    expect(await screen.findByText('Better name')).toBeTruthy();
    expect(server.requests.find((r) => r.method === 'PATCH')?.body).toEqual({ title: 'Better name' });
  });

  it('lists chat models with tags and context, unavailable ones disabled, embedding ones left out', async () => {
    render(<App />);
    await screen.findByText('First chat');
    await waitFor(() => expect(screen.getAllByRole('option')).toHaveLength(3));
    const offline = screen.getByRole('option', { name: /offline/ }) as HTMLOptionElement;
    expect(offline.disabled).toBe(true);
    expect(offline.textContent).toBe('offline · code · 4k ctx · unavailable');
    expect((screen.getByRole('option', { name: /^smol/ }) as HTMLOptionElement).disabled).toBe(false);
  });

  it('Ctrl+/ shows shortcuts and Ctrl+K starts a new chat', async () => {
    history.replaceState(null, '', `/c/${ID1}`);
    render(<App />);
    await screen.findByText('there');
    fireEvent.keyDown(window, { key: '/', ctrlKey: true });
    expect(screen.getByRole('dialog', { name: 'Keyboard shortcuts' })).toBeTruthy();
    fireEvent.keyDown(window, { key: 'Escape' });
    expect(screen.queryByRole('dialog')).toBeNull();
    fireEvent.keyDown(window, { key: 'k', ctrlKey: true });
    await waitFor(() => expect(location.pathname).toBe('/'));
    expect(await screen.findByText('What can I help with?')).toBeTruthy();
  });

  it('asks for an API key when the server wants one, and uses it', async () => {
    server.needKey = 'sk-right';
    render(<App />);
    const input = await screen.findByLabelText('API key');
    fireEvent.change(input, { target: { value: 'sk-right' } });
    await act(async () => {
      fireEvent.submit(input.closest('form') as HTMLFormElement);
    });
    expect(await screen.findByText('First chat')).toBeTruthy();
    expect(sessionStorage.getItem('hearth.apiKey')).toBe('sk-right');
  });

  it('a missing conversation in the URL is a notice, not a blank page', async () => {
    history.replaceState(null, '', '/c/99999999-9999-4999-8999-999999999999');
    render(<App />);
    expect((await screen.findByRole('alert')).textContent).toContain('does not exist');
    expect(screen.getByText('What can I help with?')).toBeTruthy();
  });

  it('says when the oldest messages are left out of the context', async () => {
    const long = 'word '.repeat(2000); // ~2500 tokens each
    server.messages[ID1] = [0, 1, 2, 3].map((i) => msg(ID1, i, i % 2 ? 'assistant' : 'user', long));
    history.replaceState(null, '', `/c/${ID1}`);
    render(<App />);
    const note = await screen.findByTestId('context-note');
    expect(note.textContent).toMatch(/the 2 oldest messages are left out/);
    expect(screen.getByTestId('context').textContent).toMatch(/\/ 8,192 tokens/);
  });
});
