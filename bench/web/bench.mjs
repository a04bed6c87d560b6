// Web UI budget: bundle size, page load to interactive, opening a long conversation.
//   make bench-web        (builds the release binary, then runs this)
//   HEARTH_BIN=target/release/hearth node bench/web/bench.mjs
// Prints a Markdown table; targets: JS <= 250 KB gzipped, interactive <= 300 ms,
// opening a 500-message conversation <= 200 ms (medians, headless Chromium).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { launch, startServer } from '../../web/e2e/run.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const RUNS = Number(process.env.RUNS ?? 15);
const CONVERSATIONS = Number(process.env.CONVERSATIONS ?? 5000);
const LONG = Number(process.env.LONG_MESSAGES ?? 500);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const p90 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.9) - 1)];
};

// ---- bundle ----
const assets = path.join(repo, 'web/dist/assets');
let jsRaw = 0;
let jsGz = 0;
let cssGz = 0;
for (const f of fs.readdirSync(assets)) {
  const b = fs.readFileSync(path.join(assets, f));
  const gz = zlib.gzipSync(b, { level: 9 }).length;
  if (f.endsWith('.js')) {
    jsRaw += b.length;
    jsGz += gz;
  } else if (f.endsWith('.css')) cssGz += gz;
}

// ---- server with seeded history ----
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-web-'));
fs.mkdirSync(path.join(repo, 'target/web-e2e'), { recursive: true });
const server = await startServer(dir, { log: 'bench-server.log' });
const longId = execFileSync('python3', [path.join(here, 'seed.py'), path.join(dir, 'data/hearth.db'), String(CONVERSATIONS), String(LONG)])
  .toString()
  .trim();
const browser = await launch();

const interactive = [];
const dcl = [];
const open = [];
try {
  // Page load to interactive, each with a cold cache.
  for (let i = 0; i < RUNS + 1; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(server.url('/'));
    await page.waitForFunction(() => document.body.dataset.interactive === '1');
    const t = await page.evaluate(() => ({
      interactive: performance.getEntriesByName('hearth:interactive')[0].startTime,
      dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
    }));
    if (i > 0) {
      // The first run warms the server's page cache; it is not counted.
      interactive.push(t.interactive);
      dcl.push(t.dcl);
    }
    await ctx.close();
  }

  // Opening the long conversation from the sidebar: click to rendered (next frame).
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(server.url('/'));
  await page.waitForFunction(() => document.body.dataset.interactive === '1');
  const other = await page.locator('.conv').nth(1).getAttribute('data-id');
  for (let i = 0; i < RUNS + 1; i++) {
    // Open another conversation first, so each measured open starts from scratch.
    await page.locator(`.conv[data-id="${other}"] .conv-title`).click();
    await page.waitForFunction((id) => document.body.dataset.opened === id, other);
    const ms = await page.evaluate(
      (id) =>
        new Promise((resolve) => {
          const link = document.querySelector(`.conv[data-id="${id}"] .conv-title`);
          const t0 = performance.now();
          window.addEventListener(
            'hearth:opened',
            () => requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - t0), 0)),
            { once: true },
          );
          link.click();
        }),
      longId,
    );
    const shown = await page.locator('.msg').count();
    if (shown === 0) throw new Error('the long conversation rendered no messages');
    if (i > 0) open.push(ms);
  }
  await ctx.close();
} finally {
  await browser.close();
  await server.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}

const kb = (n) => (n / 1024).toFixed(1);
const ok = (v, max) => (v <= max ? 'yes' : '**no**');
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const chromium = execFileSync('/usr/bin/chromium', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
console.log(`Machine: ${os.cpus().length} cores (${cpu}), ${chromium}, headless; ${RUNS} runs each, cold cache per page load; load average at the end ${load}; server ${path.relative(repo, process.env.HEARTH_BIN ?? '')}.
Seeded: ${CONVERSATIONS} conversations, one of ${LONG} messages (markdown with code and a table).

| measure | median | p90 | target | met |
|---|---|---|---|---|
| UI JS bundle, gzipped (raw) | ${kb(jsGz)} KB (${kb(jsRaw)} KB) | | ≤ 250 KB | ${ok(jsGz / 1024, 250)} |
| UI CSS, gzipped | ${kb(cssGz)} KB | | | |
| page load → interactive (first page of conversations on screen) | ${median(interactive).toFixed(0)} ms | ${p90(interactive).toFixed(0)} ms | ≤ 300 ms | ${ok(median(interactive), 300)} |
| page load → DOMContentLoaded | ${median(dcl).toFixed(0)} ms | ${p90(dcl).toFixed(0)} ms | | |
| open a ${LONG}-message conversation (click → rendered) | ${median(open).toFixed(0)} ms | ${p90(open).toFixed(0)} ms | ≤ 200 ms | ${ok(median(open), 200)} |`);
