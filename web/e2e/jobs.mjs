// End-to-end: the Jobs page in Chromium against a real `hearth serve` that needs an
// API key, its models played by the scripted fake upstream (`fake-upstream --script`)
// and its scripts checked and run by the real sandbox. Run by `make test-web`; alone:
//   HEARTH_BIN=target/debug/hearth HEARTH_SANDBOX_VENV=.venv-sandbox node web/e2e/jobs.mjs
// (`cargo build --bin hearth --bin fake-upstream` first). Screenshots and the
// server's log go to target/web-e2e/ (jobs-*).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ART, BIN, FAKE, Server, freePort, launch, repo, startFake } from './run.mjs';

const VENV = path.resolve(repo, process.env.HEARTH_SANDBOX_VENV ?? '.venv-sandbox');
const KEY = 'sk-e2e-jobs-key';
const JOB_TIMEOUT = 90_000;

// ---- what the models answer, in order (one job after another) -----------------

const py = (code) => `Here is the script:\n\n\`\`\`python\n${code}\n\`\`\`\n`;

/** A real matplotlib chart (shown inline) and a CSV (a download). */
const CHART = `import os

import matplotlib.pyplot as plt

assert os.path.exists("/input/input.png")
xs = [1, 2, 3, 4]
ys = [3, 1, 4, 2]
plt.plot(xs, ys, marker="o")
plt.title("Numbers from the whiteboard")
plt.savefig("/output/chart.png")
with open("/output/summary.csv", "w") as f:
    f.write("x,y\\n1,3\\n2,1\\n3,4\\n4,2\\n")
print("chart written")`;

/** bandit B602 (HIGH): a shell command built from strings, on line 4. */
const SHELL = `import subprocess

cmd = "ls " + "/input"
subprocess.call(cmd, shell=True)
print("listed")`;

const TABLE = `with open("/output/table.csv", "w") as f:
    f.write("x,y\\n1,3\\n")
print("table written")`;

const RAISES = `print("reading the table")
raise ValueError("the table has no numbers")`;

const FIXED = `import json

with open("/output/result.json", "w") as f:
    json.dump({"numbers": [3, 1, 4, 2]}, f)
print("fixed by the retry")`;

const EDITED = `with open("/output/edited.csv", "w") as f:
    f.write("a,b\\n5,6\\n")
print("edited by hand")`;

const SCRIPT = {
  'vision-m': [
    // Slow enough that the page sees the first step running.
    { text: 'A whiteboard with a table of four numbers: 3, 1, 4, 2.', delay_ms: 800 },
    'A table with two columns, x and y.',
    'A table with one row of numbers.',
    { stall: true },
  ],
  planner: [
    { text: '1. Hard-code the numbers. 2. Plot them. 3. Save the chart and a CSV.', delay_ms: 300 },
    '1. Write the table as CSV.',
    '1. Read the numbers. 2. Write them out.',
  ],
  coder: [CHART, SHELL, TABLE, RAISES, RAISES, FIXED].map(py),
};

// ---- the fake upstream and the server -------------------------------------------

async function startJobsFake(dir) {
  const record = path.join(dir, 'requests.jsonl');
  const fake = await startFake(dir, SCRIPT, 'jobs-fake-upstream.log', ['--record', record]);
  return {
    ...fake,
    /** How many requests named `model`. */
    asked: (model) =>
      fs.existsSync(record)
        ? fs
            .readFileSync(record, 'utf8')
            .split('\n')
            .filter(Boolean)
            .filter((l) => JSON.parse(l).model === model).length
        : 0,
  };
}

async function startHearth(dir, upstream) {
  const port = await freePort();
  const config = path.join(dir, 'hearth.toml');
  const models = [
    ['vision-m', true],
    ['planner', false],
    ['coder', false],
  ]
    .map(
      ([name, vision]) => `[[models]]
name = "${name}"
backend = "upstream"
base_url = ${JSON.stringify(upstream.url)}
retries = 0
vision = ${vision}
`,
    )
    .join('\n');
  fs.writeFileSync(
    config,
    `[server]
listen = "127.0.0.1:${port}"
shutdown_grace_secs = 2
[storage]
data_dir = ${JSON.stringify(path.join(dir, 'data'))}
[log]
dir = ${JSON.stringify(path.join(dir, 'logs'))}
stdout = false
[health]
probe_interval_secs = 1
[sandbox]
venv = ${JSON.stringify(VENV)}

[[keys]]
name = "e2e"
key = "${KEY}"

${models}
[jobs]
vision_model = "vision-m"
reasoning_model = "planner"
code_model = "coder"
max_repairs = 1
[jobs.limits]
memory_mb = 512
timeout_secs = 30
`,
  );
  const server = new Server(config, path.join(ART, 'jobs-server.log'));
  server.port = port;
  await server.start('coder');
  return server;
}

// ---- the suite --------------------------------------------------------------------

async function main() {
  fs.mkdirSync(ART, { recursive: true });
  for (const f of fs.readdirSync(ART)) if (f.startsWith('jobs-')) fs.rmSync(path.join(ART, f), { force: true });
  if (!fs.existsSync(BIN)) throw new Error(`no hearth binary at ${BIN} (cargo build --bin hearth)`);
  if (!fs.existsSync(FAKE)) throw new Error(`no fake-upstream at ${FAKE} (cargo build --bin fake-upstream)`);
  if (!fs.existsSync(path.join(VENV, 'bin/ruff'))) throw new Error(`no sandbox venv with ruff at ${VENV} (make sandbox-venv)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-e2e-jobs-'));
  const upstream = await startJobsFake(dir);
  let server = null;
  let browser = null;
  let passed = 0;
  let failed = 0;
  try {
    server = await startHearth(dir, upstream);
    browser = await launch();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));

    const step = async (name, fn) => {
      const t0 = Date.now();
      try {
        await fn();
        passed += 1;
        console.log(`ok - jobs: ${name} (${Date.now() - t0} ms)`);
      } catch (e) {
        failed += 1;
        console.log(`not ok - jobs: ${name}\n  ${String(e?.stack ?? e).split('\n').slice(0, 6).join('\n  ')}`);
        await page.screenshot({ path: path.join(ART, `jobs-failed-${passed + failed}.png`) }).catch(() => undefined);
      }
    };
    const assert = (cond, msg) => {
      if (!cond) throw new Error(msg);
    };
    const jobMain = page.locator('main.job[data-job-id]');
    const jobId = () => new URL(page.url()).pathname.split('/')[2];
    const waitEnded = async () => {
      await page.waitForFunction(
        () => ['succeeded', 'failed', 'cancelled'].includes(document.querySelector('main.job[data-job-id]')?.dataset.status),
        null,
        { timeout: JOB_TIMEOUT },
      );
      return jobMain.getAttribute('data-status');
    };
    const steps = () => page.evaluate(() => [...document.querySelectorAll('main.job .step')].map((e) => `${e.dataset.kind}:${e.dataset.attempt}:${e.dataset.status}`));
    // A picture of a whiteboard table, drawn by the browser.
    const whiteboard = Buffer.from(
      await page.evaluate(() => {
        const c = document.createElement('canvas');
        c.width = 480;
        c.height = 300;
        const g = c.getContext('2d');
        g.fillStyle = '#fdfdf8';
        g.fillRect(0, 0, 480, 300);
        g.strokeStyle = '#1e3a8a';
        g.lineWidth = 3;
        g.font = '28px sans-serif';
        g.fillStyle = '#1e3a8a';
        [['x', 'y'], ['1', '3'], ['2', '1'], ['3', '4'], ['4', '2']].forEach(([a, b], i) => {
          g.fillText(a, 150, 60 + i * 50);
          g.fillText(b, 300, 60 + i * 50);
        });
        g.beginPath();
        g.moveTo(100, 75);
        g.lineTo(380, 75);
        g.moveTo(240, 25);
        g.lineTo(240, 290);
        g.stroke();
        return c.toDataURL('image/png').split(',')[1];
      }),
      'base64',
    );
    const pick = (name, mimeType, buffer) => page.locator('input[type=file]').setInputFiles({ name, mimeType, buffer });
    const submit = async (prompt) => {
      await page.getByRole('link', { name: 'Jobs', exact: true }).click().catch(() => undefined);
      await page.getByRole('button', { name: '+ New job' }).click();
      await pick('whiteboard.png', 'image/png', whiteboard);
      await page.getByRole('img', { name: 'Preview of whiteboard.png' }).waitFor();
      await page.getByLabel('Instruction').fill(prompt);
      await page.getByRole('button', { name: 'Run job' }).click();
      await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
      await jobMain.waitFor();
    };

    await step('the page asks for the key, then shows the upload form', async () => {
      await page.goto(server.url('/jobs'));
      const dialog = page.getByRole('dialog', { name: 'API key required' });
      await dialog.waitFor({ timeout: 20_000 });
      await page.getByRole('textbox', { name: 'API key' }).fill(KEY);
      await page.getByRole('button', { name: 'Continue' }).click();
      await dialog.waitFor({ state: 'detached' });
      await page.getByRole('heading', { name: 'New job' }).waitFor();
      await page.getByText('No jobs yet.').waitFor();
    });

    await step('a PDF dropped on the box is refused in plain words', async () => {
      const pdf = Buffer.from('%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n').toString('base64');
      const files = await page.evaluateHandle((b64) => {
        const dt = new DataTransfer();
        dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'scan.pdf', { type: 'application/pdf' }));
        return dt;
      }, pdf);
      const drop = page.getByTestId('drop');
      await drop.dispatchEvent('dragover', { dataTransfer: files });
      await drop.dispatchEvent('drop', { dataTransfer: files });
      await page.getByText('scan.pdf').waitFor();
      await page.getByText('No preview: the browser cannot show this file as an image.').waitFor();
      await page.getByRole('button', { name: 'Run job' }).click();
      const alert = page.getByRole('alert').filter({ hasText: 'Hearth cannot use this file.' });
      await alert.waitFor({ timeout: 10_000 });
      const text = await alert.innerText();
      assert(text.includes('PDF') && text.includes('PNG, JPEG, WebP or GIF'), `alert: ${text}`);
      assert(new URL(page.url()).pathname === '/jobs', 'no job was made');
    });

    await step('an image picked by the file picker is previewed before it is sent', async () => {
      await pick('whiteboard.png', 'image/png', whiteboard);
      const preview = page.getByRole('img', { name: 'Preview of whiteboard.png' });
      await preview.waitFor();
      const shown = await preview.evaluate((img) => img.complete && img.naturalWidth === 480 && img.src.startsWith('data:image/png'));
      assert(shown, 'the preview is not the decoded image');
      await page.getByLabel('Instruction').fill('plot these numbers');
      await page.screenshot({ path: path.join(ART, 'jobs-new.png') });
    });

    await step('submitted, its steps appear live, and the chart is shown inline', async () => {
      await page.getByRole('button', { name: 'Run job' }).click();
      await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
      // Sample the steps in the page as they change, until the job ends.
      const seen = await page.evaluate(async (timeout) => {
        const states = [];
        const end = Date.now() + timeout;
        while (Date.now() < end) {
          const main = document.querySelector('main.job[data-job-id]');
          const now = main ? [...main.querySelectorAll('.step')].map((e) => `${e.dataset.kind}:${e.dataset.attempt}:${e.dataset.status}`).join(' ') : '';
          if (now !== states[states.length - 1]) states.push(now);
          if (main && ['succeeded', 'failed', 'cancelled'].includes(main.dataset.status)) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        return states;
      }, JOB_TIMEOUT);
      const final = 'vision:1:succeeded plan:1:succeeded code:1:succeeded critic:1:succeeded run:1:succeeded';
      assert(seen[seen.length - 1] === final, `steps at the end: ${seen[seen.length - 1]}`);
      assert(seen.includes('vision:1:running'), `the vision step was never seen running: ${JSON.stringify(seen)}`);
      assert(seen.some((s) => s.endsWith('run:1:running')), `the run was never seen running: ${JSON.stringify(seen)}`);
      assert(seen.length >= 6, `the steps came all at once: ${JSON.stringify(seen)}`);
      assert((await jobMain.getAttribute('data-status')) === 'succeeded', 'job did not succeed');
      // The chart: a real PNG from the sandbox, fetched with the key, decoded.
      const chart = page.locator('.job-results img[alt="chart.png"]');
      await chart.waitFor();
      await page.waitForFunction(() => {
        const img = document.querySelector('.job-results img[alt="chart.png"]');
        return img && img.complete && img.naturalWidth >= 400;
      });
      assert((await chart.getAttribute('src')).startsWith('data:image/png;base64,'), 'the chart is not the fetched PNG');
      // The vision text, the plan, the script's output and the resources it used.
      await page.getByRole('region', { name: 'Vision' }).getByText('a table of four numbers').waitFor();
      const run = page.getByRole('region', { name: 'Run' });
      await run.getByText('chart written').waitFor();
      const usage = await run.getByLabel('Resources used').innerText();
      assert(/Time/.test(usage) && /Memory/.test(usage) && /peak/.test(usage), `usage: ${usage}`);
      // The CSV is a download (through fetch, with the key), never shown.
      assert((await page.locator('.job-results img[alt="summary.csv"]').count()) === 0, 'the CSV is shown as an image');
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'summary.csv' }).click()]);
      assert(download.suggestedFilename() === 'summary.csv', `download named ${download.suggestedFilename()}`);
      const csv = fs.readFileSync(await download.path(), 'utf8');
      assert(csv.startsWith('x,y\n1,3'), `downloaded: ${csv}`);
      await page.locator(`.job-item[data-id="${jobId()}"][data-status="succeeded"]`).getByText('Done').waitFor();
      await page.screenshot({ path: path.join(ART, 'jobs-chart.png'), fullPage: false });
      await chart.scrollIntoViewIfNeeded();
    });

    await step('a script the critic blocks shows the finding on its line, then the repair runs', async () => {
      await submit('extract the table');
      assert((await waitEnded()) === 'succeeded', 'the repaired job did not succeed');
      const got = await steps();
      assert(
        got.join(' ') === 'vision:1:succeeded plan:1:succeeded code:1:succeeded critic:1:failed code:2:succeeded critic:2:succeeded run:2:succeeded',
        `steps: ${got.join(' ')}`,
      );
      const code1 = page.locator('.step[data-kind="code"][data-attempt="1"]');
      const line4 = code1.locator('.line[data-line="4"]');
      assert((await line4.getAttribute('data-mark')) === 'blocking', `line 4 is marked ${await line4.getAttribute('data-mark')}`);
      assert((await line4.innerText()).includes('shell=True'), 'line 4 is not the subprocess call');
      const note = await code1.locator('.line-findings[data-line="4"]').innerText();
      assert(note.includes('bandit B602') && note.includes('blocks'), `finding on line 4: ${note}`);
      const critic = await page.locator('.step[data-kind="critic"][data-attempt="1"]').innerText();
      assert(critic.includes('The script did not run.') && critic.includes('peak'), `critic: ${critic}`);
      await page.getByText('A repair: the critic blocked attempt 1.').waitFor();
      await line4.scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(ART, 'jobs-critic.png') });
    });

    await step('a failed job says what went wrong, and Retry runs it again', async () => {
      await submit('read the numbers');
      assert((await waitEnded()) === 'failed', 'the job did not fail');
      const alert = page.locator('.job-failure');
      const text = await alert.innerText();
      assert(text.includes('The script kept failing.') && text.includes('ValueError: the table has no numbers'), `failure: ${text}`);
      const stderr = await page.locator('.step[data-kind="run"][data-attempt="2"] .stderr').innerText();
      assert(stderr.includes('Traceback') && stderr.includes('line 2'), `stderr: ${stderr}`);
      await page.locator(`.job-item[data-id="${jobId()}"]`).getByText('Failed at run').waitFor();
      await alert.scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(ART, 'jobs-failed.png') });
      await alert.getByRole('button', { name: 'Retry' }).click();
      await page.locator('.step[data-kind="run"][data-attempt="3"]:not([data-status="running"])').waitFor({ timeout: JOB_TIMEOUT });
      assert((await waitEnded()) === 'succeeded', 'the retry did not succeed');
      const got = await steps();
      assert(got.slice(-3).join(' ') === 'code:3:succeeded critic:3:succeeded run:3:succeeded', `steps: ${got.join(' ')}`);
      await page.getByRole('region', { name: 'Run · attempt 3' }).getByText('fixed by the retry').waitFor();
      await page.getByRole('link', { name: 'result.json' }).waitFor();
      assert((await page.locator('.job-failure').count()) === 0, 'the failure is still shown');
    });

    await step('edit code and run: the user\'s script is checked and run, no model asked', async () => {
      const coderAsked = upstream.asked('coder');
      await page.getByRole('button', { name: 'Edit code and run' }).click();
      const box = page.getByRole('textbox', { name: 'Code to run' });
      assert((await box.inputValue()).includes('fixed by the retry'), 'the editor does not hold the last script');
      await box.fill(EDITED);
      await page.getByRole('button', { name: 'Run this code' }).click();
      await box.waitFor({ state: 'detached' });
      await page.locator('.step[data-kind="run"][data-attempt="4"]:not([data-status="running"])').waitFor({ timeout: JOB_TIMEOUT });
      assert((await waitEnded()) === 'succeeded', 'the edited code did not succeed');
      const got = await steps();
      assert(got.slice(-3).join(' ') === 'code:4:succeeded critic:4:succeeded run:4:succeeded', `steps: ${got.join(' ')}`);
      await page.getByRole('region', { name: 'Code · attempt 4' }).getByText('Written by you.').waitFor();
      await page.getByRole('region', { name: 'Run · attempt 4' }).getByText('edited by hand').waitFor();
      await page.getByRole('link', { name: 'edited.csv' }).waitFor();
      assert(upstream.asked('coder') === coderAsked, 'the code model was asked for the edited run');
    });

    await step('a job can be cancelled while a model works, then deleted', async () => {
      await submit('this one waits forever');
      await page.locator('.step[data-kind="vision"][data-status="running"]').waitFor();
      await page.getByRole('button', { name: 'Cancel', exact: true }).click();
      assert((await waitEnded()) === 'cancelled', 'not cancelled');
      await page.locator('.job-cancelled').getByText('Cancelled at the vision step.').waitFor();
      const id = jobId();
      await page.getByRole('button', { name: 'Delete', exact: true }).click();
      await page.getByRole('button', { name: 'Delete for good?' }).click();
      await page.waitForURL(server.url('/jobs'));
      await page.locator(`.job-item[data-id="${id}"]`).waitFor({ state: 'detached' });
      const status = await page.evaluate(
        async ([id, key]) => (await fetch(`/api/jobs/${id}`, { headers: { Authorization: `Bearer ${key}` } })).status,
        [id, KEY],
      );
      assert(status === 404, `GET deleted job: ${status}`);
    });

    await step('a job after a reload, and on a phone', async () => {
      const first = page.locator('.job-item').last();
      await first.locator('a').click();
      await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
      const url = page.url();
      await page.reload();
      await page.waitForFunction(() => document.querySelector('main.job[data-job-id]')?.dataset.status === 'succeeded');
      await page.locator('.job-results img[alt="chart.png"]').waitFor();
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: path.join(ART, 'jobs-chart-dark.png') });
      await page.emulateMedia({ colorScheme: 'light' });
      const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      try {
        const p2 = await phone.newPage();
        await p2.addInitScript((key) => sessionStorage.setItem('hearth.apiKey', key), KEY);
        await p2.goto(url);
        await p2.waitForFunction(() => document.querySelector('main.job[data-job-id]')?.dataset.status === 'succeeded');
        await p2.waitForFunction(() => document.querySelector('.job-results img[alt="chart.png"]')?.naturalWidth > 0);
        const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert(overflow <= 0, `the page is ${overflow}px wider than a phone screen`);
        await p2.screenshot({ path: path.join(ART, 'jobs-phone.png') });
        // The list is a drawer on a phone.
        await p2.getByRole('button', { name: 'Jobs' }).click();
        await p2.waitForFunction(() => document.querySelector('nav.sidebar').getBoundingClientRect().left >= 0);
        await p2.locator('.job-item').first().waitFor();
        await p2.screenshot({ path: path.join(ART, 'jobs-phone-list.png') });
        await p2.locator('.job-item a').first().click();
        await p2.waitForFunction(() => document.querySelector('nav.sidebar').getBoundingClientRect().right <= 0);
      } finally {
        await phone.close();
      }
    });

    await step('no uncaught errors in the page', async () => {
      assert(pageErrors.length === 0, pageErrors.join('\n'));
    });
  } finally {
    await browser?.close().catch(() => undefined);
    await server?.stop();
    await upstream.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\nweb e2e (jobs): artifacts in ${path.relative(repo, ART)}/`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main()
    .then((failed) => process.exit(failed ? 1 : 0))
    .catch((e) => {
      console.error(e);
      console.log('0 passed, 1 failed');
      process.exit(1);
    });
}
