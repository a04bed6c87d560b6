// A job as the page shows it while it runs: the last snapshot, moved on by the
// events that came after it, and the log lines of the steps still running.

import type { Job, JobEvent, JobStep, JobView } from './api';

export interface LiveJob {
  view: JobView | null;
  /** Lines logged by each step (by step id) that the snapshot does not hold yet. */
  logs: Record<string, string[]>;
}

export const EMPTY: LiveJob = { view: null, logs: {} };

/** Lines kept per step: a chatty script's output is capped by the server too. */
const MAX_LINES = 400;

/** A `GET` made while the stream runs: it may be older than the events already applied. */
export interface Refresh {
  type: 'refresh';
  view: JobView;
}

/** The job's row as an action answered it (cancel, retry, edited code). */
export interface Row {
  type: 'row';
  job: Job;
}

const ended = (s: JobStep) => s.status !== 'running';

/** Keeps only the logs of steps that have not ended (ended steps show their stored output). */
function liveLogs(logs: Record<string, string[]>, steps: JobStep[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const s of steps) if (!ended(s) && logs[s.id]) out[s.id] = logs[s.id];
  return out;
}

/** The step a log line of `kind` belongs to: the running one, else the last of that kind. */
function stepFor(steps: JobStep[], kind: string): JobStep | undefined {
  let last: JobStep | undefined;
  for (const s of steps) {
    if (s.kind !== kind) continue;
    if (s.status === 'running') return s;
    last = s;
  }
  return last;
}

export function applyEvent(s: LiveJob, e: JobEvent | Refresh | Row): LiveJob {
  if (e.type === 'job') {
    const { type: _type, ...view } = e;
    return { view, logs: liveLogs(s.logs, view.steps) };
  }
  const v = s.view;
  if (!v) return s;
  if (e.type === 'row') {
    const { object: _object, ...row } = e.job as Job & { object?: string };
    // The stream may have said more already (a cancel's answer after the job ended).
    if (row.id !== v.id || row.updated_at <= v.updated_at) return s;
    return { ...s, view: { ...v, ...row } };
  }
  if (e.type === 'refresh') {
    // Take the steps' stored content, but not a state older than an event already seen:
    // a step the stream said ended stays ended; steps it started since stay listed.
    const known = new Map(v.steps.map((x) => [x.id, x]));
    const steps = e.view.steps.map((x) => {
      const now = known.get(x.id);
      return now && ended(now) && !ended(x) ? { ...x, status: now.status } : x;
    });
    const seen = new Set(steps.map((x) => x.id));
    for (const x of v.steps) if (!seen.has(x.id)) steps.push(x);
    const view = { ...v, steps, files: e.view.files.length >= v.files.length ? e.view.files : v.files };
    // Lines stay until the stored step holds its output.
    const stored = new Map(e.view.steps.map((x) => [x.id, x]));
    const logs: Record<string, string[]> = {};
    for (const [id, lines] of Object.entries(s.logs)) {
      const x = stored.get(id);
      if (!x || !ended(x)) logs[id] = lines;
    }
    return { view, logs };
  }
  if (e.job_id !== v.id) return s;
  if (e.type === 'status') {
    const view = { ...v, status: e.status, step: e.step ?? v.step, error: e.error };
    if (e.status === 'queued' || e.status === 'running') {
      view.error_code = null;
      view.finished_at = null;
      if (e.status === 'queued') view.cancel_requested = false;
    }
    return { ...s, view };
  }
  if (e.type === 'step') {
    const i = v.steps.findIndex((x) => x.id === e.step_id);
    if (i >= 0) {
      const steps = v.steps.map((x, j) => (j === i ? { ...x, status: e.status } : x));
      return { view: { ...v, steps }, logs: s.logs };
    }
    const step: JobStep = {
      id: e.step_id,
      job_id: e.job_id,
      seq: v.steps.reduce((m, x) => Math.max(m, x.seq), 0) + 1,
      kind: e.kind,
      attempt: e.attempt,
      status: e.status,
      input: '',
      output: null,
      detail: null,
      model: null,
      prompt_tokens: null,
      completion_tokens: null,
      started_at: Date.now(),
      finished_at: null,
      duration_ms: null,
    };
    return { view: { ...v, steps: [...v.steps, step] }, logs: s.logs };
  }
  // A log line.
  const step = stepFor(v.steps, e.step);
  if (!step) return s;
  const lines = [...(s.logs[step.id] ?? []), e.line].slice(-MAX_LINES);
  return { ...s, logs: { ...s.logs, [step.id]: lines } };
}

/** After this event the stored job holds content the page has not got (a step's output). */
export function wantsRefresh(e: JobEvent): boolean {
  return e.type === 'step' && e.status !== 'running';
}

/** A refresh that came back older than what the stream already said (ask again). */
export function isBehind(s: LiveJob, view: JobView): boolean {
  const stored = new Map(view.steps.map((x) => [x.id, x]));
  return (s.view?.steps ?? []).some((x) => {
    const y = stored.get(x.id);
    return !y || (ended(x) && !ended(y));
  });
}
