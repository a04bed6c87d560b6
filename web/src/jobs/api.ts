// The jobs' API (`/api/jobs`, docs/jobs.md), typed: upload, list, read, follow
// (server-sent events, polling when the stream is cut), cancel, retry, edited code,
// delete; and what to tell a person when one of them is refused.

import { ApiError, authHeaders, describeError, errorFrom, request, sseEvents } from '../api';
import { sentence } from './format';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type StepKind = 'vision' | 'plan' | 'code' | 'critic' | 'run';
export type StepStatus = 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

export interface Job {
  id: string;
  owner: string;
  status: JobStatus;
  /** The step it is at, or ended at. */
  step: StepKind | null;
  prompt: string;
  image_sha256: string;
  /** `png`, `jpeg`, `webp` or `gif`. */
  image_type: string;
  /** Why it failed, in plain words. */
  error: string | null;
  /** `script`, `critic`, `model`, `timeout`, `memory`, `vision_unsupported`... */
  error_code: string | null;
  cancel_requested: boolean;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export interface JobStep {
  id: string;
  job_id: string;
  seq: number;
  kind: StepKind;
  /** 1, then +1 for each repair (code, critic and run). */
  attempt: number;
  status: StepStatus;
  input: string;
  output: string | null;
  /** JSON: the critic's review, the sandbox's outcome, the code model's reply. */
  detail: string | null;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  started_at: number;
  finished_at: number | null;
  duration_ms: number | null;
}

export interface JobFile {
  job_id: string;
  /** `input` (the uploaded image) or `artifact` (written by the script). */
  role: 'input' | 'artifact' | string;
  /** An artifact's path under `/output`; `input.<ext>` for the image. */
  name: string;
  sha256: string;
  size: number;
  content_type: string;
  step_id: string | null;
  created_at: number;
  /** Where it is served. */
  url: string;
}

export interface JobView extends Job {
  steps: JobStep[];
  files: JobFile[];
}

export interface JobPage {
  data: Job[];
  next_cursor: string | null;
}

/** What `GET /api/jobs/{id}/events` sends. */
export type JobEvent =
  | ({ type: 'job' } & JobView)
  | { type: 'status'; job_id: string; status: JobStatus; step: StepKind | null; error: string | null }
  | { type: 'step'; job_id: string; step_id: string; kind: StepKind; attempt: number; status: StepStatus }
  | { type: 'log'; job_id: string; step: StepKind; line: string };

export const JOBS_ROOT = '/api/jobs';
const at = (id: string, rest = '') => `${JOBS_ROOT}/${encodeURIComponent(id)}${rest}`;

export function isFinal(status: JobStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

export const jobsApi = {
  list: (opts: { cursor?: string | null; limit?: number } = {}, signal?: AbortSignal) => {
    const q = new URLSearchParams();
    if (opts.cursor) q.set('cursor', opts.cursor);
    q.set('limit', String(opts.limit ?? 50));
    return request<JobPage>('GET', `${JOBS_ROOT}?${q}`, undefined, signal);
  },
  get: (id: string, signal?: AbortSignal) => request<JobView>('GET', at(id), undefined, signal),
  cancel: (id: string) => request<Job>('POST', at(id, '/cancel')),
  retry: (id: string) => request<Job>('POST', at(id, '/retry')),
  editCode: (id: string, code: string) => request<Job>('PUT', at(id, '/code'), { code }),
  remove: (id: string) => request<unknown>('DELETE', at(id)),

  /** Uploads `image` (checked by the server by its bytes) with the instruction. */
  submit: async (image: Blob, prompt: string, name = 'image'): Promise<Job> => {
    const form = new FormData();
    form.append('image', image, name);
    if (prompt.trim()) form.append('prompt', prompt.trim());
    let res: Response;
    try {
      // No Content-Type of ours: the browser writes multipart's, with its boundary.
      res = await fetch(JOBS_ROOT, { method: 'POST', headers: authHeaders(), body: form });
    } catch {
      throw new ApiError(0, 'Cannot reach the Hearth server.', { code: 'offline' });
    }
    if (!res.ok) throw await errorFrom(res);
    return (await res.json()) as Job;
  },
};

/** The job's events until its stream closes. Throws ApiError when the server refuses. */
export async function* jobEvents(id: string, signal: AbortSignal): AsyncGenerator<JobEvent> {
  let res: Response;
  try {
    res = await fetch(at(id, '/events'), { headers: { ...authHeaders(), Accept: 'text/event-stream' }, signal });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'Cannot reach the Hearth server.', { code: 'offline' });
  }
  if (!res.ok || !res.body) throw await errorFrom(res);
  for await (const ev of sseEvents(res.body)) yield ev as JobEvent;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

/** Errors that another try will not change. */
function permanent(e: unknown): boolean {
  return e instanceof ApiError && [400, 401, 403, 404].includes(e.status);
}

export interface FollowOptions {
  /** First wait before reading the job again after a cut stream; doubles to `maxWaitMs`. */
  waitMs?: number;
  maxWaitMs?: number;
}

/**
 * Follows a job until it ends: its event stream, and when the stream is cut before
 * the end (a proxy, a server restart), the job read again (`GET`, handed on as a
 * `job` event) and the stream opened again, waiting longer after each failure. So
 * a server that cannot stream is polled. Resolves when the job has ended or
 * `signal` aborts; rejects on a permanent refusal (404, 401...).
 */
export async function followJob(id: string, onEvent: (e: JobEvent) => void, signal: AbortSignal, opts: FollowOptions = {}): Promise<void> {
  const first = opts.waitMs ?? 1000;
  const most = opts.maxWaitMs ?? 8000;
  let wait = first;
  while (!signal.aborted) {
    let ended = false;
    let heard = false;
    try {
      for await (const ev of jobEvents(id, signal)) {
        heard = true;
        onEvent(ev);
        if (ev.type === 'job' && isFinal(ev.status)) ended = true;
      }
    } catch (e) {
      if (signal.aborted || (e as Error)?.name === 'AbortError') return;
      if (permanent(e)) throw e;
    }
    if (ended) return;
    wait = heard ? first : Math.min(most, wait * 2);
    await sleep(wait, signal);
    if (signal.aborted) return;
    try {
      const view = await jobsApi.get(id, signal);
      onEvent({ ...view, type: 'job' });
      if (isFinal(view.status)) return;
    } catch (e) {
      if (signal.aborted || (e as Error)?.name === 'AbortError') return;
      if (permanent(e)) throw e;
    }
  }
}

/** What a person should read when a jobs call is refused: what happened and what to do. */
export function describeJobError(e: unknown): string {
  if (!(e instanceof ApiError)) return describeError(e);
  const msg = sentence(e.message);
  switch (e.code) {
    case 'unsupported_image_type':
      return `Hearth cannot use this file. ${msg}`;
    case 'upload_too_large':
      return `The image is too large. ${msg} Send a smaller image (or a screenshot of the part that matters).`;
    case 'image_too_large':
      return `The image has too many pixels. ${msg}`;
    case 'invalid_image':
      return `The image cannot be read. ${msg}`;
    case 'message_too_large':
      return `The instruction is too long. ${msg}`;
    case 'missing_image':
      return 'Choose an image first.';
    case 'job_not_found':
      return 'That job does not exist (it may have been deleted).';
    case 'job_conflict':
      return `Not now: ${e.message.trim()}`;
    case 'code_too_large':
      return `The code is too long. ${msg}`;
    default:
  }
  if (e.status === 413) return `The upload is too large. ${msg}`;
  if (e.status === 415) return `Hearth cannot use this file. ${msg}`;
  if (e.status === 400) return `The request was refused: ${e.message.trim()}`;
  return describeError(e);
}
