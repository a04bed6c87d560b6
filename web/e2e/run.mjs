// End-to-end: the real `hearth serve` with the embedded model, driven in Debian's
// Chromium by playwright-core; a reasoning model is played by the scripted fake
// upstream. Run by `make test-web`; alone (`cargo build --bin hearth --bin
// fake-upstream` first):
//   HEARTH_BIN=target/debug/hearth node web/e2e/run.mjs
// Writes screenshots and the server log under target/web-e2e/.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.resolve(repo, process.env.HEARTH_BIN ?? 'target/debug/hearth');
export const FAKE = path.resolve(repo, process.env.FAKE_UPSTREAM_BIN ?? path.join(path.dirname(BIN), 'fake-upstream'));
const MODEL = path.resolve(repo, process.env.HEARTH_E2E_MODEL ?? 'models/SmolLM2-135M-Instruct.Q4_1.gguf');
export const ART = path.resolve(repo, process.env.HEARTH_E2E_ARTIFACTS ?? 'target/web-e2e');
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];
const GEN_TIMEOUT = 120_000;

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A `hearth serve` process on a config of its own; restartable on the same data. */
export class Server {
  constructor(config, logFile) {
    this.config = config;
    this.logFile = logFile;
    this.proc = null;
  }

  async start(waitFor = 'smollm2-135m') {
    const log = fs.openSync(this.logFile, 'a');
    this.proc = spawn(BIN, ['serve', '--config', this.config], {
      stdio: ['ignore', log, log],
      env: { ...process.env, HEARTH_LOG: process.env.HEARTH_LOG ?? 'info' },
    });
    this.exited = new Promise((r) => this.proc.once('exit', r));
    const url = this.url('/ready');
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode != null) throw new Error(`hearth exited with ${this.proc.exitCode}; see ${this.logFile}`);
      try {
        const r = await fetch(url);
        const v = await r.json();
        if (v.models?.some((m) => m.id === waitFor && m.status === 'ready')) return;
      } catch {
        /* not listening yet */
      }
      await sleep(250);
    }
    throw new Error(`hearth did not get ${waitFor} ready within 180 s; see ${this.logFile}`);
  }

  url(p) {
    return `http://127.0.0.1:${this.port}${p}`;
  }

  async stop() {
    if (!this.proc || this.proc.exitCode != null) return;
    this.proc.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!done) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

/**
 * `fake-upstream --script` (what its models answer, in order), with `args` more; its
 * stderr goes to `log` under ART.
 */
export async function startFake(dir, script, log, args = []) {
  const file = path.join(dir, 'script.json');
  fs.writeFileSync(file, JSON.stringify(script));
  const logFile = path.join(ART, log);
  const proc = spawn(FAKE, ['--script', file, ...args], { stdio: ['ignore', 'pipe', fs.openSync(logFile, 'w')] });
  const exited = new Promise((r) => proc.once('exit', r));
  const lines = readline.createInterface({ input: proc.stdout });
  const url = await Promise.race([
    new Promise((resolve) => lines.on('line', (l) => l.startsWith('listening on ') && resolve(l.slice('listening on '.length).trim()))),
    exited.then((code) => {
      throw new Error(`fake-upstream exited with ${code}; see ${logFile}`);
    }),
    sleep(20_000).then(() => {
      throw new Error('fake-upstream did not start within 20 s');
    }),
  ]);
  return {
    url,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** A server on `dir`: the embedded model and two upstream ones, or `opts.models` (TOML) instead. */
export async function startServer(dir, opts = {}) {
  const port = await freePort();
  const dead = await freePort(); // nothing listens here: the "offline" upstream
  const config = path.join(dir, 'hearth.toml');
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
failure_threshold = 2

${opts.models ?? defaultModels(port, dead)}
${opts.extra ?? ''}`,
  );
  const server = new Server(config, path.join(ART, opts.log ?? 'server.log'));
  server.port = port;
  await server.start(opts.waitFor);
  return server;
}

function defaultModels(port, dead) {
  return `[[models]]
name = "smollm2-135m"
backend = "embedded"
path = ${JSON.stringify(MODEL)}
context = 4096
tags = ["general"]

# The same model through the upstream backend, so the UI has a second model to switch to.
[[models]]
name = "smollm2-relay"
backend = "upstream"
base_url = "http://127.0.0.1:${port}/v1"
upstream_model = "smollm2-135m"
context_length = 4096
tags = ["relay"]

# An upstream that is down: listed as unavailable, and a clear error when used.
[[models]]
name = "offline"
backend = "upstream"
base_url = "http://127.0.0.1:${dead}/v1"
retries = 0
connect_timeout_secs = 1
tags = ["down"]`;
}

export async function launch() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
}

// ---- the suite --------------------------------------------------------------------

async function main() {
  fs.mkdirSync(ART, { recursive: true });
  for (const f of fs.readdirSync(ART)) if (f === 'server.log' || f.startsWith('failed-')) fs.rmSync(path.join(ART, f), { force: true });
  if (!fs.existsSync(BIN)) throw new Error(`no hearth binary at ${BIN} (cargo build --bin hearth)`);
  if (!fs.existsSync(MODEL)) throw new Error(`no model at ${MODEL} (make setup downloads it)`);
  if (!fs.existsSync(FAKE)) throw new Error(`no fake-upstream at ${FAKE} (cargo build --bin fake-upstream)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-e2e-'));
  const server = await startServer(dir);
  const browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  let passed = 0;
  let failed = 0;
  const step = async (name, fn) => {
    const t0 = Date.now();
    try {
      await fn();
      passed += 1;
      console.log(`ok - ${name} (${Date.now() - t0} ms)`);
      return true;
    } catch (e) {
      failed += 1;
      console.log(`not ok - ${name}\n  ${String(e?.stack ?? e).split('\n').slice(0, 6).join('\n  ')}`);
      await page.screenshot({ path: path.join(ART, `failed-${passed + failed}.png`) }).catch(() => undefined);
      return false;
    }
  };
  const api = (p, init) =>
    page.evaluate(
      async ([p, init]) => {
        const r = await fetch(p, init && { ...init, headers: { 'Content-Type': 'application/json' } });
        return { status: r.status, body: await r.json() };
      },
      [p, init],
    );
  const assert = (cond, msg) => {
    if (!cond) throw new Error(msg);
  };
  const lastReply = () => page.locator('.msg-assistant').last();
  const waitFinished = async () => {
    await page.waitForFunction(
      () => {
        const all = document.querySelectorAll('.msg-assistant');
        const m = all[all.length - 1];
        return m && m.dataset.finish && m.dataset.finish !== 'streaming';
      },
      null,
      { timeout: GEN_TIMEOUT },
    );
    return lastReply().getAttribute('data-finish');
  };
  const send = async (text) => {
    const box = page.getByLabel('Message');
    await box.fill(text);
    await box.press('Enter');
  };
  // Replies of a small model can ramble on: once one has said `chars` characters it
  // is stopped, which the tests can tell apart from a natural end.
  const replyUntil = async (chars) => {
    await page.waitForFunction((chars) => {
      const all = document.querySelectorAll('.msg-assistant');
      const m = all[all.length - 1];
      return m && !m.dataset.id.startsWith('pending') &&
        (m.dataset.finish !== 'streaming' || m.querySelector('.msg-body').textContent.length > chars);
    }, chars, { timeout: GEN_TIMEOUT });
    if ((await lastReply().getAttribute('data-finish')) === 'streaming') await page.keyboard.press('Escape');
    return waitFinished();
  };
  const conversationId = () => new URL(page.url()).pathname.split('/')[2];

  try {
    await step('the page loads and shows the model ready', async () => {
      await page.goto(server.url('/'));
      await page.getByTestId('status').filter({ hasText: 'smollm2-135m ready' }).waitFor({ timeout: 20_000 });
      await page.getByText('What can I help with?').waitFor();
    });

    await step('a message gets a reply streamed token by token', async () => {
      await send('Write a Python function that adds two numbers.');
      await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
      // Sample the growing reply in the page: several partial states before it ends.
      const lengths = await page.evaluate(async (timeout) => {
        const seen = new Set();
        const end = Date.now() + timeout;
        while (Date.now() < end) {
          const all = document.querySelectorAll('.msg-assistant');
          const m = all[all.length - 1];
          const len = m ? m.querySelector('.msg-body').textContent.length : 0;
          if (m && m.dataset.finish === 'streaming') seen.add(len);
          if (m && m.dataset.finish && m.dataset.finish !== 'streaming') break;
          if (len > 600) break;
          await new Promise((r) => setTimeout(r, 5));
        }
        return [...seen];
      }, GEN_TIMEOUT);
      assert(lengths.length >= 3, `expected the reply to grow in several steps, saw lengths ${lengths}`);
      const finish = await replyUntil(600);
      assert(['stop', 'length', 'stopped'].includes(finish), `finish ${finish}`);
      const text = await lastReply().locator('.msg-body').innerText();
      assert(text.trim().length > 0, 'empty reply');
      await page.locator('.conv-title', { hasText: 'Write a Python function' }).waitFor();
    });

    let stoppedId = '';
    await step('Esc stops a reply mid-stream and the partial reply is kept', async () => {
      await send('Write a very long story about a dragon who learns to cook. Use many chapters and at least 800 words.');
      await page.waitForFunction(() => {
        const all = document.querySelectorAll('.msg-assistant');
        const m = all[all.length - 1];
        return m && m.dataset.finish === 'streaming' && m.querySelector('.msg-body').textContent.length > 40;
      }, null, { timeout: GEN_TIMEOUT });
      await page.keyboard.press('Escape');
      const finish = await waitFinished();
      assert(finish === 'stopped', `finish ${finish}`);
      await lastReply().getByText('Stopped').waitFor();
      stoppedId = await lastReply().getAttribute('data-id');
      // The server kept it, marked stopped, and stopped generating.
      await sleep(500);
      const one = await api(`/api/hearth/conversations/${conversationId()}`);
      const m1 = one.body.messages.find((m) => m.id === stoppedId);
      assert(m1 && m1.finish_reason === 'stopped' && m1.content.length > 20, `stored: ${JSON.stringify(m1)}`);
      await sleep(1000);
      const two = await api(`/api/hearth/conversations/${conversationId()}`);
      const m2 = two.body.messages.find((m) => m.id === stoppedId);
      assert(m2.content === m1.content, 'the stored reply kept growing after stop');
    });

    await step('regenerate replaces the last reply', async () => {
      const before = await page.locator('.msg').count();
      await lastReply().getByRole('button', { name: 'Regenerate' }).click();
      await page.waitForFunction((old) => {
        const all = document.querySelectorAll('.msg-assistant');
        const m = all[all.length - 1];
        return m && m.dataset.id !== old && !m.dataset.id.startsWith('pending');
      }, stoppedId, { timeout: GEN_TIMEOUT });
      await replyUntil(20);
      assert((await page.locator('.msg').count()) === before, 'regenerate added a message instead of replacing one');
      const v = await api(`/api/hearth/conversations/${conversationId()}`);
      assert(!v.body.messages.some((m) => m.id === stoppedId), 'the old reply is still stored');
      assert(v.body.messages.length === before, `stored ${v.body.messages.length}, shown ${before}`);
    });

    let convId = '';
    let stored = 0;
    await step('after a reload the conversation is there', async () => {
      convId = conversationId();
      stored = (await api(`/api/hearth/conversations/${convId}`)).body.messages.length;
      await page.reload();
      await page.waitForFunction((id) => document.body.dataset.opened === id, convId);
      assert((await page.locator('.msg').count()) === stored, 'messages after reload');
      await page.locator(`.conv[data-id="${convId}"]`).waitFor();
    });

    await step('while the server is down the UI says so; after a restart the history is back', async () => {
      await server.stop();
      await send('Are you still there?');
      await page.getByRole('alert').filter({ hasText: 'Cannot reach the Hearth server' }).waitFor({ timeout: 10_000 });
      await page.getByTestId('status').filter({ hasText: 'Server unreachable' }).waitFor({ timeout: 10_000 });
      await server.start();
      await page.getByTestId('status').filter({ hasText: 'ready' }).waitFor({ timeout: 20_000 });
      await page.goto(server.url('/'));
      await page.locator(`.conv[data-id="${convId}"] .conv-title`).click();
      await page.waitForFunction((id) => document.body.dataset.opened === id, convId);
      assert((await page.locator('.msg').count()) === stored, 'messages after restart');
    });

    await step('switching the model answers with the other model', async () => {
      await page.getByLabel('Model').selectOption('smollm2-relay');
      await page.waitForFunction(
        async (id) => (await (await fetch(`/api/hearth/conversations/${id}`)).json()).model === 'smollm2-relay',
        convId,
      );
      await send('Say hi.');
      await replyUntil(200);
      await lastReply().locator('.msg-meta', { hasText: 'smollm2-relay' }).waitFor();
      const v = await api(`/api/hearth/conversations/${convId}`);
      assert(v.body.messages.at(-1).model === 'smollm2-relay', `model ${v.body.messages.at(-1).model}`);
    });

    await step('an unavailable backend is disabled in the selector and shows an error notice', async () => {
      // Health probes mark it unavailable within a few seconds of the start.
      const deadline = Date.now() + 30_000;
      for (;;) {
        await page.reload();
        await page.waitForFunction((id) => document.body.dataset.opened === id, convId);
        if (await page.locator('option[value="offline"]').isDisabled()) break;
        assert(Date.now() < deadline, 'the offline model never showed as unavailable');
        await sleep(1000);
      }
      // Pick it anyway (through the API, as the selector refuses) and send.
      const r = await api(`/api/hearth/conversations/${convId}`, { method: 'PATCH', body: JSON.stringify({ model: 'offline' }) });
      assert(r.status === 200, `PATCH ${r.status}`);
      await page.reload();
      await page.waitForFunction((id) => document.body.dataset.opened === id, convId);
      await send('Hello offline model');
      const alert = page.getByRole('alert').filter({ hasText: 'Backend unavailable' });
      await alert.waitFor({ timeout: 20_000 });
      await page.getByTestId('status').filter({ hasText: 'offline unavailable' }).waitFor();
      await page.screenshot({ path: path.join(ART, 'error-notice.png') });
      await api(`/api/hearth/conversations/${convId}`, { method: 'PATCH', body: JSON.stringify({ model: null }) });
    });

    await step('shortcuts: Ctrl+/ shows them, Ctrl+K starts a new chat', async () => {
      await page.keyboard.press('Control+/');
      await page.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor();
      await page.keyboard.press('Escape');
      await page.getByRole('dialog').waitFor({ state: 'detached' });
      await page.keyboard.press('Control+k');
      await page.waitForURL(server.url('/'));
      await page.getByText('What can I help with?').waitFor();
    });

    await step('screenshots of the main screen (light, dark, phone)', async () => {
      const first = page.locator('.conv-title', { hasText: 'Write a Python function' });
      await first.click();
      await page.waitForFunction(() => document.body.dataset.opened);
      await page.locator('.msg').first().waitFor();
      for (const b of await page.locator('.notice').getByRole('button', { name: 'Dismiss' }).all()) await b.click();
      await page.screenshot({ path: path.join(ART, 'main.png') });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: path.join(ART, 'main-dark.png') });
      await page.emulateMedia({ colorScheme: 'light' });
      const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      const p2 = await phone.newPage();
      await p2.goto(page.url());
      await p2.waitForFunction(() => document.body.dataset.opened);
      const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 0, `the page is ${overflow}px wider than a phone screen`);
      await p2.screenshot({ path: path.join(ART, 'phone.png') });
      await p2.getByRole('button', { name: 'Conversations' }).click();
      await p2.getByRole('navigation').getByText('Write a Python function').waitFor();
      // The drawer slides in: the picture is of it open.
      await p2.waitForFunction(() => document.querySelector('nav.sidebar').getBoundingClientRect().left >= 0);
      await p2.screenshot({ path: path.join(ART, 'phone-sidebar.png') });
      await phone.close();
    });

    await step('delete with undo, then delete for real', async () => {
      const item = page.locator(`.conv[data-id="${convId}"]`);
      const title = (await item.locator('.conv-title').innerText()).trim();
      await item.hover();
      await item.getByRole('button', { name: `Delete ${title}` }).click();
      await item.waitFor({ state: 'detached' });
      await page.getByRole('button', { name: 'Undo' }).click();
      await item.waitFor();
      await item.hover();
      await item.getByRole('button', { name: `Delete ${title}` }).click();
      await item.waitFor({ state: 'detached' });
      await page.reload();
      await page.waitForFunction(() => document.body.dataset.interactive === '1');
      assert((await item.count()) === 0, 'deleted conversation is back after reload');
      const r = await api(`/api/hearth/conversations/${convId}`);
      assert(r.status === 404, `GET deleted: ${r.status}`);
    });

    await step('when the server requires API keys, the UI asks for one and uses it, shows its token budget, and an admin key sees every key', async () => {
      const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-e2e-keys-'));
      const keyed = await startServer(keyDir, {
        log: 'server-keys.log',
        extra:
          '\n[[keys]]\nname = "e2e"\nkey = "sk-e2e-browser-key"\nbudget_tokens = 100000\nbudget_period = "day"\n' +
          '\n[[keys]]\nname = "root"\nkey = "sk-e2e-admin-key"\nadmin = true\n',
      });
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      try {
        const p = await ctx.newPage();
        p.on('pageerror', (e) => consoleErrors.push(String(e)));
        await p.goto(keyed.url('/'));
        const dialog = p.getByRole('dialog', { name: 'API key required' });
        await dialog.waitFor({ timeout: 20_000 });
        await p.getByRole('textbox', { name: 'API key' }).fill('sk-not-the-key');
        await p.getByRole('button', { name: 'Continue' }).click();
        await p.getByText('That key was not accepted.').waitFor({ timeout: 10_000 });
        await p.getByRole('textbox', { name: 'API key' }).fill('sk-e2e-browser-key');
        await p.getByRole('button', { name: 'Continue' }).click();
        await dialog.waitFor({ state: 'detached', timeout: 10_000 });
        await p.getByTestId('status').filter({ hasText: 'smollm2-135m ready' }).waitFor({ timeout: 20_000 });
        const box = p.getByLabel('Message');
        await box.fill('Say hello.');
        await box.press('Enter');
        await p.waitForURL(/\/c\/[0-9a-f-]{36}$/);
        await p.waitForFunction(() => {
          const all = document.querySelectorAll('.msg-assistant');
          const m = all[all.length - 1];
          return m && !m.dataset.id.startsWith('pending') && m.querySelector('.msg-body').textContent.length > 0;
        }, null, { timeout: GEN_TIMEOUT });
        // The key's budget, at the sidebar's foot, is read again once the reply ends:
        // its tokens (counted by the real server) are gone from it.
        const meter = p.getByRole('status', { name: 'Token budget' });
        await p.waitForFunction(() => {
          const t = document.querySelector('.budget-text')?.textContent ?? '';
          return /^[\d,]+ of 100,000 tokens left today$/.test(t) && !t.startsWith('100,000 ');
        }, null, { timeout: 20_000 });
        const renews = await meter.locator('.budget-renews').textContent();
        assert(/^renews \d{1,2} [A-Z][a-z]{2}, 00:00 UTC$/.test(renews), `budget renewal: ${renews}`);
        // The key lives in this tab's session: a reload does not ask again.
        await p.reload();
        await p.getByTestId('status').filter({ hasText: 'smollm2-135m ready' }).waitFor({ timeout: 20_000 });
        assert((await dialog.count()) === 0, 'asked for the key again after a reload');
        const stored = await p.evaluate(() => JSON.stringify(sessionStorage));
        assert(stored.includes('sk-e2e-browser-key'), 'the key is kept in sessionStorage');
        const local = await p.evaluate(() => JSON.stringify(localStorage));
        assert(!local.includes('sk-e2e-browser-key'), 'the key must not be kept in localStorage');
        // Not an admin key: no Keys page is offered, and its address says why.
        assert((await p.getByRole('link', { name: 'Keys' }).count()) === 0, 'a Keys link for a key that is not an admin');
        await p.goto(keyed.url('/keys'));
        await p.getByRole('alert').filter({ hasText: 'Only an admin key can see the server' }).waitFor({ timeout: 10_000 });
        // The admin key (another tab: its own session) sees every key and what e2e spent.
        const a = await ctx.newPage();
        a.on('pageerror', (e) => consoleErrors.push(String(e)));
        await a.goto(keyed.url('/'));
        await a.getByRole('textbox', { name: 'API key' }).fill('sk-e2e-admin-key');
        await a.getByRole('button', { name: 'Continue' }).click();
        await a.getByRole('link', { name: 'Keys' }).click();
        await a.waitForURL(/\/keys$/);
        const table = a.getByRole('table', { name: 'API keys' });
        await table.waitFor({ timeout: 10_000 });
        const cells = async (k) => table.getByRole('row').filter({ has: a.getByRole('rowheader', { name: k }) }).locator('td').allTextContents();
        const e2e = await cells('e2e');
        assert(e2e[0] === 'user' && e2e[3] === '100,000 / day', `e2e's row: ${e2e}`);
        const used = Number(e2e[4].replace(/,/g, ''));
        assert(used > 0 && Number(e2e[5].replace(/,/g, '')) === 100000 - used, `e2e's use: ${e2e}`);
        assert(/^\d{1,2} [A-Z][a-z]{2}, 00:00 UTC$/.test(e2e[6]), `e2e's renewal: ${e2e}`);
        const root = await cells('root');
        assert(root[0] === 'admin' && root.slice(1).every((c) => c === '–'), `root's row: ${root}`);
        await a.screenshot({ path: path.join(ART, 'keys.png') });
      } finally {
        await ctx.close().catch(() => undefined);
        await keyed.stop();
        fs.rmSync(keyDir, { recursive: true, force: true });
      }
    });

    await step('a reasoning model: "Thinking…" while it thinks, then the answer; the thinking is kept', async () => {
      const thought = 'The user asks for six times seven.\nThat is 42.';
      const rDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-e2e-reasoning-'));
      // Three chunks of thinking, then three of the answer, 300 ms apart: time to see each.
      const fake = await startFake(rDir, { thinker: [{ reasoning: thought, text: 'It is **42**.', delay_ms: 300 }] }, 'fake-upstream.log');
      let thinker = null;
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      try {
        thinker = await startServer(rDir, {
          log: 'server-reasoning.log',
          waitFor: 'thinker',
          models: `[[models]]\nname = "thinker"\nbackend = "upstream"\nbase_url = ${JSON.stringify(fake.url)}\nretries = 0\n`,
        });
        const p = await ctx.newPage();
        p.on('pageerror', (e) => consoleErrors.push(String(e)));
        await p.goto(thinker.url('/'));
        await p.getByTestId('status').filter({ hasText: 'thinker ready' }).waitFor({ timeout: 20_000 });
        const box = p.getByLabel('Message');
        await box.fill('What is 6 × 7?');
        await box.press('Enter');
        // While it thinks: the block is open, says so, and the answer is still empty.
        await p.waitForFunction(() => {
          const m = [...document.querySelectorAll('.msg-assistant')].at(-1);
          const d = m?.querySelector('details.reasoning');
          return m?.dataset.finish === 'streaming' && d?.open && d.querySelector('summary').textContent === 'Thinking…' &&
            d.querySelector('.reasoning-text').textContent.length > 0 && m.querySelector('.msg-body').textContent === '';
        }, null, { timeout: 10_000 });
        await p.waitForFunction(() => [...document.querySelectorAll('.msg-assistant')].at(-1)?.dataset.finish === 'stop', null, { timeout: 10_000 });
        const reply = p.locator('.msg-assistant').last();
        const shown = async () => ({
          open: await reply.locator('details.reasoning').evaluate((d) => d.open),
          summary: await reply.locator('details.reasoning summary').textContent(),
          thought: await reply.locator('.reasoning-text').textContent(),
          answer: (await reply.locator('.msg-body').innerText()).trim(),
        });
        const done = await shown();
        assert(!done.open && /^Thought for \d+ s$/.test(done.summary), `after the answer: ${JSON.stringify(done)}`);
        assert(done.thought === thought && done.answer === 'It is 42.', `after the answer: ${JSON.stringify(done)}`);
        // After a reload the thinking is still there, collapsed; how long it took is not known.
        const id = new URL(p.url()).pathname.split('/')[2];
        await p.reload();
        await p.waitForFunction((id) => document.body.dataset.opened === id, id);
        const again = await shown();
        // The server kept how long it thought.
        assert(!again.open && /^Thought for \d+ s$/.test(again.summary), `after a reload: ${JSON.stringify(again)}`);
        assert(again.thought === thought && again.answer === 'It is 42.', `after a reload: ${JSON.stringify(again)}`);
        await reply.locator('summary').click();
        assert(await reply.locator('details.reasoning').evaluate((d) => d.open), 'a click does not open the thinking');
        await p.screenshot({ path: path.join(ART, 'reasoning.png') });
      } finally {
        await ctx.close().catch(() => undefined);
        await thinker?.stop();
        await fake.stop();
        fs.rmSync(rDir, { recursive: true, force: true });
      }
    });

    await step('no uncaught errors in the page', async () => {
      assert(consoleErrors.length === 0, consoleErrors.join('\n'));
    });
  } finally {
    await browser.close().catch(() => undefined);
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\nweb e2e: artifacts in ${path.relative(repo, ART)}/`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    console.log('0 passed, 1 failed');
    process.exit(1);
  });
}
