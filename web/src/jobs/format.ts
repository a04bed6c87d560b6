// Jobs in words: step names, statuses, sizes, durations, failures.

import type { Job, JobStep, StepKind } from './api';

export const STEP_NAMES: Record<StepKind, string> = {
  vision: 'Vision',
  plan: 'Plan',
  code: 'Code',
  critic: 'Critic',
  run: 'Run',
};

const STEP_HINTS: Record<StepKind, string> = {
  vision: 'the vision model reads the image',
  plan: 'the reasoning model plans the script',
  code: 'the code model writes the script',
  critic: 'ruff and bandit check the script',
  run: 'the script runs in the sandbox',
};

export function stepName(kind: string): string {
  return STEP_NAMES[kind as StepKind] ?? kind;
}

export function stepHint(kind: string): string {
  return STEP_HINTS[kind as StepKind] ?? '';
}

export function stepTitle(s: Pick<JobStep, 'kind' | 'attempt'>): string {
  const name = stepName(s.kind);
  return s.attempt > 1 ? `${name} · attempt ${s.attempt}` : name;
}

/** The job's state in a few words, for the list and the view's header. */
export function statusText(j: Pick<Job, 'status' | 'step' | 'cancel_requested'>): string {
  switch (j.status) {
    case 'queued':
      return 'Queued';
    case 'running':
      if (j.cancel_requested) return 'Cancelling…';
      return j.step ? `Running: ${stepName(j.step).toLowerCase()}` : 'Running';
    case 'succeeded':
      return 'Done';
    case 'failed':
      return j.step ? `Failed at ${stepName(j.step).toLowerCase()}` : 'Failed';
    case 'cancelled':
      return 'Cancelled';
    default:
      return j.status;
  }
}

const FAILURES: Record<string, string> = {
  script: 'The script kept failing.',
  critic: 'The critic blocked the script.',
  model: 'A model call failed.',
  no_script: 'The code model did not write a script.',
  vision_unsupported: 'The vision model cannot read images.',
  timeout: 'The script ran out of time.',
  memory: 'The script ran out of memory.',
  cpu: 'The script used up its CPU time.',
  pids: 'The script started too many processes.',
  output_size: 'The script wrote too much.',
  sandbox: 'The sandbox could not run the script.',
  internal: 'Hearth failed on an internal error.',
};

/** The headline of a failure, from its code; the job's `error` says the rest. */
export function failureTitle(j: Pick<Job, 'error_code' | 'step'>): string {
  const known = j.error_code ? FAILURES[j.error_code] : undefined;
  if (known) return known;
  return j.step ? `The job failed at the ${stepName(j.step).toLowerCase()} step.` : 'The job failed.';
}

/** A sentence: capital first letter, a full stop. */
export function sentence(s: string): string {
  const t = s.trim();
  if (!t) return t;
  const c = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(c) ? c : `${c}.`;
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)} kB`;
  if (n < 1_000_000_000) return `${(n / 1_000_000).toFixed(1)} MB`;
  return `${(n / 1_000_000_000).toFixed(2)} GB`;
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** "just now", "5 min ago", "3 h ago", or the date. */
export function ago(at: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return new Date(at).toLocaleDateString();
}

/** Raster images are shown; anything else (SVG, HTML included) is only downloaded. */
export function shownInline(contentType: string): boolean {
  return ['image/png', 'image/jpeg', 'image/gif', 'image/webp'].includes(contentType.split(';')[0].trim().toLowerCase());
}

export function baseName(path: string): string {
  return path.split('/').pop() || path;
}
