/**
 * The Volta fragment map, from src/volta/demoData.ts: the lane → element
 * ownership map of an mma.sync fragment (m8n8k4 A/B/C on Volta's quadpairs,
 * m16n8k16 on Ampere), the accumulator-reuse exchange counts (f16 vs f32
 * accumulators) with the map of which values move, and the bank-conflict
 * heatmaps of the Q/K/V workgroup-memory tiles before and after the planned
 * swizzle. Fragments and reuse maps are computed here (milliseconds); the tile
 * plans run the swizzle search (about a second per head dim) in a worker.
 */
import { voltaDemoData, type BankHeatmapJson, type ConversionMapJson, type OwnershipMapJson, type TileDemoJson } from '../../src/volta/demoData.js';
import { LatestOnlyWorker } from '../workers/client.js';
import type { VoltaTilesRequest, VoltaTilesResponse } from '../workers/protocol.js';
import { $, clearError, el, hooks, params, showErrorInfo } from '../state.js';

const GROUP_COLORS = ['#93c5fd', '#fca5a5', '#86efac', '#fcd34d', '#c4b5fd', '#f9a8d4', '#5eead4', '#fdba74'];
const TILE_BR = 64;
const TILE_BC = 64;
const HEAT_STEPS = 8;

function select(id: string): HTMLSelectElement {
  return $(id) as HTMLSelectElement;
}

function laneColor(lane: number, f: OwnershipMapJson, by: 'group' | 'lane'): string {
  if (by === 'group') return GROUP_COLORS[f.laneGroup[lane] % GROUP_COLORS.length];
  // 32 hues, neighbouring lanes far apart on the wheel.
  return `hsl(${((lane * 13) % 32) * (360 / 32)}, 70%, 78%)`;
}

function sizeCanvas(canvas: HTMLCanvasElement, w: number, h: number): CanvasRenderingContext2D {
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, h);
  return ctx;
}

interface FragGeometry {
  cell: number;
  left: number;
  top: number;
}

function fragGeometry(f: OwnershipMapJson): FragGeometry {
  return { cell: f.cols <= 4 ? 60 : f.cols <= 8 ? 46 : 40, left: 26, top: 20 };
}

function drawFragment(canvas: HTMLCanvasElement, f: OwnershipMapJson, by: 'group' | 'lane', lane: number | null): void {
  const g = fragGeometry(f);
  const ctx = sizeCanvas(canvas, g.left + f.cols * g.cell + 2, g.top + f.rows * g.cell + 2);
  ctx.font = '10px sans-serif';
  ctx.fillStyle = '#667085';
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  for (let c = 0; c < f.cols; c++) ctx.fillText(String(c), g.left + (c + 0.5) * g.cell, g.top / 2);
  ctx.textAlign = 'right';
  for (let r = 0; r < f.rows; r++) ctx.fillText(String(r), g.left - 4, g.top + (r + 0.5) * g.cell);
  ctx.textAlign = 'center';
  for (let r = 0; r < f.rows; r++) {
    for (let c = 0; c < f.cols; c++) {
      const owners = f.cells[r][c];
      const x = g.left + c * g.cell;
      const y = g.top + r * g.cell;
      const band = g.cell / Math.max(1, owners.length);
      owners.forEach(([l, v], i) => {
        ctx.fillStyle = laneColor(l, f, by);
        ctx.fillRect(x, y + i * band, g.cell, band);
        ctx.fillStyle = '#1d2330';
        if (owners.length === 1) {
          ctx.font = 'bold 12px sans-serif';
          ctx.fillText(`L${l}`, x + g.cell / 2, y + g.cell * 0.4);
          ctx.font = '10px sans-serif';
          ctx.fillText(`v${v}`, x + g.cell / 2, y + g.cell * 0.72);
        } else {
          ctx.font = `${band >= 20 ? 11 : 9}px sans-serif`;
          ctx.fillText(`L${l} v${v}`, x + g.cell / 2, y + (i + 0.5) * band);
        }
      });
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 1;
      ctx.strokeRect(x + 0.5, y + 0.5, g.cell - 1, g.cell - 1);
    }
  }
  if (lane !== null) {
    ctx.strokeStyle = '#111827';
    ctx.lineWidth = 3;
    for (const [r, c] of f.laneElements[lane] ?? []) ctx.strokeRect(g.left + c * g.cell + 1.5, g.top + r * g.cell + 1.5, g.cell - 3, g.cell - 3);
  }
}

function drawConversion(canvas: HTMLCanvasElement, m: ConversionMapJson): void {
  const cell = m.rows > 16 ? 20 : 24;
  const left = 24;
  const top = 16;
  const ctx = sizeCanvas(canvas, left + m.cols * cell + 2, top + m.rows * cell + 2);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  ctx.font = '9px sans-serif';
  ctx.fillStyle = '#667085';
  for (let c = 0; c < m.cols; c++) ctx.fillText(String(c), left + (c + 0.5) * cell, top / 2);
  ctx.textAlign = 'right';
  for (let r = 0; r < m.rows; r++) ctx.fillText(String(r), left - 4, top + (r + 0.5) * cell);
  ctx.textAlign = 'center';
  ctx.font = '10px sans-serif';
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) {
      const cellData = m.cells[r][c];
      ctx.fillStyle = cellData.moved ? '#fca5a5' : '#bbf7d0';
      ctx.fillRect(left + c * cell, top + r * cell, cell - 1, cell - 1);
      ctx.fillStyle = '#1d2330';
      ctx.fillText(String(cellData.from), left + (c + 0.5) * cell, top + (r + 0.5) * cell);
    }
  }
}

function heatColor(n: number): string {
  if (n === 0) return '#f1f5f9';
  if (n === 1) return '#86efac';
  if (n <= 3) return '#f97316';
  // 4 … 32 distinct words: darker red as the conflict grows.
  const t = Math.min(1, Math.log2(n / 4) / 3);
  const lerp = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${lerp(220, 127)}, ${lerp(38, 29)}, ${lerp(38, 29)})`;
}

function drawHeatmap(canvas: HTMLCanvasElement, h: BankHeatmapJson): void {
  const cell = 15;
  const left = 96;
  const top = 18;
  const rows = h.steps.flatMap((s) => s.phases.map((p, i) => ({ label: `${s.label} · p${i}`, loads: p, degree: s.degree })));
  const ctx = sizeCanvas(canvas, left + 32 * cell + 34, top + rows.length * cell + 2);
  ctx.textBaseline = 'middle';
  ctx.font = '9px sans-serif';
  ctx.fillStyle = '#667085';
  ctx.textAlign = 'center';
  for (let b = 0; b < 32; b += 4) ctx.fillText(String(b), left + (b + 0.5) * cell, top / 2);
  rows.forEach((row, i) => {
    const y = top + i * cell;
    ctx.textAlign = 'right';
    ctx.fillStyle = '#667085';
    ctx.fillText(row.label, left - 4, y + cell / 2);
    row.loads.forEach((n, b) => {
      ctx.fillStyle = heatColor(n);
      ctx.fillRect(left + b * cell, y, cell - 1, cell - 1);
      if (n > 1) {
        ctx.fillStyle = n >= 4 ? '#fff' : '#1d2330';
        ctx.textAlign = 'center';
        ctx.fillText(String(n), left + (b + 0.5) * cell, y + cell / 2);
      }
    });
    const max = Math.max(...row.loads);
    ctx.textAlign = 'left';
    ctx.fillStyle = max > 1 ? '#b42318' : '#15803d';
    ctx.fillText(`${max}×`, left + 32 * cell + 4, y + cell / 2);
  });
}

function totalsLine(id: string, h: BankHeatmapJson): HTMLElement {
  const t = h.totals;
  return el(
    'div',
    { id, 'data-wavefronts': String(t.wavefronts), 'data-ideal': String(t.ideal), 'data-max-degree': String(t.maxDegree), 'data-conflicted': String(t.conflictedSteps) },
    `All ${t.steps} read steps: `,
    el('strong', {}, `${t.wavefronts} wavefronts`),
    ` (ideal ${t.ideal}), worst ${t.maxDegree}-way, ${t.conflictedSteps} conflicted step${t.conflictedSteps === 1 ? '' : 's'}. Layout: pitch ${h.tile.pitch} elements, swizzle ${h.tile.swizzle}.`,
  );
}

export function initVoltaFragments(): { ready: Promise<void> } {
  const panel = $('panel-volta');
  const base = voltaDemoData({ headDims: [] });
  const fragSelect = select('volta-fragment');
  base.fragments.forEach((f, i) => fragSelect.append(el('option', { value: String(i) }, `${f.name} (${f.operand}: ${f.rows}×${f.cols}, ${f.valuesPerLane} values/lane)`)));
  const wanted = params.get('voltaFragment');
  const wantedIndex = wanted === null ? -1 : base.fragments.findIndex((f) => f.name === wanted || f.name.startsWith(`${wanted} `));
  fragSelect.value = String(wantedIndex >= 0 ? wantedIndex : base.fragments.findIndex((f) => f.name.startsWith('m8n8k4.C.f32')));
  if (params.get('voltaColor') === 'lane') select('volta-color').value = 'lane';
  for (const [id, key] of [['volta-dim', 'voltaDim'], ['volta-tile', 'voltaTile']] as const) {
    const v = params.get(key);
    if (v !== null && Array.from(select(id).options).some((o) => o.value === v)) select(id).value = v;
  }

  // --- ownership map -------------------------------------------------------
  const fragCanvas = $('volta-frag') as HTMLCanvasElement;
  let lane: number | null = null;
  const current = () => base.fragments[Number(fragSelect.value)];
  const drawFrag = () => {
    const f = current();
    const by = select('volta-color').value as 'group' | 'lane';
    drawFragment(fragCanvas, f, by, lane);
    const maxOwners = Math.max(...f.cells.flat().map((c) => c.length));
    hooks.volta.fragment = { name: f.name, rows: f.rows, cols: f.cols, lanes: f.lanes, valuesPerLane: f.valuesPerLane, maxOwners, colorBy: by };
    $('volta-frag-caption').textContent =
      `${f.name}: ${f.rows}×${f.cols} ${f.operand} tile, ${f.lanes} lanes × ${f.valuesPerLane} ${f.elementBits}-bit values; ` +
      (maxOwners > 1 ? `every element is held by ${maxOwners} lanes (the quadpairs sharing this ${f.operand === 'A' ? 'row' : 'column'} block). ` : 'every element is held by exactly one lane. ') +
      'Each cell: lane L and value index v. Click a cell to outline its lane’s elements.';
    const legend = $('volta-frag-legend');
    if (by === 'group') {
      const groups = [...new Set(f.laneGroup)].sort((a, b) => a - b);
      legend.replaceChildren(
        ...groups.flatMap((gr) => {
          const lanes = f.laneGroup.map((x, l) => (x === gr ? l : -1)).filter((l) => l >= 0);
          return [el('span', { class: 'legend-item' }, el('span', { class: 'sw', style: `background:${GROUP_COLORS[gr % GROUP_COLORS.length]}` }), `${f.laneGroupKind === 'quadpair' ? 'QP' : 'group'} ${gr}: lanes ${lanes.join(',')}`)];
        }),
      );
    } else legend.replaceChildren('Colour: one hue per lane (0–31).');
  };
  fragCanvas.addEventListener('click', (ev) => {
    const f = current();
    const g = fragGeometry(f);
    const r = fragCanvas.getBoundingClientRect();
    const col = Math.floor((ev.clientX - r.left - g.left) / g.cell);
    const row = Math.floor((ev.clientY - r.top - g.top) / g.cell);
    if (row < 0 || col < 0 || row >= f.rows || col >= f.cols) return;
    const owners = f.cells[row][col];
    lane = owners[0][0];
    hooks.volta.selectedCell = { row, col, owners: owners.map(([l, v]) => [l, v]) };
    $('volta-cell-info').replaceChildren(
      el('div', {}, el('strong', {}, `Element (${row}, ${col}): `), owners.map(([l, v]) => `lane ${l} value ${v}`).join('; ')),
      el('div', {}, `Lane ${lane} holds: ${f.laneElements[lane].map(([a, b], v) => `v${v}=(${a},${b})`).join(' ')}`),
    );
    drawFrag();
  });
  fragSelect.addEventListener('change', () => {
    lane = null;
    hooks.volta.selectedCell = null;
    $('volta-cell-info').textContent = '';
    drawFrag();
  });
  select('volta-color').addEventListener('change', drawFrag);
  drawFrag();

  // --- accumulator reuse ---------------------------------------------------
  const convKey = (c: (typeof base.conversions)[number]) => `${c.arch}-${c.grid}-${c.accumulator}`;
  hooks.volta.conversions = base.conversions.map((c) => ({ arch: c.arch, accumulator: c.accumulator, grid: c.grid, summary: c.map.summary }));
  const reuseBody = el('tbody');
  let shown = convKey(base.conversions.find((c) => c.arch === 'volta' && c.grid === '32x8x4' && c.accumulator === 'f32') ?? base.conversions[0]);
  const showConv = () => {
    const c = base.conversions.find((x) => convKey(x) === shown)!;
    hooks.volta.conversionShown = shown;
    for (const tr of Array.from(reuseBody.querySelectorAll('tr'))) tr.classList.toggle('chosen', (tr as HTMLElement).dataset.key === shown);
    drawConversion($('volta-conv') as HTMLCanvasElement, c.map);
    const s = c.map.summary;
    $('volta-conv-caption').textContent =
      `${c.arch === 'volta' ? 'm8n8k4' : 'm16n8k16'} ${c.grid}, ${c.accumulator} accumulator → A operand (${s.tile} S tile; cell = lane holding the element in the accumulator): ` +
      (s.zeroExchange ? `no value moves${s.registerRenameOnly ? ', a pure register renaming' : ' (the registers are repacked in place)'}.` : `${s.totalReceived} values move, ${s.maxReceivedPerLane} per lane.`) +
      ' Click a row above to show another.';
  };
  for (const c of base.conversions) {
    const s = c.map.summary;
    const key = convKey(c);
    const tr = el(
      'tr',
      { 'data-key': key, 'data-arch': c.arch, 'data-grid': c.grid, 'data-acc': c.accumulator, class: 'clickable' },
      el('td', {}, c.arch === 'volta' ? `Volta m8n8k4 ${c.grid}` : `Ampere m16n8k16`),
      el('td', {}, c.accumulator.toUpperCase()),
      el('td', { class: 'num' }, s.tile),
      el('td', { class: `num received ${s.totalReceived ? 'bad' : 'ok'}` }, String(s.totalReceived)),
      el('td', { class: 'num per-lane' }, String(s.maxReceivedPerLane)),
      el('td', {}, s.zeroExchange ? (s.registerRenameOnly ? 'none: register rename' : 'none: repack in lane') : 'shuffles'),
    );
    tr.addEventListener('click', () => {
      shown = key;
      showConv();
    });
    reuseBody.append(tr);
  }
  $('volta-reuse').replaceChildren(el('thead', {}, el('tr', {}, ...['MMA (QP placement)', 'acc.', 'S tile', 'values moved', 'max / lane', 'exchange'].map((h) => el('th', {}, h)))), reuseBody);
  showConv();

  // --- bank heatmaps -------------------------------------------------------
  const worker = new LatestOnlyWorker<VoltaTilesRequest, VoltaTilesResponse>(() => new Worker(new URL('../workers/voltaTiles.worker.ts', import.meta.url), { type: 'module' }));
  const cache = new Map<number, TileDemoJson[]>();
  const status = $('volta-bank-status');
  const errorBox = $('volta-error');
  const setState = (state: typeof hooks.volta.heatmap.state, text: string) => {
    hooks.volta.heatmap.state = state;
    status.dataset.state = state;
    status.textContent = text;
    panel.dataset.state = state;
  };
  const drawTiles = (headDim: number, tiles: TileDemoJson[]) => {
    const name = select('volta-tile').value;
    const t = tiles.find((x) => x.tile === name)!;
    drawHeatmap($('volta-bank-before') as HTMLCanvasElement, t.readsBefore);
    drawHeatmap($('volta-bank-after') as HTMLCanvasElement, t.readsAfter);
    $('volta-before-caption').textContent = `${name} tile ${t.readsBefore.tile.rows}×${t.readsBefore.tile.cols}, row-major (no swizzle): first ${t.readsBefore.steps.length} steps`;
    $('volta-after-caption').textContent = `${name} tile, swizzled (${t.swizzle}): first ${t.readsAfter.steps.length} steps`;
    $('volta-before-totals').replaceChildren(totalsLine('volta-before-line', t.readsBefore));
    $('volta-after-totals').replaceChildren(totalsLine('volta-after-line', t.readsAfter));
    $('volta-tile-summary').replaceChildren(
      `Head dim ${headDim}: `,
      ...tiles.map((x) =>
        el(
          'span',
          { class: `count ${x.conflictFree ? 'full' : 'partial'}` },
          `${x.tile}: ${x.readsBefore.totals.wavefronts} → ${x.readsAfter.totals.wavefronts} wavefronts${x.conflictFree ? ' (conflict-free)' : ''}`,
        ),
      ),
      ` Fill (${t.fillVectorBytes}-byte stores of ${name}): ${t.fill.before.wavefronts} → ${t.fill.after.wavefronts} wavefronts (ideal ${t.fill.after.ideal}).`,
    );
    const brief = (h: BankHeatmapJson) => ({ steps: h.totals.steps, wavefronts: h.totals.wavefronts, ideal: h.totals.ideal, maxDegree: h.totals.maxDegree, conflictedSteps: h.totals.conflictedSteps });
    Object.assign(hooks.volta.heatmap, { headDim, tile: name, before: brief(t.readsBefore), after: brief(t.readsAfter), swizzle: t.swizzle });
  };
  const updateTiles = async (): Promise<void> => {
    const headDim = Number(select('volta-dim').value);
    const have = cache.get(headDim);
    if (have) {
      drawTiles(headDim, have);
      setState('done', `head dim ${headDim}: planned`);
      return;
    }
    setState('running', `planning head dim ${headDim} (swizzle search)…`);
    let res: VoltaTilesResponse | null;
    try {
      res = await worker.run({ headDim, br: TILE_BR, bc: TILE_BC, maxSteps: HEAT_STEPS });
    } catch (e) {
      hooks.volta.heatmap.error = showErrorInfo(errorBox, { name: 'Error', message: e instanceof Error ? e.message : String(e) });
      setState('error', 'failed');
      return;
    }
    if (!res) return;
    if (!res.ok) {
      hooks.volta.heatmap.error = showErrorInfo(errorBox, res.error);
      setState('error', 'failed');
      return;
    }
    clearError(errorBox);
    hooks.volta.heatmap.error = null;
    hooks.volta.heatmap.ms = res.ms;
    cache.set(headDim, res.tiles);
    if (Number(select('volta-dim').value) !== headDim) return;
    drawTiles(headDim, res.tiles);
    setState('done', `head dim ${headDim}: planned in ${res.ms.toFixed(0)} ms`);
  };
  $('volta-bank-controls').addEventListener('change', () => void updateTiles());
  return { ready: updateTiles() };
}
