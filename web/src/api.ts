// The server's /api and /v1/models, typed; API-key handling; readable errors.

export interface Conversation {
  id: string;
  title: string;
  model: string | null;
  system_prompt: string | null;
  created_at: number;
  updated_at: number;
}

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  role: 'user' | 'assistant' | 'system' | string;
  content: string;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  ttft_ms: number | null;
  duration_ms: number | null;
  /** null while the reply streams; stop | length | stopped | error | interrupted */
  finish_reason: string | null;
  created_at: number;
  /** A reasoning model's thinking before its answer; absent or null when it gave none. */
  reasoning?: string | null;
  /** How long it thought, in ms (its thinking's first piece to its last); absent with no thinking. */
  reasoning_ms?: number | null;
}

export interface ContextInfo {
  /** Estimated tokens of what is sent to the model. */
  used: number;
  /** The model's context length, when known. */
  limit: number | null;
  /** Oldest messages left out of what is sent. */
  omitted: number;
}

export interface ConversationDetail extends Conversation {
  messages: Message[];
  context: ContextInfo;
}

export interface Page {
  data: Conversation[];
  next_cursor: string | null;
}

/** What `/v1/models` says of a model server Hearth runs itself (`[models.launch]`). */
export interface EngineInfo {
  state: ModelStatus;
  pid?: number;
  port?: number;
  attempt: number;
  restarts: number;
  reason?: string;
  retry_in_secs?: number;
  stderr_tail?: string[];
  log: string;
  start: 'eager' | 'on_demand';
}

/** `starting`, `restarting`, `failed` and `stopped` are managed model servers' states. */
export type ModelStatus = 'ready' | 'loading' | 'unavailable' | 'starting' | 'restarting' | 'failed' | 'stopped';

export interface ModelEntry {
  id: string;
  status: ModelStatus;
  engine?: EngineInfo;
  tags: string[];
  context_length: number | null;
  backend: string;
  /** `embedding` for a model that answers /v1/embeddings only; absent for chat models. */
  kind?: 'embedding';
}

/** A key's token budget this period (`[[keys]] budget_tokens`), as `/api/hearth/me` says it. */
export interface Budget {
  tokens: number;
  period: 'day' | 'week' | 'month';
  used: number;
  remaining: number;
  /** RFC 3339, UTC. */
  period_start: string;
  renews_at: string;
}

/** Who the caller is to the server: its key's name, limits (0 = none) and budget. */
export interface Me {
  key: string;
  admin: boolean;
  rpm: number;
  tpm: number;
  budget: Budget | null;
}

/** One configured key as `/api/hearth/keys` lists it for an admin (never its secret). */
export type KeyInfo = Me;

/** An error in the server's OpenAI shape, or a network failure (status 0). */
export class ApiError extends Error {
  status: number;
  type: string | null;
  code: string | null;
  param: string | null;
  retryAfter: number | null;

  constructor(status: number, message: string, opts: Partial<Pick<ApiError, 'type' | 'code' | 'param' | 'retryAfter'>> = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = opts.type ?? null;
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.retryAfter = opts.retryAfter ?? null;
  }
}

const KEY_STORAGE = 'hearth.apiKey';

export function getApiKey(): string | null {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

export function setApiKey(key: string | null): void {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* private mode: the key lives only in memory for this page */
  }
}

/** Fired when the server answers 401, so the app can ask for a key. */
export const AUTH_REQUIRED_EVENT = 'hearth:auth-required';

/** The headers every call sends: the API key, when there is one. */
export function authHeaders(json = false): Record<string, string> {
  const h: Record<string, string> = {};
  if (json) h['Content-Type'] = 'application/json';
  const key = getApiKey();
  if (key) h['Authorization'] = `Bearer ${key}`;
  return h;
}

/** Reads an error body (OpenAI shape or anything else) into an ApiError. */
export async function errorFrom(res: Response): Promise<ApiError> {
  const retry = res.headers.get('Retry-After');
  const retryAfter = retry && /^\d+$/.test(retry) ? Number(retry) : null;
  let message = `${res.status} ${res.statusText}`.trim();
  let opts: Partial<ApiError> = {};
  try {
    const body = await res.json();
    const e = body?.error;
    if (e && typeof e.message === 'string') {
      message = e.message;
      opts = { type: e.type ?? null, code: e.code ?? null, param: e.param ?? null };
    }
  } catch {
    /* not JSON: keep the status line */
  }
  if (res.status === 401) window.dispatchEvent(new Event(AUTH_REQUIRED_EVENT));
  return new ApiError(res.status, message, { ...opts, retryAfter });
}

export async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: authHeaders(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'Cannot reach the Hearth server.', { code: 'offline' });
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Where Hearth's own API (the UI's) lives: clear of other APIs at `/api` (Ollama's). */
export const API_ROOT = '/api/hearth';
const CONVERSATIONS = `${API_ROOT}/conversations`;

export const api = {
  list: (opts: { search?: string; cursor?: string | null; limit?: number }, signal?: AbortSignal) => {
    const q = new URLSearchParams();
    if (opts.search) q.set('search', opts.search);
    if (opts.cursor) q.set('cursor', opts.cursor);
    q.set('limit', String(opts.limit ?? 50));
    return request<Page>('GET', `${CONVERSATIONS}?${q}`, undefined, signal);
  },
  create: (c: { title?: string; model?: string | null; system_prompt?: string | null }) =>
    request<Conversation>('POST', CONVERSATIONS, c),
  get: (id: string, signal?: AbortSignal) =>
    request<ConversationDetail>('GET', `${CONVERSATIONS}/${encodeURIComponent(id)}`, undefined, signal),
  update: (id: string, patch: { title?: string; model?: string | null; system_prompt?: string | null }) =>
    request<Conversation>('PATCH', `${CONVERSATIONS}/${encodeURIComponent(id)}`, patch),
  remove: (id: string) => request<unknown>('DELETE', `${CONVERSATIONS}/${encodeURIComponent(id)}`),
  restore: (id: string) => request<Conversation>('POST', `${CONVERSATIONS}/${encodeURIComponent(id)}/restore`),
  /** The models that chat (embedding models cannot answer a chat or a job). */
  models: async (signal?: AbortSignal) =>
    (await request<{ data: ModelEntry[] }>('GET', '/v1/models', undefined, signal)).data.filter((m) => m.kind !== 'embedding'),
  /** The caller's key, limits and token budget. */
  me: (signal?: AbortSignal) => request<Me>('GET', `${API_ROOT}/me`, undefined, signal),
  /** Every configured key, its limits and its budget use (an admin key only: 403 otherwise). */
  keys: async (signal?: AbortSignal) =>
    (await request<{ data: KeyInfo[] }>('GET', `${API_ROOT}/keys`, undefined, signal)).data,
  exportUrl: (id: string, format: 'json' | 'markdown') =>
    `${CONVERSATIONS}/${encodeURIComponent(id)}/export?format=${format}`,
};

/** Downloads an export or a job's file (with the API key, which a plain link could not send). */
export async function download(url: string, fallbackName = 'conversation'): Promise<void> {
  const res = await fetch(url, { headers: authHeaders() });
  if (!res.ok) throw await errorFrom(res);
  const blob = await res.blob();
  const name = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') ?? '')?.[1] ?? fallbackName;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/** Events of a streamed reply (`POST .../messages`, `POST .../regenerate`). */
export type ReplyEvent =
  | { type: 'start'; user_message: Message | null; message: Message; model: string; context: ContextInfo }
  | { type: 'delta'; content: string }
  /** A piece of the model's thinking; usually before the deltas, but they may interleave. */
  | { type: 'reasoning'; content: string }
  | { type: 'done'; message: Message }
  | { type: 'error'; error: { message: string; type?: string; code?: string | null; param?: string | null }; message: Message | null };

/** Splits an SSE byte stream into the JSON of its `data:` events. */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<unknown> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let sep: number;
      while ((sep = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const raw = buffer.slice(0, sep);
        buffer = buffer.slice(sep).replace(/^\r?\n\r?\n/, '');
        const data = raw
          .split(/\r?\n/)
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, ''))
          .join('\n');
        if (!data || data === '[DONE]') continue;
        try {
          yield JSON.parse(data);
        } catch {
          /* a malformed event is skipped, not fatal */
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** Posts and yields the reply's events. Throws ApiError when the server refuses. */
export async function* streamReply(path: string, body: unknown, signal: AbortSignal): AsyncGenerator<ReplyEvent> {
  let res: Response;
  try {
    res = await fetch(path, {
      method: 'POST',
      headers: { ...authHeaders(true), Accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'Cannot reach the Hearth server.', { code: 'offline' });
  }
  if (!res.ok || !res.body) throw await errorFrom(res);
  for await (const ev of sseEvents(res.body)) yield ev as ReplyEvent;
}

/** What a person should read for an error: what happened and what to do. */
export function describeError(e: unknown): string {
  if (!(e instanceof ApiError)) return e instanceof Error ? e.message : String(e);
  const wait = e.retryAfter != null ? ` Try again in ${e.retryAfter} s.` : '';
  const msg = /[.!?]$/.test(e.message.trim()) ? e.message.trim() : `${e.message.trim()}.`;
  if (e.status === 0) return 'Cannot reach the Hearth server. Is it running? Retrying in the background.';
  if (e.status === 401) return 'This server needs an API key.';
  // The message says when the budget renews (a Retry-After of hours says less).
  if (e.code === 'insufficient_quota') return `Token budget used up: ${msg}`;
  if (e.status === 429) return `Too many requests: ${msg}${wait || ' Try again shortly.'}`;
  if (e.code === 'context_length_exceeded') return `Context exceeded: ${e.message}`;
  if (e.status === 503 || e.status === 502 || e.status === 504) return `Backend unavailable: ${msg}${wait}`;
  return e.message;
}

/** The URL of a conversation's reply endpoint (`messages` or `regenerate`). */
export function replyUrl(id: string, what: 'messages' | 'regenerate'): string {
  return `${CONVERSATIONS}/${encodeURIComponent(id)}/${what}`;
}
