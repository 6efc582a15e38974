/**
 * End-to-end: the demo page in headless Chromium with WebGPU (SwiftShader when
 * there is no GPU). Self-check, a tiny benchmark with its charts drawn, the
 * tiling-mask view against the library's classification, bad input that
 * shows the library's typed errors while the page keeps working, and the NPU
 * timeline and Volta fragment panels against the simulator and layout code.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemo, decodePng, demoUrl, forwardConsole, launchChromium, serveDemo, waitForDemo } from '../../scripts/demoBrowser.mjs';
import { normalizeProblem } from '../../src/attention/problem.js';
import { FastAttentionError } from '../../src/errors.js';
import { countBlocks } from '../../src/tiling/mask.js';
import { checkTileConfig, type TileConfig } from '../../src/tiling/tileConfig.js';
import type { DemoHooks } from '../../demo/state.js';
import { fmtPct, fmtUs } from '../../demo/panels/format.js';
import { NpuCapacityError, type NpuEmuError } from '../../src/npu-emu/errors.js';
import { ganttSvg } from '../../src/npu-emu/gantt.js';
import { ascend910B } from '../../src/npu-emu/machine.js';
import { simulateAttention, type AttentionPrefillProblem, type ScheduleKind } from '../../src/npu-emu/schedules.js';
import { conversionMap, voltaDemoData } from '../../src/volta/demoData.js';
import { ampereAccumulatorReuse, voltaAccumulatorReuse } from '../../src/volta/fragmentConverter.js';
import { QP_GRID_16x16, QP_GRID_32x8 } from '../../src/volta/mmaLayouts.js';

const work = join(tmpdir(), `fastattn-e2e-${process.pid}`);
const outDir = join(work, 'dist');
/** Screenshots are kept here for a look after the run (printed at the end). */
const shotDir = process.env.E2E_SCREENSHOT_DIR ?? join(tmpdir(), 'fastattn-e2e-screenshots');

let server: { url: string; close: () => Promise<void> };
let browser: Browser;
let closeBrowser: () => Promise<void>;
let page: Page;
const pageErrors: string[] = [];
const logs: string[] = [];

const hooks = (): Promise<DemoHooks> => page.evaluate(() => JSON.parse(JSON.stringify(window.fastattnDemo)) as DemoHooks);

/** Set form fields the way typing would (an input event per field), in order. */
async function setFields(fields: Record<string, string | boolean>): Promise<void> {
  await page.evaluate((f) => {
    for (const [id, v] of Object.entries(f)) {
      const el = document.getElementById(id) as HTMLInputElement | HTMLSelectElement;
      if (typeof v === 'boolean') (el as HTMLInputElement).checked = v;
      else el.value = v;
      el.dispatchEvent(new Event(typeof v === 'boolean' || el instanceof HTMLSelectElement ? 'change' : 'input', { bubbles: true }));
    }
  }, fields);
}

async function errorBox(id: string): Promise<{ hidden: boolean; name: string | null; field: string | null; text: string }> {
  return page.$eval(`#${id}`, (el) => ({
    hidden: (el as HTMLElement).hidden,
    name: (el as HTMLElement).dataset.errorName ?? null,
    field: (el as HTMLElement).dataset.field ?? null,
    text: el.textContent ?? '',
  }));
}

/** The library's own error for a call, to compare with what the page shows. */
function libraryError(f: () => unknown): FastAttentionError {
  try {
    f();
  } catch (e) {
    if (e instanceof FastAttentionError) return e;
    throw e;
  }
  throw new Error('expected the library to throw');
}

/** Non-white pixels of a 2D canvas: what was drawn on it. */
async function inkPixels(id: string): Promise<number> {
  return page.$eval(`#${id}`, (c) => {
    const canvas = c as HTMLCanvasElement;
    const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 245 || d[i + 1] < 245 || d[i + 2] < 245) n++;
    return n;
  });
}

/** Pixels in the chart's plot area that carry a series colour (saturated), from a real screenshot. */
async function seriesPixels(chart: 'tflops' | 'speedup'): Promise<{ colored: number; nonBackground: number; total: number }> {
  const area = (await hooks()).chartAreas[chart];
  expect(area, `chart ${chart} has a plot area`).toBeTruthy();
  const canvas = (await page.$(`#chart-${chart}`))!;
  const png = await canvas.screenshot({ type: 'png' });
  writeFileSync(join(shotDir, `chart-${chart}.png`), png);
  const { width, height, rgba } = await decodePng(png);
  const x0 = Math.max(0, Math.floor(area!.left) + 2);
  const x1 = Math.min(width, Math.ceil(area!.right) - 1);
  const y0 = Math.max(0, Math.floor(area!.top) + 2);
  const y1 = Math.min(height, Math.ceil(area!.bottom) - 2);
  let colored = 0;
  let nonBackground = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const o = 4 * (y * width + x);
      const [r, g, b] = [rgba[o], rgba[o + 1], rgba[o + 2]];
      if (r < 250 || g < 250 || b < 250) nonBackground++;
      if (Math.max(r, g, b) - Math.min(r, g, b) > 60) colored++;
    }
  }
  return { colored, nonBackground, total: (x1 - x0) * (y1 - y0) };
}

beforeAll(async () => {
  mkdirSync(shotDir, { recursive: true });
  await buildDemo({ outDir });
  server = await serveDemo({ outDir });
  const launched = await launchChromium({ viewport: { width: 1400, height: 1000 } });
  browser = launched.browser;
  closeBrowser = launched.close;
  page = await browser.newPage();
  forwardConsole(page, (line) => {
    logs.push(line);
    if (line.startsWith('[page uncaught]')) pageErrors.push(line);
  });
  // The page starts its self-check on load; the first test waits for it.
  await page.goto(demoUrl(server.url, { check: 4, autorun: 'check', seq: '64,128', dim: 32, heads: 1, causal: 'both', samples: 2, minSampleMs: 5 }));
}, 180_000);

afterAll(async () => {
  await closeBrowser?.();
  await server?.close();
  rmSync(work, { recursive: true, force: true });
  console.log(`e2e screenshots: ${shotDir}`);
});

describe('demo page in headless Chromium', () => {
  it('detects WebGPU, shows the adapter and passes the self-check', async () => {
    await waitForDemo(page, () => window.fastattnDemo?.webgpu !== 'pending', { timeout: 60_000 });
    const h0 = await hooks();
    expect(h0.webgpu, h0.webgpuMessage).toBe('available');
    const adapter = await page.$eval('#adapter-body', (el) => el.textContent ?? '');
    expect(adapter).toContain('maxComputeWorkgroupStorageSize');
    expect(adapter).toContain('maxComputeInvocationsPerWorkgroup');

    await waitForDemo(page, () => ['passed', 'failed', 'error'].includes(window.fastattnDemo.selfCheck.state), { timeout: 240_000 });
    const h = await hooks();
    expect(h.selfCheck.error).toBeNull();
    expect(h.selfCheck.report?.cases.filter((c) => !c.passed)).toEqual([]);
    expect(h.selfCheck.state).toBe('passed');
    const tiers = h.tiers!.filter((t) => t.available).length;
    expect(tiers).toBeGreaterThanOrEqual(1); // the f32 tier runs everywhere
    expect(h.selfCheck.report?.cases).toHaveLength(8 * tiers); // per tier: 4 problems × (fused, standard)
    expect(await page.$$eval('#selfcheck-table tbody tr', (rows) => rows.length)).toBe(8 * tiers);
  }, 300_000);

  it('runs a small benchmark and draws both charts', async () => {
    // Before any run the plot areas hold only grey grid lines: the pixel test below can tell.
    for (const chart of ['tflops', 'speedup'] as const) expect((await seriesPixels(chart)).colored, `${chart} before the run`).toBeLessThan(20);
    await page.click('#btn-bench');
    await waitForDemo(page, () => ['done', 'error'].includes(window.fastattnDemo.bench.state), { timeout: 240_000 });
    const h = await hooks();
    expect(h.bench.error).toBeNull();
    expect(h.bench.state).toBe('done');
    const rows = h.bench.report!.rows;
    // S ∈ {64, 128} × causal ∈ {no, yes} × (standard + each fused tier that takes f32 storage)
    const variants = 1 + h.tiers!.filter((t) => t.available).length;
    expect(rows).toHaveLength(4 * variants);
    expect(rows.filter((r) => r.variant === 'fused:f32')).toHaveLength(4);
    for (const r of rows) {
      expect(r.timing.medianMs).toBeGreaterThan(0);
      expect(Number.isFinite(r.tflops)).toBe(true);
    }
    for (const r of rows.filter((x) => x.variant !== 'standard')) expect(r.speedupVsStandard).toBeGreaterThan(0);
    expect(h.bench.table).toMatch(/^adapter: /);
    expect(h.bench.table).toContain('fused:f32 (');
    expect(await page.$eval('#bench-table', (el) => (el as HTMLElement).hidden)).toBe(false);
    expect(await page.$eval('#bench-progress', (el) => [(el as HTMLProgressElement).value, (el as HTMLProgressElement).max])).toEqual([4 * variants, 4 * variants]);

    for (const chart of ['tflops', 'speedup'] as const) {
      const px = await seriesPixels(chart);
      expect(px.nonBackground, `${chart}: non-background pixels in the plot area`).toBeGreaterThan(0.002 * px.total);
      expect(px.colored, `${chart}: series-coloured pixels in the plot area`).toBeGreaterThan(150);
    }
    writeFileSync(join(shotDir, 'bench-panel.png'), await (await page.$('#panel-bench'))!.screenshot());
  }, 300_000);

  it("tiling-mask view: counts equal the library's countBlocks", async () => {
    const configs = [
      { sq: 256, sk: 256, kv: '', bq: 32, bkv: 32, causal: true, window: '' },
      { sq: 333, sk: 333, kv: '', bq: 64, bkv: 16, causal: true, window: '100' },
      { sq: 100, sk: 300, kv: '250', bq: 16, bkv: 32, causal: true, window: '' },
      { sq: 200, sk: 200, kv: '', bq: 24, bkv: 40, causal: false, window: '7' },
      { sq: 128, sk: 128, kv: '', bq: 32, bkv: 32, causal: false, window: '' },
      { sq: 1000, sk: 1000, kv: '963', bq: 64, bkv: 64, causal: true, window: '300' },
    ];
    for (const c of configs) {
      await setFields({
        'mask-sq': String(c.sq),
        'mask-sk': String(c.sk),
        'mask-kvlen': c.kv,
        'mask-bq': String(c.bq),
        'mask-bkv': String(c.bkv),
        'mask-window': c.window,
        'mask-causal': c.causal,
      });
      const h = await hooks();
      expect(h.mask.error).toBeNull();
      const kvLen = c.kv === '' ? c.sk : Number(c.kv);
      const expected = countBlocks({ seqQ: c.sq, kvLen, causal: c.causal, window: c.window === '' ? undefined : Number(c.window) }, c.sk, c.bq, c.bkv);
      expect(h.mask.counts, JSON.stringify(c)).toEqual(expected);
      const shown = await page.$eval('#mask-summary', (el) => ({ ...(el as HTMLElement).dataset }));
      expect({ empty: Number(shown.empty), full: Number(shown.full), partial: Number(shown.partial) }).toEqual(expected);
    }

    // Click a block on the canvas: the view selects it and shows its B-mask, equal to the dense mask.
    await setFields({ 'mask-sq': '256', 'mask-sk': '256', 'mask-kvlen': '', 'mask-bq': '32', 'mask-bkv': '32', 'mask-window': '', 'mask-causal': true });
    const grid = (await page.$('#mask-grid'))!;
    const box = (await grid.boundingBox())!;
    const cell = box.width / 8;
    await grid.click({ offset: { x: 5.5 * cell, y: 5.5 * cell } }); // block (5, 5): on the diagonal, partial
    let h = await hooks();
    expect(h.mask.selected).toEqual({ qBlock: 5, kBlock: 5, kind: 'partial' });
    expect(await page.$eval('#mask-block-info', (el) => el.textContent)).toContain('Matches the dense mask element for element: yes');
    await grid.click({ offset: { x: 1.5 * cell, y: 6.5 * cell } }); // block (6, 1): below the diagonal, full
    h = await hooks();
    expect(h.mask.selected).toEqual({ qBlock: 6, kBlock: 1, kind: 'full' });
    await grid.click({ offset: { x: 6.5 * cell, y: 1.5 * cell } }); // block (1, 6): above, empty
    h = await hooks();
    expect(h.mask.selected).toEqual({ qBlock: 1, kBlock: 6, kind: 'empty' });
    expect(await page.$eval('#mask-bytes', (el) => el.textContent)).toContain('128.0 KiB');
    writeFileSync(join(shotDir, 'tiling-mask.png'), await (await page.$('#panel-mask'))!.screenshot());
  }, 120_000);

  it("bad input shows the library's typed error, and the page keeps working", async () => {
    const limits = (await hooks()).tileLimits!;
    expect(limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThan(0);
    const shape = (s: number, d: number) => [1, 1, s, d] as const;

    // Non-integer S.
    await setFields({ 'ctl-seq': '64,100.5' });
    let err = await errorBox('controls-error');
    const sErr = libraryError(() => normalizeProblem({ q: { shape: shape(100.5, 32) }, k: { shape: shape(100.5, 32) }, v: { shape: shape(100.5, 32) } }));
    expect(err).toMatchObject({ hidden: false, name: 'ShapeError', field: sErr.field });
    expect(err.text).toContain(sErr.message);
    expect(await page.$eval('#ctl-seq', (el) => el.getAttribute('aria-invalid'))).toBe('true');
    await page.click('#btn-bench');
    await waitForDemo(page, () => window.fastattnDemo.bench.state === 'error', { timeout: 10_000 });
    err = await errorBox('bench-error');
    expect(err).toMatchObject({ hidden: false, name: 'ShapeError', field: 'q.shape[2]' });

    // Unsupported head dim.
    await setFields({ 'ctl-seq': '64', 'ctl-dim': '48' });
    err = await errorBox('controls-error');
    const dErr = libraryError(() => normalizeProblem({ q: { shape: shape(64, 48) }, k: { shape: shape(64, 48) }, v: { shape: shape(64, 48) } }));
    expect(err).toMatchObject({ hidden: false, name: 'UnsupportedError', field: 'q.shape[3]' });
    expect(err.text).toContain(dErr.message);

    // f16 storage on a device without shader-f16 (SwiftShader): the library's tier choice refuses it.
    await setFields({ 'ctl-dim': '32' });
    if (!(await hooks()).capabilities!.features.shaderF16) {
      await setFields({ 'ctl-dtype': 'f16' });
      err = await errorBox('controls-error');
      expect(err).toMatchObject({ hidden: false, name: 'UnsupportedError', field: 'dtype' });
      expect(err.text).toContain('shader-f16');
    }

    // A tile that exceeds the adapter's limits.
    await setFields({ 'ctl-dtype': 'f32', 'ctl-tile-auto': false, 'ctl-bq': '256', 'ctl-bkv': '256', 'ctl-tm': '1', 'ctl-c': '16', 'ctl-chunk': '8', 'ctl-stages': '2' });
    err = await errorBox('controls-error');
    const tile: TileConfig = { blockQ: 256, blockKV: 256, rowsPerThread: 1, threadsPerRow: 16, chunk: 8, kvStages: 2 };
    const tErr = libraryError(() => checkTileConfig(tile, 32, limits));
    expect(err).toMatchObject({ hidden: false, name: 'TileConfigError', field: tErr.field });
    expect(err.text).toContain(tErr.message);
    await page.click('#btn-bench');
    await page.waitForFunction(() => document.getElementById('bench-error')!.dataset.errorName === 'TileConfigError', { timeout: 10_000 });
    expect(await errorBox('bench-error')).toMatchObject({ hidden: false, name: 'TileConfigError', field: tErr.field });
    expect((await hooks()).bench.state).toBe('error');

    // Bad tiling-mask input: the error is shown, the last valid view stays.
    const before = (await hooks()).mask.counts;
    await setFields({ 'mask-sq': '12.5' });
    err = await errorBox('mask-error');
    expect(err).toMatchObject({ hidden: false, name: 'ShapeError', field: 'q.shape[2]' });
    expect((await hooks()).mask.counts).toEqual(before);
    await setFields({ 'mask-sq': '256', 'mask-bkv': '0' });
    expect(await errorBox('mask-error')).toMatchObject({ hidden: false, name: 'TileConfigError', field: 'tile.blockKV' });
    await setFields({ 'mask-bkv': '32' });
    expect((await errorBox('mask-error')).hidden).toBe(true);

    // Valid again: the errors go away and a benchmark runs.
    await setFields({ 'ctl-tile-auto': true, 'ctl-seq': '64', 'ctl-causal': 'false' });
    expect((await errorBox('controls-error')).hidden).toBe(true);
    await page.click('#btn-bench');
    await waitForDemo(page, () => ['done', 'error'].includes(window.fastattnDemo.bench.state), { timeout: 120_000 });
    const h = await hooks();
    expect(h.bench.error).toBeNull();
    expect(h.bench.report!.rows).toHaveLength(1 + h.tiers!.filter((t) => t.available).length);
    expect((await errorBox('bench-error')).hidden).toBe(true);
    expect(pageErrors).toEqual([]);
  }, 240_000);

  it('without WebGPU: a clear message, and the tiling-mask, NPU and Volta views still work', async () => {
    const other = await browser.newPage();
    try {
      await other.evaluateOnNewDocument(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
      });
      const uncaught: string[] = [];
      other.on('pageerror', (e) => uncaught.push(String(e)));
      await other.goto(demoUrl(server.url, { maskSq: 128, maskSk: 128, maskBq: 32, maskBkv: 16 }));
      await other.waitForFunction(() => window.fastattnDemo?.webgpu === 'missing', { timeout: 30_000 });
      const status = await other.$eval('#webgpu-status', (el) => ({ state: (el as HTMLElement).dataset.state, text: el.textContent ?? '' }));
      expect(status.state).toBe('missing');
      expect(status.text).toContain('WebGPU is not available');
      expect(await other.$eval('#btn-bench', (el) => (el as HTMLButtonElement).disabled)).toBe(true);
      expect(await other.$eval('#btn-check', (el) => (el as HTMLButtonElement).disabled)).toBe(true);
      const counts = await other.evaluate(() => window.fastattnDemo.mask.counts);
      expect(counts).toEqual(countBlocks({ seqQ: 128, kvLen: 128, causal: true }, 128, 32, 16));
      // The NPU timeline and the Volta fragment map need no GPU either.
      await other.waitForFunction(() => window.fastattnDemo.npu.state === 'done' && window.fastattnDemo.volta.heatmap.state === 'done', { timeout: 60_000 });
      const npu = await other.evaluate(() => ({ syncs: window.fastattnDemo.npu.rows!.map((r) => (r.ok ? r.summary.syncs : -1)), fragment: window.fastattnDemo.volta.fragment?.name }));
      const problem = { batch: 1, heads: 8, seqQ: 4096, seqK: 4096, headDim: 128, causal: true };
      expect(npu.syncs).toEqual((['standard', 'unified', 'twoLevel'] as const).map((kind) => simulateAttention(ascend910B, problem, { kind }).summary.syncs));
      expect(npu.fragment).toMatch(/^m8n8k4\.C\.f32/);
      expect(uncaught).toEqual([]);
      writeFileSync(join(shotDir, 'no-webgpu.png'), await other.screenshot({ fullPage: true }));
    } finally {
      await other.close();
    }
  });

  it('NPU timeline: the numbers shown are simulateAttention\'s for the same inputs', async () => {
    const check = async (problem: AttentionPrefillProblem, kind: ScheduleKind, tilingMask: boolean) => {
      await waitForDemo(page, () => ['done', 'error'].includes(window.fastattnDemo.npu.state), { timeout: 60_000 });
      const h = await hooks();
      expect(h.npu.error).toBeNull();
      expect(h.npu.state).toBe('done');
      expect(h.npu.input).toEqual({ problem, kind, tilingMask });
      const panel = await page.$eval('#panel-npu', (el) => ({ state: (el as HTMLElement).dataset.state, text: el.textContent ?? '' }));
      expect(panel.state).toBe('done');
      expect(panel.text).not.toContain('not available');
      for (const k of ['standard', 'unified', 'twoLevel'] as const) {
        const lib = simulateAttention(ascend910B, problem, { kind: k, tilingMask });
        const row = h.npu.rows!.find((r) => r.kind === k)!;
        expect(row.ok, k).toBe(true);
        if (!row.ok) continue;
        expect(row.label).toBe(lib.label);
        expect(row.latencySeconds).toBe(lib.latencySeconds);
        expect(row.cubeEfficiency).toBe(lib.cubeEfficiency);
        expect(row.summary.syncs).toBe(lib.summary.syncs);
        expect(row.summary.taskCount).toBe(lib.summary.taskCount);
        expect(row.summary.units).toEqual(lib.summary.units);
        const shown = await page.$eval(`#npu-compare tr[data-kind="${k}"]`, (tr) => ({
          latency: tr.querySelector('.latency')!.textContent,
          syncs: tr.querySelector('.syncs')!.textContent,
          tasks: tr.querySelector('.tasks')!.textContent,
        }));
        expect(shown).toEqual({ latency: fmtUs(lib.latencySeconds), syncs: String(lib.summary.syncs), tasks: String(lib.summary.taskCount) });
        if (k !== kind) continue;
        // The chosen schedule: summary, per-unit utilization and the Gantt chart.
        expect(await page.$eval('#npu-syncs', (el) => el.textContent)).toBe(String(lib.summary.syncs));
        expect(await page.$eval('#npu-latency', (el) => el.textContent)).toBe(`${fmtUs(lib.latencySeconds)} µs`);
        const units = await page.$$eval('#npu-units tr[data-unit]', (trs) => trs.map((tr) => [(tr as HTMLElement).dataset.unit, tr.querySelector('.util')!.textContent]));
        expect(units).toEqual(Object.entries(lib.summary.units).map(([u, s]) => [u, fmtPct(s.utilization)]));
        const bars = (ganttSvg(lib.graph, lib.result, { maxIntervals: 2000 }).match(/<rect /g) ?? []).length;
        expect(bars).toBeGreaterThan(0);
        expect(h.npu.ganttBars).toBe(bars);
        expect(await page.$$eval('#npu-gantt svg rect', (r) => r.length)).toBe(bars);
      }
    };
    // The page's defaults, then other controls.
    await check({ batch: 1, heads: 8, seqQ: 4096, seqK: 4096, headDim: 128, causal: true }, 'twoLevel', true);
    writeFileSync(join(shotDir, 'npu-timeline.png'), await (await page.$('#panel-npu'))!.screenshot());
    await setFields({ 'npu-seq': '2048', 'npu-heads': '4', 'npu-dim': '64', 'npu-kind': 'unified', 'npu-mask': false, 'npu-causal': true });
    await check({ batch: 1, heads: 4, seqQ: 2048, seqK: 2048, headDim: 64, causal: true }, 'unified', false);

    // A head dim whose two-level buffers overflow L1: the simulator's own typed error, the other schedules still compared.
    await setFields({ 'npu-dim': '256', 'npu-kind': 'twoLevel', 'npu-mask': true });
    await waitForDemo(page, () => ['done', 'error'].includes(window.fastattnDemo.npu.state), { timeout: 60_000 });
    let libErr: NpuEmuError | null = null;
    try {
      simulateAttention(ascend910B, { batch: 1, heads: 4, seqQ: 2048, seqK: 2048, headDim: 256, causal: true }, { kind: 'twoLevel' });
    } catch (e) {
      libErr = e as NpuEmuError;
    }
    expect(libErr).toBeInstanceOf(NpuCapacityError);
    const err = await errorBox('npu-error');
    expect(err).toMatchObject({ hidden: false, name: 'NpuCapacityError', field: libErr!.field });
    expect(err.text).toContain(libErr!.message);
    const h = await hooks();
    expect(h.npu.state).toBe('error');
    expect(h.npu.rows!.find((r) => r.kind === 'unified')!.ok).toBe(true);
    await setFields({ 'npu-dim': '128' });
    await waitForDemo(page, () => ['done', 'error'].includes(window.fastattnDemo.npu.state), { timeout: 60_000 });
    expect((await errorBox('npu-error')).hidden).toBe(true);
  }, 120_000);

  it("Volta fragment map: ownership, exchange counts and bank heatmaps are the library's", async () => {
    const lib = voltaDemoData({ headDims: [] });
    const panel = await page.$eval('#panel-volta', (el) => el.textContent ?? '');
    expect(panel).not.toContain('not available');

    // Ownership maps: a few fragments, drawn, and a clicked cell's owners as the library lists them.
    const names = await page.$$eval('#volta-fragment option', (os) => os.map((o) => (o as HTMLOptionElement).value));
    expect(names).toHaveLength(lib.fragments.length);
    for (const want of ['m8n8k4.C.f32', 'm8n8k4.C.f16', 'm8n8k4.A.row', 'm8n8k4.B.col', 'm16n8k16.A', 'm16n8k16.C.f32']) {
      const i = lib.fragments.findIndex((f) => f.name.startsWith(want));
      const f = lib.fragments[i];
      await setFields({ 'volta-fragment': String(i) });
      const h = await hooks();
      expect(h.volta.fragment).toMatchObject({ name: f.name, rows: f.rows, cols: f.cols, lanes: f.lanes, valuesPerLane: f.valuesPerLane, maxOwners: Math.max(...f.cells.flat().map((c) => c.length)) });
      expect(await inkPixels('volta-frag'), `${f.name} drawn`).toBeGreaterThan(200);
      const canvas = (await page.$('#volta-frag'))!;
      const box = (await canvas.boundingBox())!;
      const cell = (box.width - 26 - 2) / f.cols; // the panel's geometry: 26 px of row labels, 20 px of column labels
      const [row, col] = [f.rows - 1, f.cols - 1];
      await canvas.click({ offset: { x: 26 + (col + 0.5) * cell, y: 20 + (row + 0.5) * cell } });
      expect((await hooks()).volta.selectedCell).toEqual({ row, col, owners: f.cells[row][col] });
    }
    await setFields({ 'volta-fragment': String(lib.fragments.findIndex((f) => f.name.startsWith('m8n8k4.C.f32'))) });

    // Accumulator reuse: the exchange counts shown are the converter's (FP16 vs FP32 accumulators).
    const h = await hooks();
    expect(h.volta.conversions).toEqual(lib.conversions.map((c) => ({ arch: c.arch, accumulator: c.accumulator, grid: c.grid, summary: c.map.summary })));
    for (const c of lib.conversions) {
      const fromConverter = conversionMap(c.arch === 'volta' ? voltaAccumulatorReuse(c.accumulator, { grid: c.grid === '32x8x4' ? QP_GRID_32x8 : QP_GRID_16x16 }) : ampereAccumulatorReuse(c.accumulator)).summary;
      expect(c.map.summary).toEqual(fromConverter);
      const shown = await page.$eval(`#volta-reuse tr[data-key="${c.arch}-${c.grid}-${c.accumulator}"]`, (tr) => [tr.querySelector('.received')!.textContent, tr.querySelector('.per-lane')!.textContent]);
      expect(shown).toEqual([String(fromConverter.totalReceived), String(fromConverter.maxReceivedPerLane)]);
    }
    const volta = (acc: 'f16' | 'f32') => voltaAccumulatorReuse(acc, { grid: QP_GRID_32x8 }).totalReceived;
    expect(volta('f16')).toBeLessThan(volta('f32')); // what the panel is there to show
    expect(await inkPixels('volta-conv')).toBeGreaterThan(200);

    // Bank heatmaps of Q, K, V at head dim 64 (planned in the worker), before and after the swizzle.
    await waitForDemo(page, () => ['done', 'error'].includes(window.fastattnDemo.volta.heatmap.state), { timeout: 60_000 });
    expect((await hooks()).volta.heatmap.error).toBeNull();
    const tiles = voltaDemoData({ headDims: [64], br: 64, bc: 64, maxSteps: 8 }).tiles;
    for (const t of tiles) {
      await setFields({ 'volta-dim': '64', 'volta-tile': t.tile });
      await waitForDemo(page, () => window.fastattnDemo.volta.heatmap.state === 'done', { timeout: 60_000 });
      const hm = (await hooks()).volta.heatmap;
      const brief = (x: typeof t.readsBefore) => ({ steps: x.totals.steps, wavefronts: x.totals.wavefronts, ideal: x.totals.ideal, maxDegree: x.totals.maxDegree, conflictedSteps: x.totals.conflictedSteps });
      expect(hm).toMatchObject({ headDim: 64, tile: t.tile, before: brief(t.readsBefore), after: brief(t.readsAfter), swizzle: t.swizzle });
      for (const [id, x] of [['volta-before-line', t.readsBefore], ['volta-after-line', t.readsAfter]] as const) {
        const shown = await page.$eval(`#${id}`, (el) => ({ ...(el as HTMLElement).dataset }));
        expect(shown).toEqual({ wavefronts: String(x.totals.wavefronts), ideal: String(x.totals.ideal), maxDegree: String(x.totals.maxDegree), conflicted: String(x.totals.conflictedSteps) });
      }
      expect(await inkPixels('volta-bank-before')).toBeGreaterThan(500);
      expect(await inkPixels('volta-bank-after')).toBeGreaterThan(500);
    }
    writeFileSync(join(shotDir, 'volta-fragments.png'), await (await page.$('#panel-volta'))!.screenshot());
    expect(pageErrors).toEqual([]);
  }, 120_000);

});
