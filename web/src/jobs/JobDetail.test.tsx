import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { setApiKey } from '../api';
import type { JobView } from './api';
import { CodeView } from './CodeView';
import { RUN_DETAIL, SHELL_CODE, SHELL_REVIEW, file, step, view } from './fixtures';
import { JobDetail, type JobDetailProps } from './JobDetail';

function show(v: JobView, over: Partial<JobDetailProps> = {}, logs: Record<string, string[]> = {}) {
  const props: JobDetailProps = {
    live: { view: v, logs },
    busy: null,
    onCancel: vi.fn(),
    onRetry: vi.fn(),
    onRunCode: vi.fn().mockResolvedValue(true),
    onDelete: vi.fn(),
    onError: vi.fn(),
    onMenu: vi.fn(),
    ...over,
  };
  render(<JobDetail {...props} />);
  return props;
}

/** A job whose first script bandit blocked, repaired, then failed when run. */
function failedJob(): JobView {
  return view({
    status: 'failed',
    step: 'run',
    error: 'the script failed after 2 attempt(s): ValueError: no numbers',
    error_code: 'script',
    started_at: 1_700_000_000_000,
    finished_at: 1_700_000_009_000,
    steps: [
      step('vision', { output: 'A table: **1, 3**; 2, 1.', model: 'vision-m', prompt_tokens: 900, completion_tokens: 20 }),
      step('plan', { output: '1. Read the numbers. 2. Plot them.' }),
      step('code', { output: SHELL_CODE, model: 'coder' }),
      step('critic', { status: 'failed', output: '2 finding(s), 1 blocking', detail: JSON.stringify({ ...SHELL_REVIEW, usage: { wall_ms: 180, cpu_ms: 150, peak_memory_bytes: 42_000_000, source: 'cgroup v2' } }) }),
      step('code', { attempt: 2, output: 'raise ValueError("no numbers")\n' }),
      step('critic', { attempt: 2, output: '0 finding(s), 0 blocking', detail: JSON.stringify({ findings: [], blocked: false }) }),
      step('run', { attempt: 2, status: 'failed', output: 'reading\n', detail: JSON.stringify(RUN_DETAIL) }),
    ],
  });
}

describe('CodeView', () => {
  it('marks each finding on its line and says it there', () => {
    const { container } = render(<CodeView code={SHELL_CODE} findings={SHELL_REVIEW.findings} />);
    const line4 = container.querySelector('.line[data-line="4"]') as HTMLElement;
    expect(line4.dataset.mark).toBe('blocking');
    expect(line4.textContent).toContain('subprocess.call(cmd, shell=True)');
    expect(container.querySelector('.line[data-line="1"]')?.getAttribute('data-mark')).toBe('note');
    expect(container.querySelector('.line[data-line="2"]')?.hasAttribute('data-mark')).toBe(false);
    const note = container.querySelector('.line-findings[data-line="4"]') as HTMLElement;
    expect(note.textContent).toBe('bandit B602 high, blocks: subprocess call with shell=True identified, security issue.');
    // Highlighted as Python: the keyword and the string are tokens.
    expect(container.querySelector('.line[data-line="1"] .tok-keyword')?.textContent).toBe('import');
    expect(container.querySelector('.line[data-line="3"] .tok-string')?.textContent).toBe('"ls "');
    expect(container.querySelectorAll('.line')).toHaveLength(5);
  });
});

describe('JobDetail', () => {
  it('a failed job says what went wrong, with Retry and Edit code and run', async () => {
    const p = show(failedJob());
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toContain('The script kept failing.');
    expect(alert.textContent).toContain('The script failed after 2 attempt(s): ValueError: no numbers.');
    expect(alert.textContent).toContain('Retry runs it again from the run step, with one more repair');
    expect(screen.getByTestId('job-status').textContent).toBe('Failed at run');

    fireEvent.click(within(alert).getByRole('button', { name: 'Retry' }));
    expect(p.onRetry).toHaveBeenCalled();

    fireEvent.click(within(alert).getByRole('button', { name: 'Edit code and run' }));
    const box = screen.getByRole('textbox', { name: 'Code to run' }) as HTMLTextAreaElement;
    expect(box.value).toBe('raise ValueError("no numbers")\n');
    fireEvent.change(box, { target: { value: 'print("fixed")' } });
    fireEvent.click(screen.getByRole('button', { name: 'Run this code' }));
    expect(p.onRunCode).toHaveBeenCalledWith('print("fixed")');
    await waitFor(() => expect(screen.queryByRole('textbox', { name: 'Code to run' })).toBeNull());
  });

  it('shows every step: the vision text, the plan, the code with its findings, the run', () => {
    show(failedJob());
    const steps = Array.from(document.querySelectorAll<HTMLElement>('.step')).map((s) => `${s.dataset.kind}:${s.dataset.attempt}:${s.dataset.status}`);
    expect(steps).toEqual(['vision:1:succeeded', 'plan:1:succeeded', 'code:1:succeeded', 'critic:1:failed', 'code:2:succeeded', 'critic:2:succeeded', 'run:2:failed']);
    const vision = screen.getByRole('region', { name: 'Vision' });
    expect(within(vision).getByText('1, 3').tagName).toBe('STRONG');
    expect(vision.textContent).toContain('vision-m · 900 + 20 tokens · 1.0 s');
    // The blocked attempt: its line 4 marked, the critic's list, and why attempt 2 came.
    const code1 = screen.getByRole('region', { name: 'Code' });
    expect(code1.querySelector('.line[data-line="4"]')?.getAttribute('data-mark')).toBe('blocking');
    const critic1 = screen.getByRole('region', { name: 'Critic' });
    expect(critic1.textContent).toContain('2 finding(s), 1 blocking. The script did not run.');
    expect(critic1.querySelector('.finding[data-rule="B602"]')?.textContent).toContain('line 4');
    expect(within(critic1).getByLabelText('Resources used').textContent).toBe('Time180 msCPU150 msMemory42.0 MB peak');
    expect(screen.getByRole('region', { name: 'Code · attempt 2' }).textContent).toContain('A repair: the critic blocked attempt 1.');
    // The run: stdout, stderr, resources.
    const run = screen.getByRole('region', { name: 'Run · attempt 2' });
    expect(run.textContent).toContain('ValueError: no numbers');
    expect(within(run).getByLabelText('Resources used').textContent).toBe('Statusexit code 1Time412 msCPU230 msMemory31.0 MB peakSandboxnamespaces');
  });

  it('a running step shows its live lines; a running job can be cancelled', () => {
    const run = step('run', { id: 'r1', status: 'running', finished_at: null, duration_ms: null });
    const p = show(view({ status: 'running', step: 'run', steps: [run] }), {}, { r1: ['stdout: hello', 'stderr: careful'] });
    const region = screen.getByRole('region', { name: 'Run' });
    expect(region.querySelector('.live-log')?.textContent).toBe('stdout: hello\nstderr: careful\n');
    expect(region.querySelector('.log-stderr')?.textContent).toContain('careful');
    expect(screen.getByTestId('job-status').textContent).toBe('Running: run');
    expect(screen.queryByRole('button', { name: 'Delete' })).toBeNull();
    fireEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(p.onCancel).toHaveBeenCalled();
  });

  it('shows raster results inline and offers the rest only as downloads', () => {
    const v = view({
      status: 'succeeded',
      step: 'run',
      files: [
        file('input.png', 'image/png', { role: 'input' }),
        file('chart.png', 'image/png'),
        file('plot.svg', 'image/svg+xml'),
        file('page.html', 'text/html'),
        file('data/table.csv', 'text/csv', { size: 58 }),
      ],
      steps: [step('code', { output: 'print(1)' })],
    });
    show(v);
    const results = screen.getByRole('region', { name: 'Results' });
    const imgs = results.querySelectorAll('img');
    expect(Array.from(imgs).map((i) => i.getAttribute('src'))).toEqual([`/api/jobs/${v.id}/files/chart.png`]);
    for (const name of ['plot.svg', 'page.html', 'data/table.csv']) {
      const link = within(results).getByRole('link', { name });
      expect(link.getAttribute('href')).toBe(`/api/jobs/${v.id}/files/${name}`);
      expect(link.hasAttribute('download')).toBe(true);
    }
    expect(within(results).getByRole('link', { name: 'data/table.csv' }).getAttribute('download')).toBe('table.csv');
    expect(results.textContent).toContain('58 B · text/csv');
    expect(screen.getByRole('img', { name: 'The uploaded image' }).getAttribute('src')).toBe(`/api/jobs/${v.id}/files/input.png`);
    expect(screen.getByRole('status').textContent).toContain('Done in 1.0 s. 4 files.');
    // Succeeded: the code can still be edited and run again.
    expect(screen.getByRole('button', { name: 'Edit code and run' })).toBeTruthy();
  });

  it('with an API key, images are fetched with it and shown as data: URLs', async () => {
    setApiKey('sk-img');
    const fetch = vi.fn().mockImplementation(() => Promise.resolve({ ok: true, blob: () => Promise.resolve(new Blob([new Uint8Array([0x89, 0x50])], { type: 'image/png' })) }));
    vi.stubGlobal('fetch', fetch);
    show(view({ status: 'succeeded', files: [file('input.png', 'image/png', { role: 'input' }), file('chart.png', 'image/png')] }));
    await waitFor(() => expect(screen.getByRole('img', { name: 'chart.png' }).getAttribute('src')).toMatch(/^data:image\/png;base64,/));
    expect(fetch.mock.calls.every(([, init]) => init.headers.Authorization === 'Bearer sk-img')).toBe(true);
    vi.unstubAllGlobals();
  });

  it('Delete asks once more before it deletes', () => {
    const p = show(view({ status: 'succeeded' }));
    fireEvent.click(screen.getByRole('button', { name: 'Delete' }));
    expect(p.onDelete).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole('button', { name: 'Delete for good?' }));
    expect(p.onDelete).toHaveBeenCalled();
  });
});
