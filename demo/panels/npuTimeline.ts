/**
 * The NPU timeline: `simulateAttention` (src/npu-emu) of the standard, unified
 * and two-level schedules on the Ascend-910B machine config, for one prefill
 * shape; the chosen schedule's Gantt chart (`ganttSvg`), latency, syncs and
 * per-unit utilization, and a comparison of the three schedules. The
 * simulation runs in a worker (workers/npuSim.worker.ts); it needs no GPU.
 *
 * Cost: all three schedules at S = 16384 with 8 heads take about a second in
 * total (≈ 200k tasks); at the default 4096 × 8 heads, well under 0.1 s.
 */
import type { AttentionPrefillProblem, ScheduleKind } from '../../src/npu-emu/schedules.js';
import { LatestOnlyWorker } from '../workers/client.js';
import type { NpuRequest, NpuResponse, NpuScheduleRow } from '../workers/protocol.js';
import { $, clearError, el, fmtBytes, hooks, input, params, showErrorInfo } from '../state.js';
import { fmtPct, fmtUs } from './format.js';

const MAX_GANTT_BARS = 2000;

const KIND_TEXT: Record<ScheduleKind, string> = {
  standard: 'standard (3 kernels, S and P in GM)',
  unified: 'unified (FA2 as ported, 128×128)',
  twoLevel: 'twoLevel (FastAttention, 128×512 + L0/UB sub-blocks)',
};

function select(id: string): HTMLSelectElement {
  return $(id) as HTMLSelectElement;
}

function readInput(): NonNullable<typeof hooks.npu.input> {
  const s = Number(select('npu-seq').value);
  const problem: AttentionPrefillProblem = {
    batch: 1,
    heads: Number(select('npu-heads').value),
    seqQ: s,
    seqK: s,
    headDim: Number(select('npu-dim').value),
    causal: input('npu-causal').checked,
  };
  return { problem, kind: select('npu-kind').value as ScheduleKind, tilingMask: input('npu-mask').checked };
}

/** Take a URL parameter into a select only when it names one of its options. */
function presetSelect(id: string, key: string): void {
  const v = params.get(key);
  const s = select(id);
  if (v !== null && Array.from(s.options).some((o) => o.value === v)) s.value = v;
}

function renderSummary(row: NpuScheduleRow | undefined): void {
  const dl = $('npu-summary');
  if (!row || !row.ok) {
    dl.replaceChildren();
    return;
  }
  const s = row.summary;
  const meta = (s.meta ?? {}) as Record<string, unknown>;
  const floorBound = row.hbmFloorCycles > s.latencyCycles;
  const items: Array<[string, Node | string]> = [
    ['schedule', `${row.label} — ${KIND_TEXT[row.kind]}`],
    ['total latency', el('span', { id: 'npu-latency', 'data-us': String(row.latencySeconds * 1e6) }, `${fmtUs(row.latencySeconds)} µs`)],
    ['simulated cycles', `${s.latencyCycles.toLocaleString('en-US')} at ${(s.clockHz / 1e9).toFixed(1)} GHz${floorBound ? ' (below the HBM floor: the floor is the latency)' : ''}`],
    ['HBM floor', `${row.hbmFloorCycles.toLocaleString('en-US')} cycles (Q, K, V, O read/written once at chip bandwidth)`],
    ['Cube↔Vector syncs', el('span', { id: 'npu-syncs' }, String(s.syncs))],
    ['tasks', el('span', { id: 'npu-tasks' }, String(s.taskCount))],
    ['Cube efficiency', `${fmtPct(row.cubeEfficiency)} of the chip's fp16 peak (useful FLOPs only)`],
    [
      'busiest core',
      `${String(meta.rowsOnCore ?? '?')} of ${String(meta.rowsTotal ?? '?')} (head, 128-row query block) rows over 24 AI cores`,
    ],
    ['moved', Object.entries(s.bytesMoved).map(([k, b]) => `${k} ${fmtBytes(b)}`).join(', ')],
  ];
  dl.replaceChildren(...items.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function renderUnits(row: NpuScheduleRow | undefined): void {
  const table = $('npu-units');
  if (!row || !row.ok) {
    table.replaceChildren();
    return;
  }
  const body = el('tbody');
  for (const [unit, u] of Object.entries(row.summary.units)) {
    const bar = el('span', { class: 'util-bar' }, el('span', { style: `width:${Math.min(100, 100 * u.utilization).toFixed(1)}%` }));
    body.append(
      el(
        'tr',
        { 'data-unit': unit },
        el('td', {}, el('code', {}, unit)),
        el('td', { class: 'num' }, u.busyCycles.toLocaleString('en-US')),
        el('td', { class: 'num' }, String(u.tasks)),
        el('td', { class: 'num util' }, fmtPct(u.utilization)),
        el('td', {}, bar),
      ),
    );
  }
  table.replaceChildren(el('thead', {}, el('tr', {}, ...['unit', 'busy cycles', 'tasks', 'utilization', ''].map((h) => el('th', {}, h)))), body);
}

function renderCompare(rows: NpuScheduleRow[], chosen: ScheduleKind): void {
  const std = rows.find((r) => r.kind === 'standard');
  const stdLat = std && std.ok ? std.latencySeconds : null;
  const body = el('tbody');
  for (const r of rows) {
    const tr = el('tr', { 'data-kind': r.kind, class: r.kind === chosen ? 'chosen' : '' });
    tr.append(el('td', {}, r.ok ? r.label : r.kind));
    if (r.ok) {
      const busiest = Object.entries(r.summary.units)
        .filter(([u]) => !u.startsWith('sync') && u !== 'ctrl')
        .sort((a, b) => b[1].utilization - a[1].utilization)[0];
      tr.append(
        el('td', { class: 'num latency' }, fmtUs(r.latencySeconds)),
        el('td', { class: 'num speedup' }, stdLat ? `${(stdLat / r.latencySeconds).toFixed(2)}×` : '—'),
        el('td', { class: 'num syncs' }, String(r.summary.syncs)),
        el('td', { class: 'num tasks' }, String(r.summary.taskCount)),
        el('td', { class: 'num' }, fmtPct(r.cubeEfficiency)),
        el('td', {}, busiest ? `${busiest[0]} ${fmtPct(busiest[1].utilization)}` : '—'),
        el('td', { class: 'num muted' }, `${r.ms.toFixed(0)} ms`),
      );
    } else {
      tr.append(el('td', { colspan: '7', class: 'bad' }, `${r.error.name}: ${r.error.message}`));
    }
    body.append(tr);
  }
  $('npu-compare').replaceChildren(
    el('thead', {}, el('tr', {}, ...['schedule', 'latency µs', 'vs standard', 'syncs', 'tasks', 'Cube eff.', 'busiest unit', 'simulated in'].map((h) => el('th', {}, h)))),
    body,
  );
}

export function initNpuTimeline(): { ready: Promise<void> } {
  const worker = new LatestOnlyWorker<NpuRequest, NpuResponse>(() => new Worker(new URL('../workers/npuSim.worker.ts', import.meta.url), { type: 'module' }));
  const panel = $('panel-npu');
  const status = $('npu-status');
  const errorBox = $('npu-error');

  presetSelect('npu-seq', 'npuSeq');
  presetSelect('npu-heads', 'npuHeads');
  presetSelect('npu-dim', 'npuDim');
  presetSelect('npu-kind', 'npuSchedule');
  if (params.has('npuCausal')) input('npu-causal').checked = params.get('npuCausal') !== 'false';
  if (params.has('npuMask')) input('npu-mask').checked = params.get('npuMask') !== 'false';

  const setState = (state: typeof hooks.npu.state, text: string) => {
    hooks.npu.state = state;
    status.dataset.state = state;
    status.textContent = text;
    panel.dataset.state = state;
  };

  const run = async (): Promise<void> => {
    const inp = readInput();
    setState('running', 'simulating…');
    let res: NpuResponse | null;
    try {
      res = await worker.run({ problem: inp.problem, kind: inp.kind, tilingMask: inp.tilingMask, maxIntervals: MAX_GANTT_BARS });
    } catch (e) {
      hooks.npu.error = showErrorInfo(errorBox, { name: 'Error', message: e instanceof Error ? e.message : String(e) });
      setState('error', 'failed');
      return;
    }
    if (!res) return; // superseded by a later change
    hooks.npu.input = inp;
    hooks.npu.rows = res.rows;
    hooks.npu.ms = res.ms;
    const row = res.rows.find((r) => r.kind === inp.kind);
    renderSummary(row);
    renderUnits(row);
    renderCompare(res.rows, inp.kind);
    const gantt = $('npu-gantt');
    if (res.svg) {
      const doc = new DOMParser().parseFromString(res.svg, 'image/svg+xml');
      const svg = document.importNode(doc.documentElement, true) as unknown as SVGSVGElement;
      // Scale with the panel: the viewBox keeps the aspect ratio.
      svg.removeAttribute('height');
      // A little room on the right for the last axis label, which ganttSvg centres on the plot's edge.
      const vb = (svg.getAttribute('viewBox') ?? '').split(/\s+/).map(Number);
      if (vb.length === 4 && vb.every(Number.isFinite)) svg.setAttribute('viewBox', `${vb[0]} ${vb[1]} ${vb[2] + 24} ${vb[3]}`);
      svg.setAttribute('width', '100%');
      svg.id = 'npu-gantt-svg';
      gantt.replaceChildren(svg);
      hooks.npu.ganttBars = svg.querySelectorAll('rect').length;
    } else {
      gantt.replaceChildren(el('div', { class: 'muted small', style: 'padding:10px' }, `No timeline: the ${inp.kind} schedule does not fit this shape (the error above says where).`));
      hooks.npu.ganttBars = 0;
    }
    $('npu-timing').textContent = `${res.rows.length} schedules simulated in ${res.ms.toFixed(0)} ms (Gantt ${res.ganttMs.toFixed(0)} ms), in a worker`;
    if (row && !row.ok) {
      hooks.npu.error = showErrorInfo(errorBox, row.error);
      setState('error', `${inp.kind}: ${row.error.name}`);
    } else {
      clearError(errorBox);
      hooks.npu.error = null;
      setState('done', `done: ${row && row.ok ? row.label : ''}`);
    }
  };

  $('npu-controls').addEventListener('change', () => void run());
  return { ready: run() };
}
