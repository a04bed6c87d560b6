import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { act, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { App } from '../App';
import type { Job, JobEvent, JobView } from './api';
import { JOB_ID, RUN_DETAIL, file, job, step, view } from './fixtures';

// A fake server: the chat's endpoints (empty), and jobs whose event streams the
// test writes to as it goes.
interface Fake {
  jobs: Job[];
  views: Record<string, JobView>;
  requests: { method: string; url: string; body: unknown }[];
  streams: ReadableStreamDefaultController<Uint8Array>[];
  submit: () => Response;
}
let fake: Fake;
const enc = new TextEncoder();
const json = (v: unknown, status = 200) => new Response(JSON.stringify(v), { status, headers: { 'Content-Type': 'application/json' } });
const send = (e: JobEvent) => act(() => fake.streams[fake.streams.length - 1].enqueue(enc.encode(`data: ${JSON.stringify(e)}\n\n`)));
const close = () => act(() => fake.streams[fake.streams.length - 1].close());

function fakeFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const url = new URL(String(input), 'http://localhost');
  const method = init.method ?? 'GET';
  fake.requests.push({ method, url: url.pathname + url.search, body: init.body });
  const p = url.pathname;
  if (p === '/v1/models') return Promise.resolve(json({ data: [] }));
  if (p === '/api/hearth/conversations') return Promise.resolve(json({ data: [], next_cursor: null }));
  if (p === '/api/jobs' && method === 'GET') return Promise.resolve(json({ object: 'list', data: fake.jobs, next_cursor: null }));
  if (p === '/api/jobs' && method === 'POST') return Promise.resolve(fake.submit());
  const m = /^\/api\/jobs\/([^/]+)(\/\w+)?$/.exec(p);
  if (m) {
    const [, id, sub] = m;
    if (sub === '/events') {
      const body = new ReadableStream<Uint8Array>({ start: (c) => void fake.streams.push(c) });
      return Promise.resolve(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }));
    }
    if (sub === '/retry') return Promise.resolve(json(job({ id, status: 'queued', step: 'run', updated_at: 1_700_000_009_000 })));
    if (!sub) return Promise.resolve(json(fake.views[id]));
  }
  return Promise.resolve(json({ error: { message: 'no route', type: 'invalid_request_error', param: null, code: 'not_found' } }, 404));
}

beforeEach(() => {
  fake = { jobs: [], views: {}, requests: [], streams: [], submit: () => json(job(), 201) };
  vi.stubGlobal('fetch', vi.fn(fakeFetch));
  history.replaceState(null, '', '/');
});
afterEach(() => vi.unstubAllGlobals());

describe('the Jobs page', () => {
  it('is a link away from the chat, and back', async () => {
    render(<App />);
    fireEvent.click(await screen.findByRole('link', { name: 'Jobs' }));
    expect(await screen.findByRole('heading', { name: 'New job' })).toBeTruthy();
    expect(location.pathname).toBe('/jobs');
    expect(await screen.findByText('No jobs yet.')).toBeTruthy();
    fireEvent.click(screen.getByRole('link', { name: 'Chat' }));
    expect(await screen.findByText('What can I help with?')).toBeTruthy();
    expect(location.pathname).toBe('/');
  });

  it('previews the chosen image, uploads it with the instruction and follows the job live', async () => {
    history.replaceState(null, '', '/jobs');
    render(<App />);
    const picker = (await screen.findByLabelText('Image file')) as HTMLInputElement;
    const image = new File([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])], 'board.png', { type: 'image/png' });
    fireEvent.change(picker, { target: { files: [image] } });
    const preview = await screen.findByRole('img', { name: 'Preview of board.png' });
    expect(preview.getAttribute('src')).toMatch(/^data:image\/png;base64,/);
    fireEvent.change(screen.getByLabelText('Instruction'), { target: { value: 'plot these numbers' } });
    fireEvent.click(screen.getByRole('button', { name: 'Run job' }));

    await waitFor(() => expect(location.pathname).toBe(`/jobs/${JOB_ID}`));
    const post = fake.requests.find((r) => r.method === 'POST');
    expect(((post?.body as FormData).get('image') as File).name).toBe('board.png');
    expect((post?.body as FormData).get('prompt')).toBe('plot these numbers');
    await waitFor(() => expect(fake.streams).toHaveLength(1));

    // The stream: the job as it is, then each step as it starts and ends.
    send({ type: 'job', ...view({ status: 'queued' }) });
    expect(await screen.findByText('Waiting for a worker…')).toBeTruthy();
    send({ type: 'status', job_id: JOB_ID, status: 'running', step: 'vision', error: null });
    send({ type: 'step', job_id: JOB_ID, step_id: 'v1', kind: 'vision', attempt: 1, status: 'running' });
    const vision = await screen.findByRole('region', { name: 'Vision' });
    expect(vision.dataset.status).toBe('running');
    expect(screen.getByTestId('job-status').textContent).toBe('Running: vision');
    const item = document.querySelector(`.job-item[data-id="${JOB_ID}"]`) as HTMLElement;
    await waitFor(() => expect(item.dataset.status).toBe('running'));

    // The step ends: the page reads the stored job for its output.
    fake.views[JOB_ID] = view({ status: 'running', step: 'vision', steps: [step('vision', { id: 'v1', output: 'Three points: (1, 3), (2, 1), (3, 2).' })] });
    send({ type: 'step', job_id: JOB_ID, step_id: 'v1', kind: 'vision', attempt: 1, status: 'succeeded' });
    expect(await within(vision).findByText('Three points: (1, 3), (2, 1), (3, 2).')).toBeTruthy();

    send({ type: 'step', job_id: JOB_ID, step_id: 'r1', kind: 'run', attempt: 1, status: 'running' });
    send({ type: 'log', job_id: JOB_ID, step: 'run', line: 'stdout: chart written' });
    const run = await screen.findByRole('region', { name: 'Run' });
    await waitFor(() => expect(run.querySelector('.live-log')?.textContent).toBe('stdout: chart written\n'));

    const done = view({
      status: 'succeeded',
      step: 'run',
      steps: [step('vision', { id: 'v1', output: 'Three points.' }), step('run', { id: 'r1', output: 'chart written\n', detail: JSON.stringify({ ...RUN_DETAIL, exit_code: 0, stderr: '' }) })],
      files: [file('input.png', 'image/png', { role: 'input' }), file('chart.png', 'image/png')],
    });
    send({ type: 'status', job_id: JOB_ID, status: 'succeeded', step: 'run', error: null });
    send({ type: 'job', ...done });
    close();
    const chart = await screen.findByRole('img', { name: 'chart.png' });
    expect(chart.getAttribute('src')).toBe(`/api/jobs/${JOB_ID}/files/chart.png`);
    expect(screen.getByTestId('job-status').textContent).toBe('Done');
    await waitFor(() => expect(item.dataset.status).toBe('succeeded'));
  });

  it('says in plain words why an upload was refused', async () => {
    fake.submit = () =>
      json({ error: { message: 'the upload is a PDF document, not an image this accepts; send a PNG, JPEG, WebP or GIF image', type: 'invalid_request_error', param: 'image', code: 'unsupported_image_type' } }, 415);
    history.replaceState(null, '', '/jobs');
    render(<App />);
    const picker = (await screen.findByLabelText('Image file')) as HTMLInputElement;
    fireEvent.change(picker, { target: { files: [new File(['%PDF-1.7'], 'scan.pdf', { type: 'application/pdf' })] } });
    expect(await screen.findByText('No preview: the browser cannot show this file as an image.')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Run job' }));
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toBe('Hearth cannot use this file. The upload is a PDF document, not an image this accepts; send a PNG, JPEG, WebP or GIF image.');
    expect(location.pathname).toBe('/jobs');
  });

  it('retries a failed job and follows it again', async () => {
    const failed = view({ status: 'failed', step: 'run', error: 'the script failed after 1 attempt(s): SystemExit: 3', error_code: 'script', steps: [step('code', { output: 'raise SystemExit(3)' })] });
    fake.jobs = [job({ status: 'failed', step: 'run' })];
    history.replaceState(null, '', `/jobs/${JOB_ID}`);
    render(<App />);
    await waitFor(() => expect(fake.streams).toHaveLength(1));
    send({ type: 'job', ...failed });
    close();
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('The script kept failing.');
    fireEvent.click(within(alert).getByRole('button', { name: 'Retry' }));
    await waitFor(() => expect(fake.streams).toHaveLength(2));
    expect(fake.requests.some((r) => r.method === 'POST' && r.url === `/api/jobs/${JOB_ID}/retry`)).toBe(true);
    expect(screen.getByTestId('job-status').textContent).toBe('Queued');
    expect(screen.queryByRole('alert')).toBeNull();
    send({ type: 'job', ...view({ ...failed, status: 'succeeded', error: null, error_code: null }) });
    await waitFor(() => expect(screen.getByTestId('job-status').textContent).toBe('Done'));
  });
});
