/**
 * The benchmark panel: the library's suite (`runBench`, the same code as
 * `fastattn bench`) with a progress bar, live charts, the same text table,
 * and the tiers this adapter and this build can run.
 */
import { formatBenchTable, runBench, type BenchRow } from '../../src/bench/suite.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import { $, clearError, el, errorText, exclusive, hooks, onBusy, showError } from '../state.js';
import { BenchCharts } from './charts.js';
import { validateAndShow } from './controls.js';

/** The baseline and every kernel tier of the library, whether this device runs it, and why (the library's reasons). */
function renderTiers(rt: FastAttentionRuntime): void {
  const table = $('tier-table');
  const rows: Array<[string, boolean, string]> = [
    ['standard attention (unfused, S×S in memory)', true, 'the baseline: four dispatches, any WebGPU device'],
    ...rt.tiers.map((t): [string, boolean, string] => [`FastAttention ${t.tier} tier`, t.available, t.reason]),
  ];
  table.replaceChildren(
    el('thead', {}, el('tr', {}, el('th', {}, 'variant'), el('th', {}, 'runs on this device'), el('th', {}, 'why'))),
    el(
      'tbody',
      {},
      ...rows.map(([name, ok, why]) =>
        el('tr', { 'data-available': String(ok) }, el('td', {}, name), el('td', { class: ok ? 'ok' : 'bad' }, ok ? 'yes' : 'no'), el('td', { class: 'small' }, why)),
      ),
    ),
  );
}

export function initBench(getRt: () => FastAttentionRuntime | null): { run: () => Promise<void>; ready: (rt: FastAttentionRuntime) => void } {
  const button = $('btn-bench') as HTMLButtonElement;
  const progress = $('bench-progress') as HTMLProgressElement;
  const status = $('bench-status');
  const errorBox = $('bench-error');
  const tableEl = $('bench-table');
  const download = $('bench-download') as HTMLAnchorElement;
  const charts = new BenchCharts($('chart-tflops') as HTMLCanvasElement, $('chart-speedup') as HTMLCanvasElement);
  const setState = (state: typeof hooks.bench.state, text: string) => {
    hooks.bench.state = state;
    status.dataset.state = state;
    status.textContent = text;
  };

  const run = () =>
    exclusive(async () => {
      const rt = getRt();
      if (!rt) return;
      const cfg = validateAndShow(rt, errorBox);
      if (!cfg) {
        hooks.bench.error = hooks.errors[hooks.errors.length - 1] ?? 'invalid input';
        setState('error', 'invalid input: nothing was run');
        return;
      }
      clearError(errorBox);
      hooks.bench.report = null;
      hooks.bench.table = null;
      hooks.bench.error = null;
      tableEl.hidden = true;
      download.hidden = true;
      const rows: BenchRow[] = [];
      const total = cfg.cases.length * cfg.variants.length;
      progress.max = total;
      progress.value = 0;
      hooks.bench.progress = [0, total];
      charts.clear(cfg.seqs);
      setState('running', `0/${total}`);
      console.log(`[fastattn-demo] bench: ${cfg.variants.join(', ')} × ${cfg.cases.length} shapes, ${cfg.dtype} storage`);
      try {
        const report = await runBench(rt, {
          cases: cfg.cases,
          variants: cfg.variants,
          dtype: cfg.dtype,
          tile: cfg.tile,
          samples: cfg.samples,
          minSampleMs: cfg.minSampleMs,
          onProgress: (done, n, row) => {
            progress.value = done;
            hooks.bench.progress = [done, n];
            if (row) {
              rows.push(row);
              console.log(`[fastattn-demo] bench ${done}/${n} ${row.variant} (${row.tier}) S${row.shape.seq} D${row.shape.headDim}${row.shape.causal ? ' causal' : ''}: ${row.timing.medianMs.toFixed(3)} ms`);
            }
            charts.update(rows, cfg.seqs);
            setState('running', `${done}/${n}`);
          },
        });
        charts.update(report.rows, cfg.seqs);
        const table = formatBenchTable(report);
        hooks.bench.report = report;
        hooks.bench.table = table;
        tableEl.textContent = table;
        tableEl.hidden = false;
        download.href = URL.createObjectURL(new Blob([JSON.stringify(report, null, 2)], { type: 'application/json' }));
        download.hidden = false;
        progress.value = total;
        setState('done', `done: ${report.rows.length} rows`);
      } catch (e) {
        hooks.bench.error = showError(errorBox, e);
        setState('error', errorText(e));
      }
    });

  button.addEventListener('click', () => void run());
  onBusy((busy) => (button.disabled = busy || !getRt()));
  return {
    run,
    ready: (rt) => renderTiers(rt),
  };
}
