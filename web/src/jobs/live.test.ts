import { describe, expect, it } from 'vitest';
import type { JobEvent } from './api';
import { job, step, view } from './fixtures';
import { EMPTY, applyEvent, isBehind, wantsRefresh, type LiveJob } from './live';

const apply = (s: LiveJob, ...events: Parameters<typeof applyEvent>[1][]) => events.reduce(applyEvent, s);
const snapshot = (v = view()): JobEvent => ({ type: 'job', ...v });

describe('the live job', () => {
  it('starts from the snapshot and follows status, steps and log lines', () => {
    const vision = step('vision', { status: 'running', output: null, finished_at: null, duration_ms: null });
    let s = apply(EMPTY, snapshot(view({ status: 'running', step: 'vision', steps: [vision] })));
    expect(s.view?.steps.map((x) => x.kind)).toEqual(['vision']);

    s = apply(
      s,
      { type: 'step', job_id: s.view!.id, step_id: vision.id, kind: 'vision', attempt: 1, status: 'succeeded' },
      { type: 'status', job_id: s.view!.id, status: 'running', step: 'plan', error: null },
      { type: 'step', job_id: s.view!.id, step_id: 'p1', kind: 'plan', attempt: 1, status: 'running' },
    );
    expect(s.view?.step).toBe('plan');
    expect(s.view?.steps.map((x) => `${x.kind}:${x.status}`)).toEqual(['vision:succeeded', 'plan:running']);

    s = apply(
      s,
      { type: 'step', job_id: s.view!.id, step_id: 'r1', kind: 'run', attempt: 1, status: 'running' },
      { type: 'log', job_id: s.view!.id, step: 'run', line: 'stdout: chart written' },
      { type: 'log', job_id: s.view!.id, step: 'run', line: 'wrote chart.png (20012 bytes)' },
    );
    expect(s.logs.r1).toEqual(['stdout: chart written', 'wrote chart.png (20012 bytes)']);
  });

  it('ignores events of other jobs and events before any snapshot', () => {
    expect(apply(EMPTY, { type: 'status', job_id: 'x', status: 'running', step: null, error: null })).toBe(EMPTY);
    const s = apply(EMPTY, snapshot());
    expect(apply(s, { type: 'status', job_id: 'other', status: 'failed', step: 'run', error: 'no' })).toBe(s);
  });

  it('a failure carries its error; a retry clears it', () => {
    let s = apply(EMPTY, snapshot(view({ status: 'running', step: 'run' })));
    s = apply(s, { type: 'status', job_id: s.view!.id, status: 'failed', step: 'run', error: 'the script failed after 2 attempt(s): ValueError' });
    expect([s.view?.status, s.view?.error]).toEqual(['failed', 'the script failed after 2 attempt(s): ValueError']);
    s = apply(s, { type: 'row', job: job({ status: 'queued', step: 'run', error: null, error_code: null, updated_at: 1_700_000_005_000 }) });
    expect([s.view?.status, s.view?.error, s.view?.steps]).toEqual(['queued', null, []]);
  });

  it("an action's answer older than what the stream said does not take it back", () => {
    // Cancel: the stream says cancelled (and the job as it ended) before the POST answers.
    let s = apply(EMPTY, snapshot(view({ status: 'running', step: 'vision', updated_at: 10 })));
    s = apply(s, { type: 'status', job_id: s.view!.id, status: 'cancelled', step: 'vision', error: 'cancelled' }, snapshot(view({ status: 'cancelled', step: 'vision', updated_at: 30 })));
    s = apply(s, { type: 'row', job: job({ status: 'running', step: 'vision', cancel_requested: true, updated_at: 20 }) });
    expect(s.view?.status).toBe('cancelled');
    // Answered first, it shows the cancel on its way.
    s = apply(EMPTY, snapshot(view({ status: 'running', step: 'vision', updated_at: 10 })));
    s = apply(s, { type: 'row', job: job({ status: 'running', step: 'vision', cancel_requested: true, updated_at: 20 }) });
    expect(s.view?.cancel_requested).toBe(true);
  });

  it('drops the log lines of steps the snapshot holds as ended', () => {
    const run = step('run', { id: 'r1', status: 'running' });
    let s = apply(EMPTY, snapshot(view({ status: 'running', steps: [run] })), { type: 'log', job_id: run.job_id, step: 'run', line: 'stdout: 1' });
    expect(s.logs.r1).toHaveLength(1);
    s = apply(s, snapshot(view({ status: 'succeeded', steps: [{ ...run, status: 'succeeded', output: '1\n' }] })));
    expect(s.logs).toEqual({});
  });

  it('a read older than the stream does not take back what the stream said', () => {
    const code = step('code', { id: 'c1', status: 'running' });
    let s = apply(EMPTY, snapshot(view({ status: 'running', steps: [code] })));
    s = apply(
      s,
      { type: 'step', job_id: code.job_id, step_id: 'c1', kind: 'code', attempt: 1, status: 'succeeded' },
      { type: 'step', job_id: code.job_id, step_id: 'k1', kind: 'critic', attempt: 1, status: 'running' },
    );
    // The read was made while the code step still ran.
    const stale = view({ status: 'running', steps: [{ ...code, output: null }] });
    expect(isBehind(s, stale)).toBe(true);
    s = apply(s, { type: 'refresh', view: stale });
    expect(s.view?.steps.map((x) => `${x.id}:${x.status}`)).toEqual(['c1:succeeded', 'k1:running']);
    // A fresh read fills the step in.
    const fresh = view({ status: 'running', steps: [{ ...code, status: 'succeeded', output: 'print(1)' }, step('critic', { id: 'k1', status: 'running' })] });
    expect(isBehind(s, fresh)).toBe(false);
    s = apply(s, { type: 'refresh', view: fresh });
    expect(s.view?.steps[0].output).toBe('print(1)');
  });

  it('asks for the stored job when a step ends, not when one starts', () => {
    const base = { type: 'step' as const, job_id: 'j', step_id: 's', kind: 'code' as const, attempt: 1 };
    expect(wantsRefresh({ ...base, status: 'running' })).toBe(false);
    expect(wantsRefresh({ ...base, status: 'failed' })).toBe(true);
    expect(wantsRefresh({ type: 'log', job_id: 'j', step: 'run', line: 'x' })).toBe(false);
  });
});
