// Jobs, steps and files as the server sends them: for the tests only.

import type { Job, JobFile, JobStep, JobView, StepKind } from './api';

export const JOB_ID = 'aaaaaaaa-1111-4222-8333-444455556666';

export function job(over: Partial<Job> = {}): Job {
  return {
    id: JOB_ID,
    owner: 'anonymous',
    status: 'queued',
    step: null,
    prompt: 'plot these numbers',
    image_sha256: 'ab'.repeat(32),
    image_type: 'png',
    error: null,
    error_code: null,
    cancel_requested: false,
    created_at: 1_700_000_000_000,
    updated_at: 1_700_000_000_000,
    started_at: null,
    finished_at: null,
    ...over,
  };
}

let seq = 0;
export function step(kind: StepKind, over: Partial<JobStep> = {}): JobStep {
  seq += 1;
  return {
    id: `step-${kind}-${over.attempt ?? 1}-${seq}`,
    job_id: over.job_id ?? JOB_ID,
    seq,
    kind,
    attempt: 1,
    status: 'succeeded',
    input: '',
    output: null,
    detail: null,
    model: null,
    prompt_tokens: null,
    completion_tokens: null,
    started_at: 1_700_000_000_000,
    finished_at: 1_700_000_001_000,
    duration_ms: 1000,
    ...over,
  };
}

export function file(name: string, content_type: string, over: Partial<JobFile> = {}): JobFile {
  return {
    job_id: JOB_ID,
    role: 'artifact',
    name,
    sha256: 'cd'.repeat(32),
    size: 2048,
    content_type,
    step_id: null,
    created_at: 1_700_000_002_000,
    url: `/api/jobs/${JOB_ID}/files/${name}`,
    ...over,
  };
}

export function view(over: Partial<JobView> = {}): JobView {
  return { ...job(over), steps: [], files: [file('input.png', 'image/png', { role: 'input' })], ...over };
}

/** A script bandit blocks (B602, line 4). */
export const SHELL_CODE = 'import subprocess\n\ncmd = "ls " + "/input"\nsubprocess.call(cmd, shell=True)\nprint("done")\n';

export const SHELL_REVIEW = {
  findings: [
    { tool: 'bandit', rule: 'B602', line: 4, severity: 'high', message: 'subprocess call with shell=True identified, security issue.', blocking: true },
    { tool: 'bandit', rule: 'B404', line: 1, severity: 'low', message: 'Consider possible security implications associated with the subprocess module.', blocking: false },
  ],
  blocked: true,
};

export const RUN_DETAIL = {
  exit_code: 1,
  signal: null,
  limit: null,
  explanation: null,
  stderr: 'Traceback (most recent call last):\n  File "/sandbox/main.py", line 1, in <module>\nValueError: no numbers\n',
  stdout_truncated: false,
  stderr_truncated: false,
  files: [],
  files_truncated: false,
  usage: { wall_ms: 412, cpu_ms: 230, peak_memory_bytes: 31_000_000, source: 'cgroup v2' },
  isolation: 'namespaces',
  warnings: [],
};
