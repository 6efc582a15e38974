#!/usr/bin/env node
// npm run bench:browser -- [options]
// Builds the demo page, serves it on 127.0.0.1 with `vite preview`, opens it in
// headless Chromium with WebGPU (SwiftShader where there is no GPU), runs the
// self-check and the benchmark suite in the page, then writes the JSON report
// and PNG screenshots of the charts under bench/results/browser/ and prints
// the same table as `fastattn bench`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildDemo, demoUrl, forwardConsole, launchChromium, repoRoot, serveDemo, waitForDemo } from './demoBrowser.mjs';

const USAGE = `usage: npm run bench:browser -- [options]
  --seq 64,128,256        sequence lengths (Sq = Sk)
  --dim 32                head dims (comma-separated)
  --heads 1 --batch 1
  --causal both|true|false
  --dtype f32
  --tile auto|Q,KV,TM,C,CHUNK,STAGES   two-level tile (default: automatic)
  --samples 5             samples per median
  --min-sample-ms 50      minimum duration of one sample
  --check 4               self-check cases before the benchmark (0: none)
  --out DIR               results folder (default bench/results/browser)
  --no-build              serve the existing demo/dist
  --chrome PATH           Chromium/Chrome to drive (default: @sparticuz/chromium, or $CHROME_PATH)
  --chrome-arg FLAG       extra Chromium flag (repeatable), e.g. --chrome-arg=--use-angle=vulkan
  --timeout 900           seconds to wait for the page
  --json                  print the JSON report instead of the table`;

const { values } = parseArgs({
  options: {
    seq: { type: 'string', default: '64,128,256' },
    dim: { type: 'string', default: '32' },
    heads: { type: 'string', default: '1' },
    batch: { type: 'string', default: '1' },
    causal: { type: 'string', default: 'both' },
    dtype: { type: 'string', default: 'f32' },
    tile: { type: 'string', default: 'auto' },
    samples: { type: 'string', default: '5' },
    'min-sample-ms': { type: 'string', default: '50' },
    check: { type: 'string', default: '4' },
    out: { type: 'string', default: join('bench', 'results', 'browser') },
    'no-build': { type: 'boolean', default: false },
    chrome: { type: 'string' },
    'chrome-arg': { type: 'string', multiple: true, default: [] },
    timeout: { type: 'string', default: '900' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (values.chrome) process.env.CHROME_PATH = values.chrome;
const log = (s) => console.error(s);
const timeout = Number(values.timeout) * 1000;

const outDir = resolve(repoRoot, values.out);
mkdirSync(outDir, { recursive: true });

if (!values['no-build']) {
  log('building the demo (vite build)…');
  await buildDemo();
}
const server = await serveDemo();
log(`serving demo/dist at ${server.url}`);
const { browser, close, executablePath } = await launchChromium({ extraArgs: values['chrome-arg'] });
let exitCode = 1;
try {
  const version = await browser.version();
  log(`browser: ${version} (${executablePath})`);
  const page = await browser.newPage();
  forwardConsole(page, (s) => {
    if (s.includes('[fastattn-demo]') || s.startsWith('[page uncaught]')) log(s.replace('[page log] ', ''));
  });
  const check = Number(values.check);
  const url = demoUrl(server.url, {
    seq: values.seq,
    dim: values.dim,
    heads: values.heads,
    batch: values.batch,
    causal: values.causal,
    dtype: values.dtype,
    tile: values.tile,
    samples: values.samples,
    minSampleMs: values['min-sample-ms'],
    check,
    autorun: 'bench',
  });
  const t0 = Date.now();
  await page.goto(url, { waitUntil: 'load' });
  await waitForDemo(page, () => window.fastattnDemo && window.fastattnDemo.webgpu !== 'pending', { timeout: 60_000 });
  const webgpu = await page.evaluate(() => ({ state: window.fastattnDemo.webgpu, message: window.fastattnDemo.webgpuMessage }));
  log(webgpu.message);
  if (webgpu.state !== 'available') throw new Error(`no WebGPU in the page: ${webgpu.message}`);
  if (check > 0) {
    await waitForDemo(page, () => ['passed', 'failed', 'error'].includes(window.fastattnDemo.selfCheck.state), { timeout });
    const sc = await page.evaluate(() => window.fastattnDemo.selfCheck);
    log(`self-check: ${sc.state}${sc.report ? ` (${sc.report.cases.filter((c) => c.passed).length}/${sc.report.cases.length} cases within ${sc.report.tolerance})` : ''}${sc.error ? `: ${sc.error}` : ''}`);
  }
  await waitForDemo(page, () => ['done', 'error'].includes(window.fastattnDemo.bench.state), { timeout });
  const state = await page.evaluate(() => window.fastattnDemo);
  log(`page finished in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (state.bench.state !== 'done' || !state.bench.report) throw new Error(`benchmark failed in the page: ${state.bench.error}`);

  // Show the tiling-mask of the first size with the tile the benchmark used.
  await page.click('#mask-sync');
  await new Promise((r) => setTimeout(r, 200));

  const report = state.bench.report;
  const slug = `${report.adapter.vendor}-${report.adapter.architecture || report.adapter.device}`.replace(/[^A-Za-z0-9_.-]+/g, '_');
  const stem = join(outDir, `browser-${slug}-${report.date.replace(/[:.]/g, '-')}`);
  const shots = {
    tflops: `${stem}-tflops.png`,
    speedup: `${stem}-speedup.png`,
    bench: `${stem}-bench-panel.png`,
    mask: `${stem}-tiling-mask.png`,
    page: `${stem}-page.png`,
  };
  await (await page.$('#fig-tflops')).screenshot({ path: shots.tflops });
  await (await page.$('#fig-speedup')).screenshot({ path: shots.speedup });
  await (await page.$('#panel-bench')).screenshot({ path: shots.bench });
  await (await page.$('#panel-mask')).screenshot({ path: shots.mask });
  await page.screenshot({ path: shots.page, fullPage: true });

  const json = {
    ...report,
    source: 'browser',
    browser: { version, userAgent: await browser.userAgent(), args: values['chrome-arg'] },
    page: url,
    selfCheck: state.selfCheck.report,
    screenshots: Object.fromEntries(Object.entries(shots).map(([k, p]) => [k, relative(repoRoot, p)])),
  };
  writeFileSync(`${stem}.json`, `${JSON.stringify(json, null, 2)}\n`);
  console.log(values.json ? JSON.stringify(json, null, 2) : state.bench.table);
  if (!values.json) {
    console.log(`results written to ${relative(repoRoot, `${stem}.json`)}`);
    console.log(`screenshots: ${Object.values(shots).map((p) => relative(repoRoot, p)).join(', ')}`);
  }
  const checkOk = check === 0 || state.selfCheck.state === 'passed';
  if (!checkOk) log(`self-check did not pass (${state.selfCheck.state}): see the JSON report`);
  exitCode = checkOk ? 0 : 1;
} catch (e) {
  log(`bench:browser: ${e instanceof Error ? e.message : e}`);
  exitCode = 1;
} finally {
  await close();
  await server.close();
}
process.exit(exitCode);
