import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, setApiKey } from '../api';
import { describeJobError, followJob, jobsApi, type JobEvent } from './api';
import { JOB_ID, job, view } from './fixtures';

const enc = new TextEncoder();
const json = (v: unknown, status = 200, headers: Record<string, string> = {}) => new Response(JSON.stringify(v), { status, headers: { 'Content-Type': 'application/json', ...headers } });
const err = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  json({ error: { message, type: 'invalid_request_error', param: 'image', code } }, status, headers);
const sse = (events: unknown[]) =>
  new Response(
    new ReadableStream({
      start(c) {
        for (const e of events) c.enqueue(enc.encode(`data: ${JSON.stringify(e)}\n\n`));
        c.close();
      },
    }),
    { status: 200, headers: { 'Content-Type': 'text/event-stream' } },
  );

afterEach(() => vi.unstubAllGlobals());

describe('jobsApi', () => {
  it('uploads the image and the instruction as multipart, with the key', async () => {
    const fetch = vi.fn().mockResolvedValue(json(job(), 201));
    vi.stubGlobal('fetch', fetch);
    setApiKey('sk-jobs');
    const image = new File([new Uint8Array([0x89, 0x50, 0x4e, 0x47])], 'board.png', { type: 'image/png' });
    const created = await jobsApi.submit(image, '  plot these  ', image.name);
    expect(created.id).toBe(JOB_ID);
    const [url, init] = fetch.mock.calls[0];
    expect([url, init.method]).toEqual(['/api/jobs', 'POST']);
    // The browser writes the multipart Content-Type (with its boundary): not us.
    expect(init.headers).toEqual({ Authorization: 'Bearer sk-jobs' });
    const body = init.body as FormData;
    expect((body.get('image') as File).name).toBe('board.png');
    expect(body.get('prompt')).toBe('plot these');
  });

  it('sends no prompt part for an empty instruction', async () => {
    const fetch = vi.fn().mockResolvedValue(json(job(), 201));
    vi.stubGlobal('fetch', fetch);
    await jobsApi.submit(new Blob(['x'], { type: 'image/png' }), '   ');
    expect((fetch.mock.calls[0][1].body as FormData).has('prompt')).toBe(false);
  });

  it('calls cancel, retry, code and delete on the job', async () => {
    const fetch = vi.fn().mockImplementation(() => Promise.resolve(json(job())));
    vi.stubGlobal('fetch', fetch);
    await jobsApi.cancel(JOB_ID);
    await jobsApi.retry(JOB_ID);
    await jobsApi.editCode(JOB_ID, 'print(1)');
    await jobsApi.remove(JOB_ID);
    await jobsApi.list({ cursor: 'c2', limit: 10 });
    expect(fetch.mock.calls.map(([u, i]) => `${i.method} ${u}`)).toEqual([
      `POST /api/jobs/${JOB_ID}/cancel`,
      `POST /api/jobs/${JOB_ID}/retry`,
      `PUT /api/jobs/${JOB_ID}/code`,
      `DELETE /api/jobs/${JOB_ID}`,
      'GET /api/jobs?cursor=c2&limit=10',
    ]);
    expect(JSON.parse(fetch.mock.calls[2][1].body)).toEqual({ code: 'print(1)' });
  });

  it('turns refused uploads into plain words', async () => {
    const cases: [Response, string][] = [
      [
        err(415, 'unsupported_image_type', 'the upload is a PDF document, not an image this accepts; send a PNG, JPEG, WebP or GIF image'),
        'Hearth cannot use this file. The upload is a PDF document, not an image this accepts; send a PNG, JPEG, WebP or GIF image.',
      ],
      [
        err(413, 'upload_too_large', 'the upload (30000000 bytes) is larger than the most accepted, 20000000 bytes ([jobs] max_upload_bytes)'),
        'The image is too large. The upload (30000000 bytes) is larger than the most accepted, 20000000 bytes ([jobs] max_upload_bytes). Send a smaller image (or a screenshot of the part that matters).',
      ],
      [
        err(400, 'image_too_large', 'the png image declares 90000×90000 pixels, more than the 50000000 accepted; send a smaller image'),
        'The image has too many pixels. The png image declares 90000×90000 pixels, more than the 50000000 accepted; send a smaller image.',
      ],
      [err(400, 'invalid_multipart', 'the multipart body cannot be read: boom'), 'The request was refused: the multipart body cannot be read: boom'],
      [
        json({ error: { message: 'rate limit of key `e2e` reached', type: 'rate_limit_error', param: null, code: 'rate_limited' } }, 429, { 'Retry-After': '9' }),
        'Too many requests: rate limit of key `e2e` reached. Try again in 9 s.',
      ],
    ];
    for (const [res, words] of cases) {
      vi.stubGlobal('fetch', vi.fn().mockResolvedValue(res));
      const e = await jobsApi.submit(new Blob(['x']), '').catch((x) => x);
      expect(e).toBeInstanceOf(ApiError);
      expect(describeJobError(e)).toBe(words);
    }
  });

  it('says what a refused action means', () => {
    expect(describeJobError(new ApiError(409, 'the job is running; only a failed or cancelled job can be retried', { code: 'job_conflict' }))).toBe(
      'Not now: the job is running; only a failed or cancelled job can be retried',
    );
    expect(describeJobError(new ApiError(404, 'no job `x`', { code: 'job_not_found' }))).toBe('That job does not exist (it may have been deleted).');
    expect(describeJobError(new ApiError(0, 'Cannot reach the Hearth server.'))).toMatch(/Cannot reach the Hearth server/);
  });
});

describe('followJob', () => {
  it('follows the stream to the end of the job', async () => {
    const id = JOB_ID;
    const events = [
      { type: 'job', ...view({ status: 'queued' }) },
      { type: 'status', job_id: id, status: 'running', step: 'vision', error: null },
      { type: 'status', job_id: id, status: 'succeeded', step: 'run', error: null },
      { type: 'job', ...view({ status: 'succeeded' }) },
    ];
    const fetch = vi.fn().mockResolvedValue(sse(events));
    vi.stubGlobal('fetch', fetch);
    setApiKey('sk-follow');
    const seen: JobEvent[] = [];
    await followJob(id, (e) => seen.push(e), new AbortController().signal);
    expect(seen.map((e) => e.type)).toEqual(['job', 'status', 'status', 'job']);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(fetch.mock.calls[0][0]).toBe(`/api/jobs/${id}/events`);
    expect(fetch.mock.calls[0][1].headers.Authorization).toBe('Bearer sk-follow');
  });

  it('reads the job and listens again when the stream is cut before the end', async () => {
    const id = JOB_ID;
    const fetch = vi
      .fn()
      // Cut after the first event (a server restart)...
      .mockResolvedValueOnce(sse([{ type: 'job', ...view({ status: 'running' }) }]))
      // ...the job read again: still running...
      .mockResolvedValueOnce(json(view({ status: 'running', step: 'run' })))
      // ...the stream again, to the end.
      .mockResolvedValueOnce(sse([{ type: 'status', job_id: id, status: 'failed', step: 'run', error: 'x' }, { type: 'job', ...view({ status: 'failed' }) }]));
    vi.stubGlobal('fetch', fetch);
    const seen: string[] = [];
    await followJob(id, (e) => seen.push(`${e.type}:${'status' in e ? e.status : ''}`), new AbortController().signal, { waitMs: 1 });
    expect(seen).toEqual(['job:running', 'job:running', 'status:failed', 'job:failed']);
    expect(fetch.mock.calls.map((c) => c[0])).toEqual([`/api/jobs/${id}/events`, `/api/jobs/${id}`, `/api/jobs/${id}/events`]);
  });

  it('polls when the stream cannot be opened, and stops at a 404', async () => {
    const fetch = vi
      .fn()
      .mockRejectedValueOnce(new TypeError('Failed to fetch'))
      .mockResolvedValueOnce(json(view({ status: 'succeeded' })));
    vi.stubGlobal('fetch', fetch);
    const seen: string[] = [];
    await followJob(JOB_ID, (e) => seen.push(e.type), new AbortController().signal, { waitMs: 1 });
    expect(seen).toEqual(['job']);

    vi.stubGlobal('fetch', vi.fn().mockResolvedValue(err(404, 'job_not_found', 'no job')));
    await expect(followJob(JOB_ID, () => undefined, new AbortController().signal, { waitMs: 1 })).rejects.toMatchObject({ status: 404 });
  });
});
